-- The keys that grow with every buyer, order and transfer (not the sale and its stock counter),
-- and the waiting room's line: what retiring an ended sale lets expire, and what warming it
-- again keeps. Needs every key of the bucket.
local function per_order_keys()
  return {buyers_key, idem_key, resv_key, pending_key, outbox_key, lent_key, received_key,
    settled_key, room_key, places_key, tickets_key}
end
