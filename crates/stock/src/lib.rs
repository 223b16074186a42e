//! The Redis stock ledger: the fast, first gate of a flash sale. Each operation is one Lua
//! script over the keys of one SKU (one hash tag, so one Redis Cluster slot), which makes it
//! atomic without locks: two buyers can never take the same last unit.

mod buckets;
mod connection;
pub mod marks;
pub mod outbox;
pub mod record;

pub use buckets::TRANSFER_STALE;
pub use marks::{Mark, Marks, MarksTask};
pub use outbox::{CorruptEntry, OutboxEntry};
pub use record::{CorruptRecord, ReservationRecord, ReservationState};

use buckets::Borrowed;
use chrono::{DateTime, Utc};
use connection::Connection;
use domain::{
    home_bucket, IdempotencyKey, OrderId, OrderRequested, SaleSpec, SkuId, StockKeys, UserId,
};
use redis::Script;
use settings::RedisSettings;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Errors of the ledger. All of them mean "Redis cannot answer now" (503 at the edge) or a
/// reply this code does not understand (a bug).
#[derive(Debug, thiserror::Error)]
pub enum StockError {
    /// A command failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The connection could not be set up from the settings.
    #[error("redis settings: {0}")]
    Config(String),
    /// A script answered something unexpected.
    #[error("unexpected reply from {script}: {reply:?}")]
    Reply {
        /// Which script.
        script: &'static str,
        /// What it said.
        reply: Vec<String>,
    },
    /// A reservation record does not parse.
    #[error(transparent)]
    Corrupt(#[from] CorruptRecord),
    /// A request of a bucketed sale moved units into its buyer's bucket round after round and
    /// other buyers there took them each time; it may try again.
    #[error("the stock buckets of {0} are contended; try again")]
    Contended(SkuId),
    /// Redis has some buckets of a bucketed sale and not the others (a shard lost its data):
    /// `reconcile --rebuild` rebuilds the whole sale.
    #[error("redis has {present} of the {buckets} stock buckets of {sku}; rebuild the sale (reconcile --rebuild)")]
    PartlyLost {
        /// The sale.
        sku: SkuId,
        /// Buckets Redis has.
        present: u8,
        /// Buckets the sale has.
        buckets: u8,
    },
}

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

impl StockError {
    /// Whether a later attempt may succeed. Only what will read the same the next time is
    /// permanent: a reservation record that does not parse (here, or in a script's `CORRUPT`
    /// reply), a reply this build does not understand, settings that cannot make a connection.
    /// Everything else, including every error Redis answers that is not ours (`OOM`,
    /// `MISCONF`, `BUSY`, `LOADING`, `READONLY`, `NOREPLICAS`, a script error), is treated as an
    /// outage worth waiting out: retrying a bug stalls visibly, skipping an outage loses work.
    pub fn is_transient(&self) -> bool {
        match self {
            StockError::Redis(error) => !matches!(
                error.kind(),
                redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType
            ),
            StockError::Contended(_) => true,
            StockError::Config(_)
            | StockError::Reply { .. }
            | StockError::Corrupt(_)
            | StockError::PartlyLost { .. } => false,
        }
    }

    /// The error of a script call: the scripts' own `CORRUPT` reply (a reservation record that
    /// does not parse, see `lua/record.lua`) becomes [`StockError::Corrupt`].
    fn from_script(error: redis::RedisError) -> Self {
        if error.code() == Some("CORRUPT") {
            let detail = error.detail().unwrap_or_default();
            StockError::Corrupt(CorruptRecord(detail.to_owned()))
        } else {
            StockError::Redis(error)
        }
    }
}

/// What a reservation attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// Stock was taken for this new order.
    Accepted(OrderId),
    /// The same user and key already have this order; `state` is its reservation state.
    Duplicate {
        /// The existing order.
        order_id: OrderId,
        /// Where that order's reservation is.
        state: ReservationState,
    },
    /// The same user and key already have an order for another quantity: the client reused
    /// the key for a different request. Nothing was reserved.
    KeyReused {
        /// The order the key belongs to.
        order_id: OrderId,
        /// Its quantity.
        quantity: i64,
    },
    /// Not enough stock left.
    SoldOut(SoldOut),
    /// The buyer would hold more than the per-user limit.
    LimitExceeded,
    /// Redis knows no such sale (never created, or Redis lost its data).
    NotFound,
    /// Before the start or after the end of the sale.
    NotActive,
}

/// What Redis saw when it answered `sold_out`: enough for a gateway to answer the same from
/// memory, and to notice when it no longer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoldOut {
    /// Units left (fewer than were asked for).
    pub remaining: i64,
    /// Units ever reserved in the sale: it moves whenever an order is accepted, so an unchanged
    /// count means no new order since.
    pub reserved: i64,
    /// When the sale ends (ms since the epoch); after it the answer is `not_active`.
    pub ends_at_ms: i64,
}

/// What releasing a reservation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// The units went back to the stock now.
    Released,
    /// It had been released before; nothing changed.
    AlreadyReleased,
    /// No such reservation (Redis lost it, or the order never reserved here).
    Missing,
    /// `produce_failed` mode only: the worker already claimed it, so the order is in the queue.
    Claimed,
    /// Redis has no such sale (it lost it; `reconcile` rebuilds it from the database): nothing
    /// was changed.
    SaleMissing,
}

/// Why a reservation is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseMode {
    /// The gateway could not enqueue the order.
    ProduceFailed,
    /// The order failed for good.
    Compensate,
}

/// Whether the worker may go on with an order after claiming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// Claimed (or claimed before).
    Claimed,
    /// The gateway released it: the buyer was told 503, the order must not be filled.
    Released,
    /// Redis has no record of it (e.g. Redis restarted); the database check decides.
    Unknown,
    /// Its record does not parse; it was left as it is. The database check decides.
    Corrupt,
}

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

/// An order of the database, as `restore` writes it back into Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredOrder {
    /// The order.
    pub order_id: OrderId,
    /// Its buyer.
    pub user: UserId,
    /// The buyer's idempotency key.
    pub key: IdempotencyKey,
    /// Units.
    pub quantity: i64,
    /// Awaiting payment or paid (its units stay taken), or not (failed or expired: its units
    /// were given back).
    pub holds_stock: bool,
}

/// What restoring a sale did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreOutcome {
    /// Re-created with this many units left.
    Restored(i64),
    /// Redis still has the sale (this many units left); nothing was written.
    AlreadyPresent(i64),
}

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

/// Moves `order` to its buyer's bucket in a sale of `buckets`: the bucket, and whether its id
/// changed.
fn move_home(order: &mut OrderRequested, buckets: u8) -> (u8, bool) {
    let home = home_bucket(&order.user_id, buckets);
    let moved = order.order_id.bucket() != home;
    if moved {
        order.order_id = order.order_id.with_bucket(home);
    }
    (home, moved)
}

/// [`move_home`] for a sale found to have another number of buckets than believed, with the
/// order's message made again when its id changed.
fn rebucket(order: &mut OrderRequested, entry: &mut OutboxEntry, buckets: u8) -> u8 {
    let (home, moved) = move_home(order, buckets);
    if moved {
        entry.payload = order.encode();
    }
    home
}

/// What one call of the reserve script answered.
enum Reserved {
    Outcome(ReserveOutcome),
    /// The sale has this many buckets, not what the caller believed.
    Buckets(u8),
}

/// The positions of `orders`, grouped by the bucket each order's reservation lives in (in
/// order of bucket).
fn by_bucket(orders: &[&OrderId]) -> std::collections::BTreeMap<u8, Vec<usize>> {
    let mut groups: std::collections::BTreeMap<u8, Vec<usize>> = Default::default();
    for (i, order) in orders.iter().enumerate() {
        groups.entry(order.bucket()).or_default().push(i);
    }
    groups
}

/// A script with the record functions of `lua/record.lua` in front of it.
macro_rules! with_record {
    ($script:literal) => {
        concat!(include_str!("lua/record.lua"), include_str!($script))
    };
}

struct Scripts {
    reserve: Script,
    release: Script,
    advance: Script,
    warm: Script,
    restore: Script,
    finish: Script,
    sweep: Script,
    retire: Script,
    lend: Script,
    receive: Script,
    settle: Script,
}

/// The ledger: one multiplexed connection to Redis or a Redis Cluster (every caller's commands
/// are pipelined on it, and it reconnects by itself; see the `connection` module) and the scripts,
/// called by `EVALSHA`.
#[derive(Clone)]
pub struct StockLedger {
    conn: Connection,
    prefix: String,
    scripts: Arc<Scripts>,
    queued_grace: Duration,
    /// The number of stock buckets of each sale this process has seen (see the `buckets`
    /// module); a sale not in it is believed to have one.
    buckets: Arc<RwLock<HashMap<SkuId, u8>>>,
}

impl StockLedger {
    /// Sets up the connection. It is made in the background (one server: on first use), so this
    /// succeeds while Redis is down; it must be called inside the service's Tokio runtime.
    pub fn new(settings: &RedisSettings) -> Result<Self, StockError> {
        Ok(Self {
            conn: Connection::new(settings)?,
            queued_grace: Duration::ZERO,
            buckets: Arc::default(),
            prefix: settings.key_prefix.clone(),
            scripts: Arc::new(Scripts {
                reserve: Script::new(with_record!("lua/reserve.lua")),
                release: Script::new(with_record!("lua/release.lua")),
                advance: Script::new(with_record!("lua/advance.lua")),
                warm: Script::new(include_str!("lua/warm.lua")),
                restore: Script::new(include_str!("lua/restore.lua")),
                finish: Script::new(include_str!("lua/finish.lua")),
                sweep: Script::new(with_record!("lua/sweep.lua")),
                retire: Script::new(include_str!("lua/retire.lua")),
                lend: Script::new(include_str!("lua/lend.lua")),
                receive: Script::new(include_str!("lua/receive.lua")),
                settle: Script::new(include_str!("lua/settle.lua")),
            }),
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

    /// Tries to reserve the units of `order` (its id is the candidate: the order's id if it is
    /// new) at its `requested_at`, and keeps its message in the outbox until the order is written
    /// or released. The order's id is moved to its buyer's stock bucket first (a sale of one bucket
    /// leaves it as it is), so the returned outbox entry (the message to produce, with
    /// `traceparent`) is made here. In a bucketed sale a buyer whose bucket ran out borrows from
    /// the others before being answered `sold_out` (see the `buckets` module).
    pub async fn reserve(
        &self,
        order: &mut OrderRequested,
        traceparent: Option<String>,
    ) -> Result<(ReserveOutcome, OutboxEntry), StockError> {
        let sku = order.sku_id.clone();
        let mut buckets = self.believed_buckets(&sku);
        let mut home = move_home(order, buckets).0;
        let mut entry = OutboxEntry::new(order, traceparent);
        let (mut relearned, mut rounds, mut waited) = (false, 0, false);
        loop {
            let outcome = match self.reserve_in(order, &entry, home, buckets).await? {
                Reserved::Buckets(actual) if !relearned => {
                    self.learn_buckets(&sku, actual);
                    (buckets, relearned) = (actual, true);
                    home = rebucket(order, &mut entry, buckets);
                    continue;
                }
                Reserved::Buckets(actual) => {
                    return Err(StockError::Reply {
                        script: "reserve",
                        reply: vec!["buckets".to_owned(), actual.to_string()],
                    })
                }
                Reserved::Outcome(outcome) => outcome,
            };
            if outcome == ReserveOutcome::NotFound && buckets > 1 && !relearned {
                // The sale may have been made again with fewer buckets than this process saw.
                let actual = self.bucket_count(&sku).await?;
                relearned = true;
                if actual != buckets {
                    buckets = actual;
                    home = rebucket(order, &mut entry, buckets);
                    continue;
                }
            }
            let ReserveOutcome::SoldOut(seen) = outcome else {
                return Ok((outcome, entry));
            };
            if buckets == 1 {
                return Ok((outcome, entry));
            }
            let quantity = i64::from(order.quantity.get());
            match self.borrow(&sku, home, buckets, quantity, seen).await? {
                Borrowed::Nothing(seen) => return Ok((ReserveOutcome::SoldOut(seen), entry)),
                // Give a transfer under way a moment to land, once; then the units it moves
                // belong to its borrower, and this request is answered `sold_out`.
                Borrowed::InTransit(_) if !waited => {
                    waited = true;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Borrowed::InTransit(seen) => return Ok((ReserveOutcome::SoldOut(seen), entry)),
                Borrowed::Moved if rounds + 1 < buckets::BORROW_ROUNDS => rounds += 1,
                Borrowed::Moved => return Err(StockError::Contended(sku)),
            }
        }
    }

    /// One call of the reserve script in bucket `home` of a sale believed to have `buckets`.
    async fn reserve_in(
        &self,
        order: &OrderRequested,
        entry: &OutboxEntry,
        home: u8,
        buckets: u8,
    ) -> Result<Reserved, StockError> {
        let keys = self.bucket_keys(&order.sku_id, home);
        let mut conn = self.conn.clone();
        let reply: Vec<String> = self
            .scripts
            .reserve
            .key(keys.all().as_slice())
            .arg(order.user_id.as_str())
            .arg(order.idempotency_key.as_str())
            .arg(order.order_id.as_str())
            .arg(order.quantity.get())
            .arg(order.requested_at.timestamp_millis())
            .arg(entry.encode())
            .arg(buckets)
            .invoke_async(&mut conn)
            .await
            .map_err(StockError::from_script)?;
        let bad = |reply: &[String]| StockError::Reply {
            script: "reserve",
            reply: reply.to_vec(),
        };
        let order = |reply: &[String]| {
            reply
                .get(1)
                .and_then(|id| OrderId::parse(id.as_str()).ok())
                .ok_or_else(|| bad(reply))
        };
        Ok(Reserved::Outcome(match reply.first().map(String::as_str) {
            Some("accepted") => ReserveOutcome::Accepted(order(&reply)?),
            Some("duplicate") => ReserveOutcome::Duplicate {
                order_id: order(&reply)?,
                state: reply
                    .get(2)
                    .and_then(|s| ReservationState::from_letter(s))
                    .ok_or_else(|| bad(&reply))?,
            },
            Some("sold_out") => {
                let number = |i: usize| reply.get(i).and_then(|n| n.parse::<i64>().ok());
                match (number(1), number(2), number(3)) {
                    (Some(remaining), Some(reserved), Some(ends_at_ms)) => {
                        ReserveOutcome::SoldOut(SoldOut {
                            remaining,
                            reserved,
                            ends_at_ms,
                        })
                    }
                    _ => return Err(bad(&reply)),
                }
            }
            Some("key_reused") => ReserveOutcome::KeyReused {
                order_id: order(&reply)?,
                quantity: reply
                    .get(2)
                    .and_then(|q| q.parse().ok())
                    .ok_or_else(|| bad(&reply))?,
            },
            Some("limit_exceeded") => ReserveOutcome::LimitExceeded,
            Some("not_found") => ReserveOutcome::NotFound,
            Some("not_active") => ReserveOutcome::NotActive,
            Some("buckets") => {
                return reply
                    .get(1)
                    .and_then(|n| n.parse::<u8>().ok())
                    .filter(|&n| n >= 1)
                    .map(Reserved::Buckets)
                    .ok_or_else(|| bad(&reply))
            }
            _ => return Err(bad(&reply)),
        }))
    }

    /// Releases the reservation of `order` (idempotent).
    pub async fn release(
        &self,
        order: &OrderId,
        mode: ReleaseMode,
    ) -> Result<ReleaseOutcome, StockError> {
        let keys = self.keys_of(order);
        let mut conn = self.conn.clone();
        let reply: String = self
            .scripts
            .release
            .key(keys.all().as_slice())
            .arg(order.as_str())
            .arg(match mode {
                ReleaseMode::ProduceFailed => "produce_failed",
                ReleaseMode::Compensate => "compensate",
            })
            .invoke_async(&mut conn)
            .await
            .map_err(StockError::from_script)?;
        Ok(match reply.as_str() {
            "released" => ReleaseOutcome::Released,
            "already" => ReleaseOutcome::AlreadyReleased,
            "missing" => ReleaseOutcome::Missing,
            "claimed" => ReleaseOutcome::Claimed,
            "no_sale" => ReleaseOutcome::SaleMissing,
            _ => {
                return Err(StockError::Reply {
                    script: "release",
                    reply: vec![reply],
                })
            }
        })
    }

    /// Marks an order's message as acknowledged by the broker.
    pub async fn mark_acknowledged(&self, order: &OrderId) -> Result<ClaimOutcome, StockError> {
        let mut outcomes = self
            .advance(&order.sku(), ReservationState::Acknowledged, &[order])
            .await?;
        Ok(outcomes.pop().unwrap_or(ClaimOutcome::Unknown))
    }

    /// Marks the messages of several orders of one SKU as acknowledged, in one call.
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
            let advanced = self.advance_in(sku, bucket, target, &group).await?;
            for (i, outcome) in indexes.into_iter().zip(advanced) {
                outcomes[i] = outcome;
            }
        }
        Ok(outcomes)
    }

    async fn advance_in(
        &self,
        sku: &SkuId,
        bucket: u8,
        target: ReservationState,
        orders: &[&OrderId],
    ) -> Result<Vec<ClaimOutcome>, StockError> {
        let keys = self.bucket_keys(sku, bucket);
        let mut conn = self.conn.clone();
        let mut invocation = self.scripts.advance.key(&keys.resv);
        invocation
            .key(&keys.pending)
            .arg(target.letter())
            .arg(Utc::now().timestamp_millis())
            .arg(self.grace_ms());
        for order in orders {
            invocation.arg(order.as_str());
        }
        let reply: Vec<String> = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(StockError::from_script)?;
        if reply.len() != orders.len() {
            return Err(StockError::Reply {
                script: "advance",
                reply,
            });
        }
        reply
            .iter()
            .map(|word| match word.as_str() {
                "ok" => Ok(ClaimOutcome::Claimed),
                "released" => Ok(ClaimOutcome::Released),
                "unknown" => Ok(ClaimOutcome::Unknown),
                "corrupt" => Ok(ClaimOutcome::Corrupt),
                _ => Err(StockError::Reply {
                    script: "advance",
                    reply: reply.clone(),
                }),
            })
            .collect()
    }

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
                left += self.warm_bucket(sku, bucket, share, spec).await?.1;
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
                Ok(("below_reserved", refused)) => Ok(refused),
                Ok((_, bucket_left)) => {
                    left += bucket_left;
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
                    Ok(("below_reserved", _)) | Err(_) => tracing::error!(
                        %sku,
                        bucket,
                        "could not undo a stock change made half way: run the change again"
                    ),
                    Ok(_) => {}
                }
            }
            return refused.map(|_| WarmOutcome::BelowReserved(unreserved));
        }
        Ok(WarmOutcome::Updated(left))
    }

    /// Runs `warm.lua` on one bucket with its new units: (what it answered, units left).
    async fn warm_bucket(
        &self,
        sku: &SkuId,
        bucket: u8,
        initial: i64,
        spec: &SaleSpec,
    ) -> Result<(&'static str, i64), StockError> {
        let keys = self.bucket_keys(sku, bucket);
        let mut conn = self.conn.clone();
        let reply: (String, i64) = self
            .scripts
            .warm
            .key(&keys.sale)
            .key(&keys.stock)
            .key(keys.per_order().as_slice())
            .arg(initial)
            .arg(spec.window.starts_at.timestamp_millis())
            .arg(spec.window.ends_at.timestamp_millis())
            .arg(spec.per_user_limit)
            .arg(spec.buckets.max(1))
            .invoke_async(&mut conn)
            .await?;
        let word = match reply.0.as_str() {
            "created" => "created",
            "updated" => "updated",
            "below_reserved" => "below_reserved",
            // The bucket belongs to a sale of another number of buckets.
            "buckets" => {
                return Err(StockError::Reply {
                    script: "warm",
                    reply: vec![reply.0, reply.1.to_string()],
                })
            }
            _ => {
                return Err(StockError::Reply {
                    script: "warm",
                    reply: vec![reply.0],
                })
            }
        };
        Ok((word, reply.1))
    }

    /// Re-creates a sale Redis has lost (see `restore.lua`): `spec.stock` is the sale's total,
    /// `remaining` the units the database has not given to an order, `orders` every order the
    /// database has of the SKU. Buyers' holdings, idempotency keys and reservations (orders that
    /// hold stock as claimed, failed and expired ones as released) are written first, the sale
    /// itself last, so the gateway sells nothing until the per-user limits and idempotency keys
    /// are back. A bucketed sale is restored bucket by bucket, its last bucket first: each order
    /// goes back to the bucket its id names, `remaining` is split evenly, and each bucket counts
    /// what it holds beyond its share as borrowed (or lent), so nothing is in transit. Does
    /// nothing when Redis still has the sale; refuses when it has only some of its buckets.
    pub async fn restore(
        &self,
        sku: &SkuId,
        spec: &SaleSpec,
        remaining: i64,
        orders: &[RestoredOrder],
    ) -> Result<RestoreOutcome, StockError> {
        let buckets = spec.buckets.max(1);
        let units = self.bucket_units(sku, buckets).await?;
        let present = units.iter().flatten().count() as u8;
        if present == buckets {
            let left = units.iter().flatten().map(|(_, left)| left).sum();
            return Ok(RestoreOutcome::AlreadyPresent(left));
        }
        if present > 0 {
            return Err(StockError::PartlyLost {
                sku: sku.clone(),
                present,
                buckets,
            });
        }
        let mut by_bucket: Vec<Vec<&RestoredOrder>> = vec![Vec::new(); usize::from(buckets)];
        for order in orders {
            let bucket = order.order_id.bucket();
            by_bucket
                .get_mut(usize::from(bucket))
                .ok_or_else(|| {
                    StockError::Config(format!(
                        "order {} names stock bucket {bucket} of a sale of {buckets}",
                        order.order_id
                    ))
                })?
                .push(order);
        }
        let mut restored = 0;
        for bucket in (0..buckets).rev() {
            let bucket_remaining = SaleSpec::share_of(remaining, buckets, bucket);
            self.restore_bucket(
                sku,
                spec,
                bucket,
                bucket_remaining,
                &by_bucket[usize::from(bucket)],
            )
            .await?;
            restored += bucket_remaining;
        }
        self.learn_buckets(sku, buckets);
        Ok(RestoreOutcome::Restored(restored))
    }

    async fn restore_bucket(
        &self,
        sku: &SkuId,
        spec: &SaleSpec,
        bucket: u8,
        remaining: i64,
        orders: &[&RestoredOrder],
    ) -> Result<(), StockError> {
        const CHUNK: usize = 500;
        let keys = self.bucket_keys(sku, bucket);
        let mut conn = self.conn.clone();
        let mut held: std::collections::BTreeMap<&str, i64> = Default::default();
        let (mut held_units, mut released_units) = (0, 0);
        for order in orders {
            if order.holds_stock {
                *held.entry(order.user.as_str()).or_default() += order.quantity;
                held_units += order.quantity;
            } else {
                released_units += order.quantity;
            }
        }
        for chunk in held.iter().collect::<Vec<_>>().chunks(CHUNK) {
            let mut pipe = redis::pipe();
            for (user, units) in chunk {
                pipe.hset(&keys.buyers, **user, **units).ignore();
            }
            pipe.query_async::<()>(&mut conn).await?;
        }
        for chunk in orders.chunks(CHUNK) {
            let mut pipe = redis::pipe();
            for order in chunk {
                let record = ReservationRecord {
                    state: if order.holds_stock {
                        ReservationState::Claimed
                    } else {
                        ReservationState::Released
                    },
                    quantity: order.quantity,
                    user: order.user.clone(),
                    key: order.key.clone(),
                };
                pipe.hset(
                    &keys.idem,
                    format!("{}|{}", order.user.as_str(), order.key.as_str()),
                    order.order_id.as_str(),
                )
                .ignore()
                .hset(&keys.resv, order.order_id.as_str(), record.encode())
                .ignore();
            }
            pipe.query_async::<()>(&mut conn).await?;
        }
        // initial - lent + borrowed - reserved + released = remaining, with reserved = held +
        // released: what the bucket holds beyond its share it has borrowed, and lent below it.
        let initial = spec.bucket_share(bucket);
        let moved_in = remaining - initial + held_units;
        let reply: (String, i64) = self
            .scripts
            .restore
            .key(&keys.sale)
            .key(&keys.stock)
            .arg(initial)
            .arg(remaining)
            .arg(spec.window.starts_at.timestamp_millis())
            .arg(spec.window.ends_at.timestamp_millis())
            .arg(spec.per_user_limit)
            .arg(held_units + released_units)
            .arg(released_units)
            .arg(spec.buckets.max(1))
            .arg((-moved_in).max(0))
            .arg(moved_in.max(0))
            .invoke_async(&mut conn)
            .await?;
        match reply.0.as_str() {
            "restored" | "exists" => Ok(()),
            _ => Err(StockError::Reply {
                script: "restore",
                reply: vec![reply.0],
            }),
        }
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

    /// The worker has settled `orders` of `sku` (written, or dead-lettered with the letter
    /// acknowledged): they leave the outbox. Returns how many were still pending. Idempotent.
    pub async fn finish(&self, sku: &SkuId, orders: &[&OrderId]) -> Result<usize, StockError> {
        let mut finished = 0;
        for (bucket, indexes) in by_bucket(orders) {
            let keys = self.bucket_keys(sku, bucket);
            let mut conn = self.conn.clone();
            let mut invocation = self.scripts.finish.key(&keys.pending);
            invocation.key(&keys.outbox);
            for i in indexes {
                invocation.arg(orders[i].as_str());
            }
            finished += invocation.invoke_async::<usize>(&mut conn).await?;
        }
        Ok(finished)
    }

    /// Takes up to `limit` reservations of `sku` due at or before `cutoff` (reserved, or last
    /// swept, that long ago; acknowledged ones count from the acknowledgement plus the queued
    /// grace) and makes them due again, so that sweepers running at the same time take each one
    /// once (see `sweep.lua`). The `buckets` of a bucketed sale (as the database has it: Redis
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
                .take_stale_in(sku, bucket, cutoff, now, limit - taken.len())
                .await?;
            taken.extend(more);
        }
        Ok(taken)
    }

    async fn take_stale_in(
        &self,
        sku: &SkuId,
        bucket: u8,
        cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<StaleReservation>, StockError> {
        let keys = self.bucket_keys(sku, bucket);
        let mut conn = self.conn.clone();
        let reply: Vec<Vec<u8>> = self
            .scripts
            .sweep
            .key(&keys.pending)
            .key(&keys.outbox)
            .key(&keys.resv)
            .arg(cutoff.timestamp_millis())
            .arg(now.timestamp_millis())
            .arg(limit)
            .arg(self.grace_ms())
            .invoke_async(&mut conn)
            .await?;
        let bad = || StockError::Reply {
            script: "sweep",
            reply: reply
                .iter()
                .map(|r| String::from_utf8_lossy(r).into_owned())
                .collect(),
        };
        if reply.len() % 3 != 0 {
            return Err(bad());
        }
        reply
            .chunks(3)
            .map(|taken| {
                let order_id = std::str::from_utf8(&taken[0])
                    .ok()
                    .and_then(|id| OrderId::parse(id).ok())
                    .ok_or_else(bad)?;
                let due_ms: f64 = std::str::from_utf8(&taken[1])
                    .ok()
                    .and_then(|score| score.parse().ok())
                    .ok_or_else(bad)?;
                let due_since = DateTime::from_timestamp_millis(due_ms as i64).ok_or_else(bad)?;
                let entry = (!taken[2].is_empty()).then(|| OutboxEntry::parse(&taken[2]));
                Ok(StaleReservation {
                    order_id,
                    due_since,
                    entry,
                })
            })
            .collect()
    }

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
            let keys = self.bucket_keys(sku, bucket);
            let mut conn = self.conn.clone();
            let reply: (String, i64) = self
                .scripts
                .retire
                .key(&keys.sale)
                .key(&keys.pending)
                .key(&keys.buyers)
                .key(&keys.idem)
                .key(&keys.resv)
                .key(&keys.outbox)
                .key(&keys.lent)
                .key(&keys.received)
                .key(&keys.settled)
                .arg(expire_at.timestamp_millis())
                .arg(Utc::now().timestamp_millis())
                .invoke_async(&mut conn)
                .await?;
            match reply.0.as_str() {
                "retired" => {}
                "unfinished" => unfinished += reply.1,
                "open" => return Ok(RetireOutcome::Open),
                _ => {
                    return Err(StockError::Reply {
                        script: "retire",
                        reply: vec![reply.0],
                    })
                }
            }
        }
        Ok(if unfinished > 0 {
            RetireOutcome::Unfinished(unfinished)
        } else {
            RetireOutcome::Retired
        })
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
                .arg(keys.all().as_slice())
                .arg(&keys.lent)
                .arg(&keys.received)
                .arg(&keys.settled)
                .query_async::<i64>(&mut conn)
                .await?;
        }
        self.learn_buckets(sku, 1);
        Ok(())
    }
}
