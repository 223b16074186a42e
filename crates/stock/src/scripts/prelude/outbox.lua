-- The order leaves the pending index and the outbox (it is written, dead-lettered or released:
-- there is nothing left to publish). Needs pending_key and outbox_key. Returns 1 when it was
-- pending, 0 when it was not.
local function leave_outbox(order_id)
  local removed = redis.call('ZREM', pending_key, order_id)
  redis.call('HDEL', outbox_key, order_id)
  return removed
end
