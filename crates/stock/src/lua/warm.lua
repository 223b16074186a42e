-- Create one bucket of a sale in Redis (a sale of one bucket is its bucket 0), or update it. An
-- update applies the change of the bucket's units as a delta to what is left, so units already
-- reserved are never handed out twice.
-- An update also cancels the expiry that retiring an ended sale set on its per-order keys (the
-- sale may have been reopened).
-- KEYS: sale, stock, then the per-order keys: buyers, idem, resv, pending, outbox, lent, received
-- ARGV: the bucket's units (its share of the total stock, lent and borrowed units aside),
--   starts_at (ms), ends_at (ms), per-user limit, the sale's number of buckets
-- Returns: {"created", left} | {"updated", left} | {"below_reserved", left} |
--   {"buckets", left} (the bucket belongs to a sale of another number of buckets: unchanged)
local initial = tonumber(ARGV[1])
local old = redis.call('HGET', KEYS[1], 'initial')
local left
if not old then
  left = initial
  redis.call('SET', KEYS[2], left)
  redis.call('HSET', KEYS[1], 'initial', initial, 'reserved', 0, 'released', 0, 'buckets', ARGV[5])
  redis.call('HSET', KEYS[1], 'starts_at', ARGV[2], 'ends_at', ARGV[3], 'per_user_limit', ARGV[4])
  return {'created', left}
end
left = tonumber(redis.call('GET', KEYS[2]) or '0')
if (redis.call('HGET', KEYS[1], 'buckets') or '1') ~= ARGV[5] then
  return {'buckets', left}
end
local delta = initial - tonumber(old)
if left + delta < 0 then
  return {'below_reserved', left}
end
left = redis.call('INCRBY', KEYS[2], delta)
for i = 3, #KEYS do
  redis.call('PERSIST', KEYS[i])
end
redis.call('HSET', KEYS[1], 'initial', initial)
redis.call('HSET', KEYS[1], 'starts_at', ARGV[2], 'ends_at', ARGV[3], 'per_user_limit', ARGV[4])
return {'updated', left}
