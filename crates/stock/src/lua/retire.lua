-- Let the per-order keys of an ended sale expire once nothing is pending: buyer counts,
-- idempotency entries, reservation records and the (empty) outbox go at `expire_at`. The sale
-- hash and its stock counter stay (two small keys), so the gateway keeps answering
-- `sale_not_active` after the sale.
-- KEYS: pending, buyers, idem, resv, outbox
-- ARGV: expire_at (ms since epoch)
-- Returns: {"retired", 0} | {"unfinished", orders still pending}
local pending = redis.call('ZCARD', KEYS[1])
if pending > 0 then
  return {'unfinished', pending}
end
for i = 2, #KEYS do
  redis.call('PEXPIREAT', KEYS[i], ARGV[1])
end
return {'retired', 0}
