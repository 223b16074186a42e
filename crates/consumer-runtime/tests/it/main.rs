//! The consumer loop against the embedded broker: a run is prepared while the run before it is
//! handled, runs are handled one at a time in offset order, at shutdown what was prepared ahead
//! is neither handled nor committed, a member joining mid-stream (partitions revoked while
//! runs wait, prepared) leaves no message unhandled, and a run prepared before its partition
//! was revoked is not handled, even once the partition is back.

// Test helpers panic to report, like the tests themselves.
#![allow(clippy::unwrap_used)]

use connections::Connections;
use consumer_runtime::{ConsumerMetrics, Handled, Handler, Service, Spec};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use rdkafka::Message;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::{eventually, TestContext};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What the handler saw, in order: (step, partition, offset of the run's first message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Prepared,
    HandleStarted,
    HandleEnded,
}

type Log = Arc<Mutex<Vec<(Step, i32, i64)>>>;

/// Every offset of the runs handled to their end, by partition.
type Offsets = Arc<Mutex<BTreeMap<i32, BTreeSet<i64>>>>;

/// How long each handle holds its run.
#[derive(Clone)]
enum Hold {
    For(Duration),
    /// Until shutdown; then it finishes its run.
    UntilShutdown,
    /// Until the gate is opened (or shutdown).
    UntilOpen(watch::Receiver<bool>),
}

/// A handler that only records what it is given.
struct Recorder {
    log: Log,
    hold: Hold,
    offsets: Offsets,
}

impl Recorder {
    /// A recorder writing into `log` that holds each run as `hold` says.
    fn new(log: &Log, hold: Hold) -> Self {
        Self {
            log: log.clone(),
            hold,
            offsets: Offsets::default(),
        }
    }

    fn record(&self, step: Step, run: &[OwnedMessage]) {
        let entry = (step, run[0].partition(), run[0].offset());
        self.log.lock().unwrap().push(entry);
    }
}

impl Handler for Recorder {
    type Prepared = i64;

    async fn prepare(&self, run: &[OwnedMessage], _shutdown: &CancellationToken) -> i64 {
        self.record(Step::Prepared, run);
        run[0].offset()
    }

    async fn handle(
        &self,
        run: &[OwnedMessage],
        prepared: i64,
        shutdown: &CancellationToken,
    ) -> Handled {
        assert_eq!(
            prepared,
            run[0].offset(),
            "a run comes with its own preparation"
        );
        self.record(Step::HandleStarted, run);
        match &self.hold {
            Hold::For(time) => tokio::time::sleep(*time).await,
            Hold::UntilShutdown => shutdown.cancelled().await,
            Hold::UntilOpen(gate) => {
                let mut gate = gate.clone();
                tokio::select! {
                    _ = gate.wait_for(|open| *open) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }
        self.record(Step::HandleEnded, run);
        let mut offsets = self.offsets.lock().unwrap();
        let partition = offsets.entry(run[0].partition()).or_default();
        partition.extend(run.iter().map(|message| message.offset()));
        Handled::All
    }
}

/// Queues `n` messages under each of `keys` on the test's orders topic, with one producer.
async fn queue_keyed(ctx: &TestContext, keys: &[&str], n: usize) {
    let producer = kafka::producer(&ctx.endpoint()).unwrap();
    for i in 0..n {
        for key in keys {
            let payload = format!("message {i}");
            producer
                .send(
                    FutureRecord::to(&ctx.settings.kafka.orders_topic)
                        .key(key.as_bytes())
                        .payload(payload.as_bytes()),
                    Timeout::After(Duration::from_secs(10)),
                )
                .await
                .map_err(|(error, _)| error)
                .unwrap();
        }
    }
}

/// Queues `n` messages on one partition of the test's orders topic.
async fn queue(ctx: &TestContext, n: usize) {
    queue_keyed(ctx, &["one-key"], n).await;
}

/// Queues `n` messages on each of the first `partitions` partitions of the test's orders topic.
async fn queue_on_partitions(ctx: &TestContext, partitions: i32, n: i64) {
    let producer = kafka::producer(&ctx.endpoint()).unwrap();
    for i in 0..n {
        for partition in 0..partitions {
            let payload = format!("message {i}");
            producer
                .send(
                    FutureRecord::<(), _>::to(&ctx.settings.kafka.orders_topic)
                        .partition(partition)
                        .payload(payload.as_bytes()),
                    Timeout::After(Duration::from_secs(10)),
                )
                .await
                .map_err(|(error, _)| error)
                .unwrap();
        }
    }
}

/// How a test's service batches.
struct Batching {
    max: usize,
    wait: Duration,
}

/// One message per batch.
const ONE_BY_ONE: Batching = Batching {
    max: 1,
    wait: Duration::from_millis(1),
};

/// Runs a service with `recorder`, one message per batch, until `shutdown`.
async fn run(
    ctx: &TestContext,
    recorder: Recorder,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    start(ctx, recorder, ONE_BY_ONE, shutdown).await.0
}

/// Runs a service with `recorder`, batching as `batching` says, until `shutdown`; with its
/// consumer metrics.
async fn start(
    ctx: &TestContext,
    recorder: Recorder,
    batching: Batching,
    shutdown: CancellationToken,
) -> (tokio::task::JoinHandle<anyhow::Result<()>>, ConsumerMetrics) {
    let connections = Connections::connect(&ctx.settings, None).await.unwrap();
    let spec = Spec {
        name: "recorder",
        topic: ctx.settings.kafka.orders_topic.clone(),
        group: ctx.settings.kafka.worker_group.clone(),
        batch_max: batching.max,
        batch_wait: batching.wait,
    };
    let registry = prometheus::Registry::new();
    let service = Service::build(&ctx.settings, spec, &connections, registry, recorder).unwrap();
    let metrics = service.metrics();
    (tokio::spawn(service.run_until_stopped(shutdown)), metrics)
}

/// Waits until the group has committed every message of the topic.
async fn all_committed(ctx: &TestContext) {
    let kafka = &ctx.settings.kafka;
    testkit::until_committed(
        &ctx.endpoint(),
        &kafka.worker_group,
        &kafka.orders_topic,
        Duration::from_secs(60),
    )
    .await;
}

/// Where `step` of the run at `offset` is in the log of a one-partition test.
fn position(log: &[(Step, i32, i64)], step: Step, offset: i64) -> usize {
    log.iter()
        .position(|&(s, _, o)| (s, o) == (step, offset))
        .unwrap_or_else(|| panic!("no {step:?} of offset {offset} in {log:?}"))
}

/// Whether the log of a one-partition test has `step` of the run at `offset`.
fn has(log: &[(Step, i32, i64)], step: Step, offset: i64) -> bool {
    log.iter().any(|&(s, _, o)| (s, o) == (step, offset))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_run_is_prepared_while_the_one_before_is_handled_and_handled_in_order() {
    let ctx = TestContext::new().await.unwrap();
    const N: i64 = 4;
    queue(&ctx, N as usize).await;
    let log = Log::default();
    let shutdown = CancellationToken::new();
    let service = run(
        &ctx,
        Recorder::new(&log, Hold::For(Duration::from_millis(300))),
        shutdown.clone(),
    )
    .await;
    eventually(Duration::from_secs(30), "every run handled", || async {
        has(&log.lock().unwrap(), Step::HandleEnded, N - 1).then_some(())
    })
    .await;
    shutdown.cancel();
    service.await.unwrap().unwrap();
    let log = log.lock().unwrap().clone();
    for offset in 0..N {
        // Handled one at a time, in offset order, each after its own preparation.
        assert!(
            position(&log, Step::Prepared, offset) < position(&log, Step::HandleStarted, offset)
        );
        assert!(
            position(&log, Step::HandleStarted, offset) < position(&log, Step::HandleEnded, offset)
        );
        if offset > 0 {
            assert!(
                position(&log, Step::HandleEnded, offset - 1)
                    < position(&log, Step::HandleStarted, offset),
                "{log:?}"
            );
            // The run was prepared while the one before was being handled.
            assert!(
                position(&log, Step::Prepared, offset)
                    < position(&log, Step::HandleEnded, offset - 1),
                "{log:?}"
            );
        }
    }
    assert_eq!(ctx.worker_lag().await, 0, "every handled run is committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_shutdown_the_run_in_hand_is_finished_and_the_one_prepared_ahead_is_not_handled() {
    let ctx = TestContext::new().await.unwrap();
    queue(&ctx, 3).await;
    let log = Log::default();
    let shutdown = CancellationToken::new();
    let service = run(
        &ctx,
        Recorder::new(&log, Hold::UntilShutdown),
        shutdown.clone(),
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the second run prepared while the first is in hand",
        || async {
            let log = log.lock().unwrap();
            (has(&log, Step::HandleStarted, 0) && has(&log, Step::Prepared, 1)).then_some(())
        },
    )
    .await;
    shutdown.cancel();
    service.await.unwrap().unwrap();
    let log = log.lock().unwrap().clone();
    assert!(has(&log, Step::HandleEnded, 0), "{log:?}");
    assert!(
        !log.iter()
            .any(|&(step, _, offset)| step == Step::HandleStarted && offset > 0),
        "nothing prepared ahead is handled after shutdown: {log:?}"
    );
    // The first run is committed; the two after it wait for the partition's next owner.
    assert_eq!(ctx.worker_lag().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_joining_mid_stream_leaves_no_message_unhandled() {
    let ctx = TestContext::new().await.unwrap();
    const PER_KEY: usize = 20;
    let keys = ["key-a", "key-b", "key-c", "key-d"];
    queue_keyed(&ctx, &keys, PER_KEY).await;
    let total = (PER_KEY * keys.len()) as i64;
    let log = Log::default();
    let recorder = || Recorder::new(&log, Hold::For(Duration::from_millis(40)));
    let shutdown = CancellationToken::new();
    let first = run(&ctx, recorder(), shutdown.clone()).await;
    eventually(
        Duration::from_secs(30),
        "the first member handling",
        || async {
            let handled = log
                .lock()
                .unwrap()
                .iter()
                .filter(|(step, _, _)| *step == Step::HandleEnded)
                .count();
            (handled >= 5).then_some(())
        },
    )
    .await;
    // A second member joins: partitions move while runs of them wait, prepared.
    let second = run(&ctx, recorder(), shutdown.clone()).await;
    all_committed(&ctx).await;
    shutdown.cancel();
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    // Every offset of every partition was handled (by one member or both): none skipped.
    let mut handled = std::collections::BTreeMap::<i32, std::collections::BTreeSet<i64>>::new();
    for &(step, partition, offset) in log.lock().unwrap().iter() {
        if step == Step::HandleEnded {
            handled.entry(partition).or_default().insert(offset);
        }
    }
    let mut count = 0;
    for (partition, offsets) in &handled {
        let expected: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(
            offsets.iter().copied().collect::<Vec<_>>(),
            expected,
            "partition {partition}"
        );
        count += offsets.len() as i64;
    }
    assert_eq!(count, total, "{handled:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_prepared_before_its_partition_was_revoked_is_not_handled_even_once_the_partition_is_back(
) {
    let mut ctx = TestContext::new().await.unwrap();
    // Four partitions: the member that joins takes two, so at least one of them is not the one
    // whose run the first member has in hand.
    const PARTITIONS: i32 = 4;
    const PER_PARTITION: i64 = 5;
    let topic = testkit::unique("revoked-");
    ctx.broker.create_topic(&topic, PARTITIONS, 1).unwrap();
    ctx.settings.kafka.orders_topic = topic;
    queue_on_partitions(&ctx, PARTITIONS, PER_PARTITION).await;
    let every_offset: BTreeSet<i64> = (0..PER_PARTITION).collect();
    // One batch takes every message queued, so each partition's run is prepared at once.
    let whole = || Batching {
        max: 100,
        wait: Duration::from_secs(1),
    };

    let (open, gate) = watch::channel(false);
    let first_log = Log::default();
    let first_offsets = Offsets::default();
    let first_stop = CancellationToken::new();
    let first_recorder = Recorder {
        log: first_log.clone(),
        hold: Hold::UntilOpen(gate),
        offsets: first_offsets.clone(),
    };
    let (first, first_metrics) = start(&ctx, first_recorder, whole(), first_stop.clone()).await;
    let in_hand = eventually(
        Duration::from_secs(30),
        "the first member holding a run, a run of every partition prepared",
        || async {
            let log = first_log.lock().unwrap();
            let prepared: BTreeSet<i32> = log
                .iter()
                .filter(|(step, _, _)| *step == Step::Prepared)
                .map(|&(_, partition, _)| partition)
                .collect();
            let in_hand = log
                .iter()
                .find(|(step, _, _)| *step == Step::HandleStarted)
                .map(|&(_, partition, _)| partition)?;
            (prepared.len() == PARTITIONS as usize).then_some(in_hand)
        },
    )
    .await;
    assert_eq!(first_metrics.assigned.get(), i64::from(PARTITIONS));

    // A second member joins: two partitions are revoked from the first while its runs of them
    // wait, prepared, and the second member handles and commits them.
    let second_offsets = Offsets::default();
    let second_stop = CancellationToken::new();
    let second_recorder = Recorder {
        log: Log::default(),
        hold: Hold::For(Duration::from_millis(10)),
        offsets: second_offsets.clone(),
    };
    let (second, _) = start(&ctx, second_recorder, whole(), second_stop.clone()).await;
    let moved: BTreeSet<i32> = eventually(
        Duration::from_secs(60),
        "two partitions moved to the second member and handled there",
        || async {
            let handled = second_offsets.lock().unwrap().clone();
            let done = first_metrics.assigned.get() == 2
                && handled.len() == 2
                && handled.values().all(|offsets| *offsets == every_offset);
            done.then(|| handled.keys().copied().collect())
        },
    )
    .await;

    // The second member leaves: its partitions go back to the first, assigned anew, while the
    // first still holds its run.
    second_stop.cancel();
    second.await.unwrap().unwrap();
    eventually(
        Duration::from_secs(60),
        "the partitions back with the first member",
        || async { (first_metrics.assigned.get() == i64::from(PARTITIONS)).then_some(()) },
    )
    .await;
    open.send(true).unwrap();
    all_committed(&ctx).await;
    first_stop.cancel();
    first.await.unwrap().unwrap();

    let log = first_log.lock().unwrap().clone();
    let revoked_while_waiting: Vec<i32> = moved.iter().copied().filter(|&p| p != in_hand).collect();
    assert!(
        !revoked_while_waiting.is_empty(),
        "moved {moved:?}, in hand {in_hand}"
    );
    for &partition in &revoked_while_waiting {
        assert!(
            log.contains(&(Step::Prepared, partition, 0)),
            "the first member prepared partition {partition}'s run before it was revoked: {log:?}"
        );
    }
    // The first member handled its run in hand and the partitions it kept, every offset once,
    // and nothing of the partitions revoked while their runs waited.
    let kept_or_in_hand: Vec<i32> = (0..PARTITIONS)
        .filter(|p| !revoked_while_waiting.contains(p))
        .collect();
    let handled = first_offsets.lock().unwrap().clone();
    assert_eq!(
        handled.keys().copied().collect::<Vec<_>>(),
        kept_or_in_hand,
        "{log:?}"
    );
    assert!(handled.values().all(|offsets| *offsets == every_offset));
    let handled_runs = log
        .iter()
        .filter(|(step, _, _)| *step == Step::HandleStarted)
        .count();
    assert_eq!(handled_runs, kept_or_in_hand.len(), "{log:?}");
    assert_eq!(
        handled.values().map(BTreeSet::len).sum::<usize>(),
        kept_or_in_hand.len() * PER_PARTITION as usize
    );
}
