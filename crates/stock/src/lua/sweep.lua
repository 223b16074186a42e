-- Take the reservations that have waited too long to be written: the pending entries due at or
-- before the cutoff, at most `limit` of them. Each taken entry is made due again at `now`, so a
-- second sweeper running at the same time (another replica) does not take it in this round.
-- KEYS: pending, outbox
-- ARGV: cutoff (ms), now (ms), limit
-- Returns: a flat list of order id, when it was due (ms), its outbox entry ('' if none)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0,
  tonumber(ARGV[3]))
local out = {}
for i = 1, #due, 2 do
  local id = due[i]
  redis.call('ZADD', KEYS[1], ARGV[2], id)
  out[#out + 1] = id
  out[#out + 1] = due[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[2], id) or ''
end
return out
