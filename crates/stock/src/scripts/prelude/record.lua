-- The reservation record. Every script reads and writes it only through these functions, put in
-- front of each script that lists this prelude (the Rust side is `stock::record`):
-- "<state>|<quantity>|<user>|<idempotency key>"; state R reserved, A acknowledged by the broker,
-- C claimed by the worker, X released.
local function encode_record(state, qty, user, key)
  return state .. '|' .. qty .. '|' .. user .. '|' .. key
end

-- The record's fields, or nil when it does not parse.
local function try_decode_record(record)
  local state, qty, user, key = string.match(record, '^([RACX])|(%d+)|([^|]+)|(.+)$')
  if not state then
    return nil
  end
  return {state = state, qty = tonumber(qty), user = user, key = key}
end

-- A record that does not parse is an error reply (code CORRUPT), never read as a default.
local function decode_record(order_id, record)
  local r = try_decode_record(record)
  if not r then
    error({err = 'CORRUPT reservation record of ' .. order_id .. ': ' .. record})
  end
  return r
end

