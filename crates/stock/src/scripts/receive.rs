//! `receive.lua`: the second half of a transfer of units between two buckets: the receiver
//! counts it, once.

use super::{prelude, Args, LuaScript};
use crate::keys::Key;

/// One call of `receive.lua` on the receiving bucket.
pub(crate) struct Receive<'a> {
    pub(crate) transfer: &'a str,
    pub(crate) units: i64,
}

/// What the receiver answered; its string form is the script's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString)]
pub(crate) enum Received {
    /// Counted now.
    #[strum(serialize = "received")]
    Now,
    /// Counted before.
    #[strum(serialize = "already")]
    Already,
    /// The receiving bucket does not exist: the units stay lent.
    #[strum(serialize = "no_sale")]
    NoBucket,
}

impl LuaScript for Receive<'_> {
    const NAME: &'static str = "receive";
    const PRELUDES: &'static [&'static str] = &[prelude::SALE];
    const BODY: &'static str = include_str!("receive.lua");
    const KEYS: &'static [Key] = &[Key::Sale, Key::Stock, Key::Received];
    const ARGS: &'static [&'static str] = &["transfer", "units"];
    type Raw = String;
    type Reply = Received;

    fn args(&self, args: &mut Args<'_, '_>) {
        args.arg("transfer", self.transfer).arg("units", self.units);
    }

    fn decode(reply: &String) -> Option<Received> {
        reply.parse().ok()
    }
}

#[cfg(feature = "test-util")]
impl crate::StockLedger {
    /// Only the second half of a transfer: bucket `to` of `sku`'s sale counts `units` under
    /// `transfer`, and the lender is not told. For tests of a process dying half way.
    pub async fn receive_only(
        &self,
        sku: &domain::SkuId,
        to: u8,
        transfer: &str,
        units: i64,
    ) -> Result<(), crate::StockError> {
        self.run(&self.bucket_keys(sku, to), &Receive { transfer, units })
            .await
            .map(drop)
    }
}
