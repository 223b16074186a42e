//! Faults injected while the worker runs: the database going away, the broker refusing offset
//! commits. At the end every invariant is checked on the numbers.

use super::{assert_invariants, awaiting_payment, committed, queued_orders, Running};
use kafka::rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use std::time::Duration;
use testkit::{eventually, TestContext};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_database_is_down_the_worker_retries_dead_letters_as_retryable_and_the_replay_catches_up(
) {
    let mut ctx = TestContext::new().await.unwrap();
    ctx.settings.worker.max_attempts = 3;
    ctx.settings.worker.retry_backoff_ms = 50;
    ctx.settings.worker.retry_backoff_max_ms = 100;
    ctx.settings.database.connect_timeout_secs = 1;
    ctx.settings.replayer.max_replays = 5;
    let sku = testkit::sku();
    const STOCK: i64 = 30;
    ctx.open_sale(&sku, STOCK, 1).await;
    let worker = Running::start(&ctx.settings).await;

    testkit::set_database_up(&ctx.database, false)
        .await
        .unwrap();
    let orders = queued_orders(&ctx, &sku, 20).await;
    let retries_exhausted = worker
        .metrics
        .dead_letters
        .with_label_values(&["retries_exhausted"]);
    eventually(
        Duration::from_secs(60),
        "orders dead-lettered as retryable",
        || async { (retries_exhausted.get() >= 20).then_some(()) },
    )
    .await;
    assert!(
        worker.metrics.retries.get() >= 2,
        "the worker retried in place before giving up"
    );
    testkit::set_database_up(&ctx.database, true).await.unwrap();

    let replayer = dlq_replayer::Replayer::connect(&ctx.settings, None)
        .await
        .unwrap();
    let replayed = replayer.metrics();
    let replayer = testkit::Spawned::spawn(|stop| replayer.run_until_stopped(stop));
    awaiting_payment(&ctx, &sku, 20, "the replayed orders to be confirmed").await;
    assert!(replayed.settled.with_label_values(&["retried"]).get() >= 20);
    assert_eq!(
        replayed.settled.with_label_values(&["compensated"]).get(),
        0
    );
    assert_invariants(&ctx, &sku, STOCK, &orders).await;
    worker.stop().await;
    replayer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_offset_commits_cause_redelivery_that_changes_nothing() {
    drain_through_broker_errors(
        RDKafkaApiKey::OffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_COORDINATOR; 4],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_errors_delay_the_worker_but_lose_and_double_nothing() {
    drain_through_broker_errors(
        RDKafkaApiKey::Fetch,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        ],
    )
    .await;
}

/// Queues 25 orders, makes the broker answer `errors` to the next `api` requests, drains with a
/// worker (stopped cleanly once its group has committed the whole orders topic) and checks the
/// invariants.
async fn drain_through_broker_errors(api: RDKafkaApiKey, errors: &[RDKafkaRespErr]) {
    const STOCK: i64 = 40;
    let (ctx, sku) = TestContext::with_sale(STOCK, 1).await;
    let orders = queued_orders(&ctx, &sku, 25).await;
    ctx.broker.mock().request_errors(api, errors);
    let worker = Running::start(&ctx.settings).await;
    committed(
        &ctx,
        &ctx.settings.kafka.worker_group,
        Duration::from_secs(90),
    )
    .await;
    worker.stop().await;
    assert_invariants(&ctx, &sku, STOCK, &orders).await;
}
