-- The worker has settled these orders (a row is written, or the order is dead-lettered with its
-- letter acknowledged): they leave the outbox and the pending index. Idempotent.
-- KEYS: pending, outbox
-- ARGV: order ids
-- Returns: how many were still pending
local removed = 0
for i = 1, #ARGV do
  removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('HDEL', KEYS[2], ARGV[i])
end
return removed
