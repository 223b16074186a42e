-- Reserve stock for one order, atomically, and keep the order in the outbox.
-- Keys: all of one bucket of one SKU (one hash tag). Arguments: see reserve.rs.
-- Answers: accepted <id> | duplicate <id> <state> | key_reused <id> <quantity> |
--   sold_out <left> <reserved> <ends_at> | limit_exceeded | not_found | not_active |
--   admission_required (the sale has a waiting room and `admitted` is not 1) |
--   buckets <n> (the sale has n buckets, not what the caller believed: the buyer's orders live
--   in another bucket, nothing was reserved)
-- A known (user, key) is answered before anything else: with its order when the request is the
-- same (its quantity, the body's only field; the SKU is the key's scope), or `key_reused` when
-- the key comes back with another quantity (a client bug: nothing is reserved).
-- Writes the order's reservation record (record.lua) in state R, the message in the outbox, and
-- the order in the pending index at `now`, where it stays until it is written or released.
local idem_field = user .. '|' .. idempotency
local existing = redis.call('HGET', idem_key, idem_field)
if existing then
  local record = redis.call('HGET', resv_key, existing)
  if not record then
    return {'duplicate', existing, 'X'}
  end
  local r = decode_record(existing, record)
  if r.qty ~= tonumber(quantity) then
    return {'key_reused', existing, tostring(r.qty)}
  end
  return {'duplicate', existing, r.state}
end
local sale = redis.call('HMGET', sale_key, 'starts_at', 'ends_at', 'per_user_limit', 'reserved',
  'buckets', 'room')
if not sale[1] then
  return {'not_found'}
end
if (sale[5] or '1') ~= buckets then
  return {'buckets', sale[5] or '1'}
end
local now_ms = tonumber(now)
if now_ms < tonumber(sale[1]) or now_ms >= tonumber(sale[2]) then
  return {'not_active'}
end
local stock = redis.call('GET', stock_key)
if not stock then
  return {'not_found'}
end
local qty = tonumber(quantity)
if tonumber(stock) < qty then
  -- What a gateway needs to answer the same from memory: units left, units ever reserved (moves
  -- with every accepted order) and the end of the sale.
  return {'sold_out', stock, sale[4] or '0', sale[2]}
end
-- A sale with a waiting room sells to the buyers it admitted: the caller checked their ticket.
if sale[6] and sale[6] ~= '' and admitted ~= '1' then
  return {'admission_required'}
end
local held = tonumber(redis.call('HGET', buyers_key, user) or '0')
if held + qty > tonumber(sale[3]) then
  return {'limit_exceeded'}
end
redis.call('DECRBY', stock_key, qty)
redis.call('HINCRBY', buyers_key, user, qty)
redis.call('HSET', idem_key, idem_field, order_id)
redis.call('HSET', resv_key, order_id, encode_record('R', quantity, user, idempotency))
redis.call('HINCRBY', sale_key, 'reserved', qty)
redis.call('HSET', outbox_key, order_id, entry)
redis.call('ZADD', pending_key, now, order_id)
return {'accepted', order_id}
