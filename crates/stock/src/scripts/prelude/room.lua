-- The waiting room of a sale (bucket 0). Needs sale_key and room_key.

-- The sale's `starts_at`, `ends_at` and room definition; or nil and the answer to give when there
-- is no room to join or run: {"not_found"} (Redis has no such sale) or {"no_room"}.
local function room_sale()
  local sale = redis.call('HMGET', sale_key, 'starts_at', 'ends_at', 'room')
  if not sale[1] then
    return nil, {'not_found'}
  end
  if not sale[3] or sale[3] == '' then
    return nil, {'no_room'}
  end
  return sale
end

-- The line's identity: `known` (the room's `epoch`), or, for a room that has none yet,
-- `candidate`, kept as its epoch. A room Redis lost starts with another, so a place token of the
-- lost line is told so.
local function room_epoch(known, candidate)
  if known then
    return known
  end
  redis.call('HSET', room_key, 'epoch', candidate)
  return candidate
end
