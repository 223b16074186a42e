-- Re-create a sale Redis has lost, from the database (`reconcile`). The buyers, idempotency and
-- reservation entries are written before this script runs; the sale hash and the stock key come
-- last, because the gateway sells nothing of a SKU whose sale hash is missing.
-- Never touches a sale Redis still has.
-- Restores one bucket of the sale (a sale of one bucket is its bucket 0); `lent` and `borrowed`
-- are the units the bucket must count as moved out and in so that its stock balances
-- (initial - lent + borrowed - reserved + released = remaining).
-- KEYS: sale, stock
-- ARGV: initial, remaining, starts_at (ms), ends_at (ms), per-user limit, reserved, released,
--   buckets, lent, borrowed
-- Returns: {"restored", remaining} | {"exists", remaining}
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'exists', tonumber(redis.call('GET', KEYS[2]) or '0')}
end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[1], 'initial', ARGV[1], 'reserved', ARGV[6], 'released', ARGV[7],
  'starts_at', ARGV[3], 'ends_at', ARGV[4], 'per_user_limit', ARGV[5], 'buckets', ARGV[8],
  'lent', ARGV[9], 'borrowed', ARGV[10])
return {'restored', tonumber(ARGV[2])}
