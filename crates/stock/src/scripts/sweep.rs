//! `sweep.lua`: the sweeper takes the reservations that have waited too long to be written, so
//! that it can publish their orders again.

use super::{prelude, Args, LuaScript};
use crate::keys::Key;
use crate::{CorruptEntry, OutboxEntry, StockError, StockLedger};
use chrono::{DateTime, Utc};
use domain::{OrderId, SkuId};

/// A reservation the sweeper took: waiting longer than the bound to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleReservation {
    /// The order.
    pub order_id: OrderId,
    /// When it was last due (reserved, or last swept).
    pub due_since: DateTime<Utc>,
    /// The order message to publish again; `None` when the outbox has no entry for it (a
    /// reservation made by a version without the outbox).
    pub entry: Option<Result<OutboxEntry, CorruptEntry>>,
}

/// One call of `sweep.lua` on one bucket.
pub(super) struct Sweep {
    cutoff: DateTime<Utc>,
    now: DateTime<Utc>,
    limit: usize,
    grace_ms: u64,
}

impl LuaScript for Sweep {
    const NAME: &'static str = "sweep";
    const PRELUDES: &'static [&'static str] = &[prelude::RECORD];
    const BODY: &'static str = include_str!("sweep.lua");
    const KEYS: &'static [Key] = &[Key::Pending, Key::Outbox, Key::Resv];
    const ARGS: &'static [&'static str] = &["cutoff", "now", "limit", "grace"];
    /// Order id, when it was due (ms), its outbox entry (empty if none); again and again.
    type Raw = Vec<Vec<u8>>;
    type Reply = Vec<StaleReservation>;

    fn args(&self, args: &mut Args<'_, '_>) {
        args.arg("cutoff", self.cutoff.timestamp_millis())
            .arg("now", self.now.timestamp_millis())
            .arg("limit", self.limit)
            .arg("grace", self.grace_ms);
    }

    fn decode(reply: &Vec<Vec<u8>>) -> Option<Vec<StaleReservation>> {
        if reply.len() % 3 != 0 {
            return None;
        }
        reply
            .chunks(3)
            .map(|taken| {
                let order_id = OrderId::parse(std::str::from_utf8(&taken[0]).ok()?).ok()?;
                let due_ms: f64 = std::str::from_utf8(&taken[1]).ok()?.parse().ok()?;
                Some(StaleReservation {
                    order_id,
                    due_since: DateTime::from_timestamp_millis(due_ms as i64)?,
                    entry: (!taken[2].is_empty()).then(|| OutboxEntry::parse(&taken[2])),
                })
            })
            .collect()
    }
}

impl StockLedger {
    /// Takes up to `limit` reservations of `sku` due at or before `cutoff` (reserved, or last
    /// swept, that long ago; acknowledged ones count from the acknowledgement plus the queued
    /// grace) and makes them due again, so that sweepers running at the same time take each one
    /// once (see `sweep.lua`). The `buckets` of a bucketed sale (as the database has them: Redis
    /// may have lost bucket 0) are looked at in turn.
    pub async fn take_stale(
        &self,
        sku: &SkuId,
        buckets: u8,
        cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<StaleReservation>, StockError> {
        let mut taken = Vec::new();
        for bucket in 0..buckets.max(1) {
            if taken.len() >= limit {
                break;
            }
            let more = self
                .run(
                    &self.bucket_keys(sku, bucket),
                    &Sweep {
                        cutoff,
                        now,
                        limit: limit - taken.len(),
                        grace_ms: self.grace_ms(),
                    },
                )
                .await?;
            taken.extend(more);
        }
        Ok(taken)
    }
}
