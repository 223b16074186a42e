//! `warm.lua`: creates a sale's buckets in Redis, or changes their units and terms; and
//! [`StockLedger::warm`], which splits a sale's units over its buckets and undoes a change made
//! half way.

use super::{prelude, Args, LuaScript};
use crate::keys::Key;
use crate::{StockError, StockLedger};
use domain::{SaleSpec, SkuId};
use strum::VariantArray;

/// What warming a sale did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmOutcome {
    /// New in Redis with this many units left.
    Created(i64),
    /// Updated; this many units left.
    Updated(i64),
    /// Refused: the new total would leave fewer units than are already reserved.
    BelowReserved(i64),
    /// Refused: the sale exists with this many stock buckets, and that number is fixed.
    BucketsFixed(u8),
}

/// One call of `warm.lua` on one bucket, with the bucket's new units.
pub(super) struct Warm<'a> {
    initial: i64,
    spec: &'a SaleSpec,
}

/// What one bucket answered; each carries the units left in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Warmed {
    Created(i64),
    Updated(i64),
    BelowReserved(i64),
    /// The bucket belongs to a sale of another number of buckets: unchanged.
    OtherBuckets(i64),
}

impl LuaScript for Warm<'_> {
    const NAME: &'static str = "warm";
    const PRELUDES: &'static [&'static str] = &[prelude::SALE, prelude::PER_ORDER];
    const BODY: &'static str = include_str!("warm.lua");
    const KEYS: &'static [Key] = Key::VARIANTS;
    const ARGS: &'static [&'static str] = &[
        "initial",
        "starts_at",
        "ends_at",
        "per_user_limit",
        "room",
        "buckets",
    ];
    type Raw = (String, i64);
    type Reply = Warmed;

    fn args(&self, args: &mut Args<'_, '_>) {
        args.arg("initial", self.initial)
            .terms(self.spec)
            .arg("buckets", self.spec.buckets.max(1));
    }

    fn decode((word, left): &(String, i64)) -> Option<Warmed> {
        Some(match word.as_str() {
            "created" => Warmed::Created(*left),
            "updated" => Warmed::Updated(*left),
            "below_reserved" => Warmed::BelowReserved(*left),
            "buckets" => Warmed::OtherBuckets(*left),
            _ => return None,
        })
    }
}

impl StockLedger {
    /// Creates or updates the sale of `sku` in Redis (see `warm.lua`), in each of its
    /// `spec.buckets` buckets. A new sale's units are split by [`SaleSpec::bucket_share`]; it is
    /// created from its last bucket to its first, so that its buyers, who learn the number of
    /// buckets from bucket 0, find every bucket there. A change of the total goes to bucket 0
    /// when it grows (the others borrow from it) and is taken from the units left in each
    /// bucket, first to last, when it shrinks.
    pub async fn warm(&self, sku: &SkuId, spec: &SaleSpec) -> Result<WarmOutcome, StockError> {
        let buckets = spec.buckets.max(1);
        let Some(existing) = self.stored_buckets(sku).await? else {
            let mut left = 0;
            for bucket in (0..buckets).rev() {
                let share = spec.bucket_share(bucket);
                left += self.warm_bucket(sku, bucket, share, spec).await?.left();
            }
            self.learn_buckets(sku, buckets);
            return Ok(WarmOutcome::Created(left));
        };
        if existing != buckets {
            return Ok(WarmOutcome::BucketsFixed(existing));
        }
        let units = self.bucket_units(sku, buckets).await?;
        let present = units.iter().flatten().count() as u8;
        if present < buckets {
            // Warming the missing ones would make them anew, empty of their buyers and orders.
            return Err(StockError::PartlyLost {
                sku: sku.clone(),
                present,
                buckets,
            });
        }
        let units: Vec<(i64, i64)> = units.into_iter().flatten().collect();
        let total: i64 = units.iter().map(|(initial, _)| initial).sum();
        let unreserved: i64 = units.iter().map(|(_, left)| left).sum();
        let change = spec.stock - total;
        if change < 0 && unreserved + change < 0 {
            return Ok(WarmOutcome::BelowReserved(unreserved));
        }
        // Each bucket's new units: growth to bucket 0, a cut from the units left in each bucket,
        // first to last. Bucket 0 is changed last, so that a growth is never undone.
        let mut plan: Vec<(u8, i64, i64)> = Vec::with_capacity(units.len());
        let mut to_cut = (-change).max(0);
        for (bucket, (initial, bucket_left)) in (0..buckets).zip(units) {
            let take = bucket_left.min(to_cut);
            to_cut -= take;
            let grow = if bucket == 0 { change.max(0) } else { 0 };
            plan.push((bucket, initial, initial - take + grow));
        }
        plan.rotate_left(1);
        let mut left = 0;
        for (i, &(bucket, _, new)) in plan.iter().enumerate() {
            let refused = match self.warm_bucket(sku, bucket, new, spec).await {
                Ok(Warmed::BelowReserved(refused)) => Ok(refused),
                Ok(warmed) => {
                    left += warmed.left();
                    continue;
                }
                Err(error) => Err(error),
            };
            // Buyers took units since they were read, or Redis failed (maybe after the script
            // ran): put every bucket changed so far, this one included, back as it was. The
            // window and limit of those buckets stay as asked; the caller's retry sets them
            // everywhere.
            for &(bucket, old, _) in &plan[..=i] {
                match self.warm_bucket(sku, bucket, old, spec).await {
                    Ok(Warmed::BelowReserved(_)) | Err(_) => tracing::error!(
                        %sku,
                        bucket,
                        "could not undo a stock change made half way: run the change again"
                    ),
                    Ok(Warmed::Created(_) | Warmed::Updated(_) | Warmed::OtherBuckets(_)) => {}
                }
            }
            return refused.map(|_| WarmOutcome::BelowReserved(unreserved));
        }
        Ok(WarmOutcome::Updated(left))
    }

    /// Runs `warm.lua` on one bucket with its new units. A bucket of a sale of another number of
    /// buckets is an error: the caller checked the number in bucket 0 first.
    async fn warm_bucket(
        &self,
        sku: &SkuId,
        bucket: u8,
        initial: i64,
        spec: &SaleSpec,
    ) -> Result<Warmed, StockError> {
        let warmed = self
            .run(&self.bucket_keys(sku, bucket), &Warm { initial, spec })
            .await?;
        if let Warmed::OtherBuckets(left) = warmed {
            return Err(StockError::Reply {
                script: Warm::NAME,
                reply: format!("bucket {bucket} belongs to a sale of other buckets ({left} left)"),
            });
        }
        Ok(warmed)
    }
}

impl Warmed {
    fn left(self) -> i64 {
        match self {
            Warmed::Created(left)
            | Warmed::Updated(left)
            | Warmed::BelowReserved(left)
            | Warmed::OtherBuckets(left) => left,
        }
    }
}
