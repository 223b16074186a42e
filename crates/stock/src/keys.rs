//! The ledger's Redis keys. Every key of one SKU (of one stock bucket of it, see
//! [`StockKeys::bucket`]) carries one hash tag, so a Lua script that touches them all runs inside
//! one Redis Cluster slot. A script names the keys it takes with [`Key`], and reads them in Lua
//! as the local `<name>_key` (`stock_key`), never by position (see the `scripts` module).

use domain::{SkuId, UserId};
use strum::VariantArray;

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
    /// Hash, in a bucketed sale: transfer id -> `<bucket>|<units>|<ms since epoch>`, the units
    /// this bucket lent to another and that bucket has not yet been seen to receive.
    pub lent: String,
    /// Hash, in a bucketed sale: transfer id -> units, every transfer this bucket received (so a
    /// transfer completed twice counts once).
    pub received: String,
    /// Set, in a bucketed sale: the transfers this bucket lent that were received (so a lend the
    /// client sends again after its transfer was completed lends nothing).
    pub settled: String,
    /// Hash, in bucket 0 of a sale with a waiting room: the line's counters (`epoch`, `joined`,
    /// `served`, `pre_queue`, `seed`, `rate`, `opened_ms`, `tick_ms`, `cut_ms`, `admitted`).
    pub room: String,
    /// Hash, in bucket 0 of a sale with a waiting room: user id -> `<seq>|<joined ms>`, the
    /// buyer's place in the order of joining.
    pub places: String,
    /// Hash, in bucket 0 of a sale with a waiting room: user id -> when (ms since the epoch) the
    /// buyer's admission ticket expires, set when the buyer first learns of it.
    pub tickets: String,
}

/// One of the keys of a sale's bucket, by the name the scripts know it by in Lua (the local
/// `<name>_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum Key {
    /// [`StockKeys::sale`].
    Sale,
    /// [`StockKeys::stock`].
    Stock,
    /// [`StockKeys::buyers`].
    Buyers,
    /// [`StockKeys::idem`].
    Idem,
    /// [`StockKeys::resv`].
    Resv,
    /// [`StockKeys::pending`].
    Pending,
    /// [`StockKeys::outbox`].
    Outbox,
    /// [`StockKeys::lent`].
    Lent,
    /// [`StockKeys::received`].
    Received,
    /// [`StockKeys::settled`].
    Settled,
    /// [`StockKeys::room`].
    Room,
    /// [`StockKeys::places`].
    Places,
    /// [`StockKeys::tickets`].
    Tickets,
}

impl Key {
    /// Every key one order's reservation touches: the sale and its stock, the buyer's count,
    /// the idempotency entry, the record, the pending index and the outbox.
    pub const ORDER: [Key; 7] = [
        Key::Sale,
        Key::Stock,
        Key::Buyers,
        Key::Idem,
        Key::Resv,
        Key::Pending,
        Key::Outbox,
    ];
}

impl StockKeys {
    /// The keys of `sku`, under `prefix` (which lets tests and tenants share one Redis): the
    /// keys of a sale in one bucket, and of bucket 0 of a bucketed sale.
    pub fn new(prefix: &str, sku: &SkuId) -> Self {
        Self::bucket(prefix, sku, 0)
    }

    /// The keys of bucket `bucket` of `sku`'s sale. A sale split into N buckets (for a SKU whose
    /// buyers need more than one Redis core) keeps a share of its stock, its buyers' counts and
    /// their orders in each; every bucket has a hash tag of its own (`{sku}` for bucket 0,
    /// `{sku#b}` for the others), so a Redis Cluster spreads them over its slots. `#` is not a
    /// character of SKU ids, so no bucket's keys are another SKU's.
    pub fn bucket(prefix: &str, sku: &SkuId, bucket: u8) -> Self {
        let base = if bucket == 0 {
            format!("{prefix}:{{{sku}}}")
        } else {
            format!("{prefix}:{{{sku}#{bucket}}}")
        };
        Self {
            sale: format!("{base}:sale"),
            stock: format!("{base}:stock"),
            buyers: format!("{base}:buyers"),
            idem: format!("{base}:idem"),
            resv: format!("{base}:resv"),
            pending: format!("{base}:pending"),
            outbox: format!("{base}:outbox"),
            lent: format!("{base}:lent"),
            received: format!("{base}:received"),
            settled: format!("{base}:settled"),
            room: format!("{base}:room"),
            places: format!("{base}:places"),
            tickets: format!("{base}:tickets"),
        }
    }

    /// The key named `key`.
    pub fn get(&self, key: Key) -> &str {
        match key {
            Key::Sale => &self.sale,
            Key::Stock => &self.stock,
            Key::Buyers => &self.buyers,
            Key::Idem => &self.idem,
            Key::Resv => &self.resv,
            Key::Pending => &self.pending,
            Key::Outbox => &self.outbox,
            Key::Lent => &self.lent,
            Key::Received => &self.received,
            Key::Settled => &self.settled,
            Key::Room => &self.room,
            Key::Places => &self.places,
            Key::Tickets => &self.tickets,
        }
    }

    /// Every key of the bucket.
    pub fn all(&self) -> Vec<&str> {
        Key::VARIANTS.iter().map(|&key| self.get(key)).collect()
    }
}

/// The bucket of a sale of `buckets` buckets that keeps `user`'s count and orders: always the
/// same one for the same buyer, so the per-user limit and the idempotency keys stay exact (a
/// stable hash, FNV-1a, so every process and every version agrees).
pub fn home_bucket(user: &UserId, buckets: u8) -> u8 {
    if buckets <= 1 {
        return 0;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in user.as_str().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(buckets)) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_sku_shares_one_hash_tag() {
        let keys = StockKeys::new("t1", &SkuId::parse("sku-9").unwrap());
        assert_eq!(keys.all().len(), Key::VARIANTS.len());
        for key in keys.all() {
            assert!(key.starts_with("t1:{sku-9}:"), "{key}");
        }
    }

    #[test]
    fn each_key_is_named_for_its_field() {
        let keys = StockKeys::new("t1", &SkuId::parse("sku-9").unwrap());
        for &key in Key::VARIANTS {
            let name: &str = key.into();
            assert_eq!(keys.get(key), format!("t1:{{sku-9}}:{name}"));
        }
    }

    #[test]
    fn each_bucket_of_a_sale_has_a_hash_tag_of_its_own() {
        let sku = SkuId::parse("sku-9").unwrap();
        assert_eq!(StockKeys::bucket("t1", &sku, 0), StockKeys::new("t1", &sku));
        let keys = StockKeys::bucket("t1", &sku, 3);
        for key in keys.all() {
            assert!(key.starts_with("t1:{sku-9#3}:"), "{key}");
        }
    }

    #[test]
    fn a_buyer_has_one_home_bucket_and_buyers_spread_over_all_of_them() {
        let user = |i: usize| UserId::parse(format!("user-{i}")).unwrap();
        assert_eq!(home_bucket(&user(1), 1), 0);
        assert_eq!(home_bucket(&user(1), 0), 0);
        // Pinned: a change of the hash would move every buyer of a running sale.
        assert_eq!(home_bucket(&UserId::parse("alice").unwrap(), 8), 7);
        let mut counts = [0usize; 8];
        for i in 0..8000 {
            let bucket = home_bucket(&user(i), 8);
            assert_eq!(bucket, home_bucket(&user(i), 8));
            counts[usize::from(bucket)] += 1;
        }
        for count in counts {
            assert!((800..1200).contains(&count), "{counts:?}");
        }
    }
}
