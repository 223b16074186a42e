-- Give a reservation back, idempotently: a second release of the same order changes nothing.
-- KEYS: sale, stock, buyers, idem, resv, pending, outbox
-- ARGV: order id, mode
--   mode "produce_failed": the gateway could not enqueue the order. Only a reservation the worker
--     has not claimed is released (a claimed one reached the queue after all), and the
--     idempotency entry is dropped so the buyer may try again with the same key.
--   mode "compensate": the order failed for good; release whatever its state, keep the
--     idempotency entry so a retry with the same key shows the same (failed) order.
-- A released order leaves the outbox: there is nothing left to publish.
-- A sale Redis does not have (it lost it, and `reconcile` may be rebuilding it from the database
-- right now) is left alone: a release would write into the keys reconcile is filling.
-- Returns: released | already | missing | claimed | no_sale
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 'no_sale'
end
local record = redis.call('HGET', KEYS[5], ARGV[1])
if not record then
  return 'missing'
end
local r = decode_record(ARGV[1], record)
if r.state == 'X' then
  redis.call('ZREM', KEYS[6], ARGV[1])
  redis.call('HDEL', KEYS[7], ARGV[1])
  return 'already'
end
if ARGV[2] == 'produce_failed' and r.state ~= 'R' then
  return 'claimed'
end
redis.call('INCRBY', KEYS[2], r.qty)
if redis.call('HINCRBY', KEYS[3], r.user, -r.qty) <= 0 then
  redis.call('HDEL', KEYS[3], r.user)
end
if ARGV[2] == 'produce_failed' then
  redis.call('HDEL', KEYS[4], r.user .. '|' .. r.key)
end
redis.call('HSET', KEYS[5], ARGV[1], encode_record('X', r.qty, r.user, r.key))
redis.call('HINCRBY', KEYS[1], 'released', r.qty)
redis.call('ZREM', KEYS[6], ARGV[1])
redis.call('HDEL', KEYS[7], ARGV[1])
return 'released'
