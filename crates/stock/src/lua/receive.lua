-- Receive the units of a transfer from another bucket of the sale (see `lend.lua`), once: a
-- transfer completed twice (a retry, the sweeper after a gateway) counts once.
-- KEYS: sale, stock, received
-- ARGV: transfer id, units
-- Returns: received | already | no_sale (this bucket does not exist: the units stay lent)
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 'no_sale'
end
if redis.call('HSETNX', KEYS[3], ARGV[1], ARGV[2]) == 0 then
  return 'already'
end
redis.call('INCRBY', KEYS[2], ARGV[2])
redis.call('HINCRBY', KEYS[1], 'borrowed', ARGV[2])
return 'received'
