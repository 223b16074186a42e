-- The waiting room's clock: moves the served counter on by the admission rate for the time
-- since the last call (at most a second's worth, so a room nobody ticked for a while does not
-- let a crowd in at once), and answers the room as every gateway answers polls from it.
-- Any gateway may call it at any time: the advance depends on the time elapsed, not on how many
-- call. Nothing is admitted before the opening, after the end, beyond the last place given, or
-- while the sale has no unit left (units that come back, an expired payment window, resume it).
-- At the first call after the opening the room opens: `pre_queue` is frozen and the shuffle's
-- seed (the caller's candidate) is kept.
-- An `auto` rate starts at `auto_start`; a caller under pressure (`pressure` 1) cuts it by 30%
-- (at most once a second, to `auto_min`); otherwise, while buyers wait, it grows by `auto_step`
-- per second (to `auto_max`).
-- Keys: sale, stock, room (bucket 0). Arguments: see admit.rs; `others_left` is the units left
-- in the sale's other buckets.
-- Returns: {"room", epoch, joined, served, pre_queue, seed, rate, opened_ms (0: not yet),
--   left, starts_at, ends_at, room definition} | {"not_found"} | {"no_room"}
local sale, refusal = room_sale()
if not sale then
  return refusal
end
local rate_word = string.match(sale[3], '^[%w_]+|(%w+)|')
local r = redis.call('HMGET', room_key, 'epoch', 'joined', 'served', 'pre_queue', 'seed', 'rate',
  'opened_ms', 'tick_ms', 'cut_ms')
local line = room_epoch(r[1], epoch)
local now_ms = tonumber(now)
local joined = tonumber(r[2] or '0')
local served = tonumber(r[3] or '0')
local left = tonumber(redis.call('GET', stock_key) or '0') + tonumber(others_left)
local rate = tonumber(rate_word)
if rate_word == 'auto' then
  rate = tonumber(r[6] or auto_start)
end
local opened, room_seed, last = r[7], r[5], tonumber(r[8] or '0')
if now_ms >= tonumber(sale[1]) then
  if not opened then
    opened, room_seed, last = now, seed, now_ms
    redis.call('HSET', room_key, 'opened_ms', now, 'seed', seed, 'tick_ms', now)
  end
  if now_ms > last then
    local dt = math.min(now_ms - last, 1000)
    if rate_word == 'auto' then
      if pressure == '1' then
        if now_ms - tonumber(r[9] or '0') >= 1000 then
          rate = math.max(tonumber(auto_min), rate * 0.7)
          redis.call('HSET', room_key, 'cut_ms', now)
        end
      elseif joined > served and left > 0 then
        rate = math.min(tonumber(auto_max), rate + tonumber(auto_step) * dt / 1000)
      end
    end
    if left > 0 and now_ms < tonumber(sale[2]) then
      served = math.min(joined, served + rate * dt / 1000)
    end
    redis.call('HSET', room_key, 'served', string.format('%.4f', served), 'tick_ms', now,
      'rate', string.format('%.3f', rate))
  end
end
return {'room', line, tostring(joined), string.format('%.4f', served), r[4] or '0',
  room_seed or '0', string.format('%.3f', rate), opened or '0', tostring(left), sale[1], sale[2],
  sale[3]}
