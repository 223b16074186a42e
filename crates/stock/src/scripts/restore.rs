//! `restore.lua`: re-creates a sale Redis has lost, from the database; and
//! [`StockLedger::restore`], which writes the buyers, idempotency keys and reservations back
//! first, bucket by bucket.

use super::{prelude, Args, LuaScript};
use crate::keys::Key;
use crate::{ReservationRecord, StockError, StockLedger};
use domain::{IdempotencyKey, OrderId, ReservationState, SaleSpec, SkuId, UserId};
use std::collections::BTreeMap;

/// An order of the database, as `restore` writes it back into Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredOrder {
    /// The order.
    pub order_id: OrderId,
    /// Its buyer.
    pub user: UserId,
    /// The buyer's idempotency key.
    pub key: IdempotencyKey,
    /// Units.
    pub quantity: i64,
    /// Awaiting payment or paid (its units stay taken), or not (failed or expired: its units
    /// were given back).
    pub holds_stock: bool,
}

/// What restoring a sale did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreOutcome {
    /// Re-created with this many units left.
    Restored(i64),
    /// Redis still has the sale (this many units left); nothing was written.
    AlreadyPresent(i64),
}

/// One call of `restore.lua`: one bucket's sale hash and stock counter.
pub(super) struct Restore<'a> {
    spec: &'a SaleSpec,
    /// The bucket's share of the sale's units.
    initial: i64,
    remaining: i64,
    /// Units of the bucket's orders (held or given back).
    reserved: i64,
    released: i64,
    /// Units the bucket counts as moved out to, and in from, the other buckets.
    lent: i64,
    borrowed: i64,
}

impl LuaScript for Restore<'_> {
    const NAME: &'static str = "restore";
    const PRELUDES: &'static [&'static str] = &[prelude::SALE];
    const BODY: &'static str = include_str!("restore.lua");
    const KEYS: &'static [Key] = &[Key::Sale, Key::Stock];
    const ARGS: &'static [&'static str] = &[
        "initial",
        "remaining",
        "starts_at",
        "ends_at",
        "per_user_limit",
        "room",
        "reserved",
        "released",
        "buckets",
        "lent",
        "borrowed",
    ];
    type Raw = (String, i64);
    /// Whether the bucket was restored now (`false`: Redis still had it).
    type Reply = bool;

    fn args(&self, args: &mut Args<'_, '_>) {
        args.arg("initial", self.initial)
            .arg("remaining", self.remaining)
            .terms(self.spec)
            .arg("reserved", self.reserved)
            .arg("released", self.released)
            .arg("buckets", self.spec.buckets.max(1))
            .arg("lent", self.lent)
            .arg("borrowed", self.borrowed);
    }

    fn decode((word, _remaining): &(String, i64)) -> Option<bool> {
        match word.as_str() {
            "restored" => Some(true),
            "exists" => Some(false),
            _ => None,
        }
    }
}

impl StockLedger {
    /// Re-creates a sale Redis has lost (see `restore.lua`): `spec.stock` is the sale's total,
    /// `remaining` the units the database has not given to an order, `orders` every order the
    /// database has of the SKU. Buyers' holdings, idempotency keys and reservations (orders that
    /// hold stock as claimed, failed and expired ones as released) are written first, the sale
    /// itself last, so the gateway sells nothing until the per-user limits and idempotency keys
    /// are back. A bucketed sale is restored bucket by bucket, its last bucket first: each order
    /// goes back to the bucket its id names, `remaining` is split evenly, and each bucket counts
    /// what it holds beyond its share as borrowed (or lent), so nothing is in transit. Does
    /// nothing when Redis still has the sale; refuses when it has only some of its buckets.
    pub async fn restore(
        &self,
        sku: &SkuId,
        spec: &SaleSpec,
        remaining: i64,
        orders: &[RestoredOrder],
    ) -> Result<RestoreOutcome, StockError> {
        let buckets = spec.buckets.max(1);
        let units = self.bucket_units(sku, buckets).await?;
        let present = units.iter().flatten().count() as u8;
        if present == buckets {
            let left = units.iter().flatten().map(|(_, left)| left).sum();
            return Ok(RestoreOutcome::AlreadyPresent(left));
        }
        if present > 0 {
            return Err(StockError::PartlyLost {
                sku: sku.clone(),
                present,
                buckets,
            });
        }
        let mut by_bucket: Vec<Vec<&RestoredOrder>> = vec![Vec::new(); usize::from(buckets)];
        for order in orders {
            let bucket = order.order_id.bucket();
            by_bucket
                .get_mut(usize::from(bucket))
                .ok_or_else(|| {
                    StockError::Config(format!(
                        "order {} names stock bucket {bucket} of a sale of {buckets}",
                        order.order_id
                    ))
                })?
                .push(order);
        }
        let mut restored = 0;
        for bucket in (0..buckets).rev() {
            let bucket_remaining = SaleSpec::share_of(remaining, buckets, bucket);
            self.restore_bucket(
                sku,
                spec,
                bucket,
                bucket_remaining,
                &by_bucket[usize::from(bucket)],
            )
            .await?;
            restored += bucket_remaining;
        }
        self.learn_buckets(sku, buckets);
        Ok(RestoreOutcome::Restored(restored))
    }

    async fn restore_bucket(
        &self,
        sku: &SkuId,
        spec: &SaleSpec,
        bucket: u8,
        remaining: i64,
        orders: &[&RestoredOrder],
    ) -> Result<(), StockError> {
        const CHUNK: usize = 500;
        let keys = self.bucket_keys(sku, bucket);
        let mut conn = self.conn.clone();
        let mut held: BTreeMap<&str, i64> = BTreeMap::new();
        let (mut held_units, mut released_units) = (0, 0);
        for order in orders {
            if order.holds_stock {
                *held.entry(order.user.as_str()).or_default() += order.quantity;
                held_units += order.quantity;
            } else {
                released_units += order.quantity;
            }
        }
        for chunk in held.iter().collect::<Vec<_>>().chunks(CHUNK) {
            let mut pipe = redis::pipe();
            for (user, units) in chunk {
                pipe.hset(&keys.buyers, **user, **units).ignore();
            }
            pipe.query_async::<()>(&mut conn).await?;
        }
        for chunk in orders.chunks(CHUNK) {
            let mut pipe = redis::pipe();
            for order in chunk {
                let record = ReservationRecord {
                    state: if order.holds_stock {
                        ReservationState::Claimed
                    } else {
                        ReservationState::Released
                    },
                    quantity: order.quantity,
                    user: order.user.clone(),
                    key: order.key.clone(),
                };
                pipe.hset(
                    &keys.idem,
                    format!("{}|{}", order.user.as_str(), order.key.as_str()),
                    order.order_id.as_str(),
                )
                .ignore()
                .hset(&keys.resv, order.order_id.as_str(), record.encode())
                .ignore();
            }
            pipe.query_async::<()>(&mut conn).await?;
        }
        // initial - lent + borrowed - reserved + released = remaining, with reserved = held +
        // released: what the bucket holds beyond its share it has borrowed, and lent below it.
        let initial = spec.bucket_share(bucket);
        let moved_in = remaining - initial + held_units;
        self.run(
            &keys,
            &Restore {
                spec,
                initial,
                remaining,
                reserved: held_units + released_units,
                released: released_units,
                lent: (-moved_in).max(0),
                borrowed: moved_in.max(0),
            },
        )
        .await?;
        Ok(())
    }
}
