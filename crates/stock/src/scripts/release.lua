-- Give a reservation back, idempotently: a second release of the same order changes nothing.
-- Keys: sale, stock, buyers, idem, resv, pending, outbox. Arguments: see release.rs.
--   mode "produce_failed": the gateway could not enqueue the order. Only a reservation the worker
--     has not claimed is released (a claimed one reached the queue after all), and the
--     idempotency entry is dropped so the buyer may try again with the same key.
--   mode "compensate": the order failed for good; release whatever its state, keep the
--     idempotency entry so a retry with the same key shows the same (failed) order.
-- A released order leaves the outbox: there is nothing left to publish.
-- A sale Redis does not have (it lost it, and `reconcile` may be rebuilding it from the database
-- right now) is left alone: a release would write into the keys reconcile is filling.
-- Returns: released | already | missing | claimed | no_sale
if not sale_exists() then
  return 'no_sale'
end
local record = redis.call('HGET', resv_key, order_id)
if not record then
  return 'missing'
end
local r = decode_record(order_id, record)
if r.state == 'X' then
  leave_outbox(order_id)
  return 'already'
end
if mode == 'produce_failed' and r.state ~= 'R' then
  return 'claimed'
end
redis.call('INCRBY', stock_key, r.qty)
if redis.call('HINCRBY', buyers_key, r.user, -r.qty) <= 0 then
  redis.call('HDEL', buyers_key, r.user)
end
if mode == 'produce_failed' then
  redis.call('HDEL', idem_key, r.user .. '|' .. r.key)
end
redis.call('HSET', resv_key, order_id, encode_record('X', r.qty, r.user, r.key))
redis.call('HINCRBY', sale_key, 'released', r.qty)
leave_outbox(order_id)
return 'released'
