//! The Redis stock ledger: the fast, first gate of a flash sale. Each operation is one Lua
//! script over the keys of one SKU (one hash tag, so one Redis Cluster slot), which makes it
//! atomic without locks: two buyers can never take the same last unit.
//!
//! Where things are:
//! - `scripts/`: one module per Lua script (its `.lua`, its typed arguments and reply, and the
//!   ledger operations that call it), the Lua the scripts share in `scripts/prelude/`;
//! - `keys`: the Redis keys of a sale's bucket, and which bucket a buyer belongs to;
//! - `buckets`: a sale split over several buckets, and the transfers of units between them;
//! - `record`, `outbox`: what the scripts store per order (the reservation, the message);
//! - `group`: the reservations of concurrent buyers of one bucket, sent in one call;
//! - `marks`: marks that can wait, gathered into one call per SKU;
//! - `connection`: the one connection to Redis or a Redis Cluster.

mod buckets;
mod connection;
mod error;
mod group;
pub mod keys;
pub mod marks;
pub mod outbox;
pub mod record;
mod scripts;

pub use buckets::TRANSFER_STALE;
pub use error::StockError;
pub use group::GROUP_MAX;
pub use keys::{home_bucket, Key, StockKeys};
pub use marks::{Mark, Marks, MarksTask};
pub use outbox::{CorruptEntry, OutboxEntry};
pub use record::{CorruptRecord, ReservationRecord};
pub use scripts::admit::{AutoRate, RoomState, Tick, TickOutcome};
pub use scripts::advance::ClaimOutcome;
pub use scripts::join::{JoinOutcome, Place};
pub use scripts::release::{ReleaseMode, ReleaseOutcome};
pub use scripts::reserve::{ReserveOutcome, SoldOut};
pub use scripts::restore::{RestoreOutcome, RestoredOrder};
pub use scripts::retire::RetireOutcome;
pub use scripts::sweep::StaleReservation;
pub use scripts::ticket::TicketOutcome;
pub use scripts::warm::WarmOutcome;
pub use scripts::{script_source, SCRIPT_NAMES};

use connection::Connection;
use domain::{OrderId, SaleSpec, SkuId};
use settings::RedisSettings;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// A sale as Redis sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LedgerSnapshot {
    /// Units still reservable.
    pub remaining: i64,
    /// Total stock of the sale.
    pub initial: i64,
    /// Units ever reserved.
    pub reserved: i64,
    /// Units given back.
    pub released: i64,
    /// Orders reserved and not yet known to be written or released (the outbox's pending index).
    pub unfinished: i64,
    /// Stock buckets the sale is split into.
    pub buckets: u8,
    /// Units lent by one bucket and not yet received by another (0 at rest).
    pub in_transit: i64,
}

/// The ledger: one multiplexed connection to Redis or a Redis Cluster (every caller's commands
/// are pipelined on it, and it reconnects by itself; see the `connection` module) and the scripts,
/// called by `EVALSHA`.
#[derive(Clone)]
pub struct StockLedger {
    conn: Connection,
    prefix: String,
    queued_grace: Duration,
    /// The number of stock buckets of each sale this process has seen (see the `buckets`
    /// module); a sale not in it is believed to have one.
    buckets: Arc<RwLock<HashMap<SkuId, u8>>>,
    /// The reservations waiting for their bucket's next call (see the `group` module).
    groups: Arc<group::Lanes>,
}

impl StockLedger {
    /// Sets up the connection. It is made in the background (one server: on first use), so this
    /// succeeds while Redis is down; it must be called inside the service's Tokio runtime.
    pub fn new(settings: &RedisSettings) -> Result<Self, StockError> {
        Ok(Self {
            conn: Connection::new(settings)?,
            queued_grace: Duration::ZERO,
            buckets: Arc::default(),
            groups: Arc::default(),
            prefix: settings.key_prefix.clone(),
        })
    }

    /// The ledger with `grace`: how much longer than an unacknowledged one a reservation whose
    /// message the broker acknowledged waits before the sweeper publishes it again (its message
    /// is in the queue unless the broker lost it, and a lag must not make copies of it). The
    /// services set `sweeper.acknowledged_stale_after_secs - sweeper.stale_after_secs`.
    pub fn with_queued_grace(mut self, grace: Duration) -> Self {
        self.queued_grace = grace;
        self
    }

    fn grace_ms(&self) -> u64 {
        u64::try_from(self.queued_grace.as_millis()).unwrap_or(u64::MAX)
    }

    /// The keys of `sku` under this ledger's prefix (of its bucket 0, in a bucketed sale).
    pub fn keys(&self, sku: &SkuId) -> StockKeys {
        StockKeys::new(&self.prefix, sku)
    }

    /// The keys of the bucket that holds `order`'s reservation.
    pub fn keys_of(&self, order: &OrderId) -> StockKeys {
        self.bucket_keys(&order.sku(), order.bucket())
    }

    /// Whether Redis answers.
    pub async fn ping(&self) -> Result<(), StockError> {
        self.conn.ping().await?;
        Ok(())
    }

    /// The idempotency fields (`<user>|<key>`) of every order the sale ever reserved, or `None`
    /// when it has more than `max` of them (one `HLEN`, then one `HKEYS`, per bucket). The
    /// buckets are those this process's reservations learned: the gateway asks after a
    /// `sold_out` answer, which comes only once its number of buckets was right.
    pub async fn order_requests(
        &self,
        sku: &SkuId,
        max: usize,
    ) -> Result<Option<Vec<String>>, StockError> {
        let buckets = self.believed_buckets(sku);
        let mut conn = self.conn.clone();
        let mut count = 0;
        for bucket in 0..buckets {
            count += redis::cmd("HLEN")
                .arg(&self.bucket_keys(sku, bucket).idem)
                .query_async::<usize>(&mut conn)
                .await?;
        }
        if count > max {
            return Ok(None);
        }
        let mut fields = Vec::with_capacity(count);
        for bucket in 0..buckets {
            fields.extend(
                redis::cmd("HKEYS")
                    .arg(&self.bucket_keys(sku, bucket).idem)
                    .query_async::<Vec<String>>(&mut conn)
                    .await?,
            );
        }
        Ok(Some(fields))
    }

    /// The sale as Redis sees it, summed over its buckets; `None` when Redis has no such sale
    /// (or has lost some of its buckets).
    pub async fn snapshot(&self, sku: &SkuId) -> Result<Option<LedgerSnapshot>, StockError> {
        let buckets = self.bucket_count(sku).await?;
        let mut conn = self.conn.clone();
        let mut sum = LedgerSnapshot {
            remaining: 0,
            initial: 0,
            reserved: 0,
            released: 0,
            unfinished: 0,
            buckets,
            in_transit: 0,
        };
        for bucket in 0..buckets {
            let keys = self.bucket_keys(sku, bucket);
            type Counters = [Option<i64>; 5];
            let (remaining, counters, unfinished): (Option<i64>, Counters, i64) = redis::pipe()
                .get(&keys.stock)
                .hmget(
                    &keys.sale,
                    &["initial", "reserved", "released", "lent", "borrowed"],
                )
                .zcard(&keys.pending)
                .query_async(&mut conn)
                .await?;
            let (Some(remaining), [Some(initial), reserved, released, lent, borrowed]) =
                (remaining, counters)
            else {
                return Ok(None);
            };
            sum.remaining += remaining;
            sum.initial += initial;
            sum.reserved += reserved.unwrap_or(0);
            sum.released += released.unwrap_or(0);
            sum.unfinished += unfinished;
            sum.in_transit += lent.unwrap_or(0) - borrowed.unwrap_or(0);
        }
        Ok(Some(sum))
    }

    /// The reservation of `order`, if Redis has it.
    pub async fn reservation(
        &self,
        order: &OrderId,
    ) -> Result<Option<ReservationRecord>, StockError> {
        let keys = self.keys_of(order);
        let mut conn = self.conn.clone();
        let record: Option<String> = redis::cmd("HGET")
            .arg(&keys.resv)
            .arg(order.as_str())
            .query_async(&mut conn)
            .await?;
        Ok(record
            .map(|record| ReservationRecord::parse(&record))
            .transpose()?)
    }

    /// Deletes every key of `sku`, in every bucket it may have (tests and `make demo` resets,
    /// `reconcile --rebuild`, and an admin's sale creation the database refused).
    pub async fn forget(&self, sku: &SkuId) -> Result<(), StockError> {
        let mut conn = self.conn.clone();
        for bucket in 0..SaleSpec::MAX_BUCKETS {
            let keys = self.bucket_keys(sku, bucket);
            redis::cmd("DEL")
                .arg(keys.all())
                .query_async::<i64>(&mut conn)
                .await?;
        }
        self.learn_buckets(sku, 1);
        Ok(())
    }
}
