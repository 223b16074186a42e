-- Give a reservation back, idempotently: a second release of the same order changes nothing.
-- KEYS: sale, stock, buyers, idem, resv
-- ARGV: order id, mode
--   mode "produce_failed": the gateway could not enqueue the order. Only a reservation the worker
--     has not claimed is released (a claimed one reached the queue after all), and the
--     idempotency entry is dropped so the buyer may try again with the same key.
--   mode "compensate": the order failed for good; release whatever its state, keep the
--     idempotency entry so a retry with the same key shows the same (failed) order.
-- Returns: released | already | missing | claimed
local record = redis.call('HGET', KEYS[5], ARGV[1])
if not record then
  return 'missing'
end
local state, qty, user, key = string.match(record, '^(%u)|(%d+)|([^|]+)|(.*)$')
if state == 'X' then
  return 'already'
end
if ARGV[2] == 'produce_failed' and state ~= 'R' then
  return 'claimed'
end
qty = tonumber(qty)
redis.call('INCRBY', KEYS[2], qty)
if redis.call('HINCRBY', KEYS[3], user, -qty) <= 0 then
  redis.call('HDEL', KEYS[3], user)
end
if ARGV[2] == 'produce_failed' then
  redis.call('HDEL', KEYS[4], user .. '|' .. key)
end
redis.call('HSET', KEYS[5], ARGV[1], 'X|' .. qty .. '|' .. user .. '|' .. key)
redis.call('HINCRBY', KEYS[1], 'released', qty)
return 'released'
