//! The consumer loop against the embedded broker: a run is prepared while the run before it is
//! handled, runs are handled one at a time in offset order, at shutdown what was prepared ahead
//! is neither handled nor committed, and a member joining mid-stream (partitions revoked while
//! runs wait, prepared) leaves no message unhandled.

// Test helpers panic to report, like the tests themselves.
#![allow(clippy::unwrap_used)]

use consumer_runtime::{Connections, Handled, Handler, Service, Spec};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use rdkafka::Message;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::{eventually, TestContext};
use tokio_util::sync::CancellationToken;

/// What the handler saw, in order: (step, partition, offset of the run's first message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Prepared,
    HandleStarted,
    HandleEnded,
}

type Log = Arc<Mutex<Vec<(Step, i32, i64)>>>;

/// How long each handle holds its run.
#[derive(Clone, Copy)]
enum Hold {
    For(Duration),
    /// Until shutdown; then it finishes its run.
    UntilShutdown,
}

/// A handler that only records what it is given.
struct Recorder {
    log: Log,
    hold: Hold,
}

impl Recorder {
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
        match self.hold {
            Hold::For(time) => tokio::time::sleep(time).await,
            Hold::UntilShutdown => shutdown.cancelled().await,
        }
        self.record(Step::HandleEnded, run);
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

/// Runs a service with `recorder`, one message per batch, until `shutdown`.
async fn run(
    ctx: &TestContext,
    recorder: Recorder,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let group = &ctx.settings.kafka.worker_group;
    let connections = Connections::connect(&ctx.settings, group, None)
        .await
        .unwrap();
    let spec = Spec {
        name: "recorder",
        topic: ctx.settings.kafka.orders_topic.clone(),
        batch_max: 1,
        batch_wait: Duration::from_millis(1),
    };
    let registry = prometheus::Registry::new();
    let service = Service::build(&ctx.settings, spec, connections, registry, recorder).unwrap();
    tokio::spawn(service.run_until_stopped(shutdown))
}

/// The group's lag on the test's topic: what it has not committed.
async fn lag(ctx: &TestContext) -> i64 {
    testkit::group_lag(
        &ctx.endpoint(),
        &ctx.settings.kafka.worker_group,
        &ctx.settings.kafka.orders_topic,
    )
    .await
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
        Recorder {
            log: log.clone(),
            hold: Hold::For(Duration::from_millis(300)),
        },
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
    assert_eq!(lag(&ctx).await, 0, "every handled run is committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_shutdown_the_run_in_hand_is_finished_and_the_one_prepared_ahead_is_not_handled() {
    let ctx = TestContext::new().await.unwrap();
    queue(&ctx, 3).await;
    let log = Log::default();
    let shutdown = CancellationToken::new();
    let service = run(
        &ctx,
        Recorder {
            log: log.clone(),
            hold: Hold::UntilShutdown,
        },
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
    assert_eq!(lag(&ctx).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_joining_mid_stream_leaves_no_message_unhandled() {
    let ctx = TestContext::new().await.unwrap();
    const PER_KEY: usize = 20;
    let keys = ["key-a", "key-b", "key-c", "key-d"];
    queue_keyed(&ctx, &keys, PER_KEY).await;
    let total = (PER_KEY * keys.len()) as i64;
    let log = Log::default();
    let recorder = || Recorder {
        log: log.clone(),
        hold: Hold::For(Duration::from_millis(40)),
    };
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
    eventually(
        Duration::from_secs(60),
        "every message committed",
        || async { (lag(&ctx).await == 0).then_some(()) },
    )
    .await;
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
