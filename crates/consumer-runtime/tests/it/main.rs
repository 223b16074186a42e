//! The consumer loop against the embedded broker: a run is prepared while the run before it is
//! handled, runs are handled one at a time in offset order, and at shutdown what was prepared
//! ahead is neither handled nor committed.

// Test helpers panic to report, like the tests themselves.
#![allow(clippy::unwrap_used)]

use consumer_runtime::{Connections, Handled, Handler, Service, Spec};
use rdkafka::message::OwnedMessage;
use rdkafka::Message;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::{eventually, TestContext};
use tokio_util::sync::CancellationToken;

/// What the handler saw, in order: (step, offset of the run's first message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Prepared,
    HandleStarted,
    HandleEnded,
}

type Log = Arc<Mutex<Vec<(Step, i64)>>>;

/// A handler that only records: each handle takes `handle_for`, or, with `until_shutdown`,
/// waits for shutdown and then finishes its run.
struct Recorder {
    log: Log,
    handle_for: Duration,
    until_shutdown: bool,
}

impl Handler for Recorder {
    type Prepared = i64;

    async fn prepare(&self, run: &[OwnedMessage], _shutdown: &CancellationToken) -> i64 {
        let offset = run[0].offset();
        self.log.lock().unwrap().push((Step::Prepared, offset));
        offset
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
        self.log
            .lock()
            .unwrap()
            .push((Step::HandleStarted, prepared));
        if self.until_shutdown {
            shutdown.cancelled().await;
        } else {
            tokio::time::sleep(self.handle_for).await;
        }
        self.log.lock().unwrap().push((Step::HandleEnded, prepared));
        Handled::All
    }
}

/// Queues `n` messages on one partition of the test's orders topic.
async fn queue(ctx: &TestContext, n: usize) {
    for i in 0..n {
        testkit::produce(
            &ctx.endpoint(),
            &ctx.settings.kafka.orders_topic,
            b"one-key",
            format!("message {i}").as_bytes(),
        )
        .await
        .unwrap();
    }
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

fn position(log: &[(Step, i64)], step: Step, offset: i64) -> usize {
    log.iter()
        .position(|entry| *entry == (step, offset))
        .unwrap_or_else(|| panic!("no {step:?} of offset {offset} in {log:?}"))
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
            handle_for: Duration::from_millis(300),
            until_shutdown: false,
        },
        shutdown.clone(),
    )
    .await;
    eventually(Duration::from_secs(30), "every run handled", || async {
        log.lock()
            .unwrap()
            .contains(&(Step::HandleEnded, N - 1))
            .then_some(())
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
            handle_for: Duration::ZERO,
            until_shutdown: true,
        },
        shutdown.clone(),
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the second run prepared while the first is in hand",
        || async {
            let log = log.lock().unwrap();
            (log.contains(&(Step::HandleStarted, 0)) && log.contains(&(Step::Prepared, 1)))
                .then_some(())
        },
    )
    .await;
    shutdown.cancel();
    service.await.unwrap().unwrap();
    let log = log.lock().unwrap().clone();
    assert!(log.contains(&(Step::HandleEnded, 0)), "{log:?}");
    assert!(
        !log.iter()
            .any(|(step, offset)| *step == Step::HandleStarted && *offset > 0),
        "nothing prepared ahead is handled after shutdown: {log:?}"
    );
    // The first run is committed; the two after it wait for the partition's next owner.
    assert_eq!(lag(&ctx).await, 2);
}
