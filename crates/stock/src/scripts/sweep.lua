-- Take the reservations that have waited too long to be written: the pending entries due at or
-- before the cutoff, at most `limit` of them. Each taken entry is made due again in the same
-- atomic step, so a second sweeper running at the same time (another replica) does not take it
-- in this round: at `now` for a reservation the broker never acknowledged, at `now + grace` for
-- one it did (acknowledged A, or claimed C by a worker), whose message is in the queue unless the
-- broker lost it (see advance.lua).
-- Keys: pending, outbox, resv. Arguments: cutoff, now, limit, grace (ms).
-- Returns: a flat list of order id, when it was due (ms), its outbox entry ('' if none)
local now_ms = tonumber(now)
local due = redis.call('ZRANGEBYSCORE', pending_key, '-inf', cutoff, 'WITHSCORES', 'LIMIT', 0,
  tonumber(limit))
local out = {}
for i = 1, #due, 2 do
  local id = due[i]
  local record = redis.call('HGET', resv_key, id)
  local r = record and try_decode_record(record)
  local queued = r and (r.state == 'A' or r.state == 'C')
  redis.call('ZADD', pending_key, queued and (now_ms + tonumber(grace)) or now_ms, id)
  out[#out + 1] = id
  out[#out + 1] = due[i + 1]
  out[#out + 1] = redis.call('HGET', outbox_key, id) or ''
end
return out
