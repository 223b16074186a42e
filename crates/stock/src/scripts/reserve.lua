-- Reserve stock for a group of orders of one bucket, atomically, each answered on its own, and
-- keep each accepted order in the outbox. The orders are taken in the order given, as if each
-- were its own call: two orders of one buyer, or one key twice, in one group are judged exactly
-- as one after the other.
-- Keys: all of one bucket of one SKU (one hash tag). Arguments: buckets, then seven per order
-- (see reserve.rs): user, idempotency, order_id, quantity, now, entry, admitted.
-- Answers one reply per order, in order: accepted <id> | duplicate <id> <state> |
--   key_reused <id> <quantity> | sold_out <left> <reserved> <ends_at> | limit_exceeded |
--   not_found | not_active | admission_required (the sale has a waiting room and `admitted` is
--   not 1); or, for the whole group, one reply buckets <n> (the sale has n buckets, not what the
--   caller believed: the buyers' orders live in other buckets, nothing was reserved).
-- A known (user, key) is answered before anything else: with its order when the request is the
-- same (its quantity, the body's only field; the SKU is the key's scope), or `key_reused` when
-- the key comes back with another quantity (a client bug: nothing is reserved).
-- Writes each accepted order's reservation record (record.lua) in state R, its message in the
-- outbox, and the order in the pending index at its `now`, where it stays until it is written or
-- released.
local sale = redis.call('HMGET', sale_key, 'starts_at', 'ends_at', 'per_user_limit', 'reserved',
  'buckets', 'room')
if sale[1] and (sale[5] or '1') ~= buckets then
  return {{'buckets', sale[5] or '1'}}
end
local reserved = tonumber(sale[4] or '0')
local stock = redis.call('GET', stock_key)
local left = stock and tonumber(stock)

local function reserve(user, idempotency, order_id, quantity, now, entry, admitted)
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
  if not sale[1] then
    return {'not_found'}
  end
  local now_ms = tonumber(now)
  if now_ms < tonumber(sale[1]) or now_ms >= tonumber(sale[2]) then
    return {'not_active'}
  end
  if not left then
    return {'not_found'}
  end
  local qty = tonumber(quantity)
  if left < qty then
    -- What a gateway needs to answer the same from memory: units left, units ever reserved
    -- (moves with every accepted order) and the end of the sale.
    return {'sold_out', tostring(left), tostring(reserved), sale[2]}
  end
  -- A sale with a waiting room sells to the buyers it admitted: the caller checked their ticket.
  if sale[6] and sale[6] ~= '' and admitted ~= '1' then
    return {'admission_required'}
  end
  local held = tonumber(redis.call('HGET', buyers_key, user) or '0')
  if held + qty > tonumber(sale[3]) then
    return {'limit_exceeded'}
  end
  -- Each order's writes are whole before the next is judged: a record that does not parse
  -- (CORRUPT) stops the group with every earlier order complete.
  left = left - qty
  reserved = reserved + qty
  redis.call('DECRBY', stock_key, qty)
  redis.call('HINCRBY', sale_key, 'reserved', qty)
  redis.call('HINCRBY', buyers_key, user, qty)
  redis.call('HSET', idem_key, idem_field, order_id)
  redis.call('HSET', resv_key, order_id, encode_record('R', quantity, user, idempotency))
  redis.call('HSET', outbox_key, order_id, entry)
  redis.call('ZADD', pending_key, now, order_id)
  return {'accepted', order_id}
end

local out = {}
for i = REST, #ARGV, 7 do
  out[#out + 1] = reserve(unpack(ARGV, i, i + 6))
end
return out
