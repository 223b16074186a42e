//! `lend.lua`: the first half of a transfer of units between two buckets of a sale (see the
//! `buckets` module); and [`LentTransfer`], the record the lender keeps until it is received.

use super::{prelude, Args, LuaScript};
use crate::keys::Key;
use crate::StockError;

/// One call of `lend.lua` on the lending bucket.
pub(crate) struct Lend<'a> {
    pub(crate) transfer: &'a str,
    /// The bucket that borrows.
    pub(crate) receiver: u8,
    /// Units the receiver lacks (at least 1 is asked).
    pub(crate) wanted: i64,
    /// How old a transfer must be to count as stale (ms).
    pub(crate) stale_after_ms: i64,
}

/// What a lender answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lent {
    /// The lending bucket does not exist (not created yet, or lost).
    NoBucket,
    /// It lent `given` units (maybe 0).
    Lent {
        /// Units moved out of the lender's stock under the transfer.
        given: i64,
        /// Transfers the lender keeps that are older than the stale bound.
        stale: i64,
        /// Redis's clock when it lent (ms since the epoch).
        now_ms: i64,
    },
}

impl LuaScript for Lend<'_> {
    const NAME: &'static str = "lend";
    const PRELUDES: &'static [&'static str] = &[prelude::SALE, prelude::TRANSFER];
    const BODY: &'static str = include_str!("lend.lua");
    const KEYS: &'static [Key] = &[Key::Sale, Key::Stock, Key::Lent, Key::Settled];
    const ARGS: &'static [&'static str] = &["transfer", "receiver", "wanted", "stale_after"];
    type Raw = Vec<i64>;
    type Reply = Lent;

    fn args(&self, args: &mut Args<'_, '_>) {
        args.arg("transfer", self.transfer)
            .arg("receiver", self.receiver)
            .arg("wanted", self.wanted.max(1))
            .arg("stale_after", self.stale_after_ms);
    }

    fn decode(reply: &Vec<i64>) -> Option<Lent> {
        match reply.as_slice() {
            [-1] => Some(Lent::NoBucket),
            &[given, stale, now_ms] => Some(Lent::Lent {
                given,
                stale,
                now_ms,
            }),
            _ => None,
        }
    }
}

/// A transfer a bucket lent and has not yet seen received, as `lend.lua` keeps it in the
/// bucket's `lent` hash (`prelude/transfer.lua` is the Lua side):
/// `<receiving bucket>|<units>|<lent at, ms since the epoch>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LentTransfer {
    pub(crate) receiver: u8,
    pub(crate) units: i64,
    pub(crate) at_ms: i64,
}

impl LentTransfer {
    /// Parses the stored form; a record that does not parse is [`StockError::Reply`] (only
    /// `lend.lua` writes it).
    pub(crate) fn parse(transfer: &str, record: &str) -> Result<Self, StockError> {
        let corrupt = || StockError::Reply {
            script: Lend::NAME,
            reply: format!("transfer {transfer}: {record:?}"),
        };
        let mut fields = record.split('|');
        let mut next = || fields.next().ok_or_else(corrupt);
        let (receiver, units, at) = (next()?, next()?, next()?);
        if fields.next().is_some() {
            return Err(corrupt());
        }
        Ok(Self {
            receiver: receiver.parse().map_err(|_| corrupt())?,
            units: units.parse().map_err(|_| corrupt())?,
            at_ms: at.parse().map_err(|_| corrupt())?,
        })
    }
}

#[cfg(any(test, feature = "test-util"))]
impl LentTransfer {
    /// The stored form.
    pub(crate) fn encode(&self) -> String {
        format!("{}|{}|{}", self.receiver, self.units, self.at_ms)
    }
}

#[cfg(feature = "test-util")]
impl crate::StockLedger {
    /// Only the first half of a transfer: bucket `from` of `sku`'s sale lends to bucket `to`
    /// under the id `transfer`, and nobody receives it. Returns (units lent, stale transfers
    /// the lender keeps, Redis's clock in ms). For tests of a process dying half way.
    pub async fn lend_only(
        &self,
        sku: &domain::SkuId,
        from: u8,
        to: u8,
        transfer: &str,
        wanted: i64,
    ) -> Result<(i64, i64, i64), StockError> {
        let lent = self
            .run(
                &self.bucket_keys(sku, from),
                &Lend {
                    transfer,
                    receiver: to,
                    wanted,
                    stale_after_ms: crate::buckets::TRANSFER_STALE_MS,
                },
            )
            .await?;
        match lent {
            Lent::Lent {
                given,
                stale,
                now_ms,
            } => Ok((given, stale, now_ms)),
            Lent::NoBucket => Err(StockError::Config(format!(
                "bucket {from} of {sku} does not exist"
            ))),
        }
    }

    /// Strands a transfer of at least `units` from bucket `from` to bucket `to` of `sku`'s sale,
    /// as a process that died half way `age` ago would have left it: lent, never received.
    /// Returns the transfer id. For tests.
    pub async fn strand_transfer(
        &self,
        sku: &domain::SkuId,
        from: u8,
        to: u8,
        units: i64,
        age: std::time::Duration,
    ) -> Result<String, StockError> {
        let transfer = format!("{from}>{to}.stranded{}", uuid::Uuid::now_v7().simple());
        let (given, _, now_ms) = self.lend_only(sku, from, to, &transfer, units).await?;
        if given < units {
            return Err(StockError::Config(format!(
                "bucket {from} lent {given} of {units}"
            )));
        }
        let back_then = LentTransfer {
            receiver: to,
            units: given,
            at_ms: now_ms - i64::try_from(age.as_millis()).unwrap_or(i64::MAX),
        };
        redis::cmd("HSET")
            .arg(&self.bucket_keys(sku, from).lent)
            .arg(&transfer)
            .arg(back_then.encode())
            .query_async::<i64>(&mut self.conn.clone())
            .await?;
        Ok(transfer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transfer_record_survives_encode_and_parse_and_a_bad_one_is_an_error() {
        let transfer = LentTransfer {
            receiver: 3,
            units: 12,
            at_ms: 1_700_000_000_000,
        };
        assert_eq!(transfer.encode(), "3|12|1700000000000");
        assert_eq!(
            LentTransfer::parse("t", &transfer.encode()).unwrap(),
            transfer
        );
        for bad in ["", "3|12", "3|12|x", "300|1|1", "3|12|1|4", "-1|1|1"] {
            assert!(LentTransfer::parse("t", bad).is_err(), "{bad:?}");
        }
    }
}
