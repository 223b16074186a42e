//! The one skeleton of seckill's Kafka consumers (the order worker, the dead-letter replayer,
//! and the periodic work that joins them).
//!
//! A service brings only what is its own: a [`Handler`] that says what to do with one
//! partition's run of messages, and, if it has any, [`Periodic`] tasks. The runtime does the
//! rest the same way for every service:
//!
//! - opens the service's consumer in its group, over the brokers of the service's
//!   [`Connections`];
//! - subscribes, reads batches, splits them into per-partition runs in offset order;
//! - hands a run over only while its partition is still assigned as it was when the run was
//!   fetched: librdkafka's rebalance callbacks tell the consumer's context, and a run of a
//!   partition revoked while it waited is dropped (its next owner reads it again from the
//!   group's committed offset);
//! - commits the offsets of what the handler settled, only after the handler returned (its
//!   effects are durable), on the blocking pool rather than the async threads; a failed commit
//!   is logged and counted, and the partition's next owner redelivers;
//! - serves `/healthz`, `/readyz` (Redis, database, brokers; one answer shape for every
//!   service) and `/metrics` on the ops port;
//! - keeps the lag gauge current on a timer, and the assigned-partitions gauge at every
//!   rebalance;
//! - on shutdown, lets the handler finish or hand back the run in hand, commits what was
//!   settled, leaves the group and stops the ops server and the periodic tasks.
//!
//! ```text
//! let connections = Connections::connect(&settings, None).await?;
//! let handler = Processor::new(&connections, ...);
//! let service = Service::build(&settings, spec, &connections, registry, handler)?
//!     .every(Periodic::new("sweep", period, move || sweep()));
//! service.run_until_stopped(shutdown).await
//! ```

mod assignment;
mod metrics;
mod periodic;

pub use metrics::ConsumerMetrics;
pub use periodic::Periodic;

use anyhow::Context;
use assignment::{Assignments, Generation};
use connections::Connections;
use kafka::consume::{by_partition, next_batch};
use kafka::lag::LagReporter;
use kafka::PartitionOffsets;
use prometheus::Registry;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use settings::Settings;
use std::collections::HashMap;
use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often the lag gauge is refreshed.
const LAG_EVERY: Duration = Duration::from_secs(5);

/// The runtime's consumer: its context records the assignment from the rebalance callbacks.
type GroupConsumer = StreamConsumer<Assignments>;

/// A partition's run of messages, in offset order, with the generation of the partition's
/// assignment the messages were received under.
struct Run {
    messages: Vec<OwnedMessage>,
    generation: Generation,
}

/// What a handler did with a run of messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// The effect of every message is durable: commit the whole run.
    All,
    /// Shutdown came first: the effects of the first `settled` messages are durable, the rest
    /// are handed back (not committed; the partition's next owner reads them again).
    Stopped {
        /// How many messages, from the start of the run, may be committed.
        settled: usize,
    },
}

/// What one consumer does with its messages: the part that differs between services.
///
/// Each run goes through two steps. [`Handler::prepare`] may go ahead: the runtime fetches the
/// next batch and prepares its runs while the run before is still being handled, so that a
/// handler whose work goes through two systems one after the other (the order worker: Redis,
/// then the database) keeps both busy. [`Handler::handle`] runs one run at a time, in offset
/// order, and its return is what the runtime commits.
pub trait Handler: Send + Sync + 'static {
    /// What preparing a run found out, handed to [`Handler::handle`] with the run.
    type Prepared: Send;

    /// The part of a run's work that may be done while the run before it is handled. It must
    /// not depend on that run's effects, and it must be safe to do again: a prepared run that
    /// is not handled (shutdown came, or its partition was revoked while it waited) is
    /// delivered and prepared again. A handler with nothing to do ahead returns `()`.
    fn prepare(
        &self,
        run: &[OwnedMessage],
        shutdown: &CancellationToken,
    ) -> impl Future<Output = Self::Prepared> + Send;

    /// Handles one partition's run of messages, in offset order. Returns once the effects are
    /// durable (the runtime then commits), or on `shutdown` with how far it got. A message that
    /// cannot be processed is the handler's to settle (dead letter, skip with a metric): the
    /// runtime never retries or drops one on its own.
    fn handle(
        &self,
        run: &[OwnedMessage],
        prepared: Self::Prepared,
        shutdown: &CancellationToken,
    ) -> impl Future<Output = Handled> + Send;
}

/// Which topic a service consumes, in which group, and how it batches.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The service's name in logs ("order worker").
    pub name: &'static str,
    /// The topic to consume.
    pub topic: String,
    /// The consumer group.
    pub group: String,
    /// Most messages per batch.
    pub batch_max: usize,
    /// How long to let a batch fill once its first message arrived.
    pub batch_wait: Duration,
}

/// A consumer service, built and bound, not yet running.
pub struct Service<H> {
    spec: Spec,
    consumer: GroupConsumer,
    handler: H,
    readiness: telemetry::ops::Readiness,
    registry: Registry,
    metrics: ConsumerMetrics,
    ops: TcpListener,
    periodic: Vec<Periodic>,
}

impl<H: Handler> Service<H> {
    /// Binds the ops port (`http.host`:`http.ops_port`, 0 = any free port), registers the
    /// consumer metrics in `registry` (the service's own metrics are already in it), opens a
    /// consumer (not yet subscribed) in the spec's group on the brokers of `connections`, and
    /// answers `/readyz` over `connections`; the handler holds whatever of them it needs.
    pub fn build(
        settings: &Settings,
        spec: Spec,
        connections: &Connections,
        registry: Registry,
        handler: H,
    ) -> anyhow::Result<Self> {
        let address = format!("{}:{}", settings.http.host, settings.http.ops_port);
        let ops = TcpListener::bind(&address).with_context(|| format!("cannot bind {address}"))?;
        let readiness = connections.readiness(&spec.topic);
        let metrics = ConsumerMetrics::new(&registry);
        let consumer = kafka::consumer_with_context(
            &connections.endpoint,
            &spec.group,
            Assignments::new(metrics.assigned.clone()),
        )
        .context("kafka consumer")?;
        Ok(Self {
            metrics,
            consumer,
            spec,
            handler,
            readiness,
            registry,
            ops,
            periodic: Vec::new(),
        })
    }

    /// Adds a task run on a timer beside the consumer loop until shutdown.
    pub fn every(mut self, task: Periodic) -> Self {
        self.periodic.push(task);
        self
    }

    /// The ops port (`/metrics`, `/healthz`, `/readyz`).
    pub fn ops_port(&self) -> u16 {
        self.ops.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The consumer metrics (tests read them).
    pub fn metrics(&self) -> ConsumerMetrics {
        self.metrics.clone()
    }

    /// Consumes until `shutdown` fires: the run in hand is finished or handed back, what was
    /// settled is committed, then the consumer leaves its group and the ops server and periodic
    /// tasks stop.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Service {
            spec,
            consumer,
            handler,
            readiness,
            registry,
            metrics,
            ops,
            mut periodic,
        } = self;
        let name = spec.name;
        let consumer = Arc::new(consumer);
        consumer
            .subscribe(&[spec.topic.as_str()])
            .with_context(|| format!("subscribing to {}", spec.topic))?;
        let ops = tokio::spawn(telemetry::ops::serve(
            ops,
            registry,
            readiness,
            shutdown.clone(),
        ));
        // The assigned-partitions gauge is the consumer context's, set at every rebalance.
        let lag = Arc::new(LagReporter::new(
            consumer.clone(),
            spec.topic.clone(),
            metrics.lag.clone(),
        ));
        periodic.push(Periodic::of(
            "consumer lag",
            LAG_EVERY,
            lag,
            |lag| async move { Ok(lag.refresh().await?) },
        ));
        let tasks: Vec<_> = periodic
            .into_iter()
            .map(|task| tokio::spawn(task.run(shutdown.clone())))
            .collect();

        tracing::info!(topic = %spec.topic, "{name} consuming");
        metrics
            .offset_gaps
            .with_label_values(&[spec.topic.as_str()]);
        metrics
            .offsets_skipped
            .with_label_values(&[spec.topic.as_str()]);
        let mut consuming = Consuming {
            consumer: &consumer,
            handler: &handler,
            metrics: &metrics,
            next: HashMap::new(),
        };
        consuming.until_stopped(&spec, &shutdown).await;

        tracing::info!("{name} leaving its group");
        shutdown.cancel();
        for task in tasks {
            if let Err(error) = task.await {
                tracing::error!(%error, "a periodic task panicked");
            }
        }
        match ops.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(error = %format!("{error:#}"), "ops server failed"),
            Err(error) => tracing::error!(%error, "ops server panicked"),
        }
        // Leaving the group waits for the coordinator: off the async threads, like commits.
        let left = tokio::task::spawn_blocking(move || {
            consumer.unsubscribe();
            drop(consumer);
        });
        if let Err(error) = left.await {
            tracing::error!(%error, "leaving the group panicked");
        }
        tracing::info!("{name} stopped");
        Ok(())
    }
}

/// The consumer loop's state.
struct Consuming<'s, H> {
    consumer: &'s Arc<GroupConsumer>,
    handler: &'s H,
    metrics: &'s ConsumerMetrics,
    /// The offset each partition's next message should have, from what this member read.
    next: HashMap<(String, i32), i64>,
}

impl<H: Handler> Consuming<'_, H> {
    /// Batch after batch until shutdown: each partition's run handled, then its settled part
    /// committed. While a batch's runs are handled and committed, the next batch is fetched and
    /// its runs prepared; the rebalance callbacks run in that fetch, while runs wait.
    async fn until_stopped(&mut self, spec: &Spec, shutdown: &CancellationToken) {
        let (consumer, handler) = (self.consumer, self.handler);
        let assignments = consumer.context();
        let fetch_and_prepare = || async move {
            let batch = next_batch(
                consumer,
                spec.batch_max,
                spec.batch_wait,
                shutdown,
                |message| assignments.generation(message.topic(), message.partition()),
            )
            .await?;
            let mut runs = Vec::new();
            for (messages, generation) in by_partition(batch) {
                let run = Run {
                    messages,
                    generation,
                };
                if !still_held(assignments, &run) {
                    continue;
                }
                let prepared = handler.prepare(&run.messages, shutdown).await;
                runs.push((run, prepared));
            }
            Some(runs)
        };
        let Some(mut ready) = fetch_and_prepare().await else {
            return;
        };
        loop {
            let (handled_all, next) =
                tokio::join!(self.handle_runs(ready, shutdown), fetch_and_prepare());
            match next {
                Some(runs) if handled_all && !shutdown.is_cancelled() => ready = runs,
                // Shutdown: what was prepared ahead is not handled, and not committed.
                _ => return,
            }
        }
    }

    /// Handles prepared runs in turn, each committed as far as it was settled; false once a run
    /// was stopped by shutdown.
    async fn handle_runs(
        &mut self,
        runs: Vec<(Run, H::Prepared)>,
        shutdown: &CancellationToken,
    ) -> bool {
        for (run, prepared) in runs {
            if !still_held(self.consumer.context(), &run) {
                continue;
            }
            let run = run.messages;
            self.check_continuity(&run).await;
            let started = Instant::now();
            self.metrics.batch_size.observe(run.len() as f64);
            let handled = self.handler.handle(&run, prepared, shutdown).await;
            let settled = match handled {
                Handled::All => &run[..],
                Handled::Stopped { settled } => &run[..settled.min(run.len())],
            };
            self.commit(settled).await;
            self.metrics
                .batch_duration
                .observe(started.elapsed().as_secs_f64());
            if handled != Handled::All {
                return false;
            }
        }
        true
    }

    /// Asks the consumer `what` off the async threads (librdkafka answers from its own thread,
    /// and a committed offset may take a broker round trip); `None`, logged, when it cannot say.
    async fn ask<T: Send + 'static>(
        &self,
        what: &'static str,
        call: impl FnOnce(&GroupConsumer) -> rdkafka::error::KafkaResult<T> + Send + 'static,
    ) -> Option<T> {
        let consumer = Arc::clone(self.consumer);
        match tokio::task::spawn_blocking(move || call(&consumer)).await {
            Ok(Ok(answer)) => Some(answer),
            Ok(Err(error)) => {
                tracing::debug!(%error, "{what} not available");
                None
            }
            Err(error) => {
                tracing::warn!(%error, "{what} lookup failed");
                None
            }
        }
    }

    /// Notices messages the broker no longer has although the group never read them (retention,
    /// a broker that dropped data): the run starts past the group's committed offset, or skips
    /// offsets. Logged and counted; the reservation sweeper is what makes those orders whole.
    /// The committed offset is asked (off the async threads) only when the run does not start
    /// where this member's last run of the partition ended.
    async fn check_continuity(&mut self, run: &[OwnedMessage]) {
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            return;
        };
        let key = (first.topic().to_owned(), first.partition());
        if self.next.get(&key) != Some(&first.offset()) {
            if let Some(committed) = self.committed(first.topic(), first.partition()).await {
                if first.offset() > committed {
                    self.gap(first, committed);
                }
            }
        }
        for pair in run.windows(2) {
            if pair[1].offset() > pair[0].offset() + 1 {
                self.gap(&pair[1], pair[0].offset() + 1);
            }
        }
        self.next.insert(key, last.offset() + 1);
    }

    /// The group's committed offset of a partition; `None` when it has none or cannot say.
    async fn committed(&self, topic: &str, partition: i32) -> Option<i64> {
        let mut list = TopicPartitionList::new();
        list.add_partition(topic, partition);
        let committed = self
            .ask("committed offset", move |consumer| {
                consumer
                    .committed_offsets(list, Duration::from_secs(2))
                    .map(|list| list.elements().first().map(|e| e.offset()))
            })
            .await;
        match committed {
            Some(Some(Offset::Offset(committed))) => Some(committed),
            _ => None,
        }
    }

    fn gap(&self, next: &OwnedMessage, expected: i64) {
        let skipped = next.offset() - expected;
        self.metrics
            .offset_gaps
            .with_label_values(&[next.topic()])
            .inc();
        self.metrics
            .offsets_skipped
            .with_label_values(&[next.topic()])
            .inc_by(skipped as u64);
        tracing::error!(
            topic = next.topic(),
            partition = next.partition(),
            expected,
            got = next.offset(),
            skipped,
            "the broker no longer has messages this group never read"
        );
    }

    async fn commit(&self, settled: &[OwnedMessage]) {
        let offsets = PartitionOffsets::of(settled);
        if let Err(error) = kafka::commit_processed(self.consumer, &offsets).await {
            self.metrics.commit_failures.inc();
            // The partition may have moved to another member; it redelivers, which the
            // handlers' idempotent effects make harmless.
            tracing::warn!(%error, "offset commit failed");
        }
    }
}

/// Whether `run` may be prepared or handled: its partition is still assigned under the
/// generation its messages were received under. Otherwise the partition was revoked since (and
/// maybe assigned again): the run is dropped, uncommitted, and the partition's owner reads it
/// again from the group's committed offset. Handling it could commit past a run dropped before
/// it, or behind what the partition's owner committed in the meantime.
fn still_held(assignments: &Assignments, run: &Run) -> bool {
    let Some(first) = run.messages.first() else {
        return false;
    };
    if assignments.holds(first.topic(), first.partition(), run.generation) {
        return true;
    }
    tracing::info!(
        partition = first.partition(),
        offset = first.offset(),
        messages = run.messages.len(),
        "dropping a run of a partition revoked since it was fetched"
    );
    false
}
