//! `advance.lua`: moves reservations forward (acknowledged by the broker, claimed by the
//! worker), many orders of one bucket per call.

use super::{by_bucket, prelude, Args, LuaScript};
use crate::keys::Key;
use crate::{StockError, StockLedger};
use chrono::Utc;
use domain::{OrderId, ReservationState, SkuId};

/// Whether the worker may go on with an order after claiming it; its string form is the
/// script's word for the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
pub enum ClaimOutcome {
    /// Claimed (or claimed before).
    #[strum(serialize = "ok")]
    Claimed,
    /// The gateway released it: the buyer was told 503, the order must not be filled.
    Released,
    /// Redis has no record of it (e.g. Redis restarted); the database check decides.
    Unknown,
    /// Its record does not parse; it was left as it is. The database check decides.
    Corrupt,
}

/// One call of `advance.lua` over orders of one bucket.
pub(super) struct Advance<'a> {
    /// Acknowledged or claimed.
    target: ReservationState,
    now_ms: i64,
    grace_ms: u64,
    orders: &'a [&'a OrderId],
}

impl LuaScript for Advance<'_> {
    const NAME: &'static str = "advance";
    const PRELUDES: &'static [&'static str] = &[prelude::RECORD];
    const BODY: &'static str = include_str!("advance.lua");
    const KEYS: &'static [Key] = &[Key::Resv, Key::Pending];
    const ARGS: &'static [&'static str] = &["target", "now", "grace"];
    const VARIADIC: bool = true;
    /// One word per order.
    type Raw = Vec<String>;
    type Reply = Vec<ClaimOutcome>;

    fn args(&self, args: &mut Args<'_, '_>) {
        args.arg("target", self.target.letter())
            .arg("now", self.now_ms)
            .arg("grace", self.grace_ms);
        for order in self.orders {
            args.rest(order.as_str());
        }
    }

    fn decode(reply: &Vec<String>) -> Option<Vec<ClaimOutcome>> {
        reply.iter().map(|word| word.parse().ok()).collect()
    }
}

impl StockLedger {
    /// Marks an order's message as acknowledged by the broker.
    pub async fn mark_acknowledged(&self, order: &OrderId) -> Result<ClaimOutcome, StockError> {
        let mut outcomes = self
            .advance(&order.sku(), ReservationState::Acknowledged, &[order])
            .await?;
        Ok(outcomes.pop().unwrap_or(ClaimOutcome::Unknown))
    }

    /// Marks the messages of several orders of one SKU as acknowledged, in one call per bucket.
    pub async fn mark_all_acknowledged(
        &self,
        sku: &SkuId,
        orders: &[&OrderId],
    ) -> Result<Vec<ClaimOutcome>, StockError> {
        self.advance(sku, ReservationState::Acknowledged, orders)
            .await
    }

    /// Claims the orders of one SKU for the worker; one outcome per order, in order.
    pub async fn claim(
        &self,
        sku: &SkuId,
        orders: &[&OrderId],
    ) -> Result<Vec<ClaimOutcome>, StockError> {
        self.advance(sku, ReservationState::Claimed, orders).await
    }

    async fn advance(
        &self,
        sku: &SkuId,
        target: ReservationState,
        orders: &[&OrderId],
    ) -> Result<Vec<ClaimOutcome>, StockError> {
        let mut outcomes = vec![ClaimOutcome::Unknown; orders.len()];
        for (bucket, indexes) in by_bucket(orders) {
            let group: Vec<&OrderId> = indexes.iter().map(|&i| orders[i]).collect();
            let advanced = self
                .run(
                    &self.bucket_keys(sku, bucket),
                    &Advance {
                        target,
                        now_ms: Utc::now().timestamp_millis(),
                        grace_ms: self.grace_ms(),
                        orders: &group,
                    },
                )
                .await?;
            if advanced.len() != group.len() {
                return Err(StockError::Reply {
                    script: Advance::NAME,
                    reply: format!("{advanced:?} for {} orders", group.len()),
                });
            }
            for (i, outcome) in indexes.into_iter().zip(advanced) {
                outcomes[i] = outcome;
            }
        }
        Ok(outcomes)
    }
}
