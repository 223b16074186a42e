-- The sale hash of a bucket. Needs sale_key.

-- Whether Redis has this bucket of the sale. The gateway sells nothing of a SKU whose sale hash
-- is missing, and a script that would write into a bucket Redis lost (while `reconcile` may be
-- rebuilding it) leaves it alone.
local function sale_exists()
  return redis.call('EXISTS', sale_key) == 1
end

-- The sale's terms, as an admin set them: its window (ms since the epoch), per-user limit, and
-- waiting room (`mode|rate|ticket ms|pre-queue ms`, or '' for none: every bucket keeps it, so
-- that the reserve script of any bucket refuses a buyer the room has not admitted).
local function set_sale_terms(starts_at, ends_at, per_user_limit, room)
  redis.call('HSET', sale_key, 'starts_at', starts_at, 'ends_at', ends_at,
    'per_user_limit', per_user_limit, 'room', room)
end
