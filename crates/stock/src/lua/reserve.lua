-- Reserve stock for one order, atomically, and keep the order in the outbox.
-- KEYS: sale, stock, buyers, idem, resv, pending, outbox (all of one SKU, one hash tag)
-- ARGV: user, idempotency key, candidate order id, quantity, now (ms since epoch), the order
--   message (the outbox entry), the number of stock buckets the caller believes the sale has
-- Answers: accepted <id> | duplicate <id> <state> | key_reused <id> <quantity> |
--   sold_out <left> <reserved> <ends_at> | limit_exceeded | not_found | not_active |
--   buckets <n> (the sale has n buckets, not what the caller believed: the buyer's orders live
--   in another bucket, nothing was reserved)
-- A known (user, key) is answered before anything else: with its order when the request is the
-- same (its quantity, the body's only field; the SKU is the key's scope), or `key_reused` when
-- the key comes back with another quantity (a client bug: nothing is reserved).
-- Writes the order's reservation record (record.lua) in state R, the message in the outbox, and
-- the order in the pending index at `now`, where it stays until it is written or released.
local idem_field = ARGV[1] .. '|' .. ARGV[2]
local existing = redis.call('HGET', KEYS[4], idem_field)
if existing then
  local record = redis.call('HGET', KEYS[5], existing)
  if not record then
    return {'duplicate', existing, 'X'}
  end
  local r = decode_record(existing, record)
  if r.qty ~= tonumber(ARGV[4]) then
    return {'key_reused', existing, tostring(r.qty)}
  end
  return {'duplicate', existing, r.state}
end
local sale = redis.call('HMGET', KEYS[1], 'starts_at', 'ends_at', 'per_user_limit', 'reserved',
  'buckets')
if not sale[1] then
  return {'not_found'}
end
if (sale[5] or '1') ~= ARGV[7] then
  return {'buckets', sale[5] or '1'}
end
local now = tonumber(ARGV[5])
if now < tonumber(sale[1]) or now >= tonumber(sale[2]) then
  return {'not_active'}
end
local stock = redis.call('GET', KEYS[2])
if not stock then
  return {'not_found'}
end
local qty = tonumber(ARGV[4])
if tonumber(stock) < qty then
  -- What a gateway needs to answer the same from memory: units left, units ever reserved (moves
  -- with every accepted order) and the end of the sale.
  return {'sold_out', stock, sale[4] or '0', sale[2]}
end
local held = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
if held + qty > tonumber(sale[3]) then
  return {'limit_exceeded'}
end
redis.call('DECRBY', KEYS[2], qty)
redis.call('HINCRBY', KEYS[3], ARGV[1], qty)
redis.call('HSET', KEYS[4], idem_field, ARGV[3])
redis.call('HSET', KEYS[5], ARGV[3], encode_record('R', ARGV[4], ARGV[1], ARGV[2]))
redis.call('HINCRBY', KEYS[1], 'reserved', qty)
redis.call('HSET', KEYS[7], ARGV[3], ARGV[6])
redis.call('ZADD', KEYS[6], ARGV[5], ARGV[3])
return {'accepted', ARGV[3]}
