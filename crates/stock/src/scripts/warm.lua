-- Create one bucket of a sale in Redis (a sale of one bucket is its bucket 0), or update it. An
-- update applies the change of the bucket's units as a delta to what is left, so units already
-- reserved are never handed out twice.
-- An update also cancels the expiry that retiring an ended sale set on its per-order keys (the
-- sale may have been reopened).
-- Keys: every key of the bucket. Arguments: see warm.rs; `initial` is the bucket's
-- units (its share of the total stock, lent and borrowed units aside).
-- Returns: {"created", left} | {"updated", left} | {"below_reserved", left} |
--   {"buckets", left} (the bucket belongs to a sale of another number of buckets: unchanged)
local units = tonumber(initial)
local old = redis.call('HGET', sale_key, 'initial')
local left
if not old then
  left = units
  redis.call('SET', stock_key, left)
  redis.call('HSET', sale_key, 'initial', units, 'reserved', 0, 'released', 0, 'buckets', buckets)
  set_sale_terms(starts_at, ends_at, per_user_limit, room)
  return {'created', left}
end
left = tonumber(redis.call('GET', stock_key) or '0')
if (redis.call('HGET', sale_key, 'buckets') or '1') ~= buckets then
  return {'buckets', left}
end
local delta = units - tonumber(old)
if left + delta < 0 then
  return {'below_reserved', left}
end
left = redis.call('INCRBY', stock_key, delta)
for _, key in ipairs(per_order_keys()) do
  redis.call('PERSIST', key)
end
redis.call('HSET', sale_key, 'initial', units)
set_sale_terms(starts_at, ends_at, per_user_limit, room)
return {'updated', left}
