-- A buyer joins a sale's waiting room: one place per buyer per sale, numbered in the order of
-- joining (`seq`, from 1). Joining again answers the same place.
-- A join before the opening (within the pre-queue window) counts into `pre_queue`, the joins a
-- `random_at_open` room shuffles at the opening; once the room has opened (`opened_ms`, set by
-- admit.lua) no join adds to it.
-- The room's `epoch` is made by the first join or admission (the caller's candidate; see
-- prelude/room.lua).
-- Keys: sale, room, places (bucket 0). Arguments: see join.rs.
-- Returns: {"joined", seq, joined_ms, epoch} | {"again", seq, joined_ms, epoch} | {"not_found"} |
--   {"no_room"} | {"too_early", opens_ms} | {"ended"}
local sale, refusal = room_sale()
if not sale then
  return refusal
end
local line = room_epoch(redis.call('HGET', room_key, 'epoch'), epoch)
local place = redis.call('HGET', places_key, user)
if place then
  local seq, joined = string.match(place, '^(%d+)|(%d+)$')
  return {'again', seq, joined, line}
end
local now_ms = tonumber(now)
if now_ms >= tonumber(sale[2]) then
  return {'ended'}
end
local opens = tonumber(sale[1]) - tonumber(string.match(sale[3], '|(%d+)$'))
if now_ms < opens then
  return {'too_early', tostring(opens)}
end
local seq = redis.call('HINCRBY', room_key, 'joined', 1)
redis.call('HSET', places_key, user, seq .. '|' .. now)
if now_ms < tonumber(sale[1]) and not redis.call('HGET', room_key, 'opened_ms') then
  redis.call('HSET', room_key, 'pre_queue', seq)
end
return {'joined', tostring(seq), now, line}
