-- Let the per-order keys of an ended sale expire once nothing is pending: buyer counts,
-- idempotency entries, reservation records and the (empty) outbox go at `expire_at`. The sale
-- hash and its stock counter stay (two small keys), so the gateway keeps answering
-- `sale_not_active` after the sale. Refused while the sale, as Redis has it, has not ended: an
-- admin may have reopened it since the caller read its end.
-- Runs on each bucket of a bucketed sale; a transfer of units not yet received counts as
-- pending.
-- Keys: every key of the bucket. Arguments: expire_at, now (ms since the epoch).
-- Returns: {"retired", 0} | {"unfinished", orders and transfers still pending} | {"open", 0}
local ends_at = tonumber(redis.call('HGET', sale_key, 'ends_at') or '0')
if ends_at > tonumber(now) then
  return {'open', 0}
end
local pending = redis.call('ZCARD', pending_key) + redis.call('HLEN', lent_key)
if pending > 0 then
  return {'unfinished', pending}
end
for _, key in ipairs(per_order_keys()) do
  redis.call('PEXPIREAT', key, expire_at)
end
return {'retired', 0}
