//! `release.lua`: gives a reservation's units back, idempotently.

use super::{prelude, Args, LuaScript};
use crate::keys::Key;
use crate::{StockError, StockLedger};
use domain::OrderId;

/// What releasing a reservation did; its string form is the script's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString)]
pub enum ReleaseOutcome {
    /// The units went back to the stock now.
    #[strum(serialize = "released")]
    Released,
    /// It had been released before; nothing changed.
    #[strum(serialize = "already")]
    AlreadyReleased,
    /// No such reservation (Redis lost it, or the order never reserved here).
    #[strum(serialize = "missing")]
    Missing,
    /// `produce_failed` mode only: the worker already claimed it, so the order is in the queue.
    #[strum(serialize = "claimed")]
    Claimed,
    /// Redis has no such sale (it lost it; `reconcile` rebuilds it from the database): nothing
    /// was changed.
    #[strum(serialize = "no_sale")]
    SaleMissing,
}

/// Why a reservation is released; its string form is the script's `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum ReleaseMode {
    /// The gateway could not enqueue the order.
    ProduceFailed,
    /// The order failed for good.
    Compensate,
}

/// One call of `release.lua`.
pub(super) struct Release<'a> {
    order: &'a OrderId,
    mode: ReleaseMode,
}

impl LuaScript for Release<'_> {
    const NAME: &'static str = "release";
    const PRELUDES: &'static [&'static str] = &[prelude::RECORD, prelude::OUTBOX, prelude::SALE];
    const BODY: &'static str = include_str!("release.lua");
    const KEYS: &'static [Key] = &Key::ORDER;
    const ARGS: &'static [&'static str] = &["order_id", "mode"];
    type Raw = String;
    type Reply = ReleaseOutcome;

    fn args(&self, args: &mut Args<'_, '_>) {
        args.arg("order_id", self.order.as_str())
            .arg("mode", <&str>::from(self.mode));
    }

    fn decode(reply: &String) -> Option<ReleaseOutcome> {
        reply.parse().ok()
    }
}

impl StockLedger {
    /// Releases the reservation of `order` (idempotent).
    pub async fn release(
        &self,
        order: &OrderId,
        mode: ReleaseMode,
    ) -> Result<ReleaseOutcome, StockError> {
        self.run(&self.keys_of(order), &Release { order, mode })
            .await
    }
}
