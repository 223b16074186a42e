-- Receive the units of a transfer from another bucket of the sale (see `lend.lua`), once: a
-- transfer completed twice (a retry, the sweeper after a gateway) counts once.
-- Keys: sale, stock, received. Arguments: transfer id, units.
-- Returns: received | already | no_sale (this bucket does not exist: the units stay lent)
if not sale_exists() then
  return 'no_sale'
end
if redis.call('HSETNX', received_key, transfer, units) == 0 then
  return 'already'
end
redis.call('INCRBY', stock_key, units)
redis.call('HINCRBY', sale_key, 'borrowed', units)
return 'received'
