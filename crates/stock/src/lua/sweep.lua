-- Take the reservations that have waited too long to be written: the pending entries due at or
-- before the cutoff, at most `limit` of them. Each taken entry is made due again in the same
-- atomic step, so a second sweeper running at the same time (another replica) does not take it
-- in this round: at `now` for a reservation the broker never acknowledged, at `now + grace` for
-- one it did (acknowledged A, or claimed C by a worker), whose message is in the queue unless the
-- broker lost it (see advance.lua).
-- KEYS: pending, outbox, resv
-- ARGV: cutoff (ms), now (ms), limit, grace (ms)
-- Returns: a flat list of order id, when it was due (ms), its outbox entry ('' if none)
local now = tonumber(ARGV[2])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0,
  tonumber(ARGV[3]))
local out = {}
for i = 1, #due, 2 do
  local id = due[i]
  local record = redis.call('HGET', KEYS[3], id)
  local r = record and try_decode_record(record)
  local queued = r and (r.state == 'A' or r.state == 'C')
  redis.call('ZADD', KEYS[1], queued and (now + tonumber(ARGV[4])) or now, id)
  out[#out + 1] = id
  out[#out + 1] = due[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[2], id) or ''
end
return out
