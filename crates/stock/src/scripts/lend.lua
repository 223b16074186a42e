-- Lend units of this bucket of a bucketed sale to another bucket whose buyer found it empty
-- (first half of a transfer; `receive.lua` on the other bucket is the second). The units leave
-- this bucket's stock here and are kept under the transfer id in `lent` until the receiver has
-- them, so a lender or borrower that dies between the two steps strands nothing: whoever
-- completes the transfer later (the sweeper, or a gateway finding it stale) gives them to the
-- receiver exactly once.
-- Lends what was asked for, or half of what is left when that is more, so a bucket that runs
-- dry takes a good share at once and the next buyers there find units without borrowing again.
-- Transfers are dated by Redis's clock (`TIME`), so every gateway and the sweeper agree on
-- their age.
-- Keys: sale, stock, lent, settled. Arguments: see lend.rs.
-- Returns: {units lent, stale transfers in `lent`, now (ms, Redis's clock)} or {-1} when this
--   bucket does not exist (not created yet, or lost).
if not sale_exists() then
  return {-1}
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
-- The same transfer again (the client sent it again after a reply it lost): the same answer,
-- nothing lent twice; nothing at all once it was completed (`settle.lua`).
if redis.call('SISMEMBER', settled_key, transfer) == 1 then
  return {0, 0, now}
end
local again = redis.call('HGET', lent_key, transfer)
if again then
  local t = decode_transfer(again)
  if not t then
    error({err = 'BADRECORD transfer ' .. transfer .. ': ' .. again})
  end
  return {t.units, 0, now}
end
local left = tonumber(redis.call('GET', stock_key) or '0')
local stale = 0
local cutoff = now - tonumber(stale_after)
for _, record in ipairs(redis.call('HVALS', lent_key)) do
  local t = decode_transfer(record)
  -- A record that does not parse counts as stale: the caller then reads it, and reports it.
  if not t or t.at < cutoff then
    stale = stale + 1
  end
end
local give = math.min(left, math.max(tonumber(wanted), math.floor(left / 2)))
if give > 0 then
  redis.call('DECRBY', stock_key, give)
  redis.call('HINCRBY', sale_key, 'lent', give)
  redis.call('HSET', lent_key, transfer, encode_transfer(receiver, give, now))
end
return {give, stale, now}
