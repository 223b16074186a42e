//! The dead-letter replayer: drains the dead-letter topic and settles every letter exactly once
//! in effect.
//!
//! - A retryable letter (`retries_exhausted`: the database or Redis was down for too long) is
//!   republished to the orders topic once it has aged `replayer.replay_delay_secs`, carrying its
//!   replay count, at most `replayer.max_replays` times.
//! - Any other letter, and a retryable one out of replays, is compensated: the order is recorded
//!   as failed with its reason (unless it was confirmed after all) and its Redis reservation is
//!   released. Both steps are idempotent, so a replayer killed half-way simply repeats them.
//! - A letter whose bytes are not an order has nothing to compensate: the gateway only ever
//!   produces valid orders, so no reservation stands behind it. It is counted and skipped.
//!
//! Offsets are committed only after the letter's effect is durable. Each letter is settled in
//! a `letter` log span with the order's trace id, and a republished order carries the trace on.

pub mod letters;
pub mod metrics;

use anyhow::Context;
use domain::dead_letter::header;
use domain::{Backoff, DeadLetter, OrderRequested, OrderStatus, ReasonCode};
use kafka::consume::{by_partition, header as message_header, next_batch};
use kafka::rdkafka::consumer::{Consumer, StreamConsumer};
use kafka::rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use kafka::rdkafka::util::Timeout;
use kafka::rdkafka::Message;
use kafka::{commit_processed, PartitionOffsets};
use metrics::ReplayerMetrics;
use settings::{ReplayerSettings, Settings};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;
use stock::{ReleaseMode, StockLedger};
use store::Store;
use telemetry::TraceContext;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The outside systems the replayer needs, connected.
pub struct Dependencies {
    /// Redis.
    pub ledger: StockLedger,
    /// Database.
    pub store: Store,
    /// Consumer of the dead-letter topic (not yet subscribed).
    pub consumer: StreamConsumer,
    /// Producer for republishing orders.
    pub producer: FutureProducer,
}

impl Dependencies {
    /// Connects to everything the settings name; `bootstrap` overrides the Kafka servers.
    pub async fn connect(settings: &Settings, bootstrap: Option<&str>) -> anyhow::Result<Self> {
        let endpoint = kafka::Endpoint::from_settings(&settings.kafka, bootstrap);
        Ok(Self {
            ledger: StockLedger::new(&settings.redis).context("redis pool")?,
            store: Store::connect(&settings.database)
                .await
                .context("database")?,
            consumer: kafka::consumer(&endpoint, &settings.kafka.replayer_group)
                .context("kafka consumer")?,
            producer: kafka::producer(&endpoint).context("kafka producer")?,
        })
    }
}

/// What became of one letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Republished to the orders topic.
    Retried,
    /// Order marked failed and reservation released.
    Compensated,
    /// The order turned out confirmed; nothing to give back.
    AlreadyConfirmed,
    /// Not an order; nothing to compensate.
    Unrecoverable,
}

/// A replayer ready to run.
pub struct Replayer {
    deps: Dependencies,
    dlq_topic: String,
    orders_topic: String,
    config: ReplayerSettings,
    backoff: Backoff,
    metrics: ReplayerMetrics,
    ops: TcpListener,
}

impl Replayer {
    /// Prepares a replayer and binds its ops port.
    pub fn build(settings: &Settings, deps: Dependencies) -> anyhow::Result<Self> {
        let address = format!("{}:{}", settings.http.host, settings.http.ops_port);
        let ops = TcpListener::bind(&address).with_context(|| format!("cannot bind {address}"))?;
        Ok(Self {
            deps,
            dlq_topic: settings.kafka.dlq_topic.clone(),
            orders_topic: settings.kafka.orders_topic.clone(),
            config: settings.replayer.clone(),
            backoff: Backoff {
                first: Duration::from_millis(settings.worker.retry_backoff_ms),
                max: Duration::from_millis(settings.worker.retry_backoff_max_ms),
            },
            metrics: ReplayerMetrics::new(telemetry::new_registry()),
            ops,
        })
    }

    /// The ops port.
    pub fn ops_port(&self) -> u16 {
        self.ops.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The replayer's metrics.
    pub fn metrics(&self) -> ReplayerMetrics {
        self.metrics.clone()
    }

    /// Drains the dead-letter topic until `shutdown`.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let consumer = Arc::new(self.deps.consumer);
        consumer
            .subscribe(&[self.dlq_topic.as_str()])
            .context("subscribing to the dead-letter topic")?;
        let ledger = self.deps.ledger.clone();
        let store = self.deps.store.clone();
        let readiness: telemetry::ops::ReadinessCheck = Arc::new(move || {
            let ledger = ledger.clone();
            let store = store.clone();
            Box::pin(async move {
                ledger.ping().await.map_err(|e| format!("redis: {e}"))?;
                store.ping().await.map_err(|e| format!("database: {e}"))
            })
        });
        let ops_server = tokio::spawn(telemetry::ops::serve(
            self.ops,
            self.metrics.registry.clone(),
            readiness,
            shutdown.clone(),
        ));
        let lag = tokio::spawn(kafka::lag::report_lag(
            consumer.clone(),
            self.dlq_topic.clone(),
            self.metrics.lag.clone(),
            None,
            Duration::from_secs(5),
            shutdown.clone(),
        ));
        let settler = Settler {
            ledger: self.deps.ledger,
            store: self.deps.store,
            producer: self.deps.producer,
            orders_topic: self.orders_topic,
            config: self.config,
        };
        tracing::info!(topic = %self.dlq_topic, "dlq replayer consuming");
        'consume: while let Some(batch) =
            next_batch(&consumer, 100, Duration::from_millis(5), &shutdown).await
        {
            for run in by_partition(batch) {
                let mut offsets = PartitionOffsets::new();
                for message in &run {
                    let trace = kafka::trace::continued(message);
                    let span = letter_span(message, &trace);
                    let mut attempt = 0;
                    let settled = loop {
                        attempt += 1;
                        let settling = settler.settle(message, &trace, &shutdown);
                        match settling.instrument(span.clone()).await {
                            Ok(Some(settled)) => break settled,
                            Ok(None) => {
                                let _ = commit_processed(&*consumer, &offsets);
                                break 'consume;
                            }
                            Err(error) => {
                                let delay = self.backoff.delay(attempt);
                                span.in_scope(|| {
                                    tracing::warn!(%error, ?delay, "settling a dead letter failed; retrying");
                                });
                                tokio::select! {
                                    _ = shutdown.cancelled() => {
                                        let _ = commit_processed(&*consumer, &offsets);
                                        break 'consume;
                                    }
                                    _ = tokio::time::sleep(delay) => {}
                                }
                            }
                        }
                    };
                    self.metrics.observe(settled);
                    offsets.processed(message.topic(), message.partition(), message.offset());
                }
                if let Err(error) = commit_processed(&*consumer, &offsets) {
                    tracing::warn!(%error, "offset commit failed");
                }
            }
        }
        consumer.unsubscribe();
        shutdown.cancel();
        // A lag reading in flight must not hold up the stop; the next replica reports lag.
        lag.abort();
        let _ = ops_server.await;
        drop(consumer);
        tracing::info!("dlq replayer stopped");
        Ok(())
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
    ) -> anyhow::Result<Option<Settled>> {
        let letter = DeadLetter::from_headers(|name| message_header(message, name));
        let Ok(order) = OrderRequested::decode(message.payload().unwrap_or_default()) else {
            tracing::warn!(
                offset = message.offset(),
                reason = ?letter.as_ref().map(|l| l.reason),
                "dead letter is not an order; nothing to compensate"
            );
            return Ok(Some(Settled::Unrecoverable));
        };
        tracing::Span::current().record("order_id", tracing::field::display(&order.order_id));
        let (reason, attempts, failed_at) = match &letter {
            Ok(l) => (l.reason, l.attempts, l.failed_at),
            Err(error) => {
                tracing::warn!(%error, "dead letter without readable headers; compensating");
                (ReasonCode::InvalidField, u32::MAX, chrono::Utc::now())
            }
        };
        if reason.is_retryable() && attempts <= self.config.max_replays {
            let due = failed_at + chrono::Duration::seconds(self.config.replay_delay_secs as i64);
            let wait = (due - chrono::Utc::now()).to_std().unwrap_or_default();
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(None),
                _ = tokio::time::sleep(wait) => {}
            }
            republish(&self.producer, &self.orders_topic, message, attempts, trace).await?;
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

    /// Marks `order` failed (unless confirmed) and releases its reservation. Idempotent.
    pub async fn compensate(
        &self,
        order: &OrderRequested,
        reason: ReasonCode,
    ) -> anyhow::Result<Settled> {
        match self.store.mark_failed(order, reason).await? {
            OrderStatus::Confirmed => Ok(Settled::AlreadyConfirmed),
            _ => {
                let released = self
                    .ledger
                    .release(&order.order_id, ReleaseMode::Compensate)
                    .await?;
                tracing::info!(order_id = %order.order_id, %reason, ?released, "order compensated");
                Ok(Settled::Compensated)
            }
        }
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
/// its replay count and the republisher's `trace` (the order's trace, continued). Used by the
/// replayer's retries and by the operator's `replay`.
pub async fn republish(
    producer: &FutureProducer,
    orders_topic: &str,
    message: &OwnedMessage,
    replays: u32,
    trace: &TraceContext,
) -> anyhow::Result<()> {
    let count = replays.to_string();
    let headers = OwnedHeaders::new().insert(Header {
        key: header::REPLAYS,
        value: Some(count.as_bytes()),
    });
    let headers = kafka::trace::with_trace(headers, trace);
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
        .map_err(|(error, _)| error)
        .context("republishing an order")?;
    Ok(())
}
