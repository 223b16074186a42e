//! `finish.lua`: orders the worker has settled leave the outbox.

use super::{by_bucket, prelude, Args, LuaScript};
use crate::keys::Key;
use crate::{StockError, StockLedger};
use domain::{OrderId, SkuId};

/// One call of `finish.lua` over orders of one bucket.
pub(super) struct Finish<'a> {
    orders: Vec<&'a OrderId>,
}

impl LuaScript for Finish<'_> {
    const NAME: &'static str = "finish";
    const PRELUDES: &'static [&'static str] = &[prelude::OUTBOX];
    const BODY: &'static str = include_str!("finish.lua");
    const KEYS: &'static [Key] = &[Key::Pending, Key::Outbox];
    const ARGS: &'static [&'static str] = &[];
    const VARIADIC: bool = true;
    /// How many were still pending.
    type Raw = usize;
    type Reply = usize;

    fn args(&self, args: &mut Args<'_, '_>) {
        for order in &self.orders {
            args.rest(order.as_str());
        }
    }

    fn decode(finished: &usize) -> Option<usize> {
        Some(*finished)
    }
}

impl StockLedger {
    /// The worker has settled `orders` of `sku` (written, or dead-lettered with the letter
    /// acknowledged): they leave the outbox. Returns how many were still pending. Idempotent.
    pub async fn finish(&self, sku: &SkuId, orders: &[&OrderId]) -> Result<usize, StockError> {
        let mut finished = 0;
        for (bucket, indexes) in by_bucket(orders) {
            finished += self
                .run(
                    &self.bucket_keys(sku, bucket),
                    &Finish {
                        orders: indexes.into_iter().map(|i| orders[i]).collect(),
                    },
                )
                .await?;
        }
        Ok(finished)
    }
}
