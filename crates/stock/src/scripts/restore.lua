-- Re-create a sale Redis has lost, from the database (`reconcile`). The buyers, idempotency and
-- reservation entries are written before this script runs; the sale hash and the stock key come
-- last, because the gateway sells nothing of a SKU whose sale hash is missing.
-- Never touches a sale Redis still has.
-- Restores one bucket of the sale (a sale of one bucket is its bucket 0); `lent` and `borrowed`
-- are the units the bucket must count as moved out and in so that its stock balances
-- (initial - lent + borrowed - reserved + released = remaining).
-- Keys: sale, stock. Arguments: see restore.rs.
-- Returns: {"restored", remaining} | {"exists", remaining}
if sale_exists() then
  return {'exists', tonumber(redis.call('GET', stock_key) or '0')}
end
redis.call('SET', stock_key, remaining)
redis.call('HSET', sale_key, 'initial', initial, 'reserved', reserved, 'released', released,
  'buckets', buckets, 'lent', lent, 'borrowed', borrowed)
set_sale_terms(starts_at, ends_at, per_user_limit, room)
return {'restored', tonumber(remaining)}
