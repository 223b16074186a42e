-- Move reservations forward: the gateway marks its order acknowledged (A) once the broker has it;
-- the worker claims (C) the orders of its batch before writing them. Never moves backwards and
-- never revives a released reservation.
-- The broker has the message of an order that moves forward, so the sweeper gives it `grace` ms
-- more before it publishes it again (it is in the queue unless the broker lost it): its pending
-- entry, if it still has one, is made due at `now + grace`.
-- Keys: resv, pending. Arguments: target state ("A" or "C"), now, grace, then the order ids.
-- Returns one word per order: ok | released | unknown | corrupt (a record that does not parse:
-- left as it is, reported per order so the other orders of the batch go on)
local out = {}
local rank = {R = 1, A = 2, C = 3}
local later = tonumber(now) + tonumber(grace)
for i = REST, #ARGV do
  local record = redis.call('HGET', resv_key, ARGV[i])
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
        redis.call('HSET', resv_key, ARGV[i], encode_record(target, r.qty, r.user, r.key))
        redis.call('ZADD', pending_key, 'XX', later, ARGV[i])
      end
      out[#out + 1] = 'ok'
    end
  end
end
return out
