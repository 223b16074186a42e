//! The order worker: turns queued orders into database rows.
//!
//! It reads the orders topic in a consumer group, takes each partition's messages as one batch,
//! and for a batch: dead-letters the messages that are not valid orders, claims the orders'
//! reservations in Redis, writes the orders and takes their stock in one database transaction,
//! gives back the reservations of orders the database refused, and only then commits the
//! partition's offset. A redelivered batch changes nothing (every step is idempotent); a
//! transient failure is retried in place with bounded backoff while the partition waits; when
//! the retries run out the orders go to the dead-letter topic as retryable.
//!
//! Each order's log lines run in an `order` span with its order id and the trace id its message
//! header carried from the gateway; its dead letter carries the trace on.

pub mod metrics;

use anyhow::Context;
use domain::dead_letter::header;
use domain::{Backoff, DeadLetter, OrderRequested, ReasonCode};
use kafka::consume::{by_partition, header as message_header, next_batch};
use kafka::rdkafka::consumer::{Consumer, StreamConsumer};
use kafka::rdkafka::message::OwnedMessage;
use kafka::rdkafka::Message;
use kafka::{commit_processed, DeadLetterPublisher, PartitionOffsets};
use metrics::WorkerMetrics;
use settings::{Settings, WorkerSettings};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stock::{ClaimOutcome, ReleaseMode, StockLedger};
use store::{OrderWrite, Store, Written};
use telemetry::TraceContext;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The outside systems the worker needs, connected.
pub struct Dependencies {
    /// Redis.
    pub ledger: StockLedger,
    /// Database.
    pub store: Store,
    /// Consumer of the orders topic (not yet subscribed).
    pub consumer: StreamConsumer,
    /// Dead-letter publisher.
    pub dead_letters: DeadLetterPublisher,
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
            consumer: kafka::consumer(&endpoint, &settings.kafka.worker_group)
                .context("kafka consumer")?,
            dead_letters: DeadLetterPublisher::new(
                kafka::producer(&endpoint).context("kafka producer")?,
                settings.kafka.dlq_topic.clone(),
            ),
        })
    }
}

/// A worker ready to run.
pub struct Worker {
    deps: Dependencies,
    topic: String,
    config: WorkerSettings,
    metrics: WorkerMetrics,
    ops: TcpListener,
}

/// Why a batch stopped without its offsets being committed.
enum Halt {
    Shutdown,
}

impl Worker {
    /// Prepares a worker and binds its ops port (`http.ops_port`, 0 = any free port).
    pub fn build(settings: &Settings, deps: Dependencies) -> anyhow::Result<Self> {
        let address = format!("{}:{}", settings.http.host, settings.http.ops_port);
        let ops = TcpListener::bind(&address).with_context(|| format!("cannot bind {address}"))?;
        Ok(Self {
            deps,
            topic: settings.kafka.orders_topic.clone(),
            config: settings.worker.clone(),
            metrics: WorkerMetrics::new(telemetry::new_registry()),
            ops,
        })
    }

    /// The ops port (`/metrics`, `/healthz`, `/readyz`).
    pub fn ops_port(&self) -> u16 {
        self.ops.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The worker's metrics (tests read them).
    pub fn metrics(&self) -> WorkerMetrics {
        self.metrics.clone()
    }

    /// Consumes until `shutdown` fires: the batch in hand is finished and committed, then the
    /// consumer leaves its group.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Worker {
            deps,
            topic,
            config,
            metrics,
            ops,
        } = self;
        let consumer = Arc::new(deps.consumer);
        consumer
            .subscribe(&[topic.as_str()])
            .context("subscribing to the orders topic")?;
        let readiness = readiness(deps.ledger.clone(), deps.store.clone());
        let ops_server = tokio::spawn(telemetry::ops::serve(
            ops,
            metrics.registry.clone(),
            readiness,
            shutdown.clone(),
        ));
        let lag = tokio::spawn(kafka::lag::report_lag(
            consumer.clone(),
            topic.clone(),
            metrics.lag.clone(),
            Some(metrics.assigned.clone()),
            Duration::from_secs(5),
            shutdown.clone(),
        ));
        let processor = Processor {
            ledger: deps.ledger,
            store: deps.store,
            dead_letters: deps.dead_letters,
            backoff: Backoff {
                first: Duration::from_millis(config.retry_backoff_ms),
                max: Duration::from_millis(config.retry_backoff_max_ms),
            },
            max_attempts: config.max_attempts,
            metrics: metrics.clone(),
        };
        tracing::info!(%topic, "order worker consuming");
        let wait = Duration::from_millis(config.batch_wait_ms);
        'consume: while let Some(batch) =
            next_batch(&consumer, config.batch_max, wait, &shutdown).await
        {
            for run in by_partition(batch) {
                let started = Instant::now();
                metrics.batch_size.observe(run.len() as f64);
                match processor.process(&run, &shutdown).await {
                    Ok(offsets) => {
                        if let Err(error) = commit_processed(&*consumer, &offsets) {
                            // The partition may have moved to another member; it will redeliver,
                            // which the idempotent writes make harmless.
                            tracing::warn!(%error, "offset commit failed");
                        }
                    }
                    Err(Halt::Shutdown) => break 'consume,
                }
                metrics
                    .batch_duration
                    .observe(started.elapsed().as_secs_f64());
            }
        }
        tracing::info!("order worker leaving its group");
        consumer.unsubscribe();
        shutdown.cancel();
        // A lag reading in flight must not hold up the stop; the next replica reports lag.
        lag.abort();
        let _ = ops_server.await;
        drop(consumer);
        tracing::info!("order worker stopped");
        Ok(())
    }
}

fn readiness(ledger: StockLedger, store: Store) -> telemetry::ops::ReadinessCheck {
    Arc::new(move || {
        let ledger = ledger.clone();
        let store = store.clone();
        Box::pin(async move {
            let (redis, database) = tokio::join!(ledger.ping(), store.ping());
            let mut failing = Vec::new();
            if redis.is_err() {
                failing.push("redis");
            }
            if database.is_err() {
                failing.push("database");
            }
            if failing.is_empty() {
                Ok(())
            } else {
                Err(failing.join(","))
            }
        })
    })
}

/// A transient failure of one attempt.
#[derive(Debug, thiserror::Error)]
enum Transient {
    #[error(transparent)]
    Stock(#[from] stock::StockError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Kafka(#[from] kafka::KafkaError),
}

struct Processor {
    ledger: StockLedger,
    store: Store,
    dead_letters: DeadLetterPublisher,
    backoff: Backoff,
    max_attempts: u32,
    metrics: WorkerMetrics,
}

/// A decoded order, where it came from, and the worker's hop of its trace.
struct Incoming<'m> {
    order: OrderRequested,
    message: &'m OwnedMessage,
    trace: TraceContext,
}

impl Incoming<'_> {
    /// The log span of everything the worker does to this order alone.
    fn span(&self) -> tracing::Span {
        tracing::info_span!(
            "order",
            order_id = %self.order.order_id,
            trace_id = %self.trace.trace_id(),
            span_id = %self.trace.span_id(),
        )
    }
}

impl Processor {
    /// Processes one partition's run of messages; returns the offsets that may be committed.
    async fn process(
        &self,
        run: &[OwnedMessage],
        shutdown: &CancellationToken,
    ) -> Result<PartitionOffsets, Halt> {
        let mut offsets = PartitionOffsets::new();
        let mut orders = Vec::with_capacity(run.len());
        for message in run {
            let trace = kafka::trace::continued(message);
            match OrderRequested::decode(message.payload().unwrap_or_default()) {
                Ok(order) => orders.push(Incoming {
                    order,
                    message,
                    trace,
                }),
                Err(error) => {
                    let span = tracing::info_span!(
                        "message",
                        partition = message.partition(),
                        offset = message.offset(),
                        trace_id = %trace.trace_id(),
                        span_id = %trace.span_id(),
                    );
                    span.in_scope(|| tracing::warn!(%error, "poison message"));
                    self.dead_letter(
                        message,
                        error.reason(),
                        &error.to_string(),
                        &trace,
                        shutdown,
                    )
                    .instrument(span)
                    .await?;
                }
            }
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.write(&orders).await {
                Ok(()) => break,
                Err(error) if attempt < self.max_attempts => {
                    self.metrics.retries.inc();
                    let delay = self.backoff.delay(attempt);
                    tracing::warn!(%error, attempt, ?delay, "transient failure; retrying batch");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Err(Halt::Shutdown),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Err(error) => {
                    tracing::error!(%error, attempt, "retries exhausted; dead-lettering batch");
                    for incoming in &orders {
                        self.dead_letter(
                            incoming.message,
                            ReasonCode::RetriesExhausted,
                            &error.to_string(),
                            &incoming.trace,
                            shutdown,
                        )
                        .instrument(incoming.span())
                        .await?;
                    }
                    break;
                }
            }
        }
        for message in run {
            offsets.processed(message.topic(), message.partition(), message.offset());
        }
        Ok(offsets)
    }

    /// One attempt at the batch's effects; every step is idempotent, so an attempt may repeat
    /// a previous one that failed half-way.
    async fn write(&self, orders: &[Incoming<'_>]) -> Result<(), Transient> {
        if orders.is_empty() {
            return Ok(());
        }
        let mut writes: Vec<OrderWrite> = orders
            .iter()
            .map(|i| OrderWrite {
                order: i.order.clone(),
                preset_failure: None,
            })
            .collect();
        let mut released = Vec::new();
        let mut skus: Vec<_> = writes.iter().map(|w| w.order.sku_id.clone()).collect();
        skus.sort();
        skus.dedup();
        for sku in skus {
            let indices: Vec<usize> = (0..writes.len())
                .filter(|&i| writes[i].order.sku_id == sku)
                .collect();
            let ids: Vec<_> = indices
                .iter()
                .map(|&i| writes[i].order.order_id.clone())
                .collect();
            let claims = self.ledger.claim(&sku, &ids).await?;
            for (&i, claim) in indices.iter().zip(claims) {
                if claim == ClaimOutcome::Released {
                    released.push(i);
                }
            }
        }
        // The gateway released these after a failed produce and told the buyer 503, so no 202
        // stands behind them: they get no row, which leaves the buyer's idempotency key free for
        // the retry that may follow.
        for &i in released.iter().rev() {
            orders[i].span().in_scope(|| {
                tracing::info!("skipping an order whose reservation was released");
            });
            writes.remove(i);
            self.metrics
                .persisted
                .with_label_values(&["released"])
                .inc();
        }
        let orders: Vec<&Incoming<'_>> = orders
            .iter()
            .filter(|i| writes.iter().any(|w| w.order.order_id == i.order.order_id))
            .collect();
        let results = self.store.persist_batch(&writes).await?;
        for ((order_id, written), incoming) in results.iter().zip(orders) {
            match written {
                Written::Confirmed => {
                    self.metrics
                        .persisted
                        .with_label_values(&["confirmed"])
                        .inc();
                    if tracing::enabled!(tracing::Level::DEBUG) {
                        incoming
                            .span()
                            .in_scope(|| tracing::debug!("order confirmed"));
                    }
                }
                Written::Failed(reason) => {
                    self.metrics.persisted.with_label_values(&["failed"]).inc();
                    let span = incoming.span();
                    span.in_scope(|| tracing::info!(%reason, "order failed"));
                    match reason {
                        // The database is the authority on stock: give the units back to Redis.
                        ReasonCode::DbOutOfStock => {
                            self.ledger
                                .release(order_id, ReleaseMode::Compensate)
                                .instrument(span)
                                .await?;
                            self.metrics.compensations.inc();
                        }
                        // Anomalies go to the dead-letter topic, where an operator sees them
                        // and the replayer compensates.
                        ReasonCode::UnknownSku => {
                            self.publish(
                                incoming.message,
                                *reason,
                                "no sale for this sku",
                                &incoming.trace,
                            )
                            .instrument(span)
                            .await?;
                        }
                        _ => {}
                    }
                }
                Written::KeyConflict => {
                    self.metrics
                        .persisted
                        .with_label_values(&["key_conflict"])
                        .inc();
                    let span = incoming.span();
                    span.in_scope(|| tracing::warn!("idempotency key held by another order"));
                    self.publish(
                        incoming.message,
                        ReasonCode::IdempotencyConflict,
                        "another order holds this user, sku and idempotency key",
                        &incoming.trace,
                    )
                    .instrument(span)
                    .await?;
                }
            }
        }
        Ok(())
    }

    /// Dead-letters `message`, retrying the publish until it is acknowledged or shutdown.
    async fn dead_letter(
        &self,
        message: &OwnedMessage,
        reason: ReasonCode,
        error: &str,
        trace: &TraceContext,
        shutdown: &CancellationToken,
    ) -> Result<(), Halt> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.publish(message, reason, error, trace).await {
                Ok(()) => return Ok(()),
                Err(publish_error) => {
                    let delay = self.backoff.delay(attempt);
                    tracing::error!(%publish_error, ?delay, "dead-letter publish failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Err(Halt::Shutdown),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    async fn publish(
        &self,
        message: &OwnedMessage,
        reason: ReasonCode,
        error: &str,
        trace: &TraceContext,
    ) -> Result<(), Transient> {
        let replays: u32 = message_header(message, header::REPLAYS)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let letter = DeadLetter {
            reason,
            error: error.to_owned(),
            attempts: replays + 1,
            original_topic: message.topic().to_owned(),
            original_partition: message.partition(),
            original_offset: message.offset(),
            failed_at: chrono::Utc::now(),
        };
        self.dead_letters
            .publish(message.key(), message.payload(), &letter, trace)
            .await?;
        self.metrics
            .dead_letters
            .with_label_values(&[reason.as_str()])
            .inc();
        tracing::info!(%reason, "dead-lettered");
        Ok(())
    }
}
