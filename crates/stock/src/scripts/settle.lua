-- The receiver has counted a transfer (`receive.lua`): the lender forgets it, and remembers it
-- as settled, so that a lend of the same transfer sent again (a client retry) lends nothing.
-- Keys: lent, settled. Arguments: transfer id.
-- Returns: 1
redis.call('HDEL', lent_key, transfer)
redis.call('SADD', settled_key, transfer)
return 1
