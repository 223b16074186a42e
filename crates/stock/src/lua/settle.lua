-- The receiver has counted a transfer (`receive.lua`): the lender forgets it, and remembers it
-- as settled, so that a lend of the same transfer sent again (a client retry) lends nothing.
-- KEYS: lent, settled
-- ARGV: transfer id
-- Returns: 1
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
