-- Move reservations forward: the gateway marks its order acknowledged (A) once the broker has it;
-- the worker claims (C) the orders of its batch before writing them. Never moves backwards and
-- never revives a released reservation.
-- KEYS: resv
-- ARGV: target state ("A" or "C"), then order ids
-- Returns one word per order: ok | released | unknown
local out = {}
local rank = {R = 1, A = 2, C = 3}
local target = ARGV[1]
for i = 2, #ARGV do
  local record = redis.call('HGET', KEYS[1], ARGV[i])
  if not record then
    out[#out + 1] = 'unknown'
  else
    local r = decode_record(ARGV[i], record)
    if r.state == 'X' then
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
