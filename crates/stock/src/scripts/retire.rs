//! `retire.lua`: the per-order keys of an ended sale expire once nothing is pending.

use super::{prelude, Args, LuaScript};
use crate::keys::Key;
use crate::{StockError, StockLedger};
use chrono::{DateTime, Utc};
use domain::SkuId;
use strum::VariantArray;

/// What retiring an ended sale did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetireOutcome {
    /// Nothing pending: the per-order keys expire at the given time.
    Retired,
    /// This many orders are still pending; nothing was changed.
    Unfinished(i64),
    /// Redis has the sale open (an admin reopened it); nothing was changed.
    Open,
}

/// One call of `retire.lua` on one bucket.
pub(super) struct Retire {
    expire_at: DateTime<Utc>,
    now: DateTime<Utc>,
}

impl LuaScript for Retire {
    const NAME: &'static str = "retire";
    const PRELUDES: &'static [&'static str] = &[prelude::SALE, prelude::PER_ORDER];
    const BODY: &'static str = include_str!("retire.lua");
    const KEYS: &'static [Key] = Key::VARIANTS;
    const ARGS: &'static [&'static str] = &["expire_at", "now"];
    type Raw = (String, i64);
    type Reply = RetireOutcome;

    fn args(&self, args: &mut Args<'_, '_>) {
        args.arg("expire_at", self.expire_at.timestamp_millis())
            .arg("now", self.now.timestamp_millis());
    }

    fn decode((word, pending): &(String, i64)) -> Option<RetireOutcome> {
        Some(match word.as_str() {
            "retired" => RetireOutcome::Retired,
            "unfinished" => RetireOutcome::Unfinished(*pending),
            "open" => RetireOutcome::Open,
            _ => return None,
        })
    }
}

impl StockLedger {
    /// Lets the per-order keys of an ended sale expire at `expire_at` if nothing is pending
    /// (see `retire.lua`), in each of its `buckets` (as the database has them). Buckets are
    /// retired one by one: a bucket with something pending leaves the others retired, and the
    /// next round retires it.
    pub async fn retire(
        &self,
        sku: &SkuId,
        buckets: u8,
        expire_at: DateTime<Utc>,
    ) -> Result<RetireOutcome, StockError> {
        let mut unfinished = 0;
        for bucket in 0..buckets.max(1) {
            let retired = self
                .run(
                    &self.bucket_keys(sku, bucket),
                    &Retire {
                        expire_at,
                        now: Utc::now(),
                    },
                )
                .await?;
            match retired {
                RetireOutcome::Retired => {}
                RetireOutcome::Unfinished(pending) => unfinished += pending,
                RetireOutcome::Open => return Ok(RetireOutcome::Open),
            }
        }
        Ok(if unfinished > 0 {
            RetireOutcome::Unfinished(unfinished)
        } else {
            RetireOutcome::Retired
        })
    }
}
