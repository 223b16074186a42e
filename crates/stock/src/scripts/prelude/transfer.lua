-- The transfer record a lending bucket keeps in its `lent` hash until the receiver has counted
-- the units (the Rust side is `LentTransfer`, in lend.rs):
-- "<receiving bucket>|<units>|<lent at, ms since the epoch>".
local function encode_transfer(receiver, units, at)
  return receiver .. '|' .. units .. '|' .. at
end

-- The record's fields, or nil when it does not parse.
local function decode_transfer(record)
  local receiver, units, at = string.match(record, '^(%d+)|(%d+)|(%d+)$')
  if not receiver then
    return nil
  end
  return {receiver = tonumber(receiver), units = tonumber(units), at = tonumber(at)}
end
