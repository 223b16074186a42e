-- The sale hash of a bucket. Needs sale_key; per_order_keys also needs every per-order key.

-- Whether Redis has this bucket of the sale. The gateway sells nothing of a SKU whose sale hash
-- is missing, and a script that would write into a bucket Redis lost (while `reconcile` may be
-- rebuilding it) leaves it alone.
local function sale_exists()
  return redis.call('EXISTS', sale_key) == 1
end

-- The sale's terms, as an admin set them: its window (ms since the epoch) and per-user limit.
local function set_sale_terms(starts_at, ends_at, per_user_limit)
  redis.call('HSET', sale_key, 'starts_at', starts_at, 'ends_at', ends_at,
    'per_user_limit', per_user_limit)
end

-- The keys that grow with every buyer, order and transfer (not the sale and its stock counter):
-- what retiring an ended sale lets expire, and what warming it again keeps.
local function per_order_keys()
  return {buyers_key, idem_key, resv_key, pending_key, outbox_key, lent_key, received_key,
    settled_key}
end
