//! The order worker: turns queued orders into database rows.
//!
//! It runs on the consumer runtime (`consumer-runtime`), which reads the orders topic in a
//! consumer group and hands over each partition's messages as one run. For a run the worker
//! first prepares (while the run before is still being written): dead-letters the messages that
//! are not valid orders and claims the orders' reservations in Redis. A message whose signature
//! (`messages.signing_keys`, see `domain::signing`) is missing or does not check out is not
//! even decoded: anyone who can write to the topic could otherwise order for any buyer. It is
//! dead-lettered as `forged`, counted and logged with the key id it named, and never written.
//! Then, one run at a time, it writes the orders and takes their stock in one database
//! transaction, gives back the reservations of orders the database refused, and returns; the
//! runtime then commits the partition's offset. A redelivered run changes nothing (every step is idempotent); a
//! transient failure is retried in place with bounded backoff while the partition waits; when
//! the retries run out the orders go to the dead-letter topic as retryable.
//!
//! Beside the consumer loop the worker runs the reservation sweeper ([`sweeper`]): a
//! reservation not written after `sweeper.stale_after_secs` has its order published again; and
//! the expirer ([`expirer`]): an order not paid by its `pay_by` expires and its units go back on
//! sale.
//!
//! Each order's log lines run in an `order` span with its order id and the trace id its message
//! header carried from the gateway; its dead letter carries the trace on.

pub mod expirer;
pub mod metrics;
pub mod sweeper;

use connections::Connections;
use consumer_runtime::{Handled, Handler, Periodic, Service, Spec};
use domain::dead_letter::header;
use domain::{Backoff, DeadLetter, Forgery, Keyring, OrderId, OrderRequested, ReasonCode, SkuId};
use kafka::consume::header as message_header;
use kafka::rdkafka::message::OwnedMessage;
use kafka::rdkafka::Message;
use kafka::DeadLetterPublisher;
use metrics::WorkerMetrics;
use settings::{Settings, WorkerSettings};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use stock::{ClaimOutcome, ReleaseMode, StockLedger};
use store::{Store, Written};
use telemetry::TraceContext;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// A worker ready to run.
pub struct Worker {
    service: Service<Processor>,
    metrics: WorkerMetrics,
    finishing: stock::MarksTask,
}

impl Worker {
    /// Connects to everything the settings name (`bootstrap` overrides the Kafka servers) and
    /// binds the ops port (`http.ops_port`, 0 = any free port).
    pub async fn connect(settings: &Settings, bootstrap: Option<&str>) -> anyhow::Result<Self> {
        settings.require_deployed_message_keys()?;
        let keyring = settings.messages.keyring()?;
        let connections = Connections::connect(settings, bootstrap).await?;
        let metrics = WorkerMetrics::new(telemetry::new_registry());
        let (finished, finishing) = stock::Marks::start(
            connections.ledger.clone(),
            stock::Mark::Finished,
            Duration::from_millis(settings.worker.finish_flush_ms),
        );
        let processor = Processor {
            finished,
            ledger: connections.ledger.clone(),
            store: connections.store.clone(),
            dead_letters: DeadLetterPublisher::new(
                connections.producer.clone(),
                settings.kafka.dlq_topic.clone(),
                keyring.clone(),
            ),
            keyring: keyring.clone(),
            backoff: backoff(&settings.worker),
            max_attempts: settings.worker.max_attempts,
            metrics: metrics.clone(),
        };
        let spec = Spec {
            name: "order worker",
            topic: settings.kafka.orders_topic.clone(),
            group: settings.kafka.worker_group.clone(),
            batch_max: settings.worker.batch_max,
            batch_wait: Duration::from_millis(settings.worker.batch_wait_ms),
        };
        let sweeper = sweeper::Sweeper::new(
            connections.ledger.clone(),
            connections.store.clone(),
            connections.producer.clone(),
            settings.kafka.orders_topic.clone(),
            keyring,
            settings.sweeper.clone(),
            Duration::from_millis(u64::from(settings.kafka.delivery_timeout_ms)),
            metrics.clone(),
        );
        let sweeping = Periodic::of(
            "reservation sweeper",
            Duration::from_secs(settings.sweeper.interval_secs),
            sweeper,
            |sweeper| async move { sweeper.round().await },
        );
        let expirer = expirer::Expirer::new(
            connections.ledger.clone(),
            connections.store.clone(),
            settings.expiry.clone(),
            metrics.clone(),
        );
        let reading_gauges = Periodic::of(
            "awaiting-payment gauges",
            expirer::GAUGES_EVERY,
            expirer.clone(),
            |expirer| async move { expirer.read_gauges().await },
        );
        let expiring = Periodic::of(
            "expirer",
            Duration::from_millis(settings.expiry.interval_ms),
            expirer,
            |expirer| async move { expirer.round().await },
        );
        let registry = metrics.registry.clone();
        Ok(Self {
            service: Service::build(settings, spec, &connections, registry, processor)?
                .every(sweeping)
                .every(expiring)
                .every(reading_gauges),
            metrics,
            finishing,
        })
    }

    /// The ops port (`/metrics`, `/healthz`, `/readyz`).
    pub fn ops_port(&self) -> u16 {
        self.service.ops_port()
    }

    /// The worker's metrics (tests read them).
    pub fn metrics(&self) -> WorkerMetrics {
        self.metrics.clone()
    }

    /// Consumes until `shutdown` fires: the run in hand is finished and committed, then the
    /// consumer leaves its group.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let consumed = self.service.run_until_stopped(shutdown).await;
        // Nothing is written any more: take the last written orders out of the outbox.
        self.finishing.finish().await;
        consumed
    }
}

fn backoff(settings: &WorkerSettings) -> Backoff {
    Backoff {
        first: Duration::from_millis(settings.retry_backoff_ms),
        max: Duration::from_millis(settings.retry_backoff_max_ms),
    }
}

/// Shutdown came while a run was in hand; nothing of it is committed.
struct Stopped;

/// A transient failure of one attempt.
#[derive(Debug, thiserror::Error)]
enum Transient {
    #[error(transparent)]
    Stock(#[from] stock::StockError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Kafka(#[from] kafka::KafkaError),
    #[error("the store returned no outcome for order {0}")]
    NoOutcome(OrderId),
}

struct Processor {
    ledger: StockLedger,
    finished: stock::Marks,
    store: Store,
    dead_letters: DeadLetterPublisher,
    /// Verifies the signature of every message before anything of it is believed.
    keyring: Keyring,
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

/// A run made ready while the run before it was written: its orders decoded (the poison
/// already dead-lettered) and their reservations claimed.
struct Prepared {
    /// Each order, with the position of its message in the run, and its trace.
    orders: Vec<(usize, OrderRequested, TraceContext)>,
    /// The orders whose reservations were released, or why the claim failed (the first
    /// attempt to write the run then fails with it, and the next claims again).
    released: Result<HashSet<OrderId>, Transient>,
}

impl Handler for Processor {
    /// Decoded and claimed, or shutdown came first.
    type Prepared = Result<Prepared, Stopped>;

    /// Decodes the run and claims its orders' reservations in Redis. Both may go ahead of the
    /// run before: a claim is idempotent, and an order claimed but not written is delivered
    /// again (its offset is not committed).
    async fn prepare(
        &self,
        run: &[OwnedMessage],
        shutdown: &CancellationToken,
    ) -> Result<Prepared, Stopped> {
        let orders = self.decode(run, shutdown).await?;
        let released = self.claim(orders.iter().map(|(_, order, _)| order)).await;
        Ok(Prepared { orders, released })
    }

    async fn handle(
        &self,
        run: &[OwnedMessage],
        prepared: Result<Prepared, Stopped>,
        shutdown: &CancellationToken,
    ) -> Handled {
        let Ok(Prepared { orders, released }) = prepared else {
            return Handled::Stopped { settled: 0 };
        };
        let orders: Vec<Incoming<'_>> = orders
            .into_iter()
            .map(|(at, order, trace)| Incoming {
                order,
                message: &run[at],
                trace,
            })
            .collect();
        match self.write_with_retries(&orders, released, shutdown).await {
            Ok(()) => Handled::All,
            Err(Stopped) => Handled::Stopped { settled: 0 },
        }
    }
}

impl Processor {
    /// The orders of the run, each with its message's position and trace; every message that
    /// is not one (forged, or not a valid order) is dead-lettered with its reason.
    async fn decode(
        &self,
        run: &[OwnedMessage],
        shutdown: &CancellationToken,
    ) -> Result<Vec<(usize, OrderRequested, TraceContext)>, Stopped> {
        let mut orders = Vec::with_capacity(run.len());
        for (at, message) in run.iter().enumerate() {
            let trace = kafka::trace::continued(message);
            let span = || {
                tracing::info_span!(
                    "message",
                    partition = message.partition(),
                    offset = message.offset(),
                    trace_id = %trace.trace_id(),
                    span_id = %trace.span_id(),
                )
            };
            let signed = kafka::signature::order_of(message);
            if let Err(forgery) = kafka::signature::verify(message, &self.keyring, &signed) {
                self.forged(message, &forgery, &trace, shutdown)
                    .instrument(span())
                    .await?;
                continue;
            }
            match OrderRequested::decode(message.payload().unwrap_or_default()) {
                Ok(order) => orders.push((at, order, trace)),
                Err(error) => {
                    let span = span();
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
        Ok(orders)
    }

    /// Dead-letters a message whose signature does not check out as `forged`, after counting
    /// it and logging the key id it named. Its bytes are not decoded: the order they may name,
    /// its buyer and its reservation are nobody's word. Nor is it taken out of the outbox, so a
    /// real order that only lost its signature (a producer of an older build) is published
    /// again, signed, by the sweeper.
    async fn forged(
        &self,
        message: &OwnedMessage,
        forgery: &Forgery,
        trace: &TraceContext,
        shutdown: &CancellationToken,
    ) -> Result<(), Stopped> {
        let kind = forgery.kind().as_str();
        self.metrics.forged.with_label_values(&[kind]).inc();
        tracing::warn!(
            problem = kind,
            key_id = forgery.key_id().map_or("-", |id| id.as_str()),
            error = %forgery,
            "forged message: dead-lettered, never written"
        );
        self.dead_letter(
            message,
            ReasonCode::Forged,
            &forgery.to_string(),
            trace,
            shutdown,
        )
        .await
    }

    /// Writes the orders, retrying a transient failure in place with backoff; once the
    /// attempts run out, dead-letters them all as retryable. The first attempt takes the claim
    /// made when the run was prepared; a retry claims again.
    async fn write_with_retries(
        &self,
        orders: &[Incoming<'_>],
        mut released: Result<HashSet<OrderId>, Transient>,
        shutdown: &CancellationToken,
    ) -> Result<(), Stopped> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self.write(orders, released).await {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            if attempt >= self.max_attempts {
                tracing::error!(%error, attempt, "retries exhausted; dead-lettering batch");
                for incoming in orders {
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
                return Ok(());
            }
            self.metrics.retries.inc();
            let delay = self.backoff.delay(attempt);
            tracing::warn!(%error, attempt, ?delay, "transient failure; retrying batch");
            tokio::select! {
                _ = shutdown.cancelled() => return Err(Stopped),
                _ = tokio::time::sleep(delay) => {}
            }
            released = self.claim(orders.iter().map(|i| &i.order)).await;
        }
    }

    /// One attempt at the run's effects, given its claim; every step is idempotent, so an
    /// attempt may repeat a previous one that failed half-way.
    async fn write(
        &self,
        orders: &[Incoming<'_>],
        released: Result<HashSet<OrderId>, Transient>,
    ) -> Result<(), Transient> {
        if orders.is_empty() {
            return Ok(());
        }
        let released = released?;
        let all = orders.len();
        let orders = Self::skip_released(orders, &released);
        let written = self
            .store
            .persist_batch(orders.iter().map(|incoming| &incoming.order))
            .await?;
        for incoming in &orders {
            let id = &incoming.order.order_id;
            let outcome = written
                .get(id)
                .copied()
                .ok_or_else(|| Transient::NoOutcome(id.clone()))?;
            self.settle(incoming, outcome).await?;
        }
        // Each has a row, or its dead letter is acknowledged: the sweeper has nothing left to
        // publish for it. They leave the outbox with the next flush, SKU by SKU.
        for incoming in &orders {
            self.finished.mark(incoming.order.order_id.clone());
        }
        // Counted once the attempt went through, not once per attempt.
        self.metrics
            .persisted
            .with_label_values(&["released"])
            .inc_by((all - orders.len()) as u64);
        Ok(())
    }

    /// Claims the orders' reservations, SKU by SKU, so that the gateway can no longer release
    /// them; the orders whose reservations it had released already. It released those after a
    /// failed produce and told the buyer 503, so no 202 stands behind them: they get no row,
    /// which leaves the buyer's idempotency key free for the retry that may follow.
    async fn claim<'o>(
        &self,
        orders: impl Iterator<Item = &'o OrderRequested>,
    ) -> Result<HashSet<OrderId>, Transient> {
        let mut released = HashSet::new();
        for (sku, ids) in ids_by_sku(orders) {
            let claims = self.ledger.claim(sku, &ids).await?;
            for (id, claim) in ids.into_iter().zip(claims) {
                match claim {
                    ClaimOutcome::Released => {
                        released.insert(id.clone());
                    }
                    ClaimOutcome::Corrupt => tracing::error!(
                        order_id = %id,
                        "the reservation record cannot be read; the database decides"
                    ),
                    ClaimOutcome::Claimed | ClaimOutcome::Unknown => {}
                }
            }
        }
        Ok(released)
    }

    /// The orders the worker may write: all but the `released` ones, which are logged.
    fn skip_released<'o, 'm>(
        orders: &'o [Incoming<'m>],
        released: &HashSet<OrderId>,
    ) -> Vec<&'o Incoming<'m>> {
        let mut kept = Vec::with_capacity(orders.len());
        for incoming in orders {
            if released.contains(&incoming.order.order_id) {
                incoming.span().in_scope(|| {
                    tracing::info!("skipping an order whose reservation was released");
                });
            } else {
                kept.push(incoming);
            }
        }
        kept
    }

    /// Acts on how one order was written: counts it, gives the units of a refused order back
    /// to Redis, dead-letters the anomalies.
    async fn settle(&self, incoming: &Incoming<'_>, written: Written) -> Result<(), Transient> {
        let span = incoming.span();
        match written {
            Written::Accepted => {
                self.count("accepted");
                if tracing::enabled!(tracing::Level::DEBUG) {
                    span.in_scope(|| tracing::debug!("order written, awaiting payment"));
                }
            }
            Written::Failed(reason) => {
                self.count("failed");
                span.in_scope(|| tracing::info!(%reason, "order failed"));
                match reason {
                    // The database is the authority on stock: give the units back to Redis.
                    ReasonCode::DbOutOfStock => {
                        self.ledger
                            .release(&incoming.order.order_id, ReleaseMode::Compensate)
                            .instrument(span)
                            .await?;
                        self.metrics.compensations.inc();
                    }
                    // Anomalies go to the dead-letter topic, where an operator sees them and
                    // the replayer compensates.
                    ReasonCode::UnknownSku => {
                        self.publish(incoming, reason, "no sale for this sku")
                            .instrument(span)
                            .await?;
                    }
                    // A row failed before this delivery by the replayer, which marks an order
                    // failed and then releases its reservation (`Store::mark_failed`): nothing
                    // is left for the worker to give back or to report. Listed one by one so
                    // that a new reason is placed here or above on purpose.
                    ReasonCode::Undecodable
                    | ReasonCode::Oversized
                    | ReasonCode::UnsupportedVersion
                    | ReasonCode::InvalidField
                    | ReasonCode::ReservationReleased
                    | ReasonCode::RetriesExhausted
                    | ReasonCode::ReplayAttemptsExhausted
                    | ReasonCode::IdempotencyConflict
                    | ReasonCode::UnreadableState
                    | ReasonCode::PaymentWindowElapsed
                    | ReasonCode::Forged => {}
                }
            }
            Written::Unreadable => {
                self.count("unreadable");
                self.publish(
                    incoming,
                    ReasonCode::UnreadableState,
                    "the order's row holds a status or reason this build cannot read",
                )
                .instrument(span)
                .await?;
            }
            Written::KeyConflict => {
                self.count("key_conflict");
                span.in_scope(|| tracing::warn!("idempotency key held by another order"));
                self.publish(
                    incoming,
                    ReasonCode::IdempotencyConflict,
                    "another order holds this user, sku and idempotency key",
                )
                .instrument(span)
                .await?;
            }
        }
        Ok(())
    }

    fn count(&self, outcome: &str) {
        self.metrics.persisted.with_label_values(&[outcome]).inc();
    }

    async fn publish(
        &self,
        incoming: &Incoming<'_>,
        reason: ReasonCode,
        error: &str,
    ) -> Result<(), Transient> {
        Ok(self
            .publish_letter(incoming.message, reason, error, &incoming.trace)
            .await?)
    }

    /// Dead-letters `message`, retrying the publish until it is acknowledged or shutdown.
    async fn dead_letter(
        &self,
        message: &OwnedMessage,
        reason: ReasonCode,
        error: &str,
        trace: &TraceContext,
        shutdown: &CancellationToken,
    ) -> Result<(), Stopped> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.publish_letter(message, reason, error, trace).await {
                Ok(()) => return Ok(()),
                Err(publish_error) => {
                    let delay = self.backoff.delay(attempt);
                    tracing::error!(%publish_error, ?delay, "dead-letter publish failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Err(Stopped),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Publishes the dead letter of `message` once and counts it.
    async fn publish_letter(
        &self,
        message: &OwnedMessage,
        reason: ReasonCode,
        error: &str,
        trace: &TraceContext,
    ) -> Result<(), kafka::KafkaError> {
        let replays = replays_of(message);
        let letter = DeadLetter {
            reason,
            error: error.to_owned(),
            attempts: replays.saturating_add(1),
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

/// The order ids of `orders`, grouped by SKU (the unit of every Redis script call).
fn ids_by_sku<'o>(
    orders: impl Iterator<Item = &'o OrderRequested>,
) -> BTreeMap<&'o SkuId, Vec<&'o OrderId>> {
    let mut by_sku: BTreeMap<&SkuId, Vec<&OrderId>> = BTreeMap::new();
    for order in orders {
        by_sku
            .entry(&order.sku_id)
            .or_default()
            .push(&order.order_id);
    }
    by_sku
}

/// How many times the replayer has republished `message` (its `seckill-replays` header; none on
/// a first delivery). An unreadable count is reported and counted as 0: the letter then starts
/// its replays over, which stays bounded by `replayer.max_replays`.
fn replays_of(message: &OwnedMessage) -> u32 {
    let Some(value) = message_header(message, header::REPLAYS) else {
        return 0;
    };
    match std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()) {
        Some(replays) => replays,
        None => {
            tracing::warn!(
                header = header::REPLAYS,
                value = %String::from_utf8_lossy(value),
                "unreadable replay count; counting from 0"
            );
            0
        }
    }
}
