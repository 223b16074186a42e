-- The worker has settled these orders (a row is written, or the order is dead-lettered with its
-- letter acknowledged): they leave the outbox and the pending index. Idempotent.
-- Keys: pending, outbox. Arguments: the order ids.
-- Returns: how many were still pending
local removed = 0
for i = REST, #ARGV do
  removed = removed + leave_outbox(ARGV[i])
end
return removed
