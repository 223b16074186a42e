-- An admitted buyer's ticket: its expiry is fixed the first time the buyer learns of it (a poll
-- that finds the place admitted) and never moves, however often the buyer polls again.
-- Keys: room, tickets (bucket 0). Arguments: see ticket.rs.
-- A place never claimed while the line moved a ticket's lifetime past it (`late` 1, as the
-- caller's view says) has lapsed: no ticket.
-- Returns: {"issued", expires_ms} | {"again", expires_ms} | {"lapsed"} | {"waiting"} (the room
--   has not served `place` yet: the caller's view ran ahead, which it should not)
local expires = redis.call('HGET', tickets_key, user)
if expires then
  return {'again', expires}
end
if tonumber(redis.call('HGET', room_key, 'served') or '0') < tonumber(place) then
  return {'waiting'}
end
if late == '1' then
  return {'lapsed'}
end
expires = tostring(tonumber(now) + tonumber(ticket_ms))
redis.call('HSET', tickets_key, user, expires)
redis.call('HINCRBY', room_key, 'admitted', 1)
return {'issued', expires}
