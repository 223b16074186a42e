//! The Redis stock ledger: the fast, first gate of a flash sale. Each operation is one Lua
//! script over the keys of one SKU (one hash tag, so one Redis Cluster slot), which makes it
//! atomic without locks: two buyers can never take the same last unit.

mod connection;
pub mod marks;
pub mod outbox;
pub mod record;

pub use marks::{Mark, Marks, MarksTask};
pub use outbox::{CorruptEntry, OutboxEntry};
pub use record::{CorruptRecord, ReservationRecord, ReservationState};

use chrono::{DateTime, Utc};
use connection::Connection;
use domain::{IdempotencyKey, OrderId, OrderRequested, SaleSpec, SkuId, StockKeys, UserId};
use redis::Script;
use settings::RedisSettings;
use std::sync::Arc;
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
            StockError::Config(_) | StockError::Reply { .. } | StockError::Corrupt(_) => false,
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
}

impl StockLedger {
    /// Sets up the connection. It is made in the background (one server: on first use), so this
    /// succeeds while Redis is down; it must be called inside the service's Tokio runtime.
    pub fn new(settings: &RedisSettings) -> Result<Self, StockError> {
        Ok(Self {
            conn: Connection::new(settings)?,
            queued_grace: Duration::ZERO,
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

    /// The keys of `sku` under this ledger's prefix.
    pub fn keys(&self, sku: &SkuId) -> StockKeys {
        StockKeys::new(&self.prefix, sku)
    }

    /// Whether Redis answers.
    pub async fn ping(&self) -> Result<(), StockError> {
        self.conn.ping().await?;
        Ok(())
    }

    /// Tries to reserve the units of `order` (its id is the candidate: the order's id if it is
    /// new) at its `requested_at`, and keeps `entry` (the order's message, see
    /// [`OutboxEntry::new`]) in the outbox until the order is written or released.
    pub async fn reserve(
        &self,
        order: &OrderRequested,
        entry: &OutboxEntry,
    ) -> Result<ReserveOutcome, StockError> {
        let keys = self.keys(&order.sku_id);
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
        Ok(match reply.first().map(String::as_str) {
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
            _ => return Err(bad(&reply)),
        })
    }

    /// Releases the reservation of `order` (idempotent).
    pub async fn release(
        &self,
        order: &OrderId,
        mode: ReleaseMode,
    ) -> Result<ReleaseOutcome, StockError> {
        let keys = self.keys(&order.sku());
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
        if orders.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.keys(sku);
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

    /// Creates or updates the sale of `sku` in Redis (see `warm.lua`).
    pub async fn warm(&self, sku: &SkuId, spec: &SaleSpec) -> Result<WarmOutcome, StockError> {
        let keys = self.keys(sku);
        let mut conn = self.conn.clone();
        let reply: (String, i64) = self
            .scripts
            .warm
            .key(&keys.sale)
            .key(&keys.stock)
            .key(keys.per_order().as_slice())
            .arg(spec.stock)
            .arg(spec.window.starts_at.timestamp_millis())
            .arg(spec.window.ends_at.timestamp_millis())
            .arg(spec.per_user_limit)
            .invoke_async(&mut conn)
            .await?;
        Ok(match reply.0.as_str() {
            "created" => WarmOutcome::Created(reply.1),
            "updated" => WarmOutcome::Updated(reply.1),
            "below_reserved" => WarmOutcome::BelowReserved(reply.1),
            _ => {
                return Err(StockError::Reply {
                    script: "warm",
                    reply: vec![reply.0],
                })
            }
        })
    }

    /// Re-creates a sale Redis has lost (see `restore.lua`): `spec.stock` is the sale's total,
    /// `remaining` the units the database has not given to an order, `orders` every order the
    /// database has of the SKU. Buyers' holdings, idempotency keys and reservations (orders that
    /// hold stock as claimed, failed and expired ones as released) are written first, the sale itself last, so the gateway
    /// sells nothing until the per-user limits and idempotency keys are back. Does nothing when
    /// Redis still has the sale.
    pub async fn restore(
        &self,
        sku: &SkuId,
        spec: &SaleSpec,
        remaining: i64,
        orders: &[RestoredOrder],
    ) -> Result<RestoreOutcome, StockError> {
        const CHUNK: usize = 500;
        let keys = self.keys(sku);
        let mut conn = self.conn.clone();
        let present: Option<i64> = redis::cmd("HGET")
            .arg(&keys.sale)
            .arg("initial")
            .query_async(&mut conn)
            .await?;
        if present.is_some() {
            let left: Option<i64> = redis::cmd("GET")
                .arg(&keys.stock)
                .query_async(&mut conn)
                .await?;
            return Ok(RestoreOutcome::AlreadyPresent(left.unwrap_or(0)));
        }
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
        let reply: (String, i64) = self
            .scripts
            .restore
            .key(&keys.sale)
            .key(&keys.stock)
            .arg(spec.stock)
            .arg(remaining)
            .arg(spec.window.starts_at.timestamp_millis())
            .arg(spec.window.ends_at.timestamp_millis())
            .arg(spec.per_user_limit)
            .arg(held_units + released_units)
            .arg(released_units)
            .invoke_async(&mut conn)
            .await?;
        match reply.0.as_str() {
            "restored" => Ok(RestoreOutcome::Restored(reply.1)),
            "exists" => Ok(RestoreOutcome::AlreadyPresent(reply.1)),
            _ => Err(StockError::Reply {
                script: "restore",
                reply: vec![reply.0],
            }),
        }
    }

    /// The idempotency fields (`<user>|<key>`) of every order the sale ever reserved, or `None`
    /// when it has more than `max` of them (one `HLEN`, then one `HKEYS`).
    pub async fn order_requests(
        &self,
        sku: &SkuId,
        max: usize,
    ) -> Result<Option<Vec<String>>, StockError> {
        let keys = self.keys(sku);
        let mut conn = self.conn.clone();
        let count: usize = redis::cmd("HLEN")
            .arg(&keys.idem)
            .query_async(&mut conn)
            .await?;
        if count > max {
            return Ok(None);
        }
        let fields: Vec<String> = redis::cmd("HKEYS")
            .arg(&keys.idem)
            .query_async(&mut conn)
            .await?;
        Ok(Some(fields))
    }

    /// The sale as Redis sees it; `None` when Redis has no such sale.
    pub async fn snapshot(&self, sku: &SkuId) -> Result<Option<LedgerSnapshot>, StockError> {
        let keys = self.keys(sku);
        let mut conn = self.conn.clone();
        type Counters = (Option<i64>, Option<i64>, Option<i64>);
        let (remaining, counters, unfinished): (Option<i64>, Counters, i64) = redis::pipe()
            .get(&keys.stock)
            .hmget(&keys.sale, &["initial", "reserved", "released"])
            .zcard(&keys.pending)
            .query_async(&mut conn)
            .await?;
        Ok(match (remaining, counters) {
            (Some(remaining), (Some(initial), reserved, released)) => Some(LedgerSnapshot {
                remaining,
                initial,
                reserved: reserved.unwrap_or(0),
                released: released.unwrap_or(0),
                unfinished,
            }),
            _ => None,
        })
    }

    /// The worker has settled `orders` of `sku` (written, or dead-lettered with the letter
    /// acknowledged): they leave the outbox. Returns how many were still pending. Idempotent.
    pub async fn finish(&self, sku: &SkuId, orders: &[&OrderId]) -> Result<usize, StockError> {
        if orders.is_empty() {
            return Ok(0);
        }
        let keys = self.keys(sku);
        let mut conn = self.conn.clone();
        let mut invocation = self.scripts.finish.key(&keys.pending);
        invocation.key(&keys.outbox);
        for order in orders {
            invocation.arg(order.as_str());
        }
        Ok(invocation.invoke_async(&mut conn).await?)
    }

    /// Takes up to `limit` reservations of `sku` due at or before `cutoff` (reserved, or last
    /// swept, that long ago; acknowledged ones count from the acknowledgement plus the queued
    /// grace) and makes them due again, so that sweepers running at the same time take each one
    /// once (see `sweep.lua`).
    pub async fn take_stale(
        &self,
        sku: &SkuId,
        cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<StaleReservation>, StockError> {
        let keys = self.keys(sku);
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
    /// (see `retire.lua`).
    pub async fn retire(
        &self,
        sku: &SkuId,
        expire_at: DateTime<Utc>,
    ) -> Result<RetireOutcome, StockError> {
        let keys = self.keys(sku);
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
            .arg(expire_at.timestamp_millis())
            .arg(Utc::now().timestamp_millis())
            .invoke_async(&mut conn)
            .await?;
        match reply.0.as_str() {
            "retired" => Ok(RetireOutcome::Retired),
            "unfinished" => Ok(RetireOutcome::Unfinished(reply.1)),
            "open" => Ok(RetireOutcome::Open),
            _ => Err(StockError::Reply {
                script: "retire",
                reply: vec![reply.0],
            }),
        }
    }

    /// The reservation of `order`, if Redis has it.
    pub async fn reservation(
        &self,
        order: &OrderId,
    ) -> Result<Option<ReservationRecord>, StockError> {
        let keys = self.keys(&order.sku());
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

    /// Deletes every key of `sku` (tests and `make demo` reset; never called by services).
    pub async fn forget(&self, sku: &SkuId) -> Result<(), StockError> {
        let keys = self.keys(sku);
        let mut conn = self.conn.clone();
        redis::cmd("DEL")
            .arg(keys.all().as_slice())
            .query_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }
}
