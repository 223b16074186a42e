//! Redis key names. Every key of one SKU carries the hash tag `{sku_id}`, so a Lua script that
//! touches them all runs inside one Redis Cluster slot.

use crate::SkuId;

/// The Redis keys of one SKU's sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockKeys {
    /// Hash: `starts_at`, `ends_at` (ms since epoch), `per_user_limit`, `initial`, `reserved`, `released`.
    pub sale: String,
    /// Integer: units that can still be reserved.
    pub stock: String,
    /// Hash: user id -> units this user holds.
    pub buyers: String,
    /// Hash: `user|idempotency key` -> order id.
    pub idem: String,
    /// Hash: order id -> `state|quantity|user|idempotency key`; state `R` reserved, `A` acknowledged
    /// by the broker, `C` claimed by the worker, `X` released.
    pub resv: String,
    /// Sorted set: order id -> when (ms since epoch) the sweeper may next look at it. Holds the
    /// reservations not yet known to be written or released: the outbox's index by time.
    pub pending: String,
    /// Hash: order id -> the order message as the gateway produces it (the outbox), kept until
    /// the order is written or released, so the sweeper can publish it again.
    pub outbox: String,
}

impl StockKeys {
    /// The keys of `sku`, under `prefix` (which lets tests and tenants share one Redis).
    pub fn new(prefix: &str, sku: &SkuId) -> Self {
        let base = format!("{prefix}:{{{sku}}}");
        Self {
            sale: format!("{base}:sale"),
            stock: format!("{base}:stock"),
            buyers: format!("{base}:buyers"),
            idem: format!("{base}:idem"),
            resv: format!("{base}:resv"),
            pending: format!("{base}:pending"),
            outbox: format!("{base}:outbox"),
        }
    }

    /// All keys, in the order the Lua scripts expect them in `KEYS`.
    pub fn all(&self) -> [&str; 7] {
        [
            &self.sale,
            &self.stock,
            &self.buyers,
            &self.idem,
            &self.resv,
            &self.pending,
            &self.outbox,
        ]
    }

    /// The keys that grow with every buyer and order (not the sale and its stock counter): what
    /// is retired once the sale has ended and every order is written.
    pub fn per_order(&self) -> [&str; 5] {
        [
            &self.buyers,
            &self.idem,
            &self.resv,
            &self.pending,
            &self.outbox,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_sku_shares_one_hash_tag() {
        let keys = StockKeys::new("t1", &SkuId::parse("sku-9").unwrap());
        for key in keys.all() {
            assert!(key.starts_with("t1:{sku-9}:"), "{key}");
        }
    }
}
