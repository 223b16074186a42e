//! Stock buckets: a sale whose one SKU needs more than one Redis core splits its units over N
//! buckets, each with a hash tag of its own (so a Redis Cluster puts them on different slots).
//!
//! - **A buyer has one home bucket** ([`crate::keys::home_bucket`], a stable hash of the user id): the
//!   buyer's count toward the per-user limit, the buyer's idempotency keys and orders all live
//!   there, so both stay as exact as with one bucket. An order's id names its bucket
//!   (`OrderId::in_bucket`), so releasing, claiming and finishing it need no lookup.
//! - **Buckets borrow**: when the home bucket has too few units, the gateway moves units from the
//!   other buckets into it (`lend.lua`, then `receive.lua` and `settle.lua`) and tries again. A buyer is answered
//!   `sold_out` only when no bucket lent anything and two censuses of every bucket then agree
//!   that, at one moment, no bucket had the units and none were on their way.
//! - **A transfer is never lost**: the lender keeps it in its `lent` hash until the receiver has
//!   counted it (once, by transfer id), so a process that dies between the two steps strands
//!   nothing; the sweeper, or the next gateway that finds the transfer stale, completes it.
//! - **Conservation across buckets**: each bucket keeps `initial` (its share), `lent`,
//!   `borrowed`, `reserved` and `released`, and its stock is
//!   `initial - lent + borrowed - reserved + released`; summed over the buckets, `lent - borrowed`
//!   is the units in transit.
//! - **The number of buckets is fixed** once the sale exists; it is in each bucket's sale hash,
//!   and the reserve script refuses a caller that believes another number (it then learns it).

use crate::keys::StockKeys;
use crate::scripts::lend::{Lend, Lent, LentTransfer};
use crate::scripts::receive::{Receive, Received};
use crate::scripts::settle::Settle;
use crate::{SoldOut, StockError, StockLedger};
use domain::SkuId;
use std::sync::PoisonError;

/// Rounds of borrowing one request may go through (each round moved units into the buyer's
/// bucket that concurrent buyers there took first) before it gives up with
/// [`StockError::Contended`].
pub(crate) const BORROW_ROUNDS: usize = 8;

/// How long a transfer may stay half done before anyone but its own request completes it: far
/// longer than a request's Redis calls may take with their retries (`redis.timeout_secs`), so
/// that a lend the client sends again after a lost reply (which `lend.lua` answers with the
/// same transfer) is never completed by someone else in between.
pub const TRANSFER_STALE: std::time::Duration = std::time::Duration::from_secs(10);
pub(crate) const TRANSFER_STALE_MS: i64 = TRANSFER_STALE.as_millis() as i64;

/// One bucket's units and counters at one moment.
#[derive(Debug, PartialEq, Eq)]
struct Census {
    /// Transfers this bucket lent that are not known to be received.
    transfers: i64,
    left: i64,
    reserved: i64,
    released: i64,
    lent: i64,
    borrowed: i64,
}

/// Whether borrowing moved anything.
pub(crate) enum Borrowed {
    /// Units came into the buyer's bucket (or stale transfers were completed): try again.
    Moved,
    /// Every bucket was empty: the sale is sold out for this request.
    Nothing(SoldOut),
    /// No bucket had the units, but a transfer between two buckets was under way.
    InTransit(SoldOut),
}

impl StockLedger {
    /// The keys of bucket `bucket` of `sku`.
    pub fn bucket_keys(&self, sku: &SkuId, bucket: u8) -> StockKeys {
        StockKeys::bucket(&self.prefix, sku, bucket)
    }

    /// How many buckets the sale of `sku` has, as Redis has it in bucket 0 (1 when Redis has no
    /// such sale, which is then not remembered).
    pub async fn bucket_count(&self, sku: &SkuId) -> Result<u8, StockError> {
        let stored = self.stored_buckets(sku).await?;
        if let Some(buckets) = stored {
            self.learn_buckets(sku, buckets);
        }
        Ok(stored.unwrap_or(1))
    }

    /// How many buckets bucket 0's sale hash says the sale has (absent: 1); `None` when Redis
    /// has no such sale.
    pub(crate) async fn stored_buckets(&self, sku: &SkuId) -> Result<Option<u8>, StockError> {
        let sale = self.keys(sku).sale;
        let mut conn = self.conn.clone();
        let (exists, buckets): (bool, Option<u8>) = redis::pipe()
            .exists(&sale)
            .hget(&sale, "buckets")
            .query_async(&mut conn)
            .await?;
        Ok(exists.then(|| buckets.unwrap_or(1).max(1)))
    }

    /// Each bucket's units (its `initial`) and units left, in bucket order; `None` for a bucket
    /// Redis does not have.
    pub(crate) async fn bucket_units(
        &self,
        sku: &SkuId,
        buckets: u8,
    ) -> Result<Vec<Option<(i64, i64)>>, StockError> {
        let mut conn = self.conn.clone();
        let mut units = Vec::with_capacity(usize::from(buckets));
        for bucket in 0..buckets {
            let keys = self.bucket_keys(sku, bucket);
            let (initial, left): (Option<i64>, Option<i64>) = redis::pipe()
                .hget(&keys.sale, "initial")
                .get(&keys.stock)
                .query_async(&mut conn)
                .await?;
            units.push(initial.map(|initial| (initial, left.unwrap_or(0))));
        }
        Ok(units)
    }

    /// The number of buckets this process last saw for `sku` (1 until it saw another).
    pub(crate) fn believed_buckets(&self, sku: &SkuId) -> u8 {
        self.buckets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(sku)
            .copied()
            .unwrap_or(1)
    }

    pub(crate) fn learn_buckets(&self, sku: &SkuId, buckets: u8) {
        if self.believed_buckets(sku) != buckets {
            self.buckets
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(sku.clone(), buckets);
        }
    }

    /// The buyer's bucket `home` answered `seen` (sold out) for `quantity` units: moves units
    /// from the other buckets into it, each asked in turn, until it has enough.
    pub(crate) async fn borrow(
        &self,
        sku: &SkuId,
        home: u8,
        buckets: u8,
        quantity: i64,
        seen: SoldOut,
    ) -> Result<Borrowed, StockError> {
        let mut have = seen.remaining;
        let mut moved = false;
        for step in 1..u16::from(buckets) {
            let donor = ((u16::from(home) + step) % u16::from(buckets)) as u8;
            let transfer = format!("{donor}>{home}.{}", uuid::Uuid::now_v7().simple());
            let lent = self
                .run(
                    &self.bucket_keys(sku, donor),
                    &Lend {
                        transfer: &transfer,
                        receiver: home,
                        wanted: quantity - have,
                        stale_after_ms: TRANSFER_STALE_MS,
                    },
                )
                .await?;
            let Lent::Lent {
                given,
                stale,
                now_ms,
            } = lent
            else {
                continue;
            };
            if stale > 0 {
                let cutoff = now_ms - TRANSFER_STALE_MS;
                moved |= self.complete_transfers_of(sku, donor, cutoff).await? > 0;
            }
            if given > 0 {
                self.hand_over(sku, donor, home, &transfer, given).await?;
                have += given;
                moved = true;
            }
            if have >= quantity {
                break;
            }
        }
        if moved || have >= quantity {
            return Ok(Borrowed::Moved);
        }
        // Nothing was lent, but each bucket was read at its own moment, and units may have moved
        // between two of them meanwhile (into a bucket read before, out of one read after). Two
        // censuses of every bucket that read the same counters (which only ever grow) saw the
        // sale as it was at one moment between them: it is sold out only if then no bucket had
        // the units and none were on their way.
        let first = self.census(sku, buckets).await?;
        let second = self.census(sku, buckets).await?;
        if first != second {
            return Ok(Borrowed::Moved);
        }
        let left: i64 = second.iter().map(|bucket| bucket.left).sum();
        if left >= quantity {
            return Ok(Borrowed::Moved);
        }
        let transfers: i64 = second.iter().map(|bucket| bucket.transfers).sum();
        let seen = SoldOut {
            // A transfer under way counts as at least a unit left, so that no gateway remembers
            // the sale as sold out while it lasts.
            remaining: left + transfers,
            reserved: second.iter().map(|bucket| bucket.reserved).sum(),
            ends_at_ms: seen.ends_at_ms,
        };
        Ok(if transfers > 0 {
            // A transfer in progress (its borrower is about to buy with it), or one left half
            // done by a process that died (completed by the next lend from its bucket once
            // stale, or by the sweeper).
            Borrowed::InTransit(seen)
        } else {
            Borrowed::Nothing(seen)
        })
    }

    /// Every bucket's units and counters, one bucket after the other.
    async fn census(&self, sku: &SkuId, buckets: u8) -> Result<Vec<Census>, StockError> {
        let mut conn = self.conn.clone();
        let mut census = Vec::with_capacity(usize::from(buckets));
        for bucket in 0..buckets {
            let keys = self.bucket_keys(sku, bucket);
            type Counters = [Option<i64>; 4];
            let (left, [reserved, released, lent, borrowed], transfers): (
                Option<i64>,
                Counters,
                i64,
            ) = redis::pipe()
                .get(&keys.stock)
                .hmget(&keys.sale, &["reserved", "released", "lent", "borrowed"])
                .hlen(&keys.lent)
                .query_async(&mut conn)
                .await?;
            census.push(Census {
                transfers,
                left: left.unwrap_or(0),
                reserved: reserved.unwrap_or(0),
                released: released.unwrap_or(0),
                lent: lent.unwrap_or(0),
                borrowed: borrowed.unwrap_or(0),
            });
        }
        Ok(census)
    }

    /// Second half of a transfer: the receiver counts it (once), then the lender forgets it.
    /// `false` when the receiver does not exist (the transfer stays with the lender).
    async fn hand_over(
        &self,
        sku: &SkuId,
        donor: u8,
        receiver: u8,
        transfer: &str,
        units: i64,
    ) -> Result<bool, StockError> {
        let received = self
            .run(
                &self.bucket_keys(sku, receiver),
                &Receive { transfer, units },
            )
            .await?;
        match received {
            Received::Now | Received::Already => {
                self.run(&self.bucket_keys(sku, donor), &Settle { transfer })
                    .await?;
                Ok(true)
            }
            Received::NoBucket => Ok(false),
        }
    }

    /// Completes the transfers of each of the `buckets` of `sku` (as the database has them)
    /// that were lent before `cutoff_ms` and never received (their lender or borrower died half
    /// way); returns how many. The sweeper runs it every round, with a cutoff of at least
    /// [`TRANSFER_STALE`] ago.
    pub async fn complete_transfers(
        &self,
        sku: &SkuId,
        buckets: u8,
        cutoff_ms: i64,
    ) -> Result<usize, StockError> {
        let mut completed = 0;
        for bucket in 0..buckets.max(1) {
            completed += self.complete_transfers_of(sku, bucket, cutoff_ms).await?;
        }
        Ok(completed)
    }

    async fn complete_transfers_of(
        &self,
        sku: &SkuId,
        donor: u8,
        cutoff_ms: i64,
    ) -> Result<usize, StockError> {
        let mut conn = self.conn.clone();
        let lent: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(&self.bucket_keys(sku, donor).lent)
            .query_async(&mut conn)
            .await?;
        let mut completed = 0;
        for (transfer, record) in lent {
            let lent = LentTransfer::parse(&transfer, &record)?;
            if lent.at_ms < cutoff_ms
                && self
                    .hand_over(sku, donor, lent.receiver, &transfer, lent.units)
                    .await?
            {
                tracing::warn!(%sku, %transfer, units = lent.units, "a transfer between stock buckets left half done was completed");
                completed += 1;
            }
        }
        Ok(completed)
    }
}
