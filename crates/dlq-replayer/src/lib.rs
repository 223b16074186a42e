//! The dead-letter replayer: drains the dead-letter topic and settles every letter exactly once
//! in effect.
//!
//! - A letter a worker did not sign (`messages.signing_keys`, see `domain::signing`) is acted on
//!   in no way: anyone who can write to the dead-letter topic could otherwise have a buyer's
//!   order failed, or any bytes republished, signed by the replayer, to the orders topic. It is
//!   logged, counted as `unauthentic` and skipped.
//! - A letter of a message the worker refused as `forged` is neither republished nor
//!   compensated: its bytes may copy a real buyer's order, whose reservation is not this
//!   letter's to give back. It is logged, counted as `forged` and skipped.
//! - A retryable letter (`retries_exhausted`: the database or Redis was down for too long) is
//!   republished to the orders topic once it has aged `replayer.replay_delay_secs`, carrying its
//!   replay count and signed again (the count is signed too), at most `replayer.max_replays`
//!   times.
//! - Any other letter, and a retryable one out of replays, is compensated: the order is recorded
//!   as failed with its reason (unless it was written after all) and its Redis reservation is
//!   released. Both steps are idempotent, so a replayer killed half-way simply repeats them.
//! - A letter whose bytes are not an order has nothing to compensate: the gateway only ever
//!   produces valid orders, so no reservation stands behind it. It is counted and skipped.
//! - A letter of a valid order whose headers cannot be read (a reason this build does not
//!   know, a damaged header) is not compensated: what it asks for is unknown. It is logged at
//!   error with its place and order id, counted as `unreadable`, and its order is republished
//!   once as its last replay (`replayer.max_replays`): the worker writes it, or dead-letters it
//!   again with headers this build reads, and that letter is then settled as usual.
//!
//! A failure to settle a letter is classified. A transient one (Redis, the database or the broker
//! unreachable) is retried with `replayer.retry_backoff_ms` backoff until it passes: the
//! compensation must happen, and every letter behind it would meet the same outage. A permanent
//! one (a stored value this build cannot read) is not retried: the letter is logged at error
//! with its place and order id, counted as `abandoned`, and the partition moves on.
//!
//! The replayer runs on the consumer runtime (`consumer-runtime`), which commits the offsets of
//! the letters settled, only after their effect is durable, also when shutdown comes half-way
//! through a run. Each letter is settled in a `letter` log span with the order's trace id, and
//! a republished order carries the trace on.

pub mod letters;
pub mod metrics;

use connections::Connections;
use consumer_runtime::{Handled, Handler, Service, Spec};
use domain::dead_letter::header;
use domain::{Backoff, DeadLetter, Keyring, OrderRequested, ReasonCode, Signed};
use kafka::consume::header as message_header;
use kafka::rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use kafka::rdkafka::util::Timeout;
use kafka::rdkafka::Message;
use metrics::ReplayerMetrics;
use settings::{ReplayerSettings, Settings};
use std::time::Duration;
use stock::{ReleaseMode, StockLedger};
use store::Store;
use telemetry::TraceContext;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// What became of one letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Republished to the orders topic.
    Retried,
    /// Order marked failed and reservation released.
    Compensated,
    /// The order turned out written with its stock taken (awaiting payment, paid or expired
    /// since); its payment or its expiry decides what is given back, not the replayer.
    AlreadyWritten,
    /// Not an order; nothing to compensate.
    Unrecoverable,
    /// A permanent failure (a stored value this build cannot read): logged with the letter's
    /// place and counted, not retried, so the letters behind it are settled.
    Abandoned,
    /// An order whose letter's headers cannot be read (a reason this build does not know, a
    /// damaged header): what the letter asks for is unknown, so the order is not compensated; it
    /// is republished as its last replay. Logged at error with the letter's place and order id,
    /// and counted.
    Unreadable,
    /// The letter of a message the worker refused as forged: neither republished nor
    /// compensated (the order it names may be a real buyer's); logged and counted.
    Forged,
    /// A letter without a valid signature of a worker: nothing it says is acted on; logged and
    /// counted.
    Unauthentic,
}

/// Why settling a letter failed.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// Redis.
    #[error(transparent)]
    Stock(#[from] stock::StockError),
    /// The database.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// Republishing the order.
    #[error("republishing an order: {0}")]
    Republish(#[source] kafka::rdkafka::error::KafkaError),
}

impl SettleError {
    /// Whether a later attempt may succeed (an outage), as opposed to a failure that will be
    /// the same every time (a stored value this build cannot read, a refused statement).
    pub fn is_transient(&self) -> bool {
        match self {
            SettleError::Stock(error) => error.is_transient(),
            SettleError::Store(error) => error.is_transient(),
            SettleError::Republish(_) => true,
        }
    }
}

/// A replayer ready to run.
pub struct Replayer {
    service: Service<Letters>,
    metrics: ReplayerMetrics,
}

impl Replayer {
    /// Connects to everything the settings name (`bootstrap` overrides the Kafka servers) and
    /// binds the ops port.
    pub async fn connect(settings: &Settings, bootstrap: Option<&str>) -> anyhow::Result<Self> {
        settings.require_deployed_message_keys()?;
        let keyring = settings.messages.keyring()?;
        let connections = Connections::connect(settings, bootstrap).await?;
        let metrics = ReplayerMetrics::new(telemetry::new_registry());
        let config = &settings.replayer;
        let letters = Letters {
            settler: Settler {
                ledger: connections.ledger.clone(),
                store: connections.store.clone(),
                producer: connections.producer.clone(),
                orders_topic: settings.kafka.orders_topic.clone(),
                keyring,
                config: config.clone(),
            },
            backoff: Backoff {
                first: Duration::from_millis(config.retry_backoff_ms),
                max: Duration::from_millis(config.retry_backoff_max_ms),
            },
            metrics: metrics.clone(),
        };
        let spec = Spec {
            name: "dlq replayer",
            topic: settings.kafka.dlq_topic.clone(),
            group: settings.kafka.replayer_group.clone(),
            batch_max: config.batch_max,
            batch_wait: Duration::from_millis(config.batch_wait_ms),
        };
        let registry = metrics.registry.clone();
        Ok(Self {
            service: Service::build(settings, spec, &connections, registry, letters)?,
            metrics,
        })
    }

    /// The ops port.
    pub fn ops_port(&self) -> u16 {
        self.service.ops_port()
    }

    /// The replayer's metrics.
    pub fn metrics(&self) -> ReplayerMetrics {
        self.metrics.clone()
    }

    /// Drains the dead-letter topic until `shutdown`; the letters settled before it are
    /// committed.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.service.run_until_stopped(shutdown).await
    }
}

/// The replayer's handler: settles a run's letters one by one, in offset order.
struct Letters {
    settler: Settler,
    backoff: Backoff,
    metrics: ReplayerMetrics,
}

impl Handler for Letters {
    /// Each letter is settled on its own, in order: nothing goes ahead.
    type Prepared = ();

    async fn prepare(&self, _run: &[OwnedMessage], _shutdown: &CancellationToken) {}

    async fn handle(&self, run: &[OwnedMessage], _: (), shutdown: &CancellationToken) -> Handled {
        for (settled, message) in run.iter().enumerate() {
            match self.settle_with_retries(message, shutdown).await {
                Some(outcome) => self.metrics.observe(outcome),
                None => return Handled::Stopped { settled },
            }
        }
        Handled::All
    }
}

impl Letters {
    /// Settles one letter in its span, retrying transient failures with backoff until they
    /// pass; `None` when shutdown came first.
    async fn settle_with_retries(
        &self,
        message: &OwnedMessage,
        shutdown: &CancellationToken,
    ) -> Option<Settled> {
        let trace = kafka::trace::continued(message);
        let span = letter_span(message, &trace);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let settling = self.settler.settle(message, &trace, shutdown);
            let error = match settling.instrument(span.clone()).await {
                Ok(settled) => return settled,
                Err(error) => error,
            };
            if !error.is_transient() {
                span.in_scope(|| {
                    tracing::error!(
                        %error,
                        "a dead letter cannot be settled; skipping it (see the runbook)"
                    );
                });
                return Some(Settled::Abandoned);
            }
            let delay = self.backoff.delay(attempt);
            span.in_scope(|| {
                tracing::warn!(%error, attempt, ?delay, "settling a dead letter failed; retrying");
            });
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
}

/// Settles letters: retry or compensate.
pub struct Settler {
    /// Redis.
    pub ledger: StockLedger,
    /// Database.
    pub store: Store,
    /// For republishing.
    pub producer: FutureProducer,
    /// Where retried orders go.
    pub orders_topic: String,
    /// Verifies the letters' signatures and signs the orders republished.
    pub keyring: Keyring,
    /// Replay policy.
    pub config: ReplayerSettings,
}

impl Settler {
    /// Settles one letter; `trace` is the replayer's hop of the letter's trace, passed on to a
    /// republished order. Run it in the letter's [`letter_span`], which it completes with the
    /// order id. `Ok(None)` when shutdown came while waiting for a replay delay.
    pub async fn settle(
        &self,
        message: &OwnedMessage,
        trace: &TraceContext,
        shutdown: &CancellationToken,
    ) -> Result<Option<Settled>, SettleError> {
        let signed = kafka::signature::dead_letter_of(message);
        if let Err(forgery) = kafka::signature::verify(message, &self.keyring, &signed) {
            tracing::warn!(
                problem = forgery.kind().as_str(),
                key_id = forgery.key_id().map_or("-", |id| id.as_str()),
                error = %forgery,
                "dead letter without a valid signature; nothing done (see the runbook)"
            );
            return Ok(Some(Settled::Unauthentic));
        }
        let letter = DeadLetter::from_headers(|name| message_header(message, name));
        if letter
            .as_ref()
            .is_ok_and(|letter| letter.reason == ReasonCode::Forged)
        {
            tracing::warn!("letter of a forged message; nothing retried or compensated");
            return Ok(Some(Settled::Forged));
        }
        let Ok(order) = OrderRequested::decode(message.payload().unwrap_or_default()) else {
            tracing::warn!(
                offset = message.offset(),
                reason = ?letter.as_ref().map(|l| l.reason),
                "dead letter is not an order; nothing to compensate"
            );
            return Ok(Some(Settled::Unrecoverable));
        };
        tracing::Span::current().record("order_id", tracing::field::display(&order.order_id));
        // Compensating a valid order on a guess would take a buyer's units away for a reason
        // nobody wrote, and skipping it could strand them (the worker may have taken the order
        // out of the outbox when it dead-lettered it). The order goes back to the worker once,
        // as its last replay: the worker writes it, or dead-letters it again with headers this
        // build reads, and then out of replays.
        let (reason, attempts, failed_at) = match &letter {
            Ok(l) => (l.reason, l.attempts, l.failed_at),
            Err(error) => {
                tracing::error!(
                    %error,
                    "dead letter without readable headers; its order goes back to the worker \
                     as its last replay (see the runbook)"
                );
                republish(
                    &self.producer,
                    &self.orders_topic,
                    &self.keyring,
                    message,
                    self.config.max_replays,
                    trace,
                )
                .await
                .map_err(SettleError::Republish)?;
                return Ok(Some(Settled::Unreadable));
            }
        };
        if reason.is_retryable() && attempts <= self.config.max_replays {
            let due = failed_at + chrono::Duration::seconds(self.config.replay_delay_secs as i64);
            let wait = (due - chrono::Utc::now()).to_std().unwrap_or_default();
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(None),
                _ = tokio::time::sleep(wait) => {}
            }
            republish(
                &self.producer,
                &self.orders_topic,
                &self.keyring,
                message,
                attempts,
                trace,
            )
            .await
            .map_err(SettleError::Republish)?;
            tracing::info!(replay = attempts, "order republished");
            return Ok(Some(Settled::Retried));
        }
        let reason = if reason.is_retryable() {
            ReasonCode::ReplayAttemptsExhausted
        } else {
            reason
        };
        Ok(Some(self.compensate(&order, reason).await?))
    }

    /// Marks `order` failed (unless it has a row already) and releases its reservation.
    /// Idempotent. A forged order is neither: it is nobody's, and the reservation its id names
    /// may be a buyer's.
    pub async fn compensate(
        &self,
        order: &OrderRequested,
        reason: ReasonCode,
    ) -> Result<Settled, SettleError> {
        if reason == ReasonCode::Forged {
            return Ok(Settled::Forged);
        }
        if self.store.mark_failed(order, reason).await?.took_stock() {
            return Ok(Settled::AlreadyWritten);
        }
        let released = self
            .ledger
            .release(&order.order_id, ReleaseMode::Compensate)
            .await?;
        tracing::info!(order_id = %order.order_id, %reason, ?released, "order compensated");
        Ok(Settled::Compensated)
    }
}

/// The log span of everything the replayer does with one letter: where it is, its trace, and
/// (recorded once the bytes are decoded) its order id.
pub fn letter_span(message: &OwnedMessage, trace: &TraceContext) -> tracing::Span {
    tracing::info_span!(
        "letter",
        partition = message.partition(),
        offset = message.offset(),
        trace_id = %trace.trace_id(),
        span_id = %trace.span_id(),
        order_id = tracing::field::Empty,
    )
}

/// Republishes a dead letter's order (its original key and bytes) to `orders_topic`, carrying
/// its replay count and the republisher's `trace` (the order's trace, continued), signed with
/// `keyring` (key, bytes and count). Used by the replayer's retries and by the operator's
/// `replay`, each only for a letter whose signature it checked: whatever is passed here gets
/// the worker's trust.
pub async fn republish(
    producer: &FutureProducer,
    orders_topic: &str,
    keyring: &Keyring,
    message: &OwnedMessage,
    replays: u32,
    trace: &TraceContext,
) -> Result<(), kafka::rdkafka::error::KafkaError> {
    let count = replays.to_string();
    let headers = OwnedHeaders::new().insert(Header {
        key: header::REPLAYS,
        value: Some(count.as_bytes()),
    });
    let headers = kafka::trace::with_trace(headers, trace);
    let signed = Signed::Order {
        key: message.key().unwrap_or_default(),
        payload: message.payload().unwrap_or_default(),
        replays: count.as_bytes(),
    };
    let headers = kafka::signature::with_signature(headers, keyring, &signed);
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(orders_topic).headers(headers);
    if let Some(key) = message.key() {
        record = record.key(key);
    }
    if let Some(payload) = message.payload() {
        record = record.payload(payload);
    }
    producer
        .send(record, Timeout::Never)
        .await
        .map(|_| ())
        .map_err(|(error, _)| error)
}
