-- Move reservations forward: the gateway marks its order acknowledged (A) once the broker has it;
-- the worker claims (C) the orders of its batch before writing them. Never moves backwards and
-- never revives a released reservation.
-- KEYS: resv
-- ARGV: target state ("A" or "C"), then order ids
-- Returns one word per order: ok | released | unknown | corrupt (a record that does not parse:
-- left as it is, reported per order so the other orders of the batch go on)
local out = {}
local rank = {R = 1, A = 2, C = 3}
local target = ARGV[1]
for i = 2, #ARGV do
  local record = redis.call('HGET', KEYS[1], ARGV[i])
  if not record then
    out[#out + 1] = 'unknown'
  else
    local r = try_decode_record(record)
    if not r then
      out[#out + 1] = 'corrupt'
    elseif r.state == 'X' then
      out[#out + 1] = 'released'
    else
      if rank[r.state] < rank[target] then
        redis.call('HSET', KEYS[1], ARGV[i], encode_record(target, r.qty, r.user, r.key))
      end
      out[#out + 1] = 'ok'
    end
  end
end
return out
