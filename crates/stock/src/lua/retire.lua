-- Let the per-order keys of an ended sale expire once nothing is pending: buyer counts,
-- idempotency entries, reservation records and the (empty) outbox go at `expire_at`. The sale
-- hash and its stock counter stay (two small keys), so the gateway keeps answering
-- `sale_not_active` after the sale. Refused while the sale, as Redis has it, has not ended: an
-- admin may have reopened it since the caller read its end.
-- Runs on each bucket of a bucketed sale; a transfer of units not yet received counts as
-- pending.
-- KEYS: sale, pending, buyers, idem, resv, outbox, lent, received, settled
-- ARGV: expire_at (ms since epoch), now (ms since epoch)
-- Returns: {"retired", 0} | {"unfinished", orders and transfers still pending} | {"open", 0}
local ends_at = tonumber(redis.call('HGET', KEYS[1], 'ends_at') or '0')
if ends_at > tonumber(ARGV[2]) then
  return {'open', 0}
end
local pending = redis.call('ZCARD', KEYS[2]) + redis.call('HLEN', KEYS[7])
if pending > 0 then
  return {'unfinished', pending}
end
for i = 3, #KEYS do
  redis.call('PEXPIREAT', KEYS[i], ARGV[1])
end
return {'retired', 0}
