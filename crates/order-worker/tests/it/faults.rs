//! Faults injected while the worker runs: the database going away, the broker refusing offset
//! commits. At the end every invariant is checked on the numbers.

use domain::{OrderRequested, SkuId};
use kafka::rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use std::time::Duration;
use stock::ReserveOutcome;
use testkit::{eventually, order, TestContext};
use tokio_util::sync::CancellationToken;

async fn reserve_and_queue(ctx: &TestContext, sku: &SkuId, n: usize) -> Vec<OrderRequested> {
    let ledger = ctx.ledger();
    let mut orders = Vec::new();
    for i in 0..n {
        let o = order(sku, &format!("buyer-{i}"), "k", 1);
        assert!(matches!(
            testkit::reserve(&ledger, &o).await,
            ReserveOutcome::Accepted(_)
        ));
        testkit::produce(
            &ctx.endpoint(),
            &ctx.settings.kafka.orders_topic,
            sku.as_str().as_bytes(),
            &o.encode(),
        )
        .await
        .unwrap();
        orders.push(o);
    }
    orders
}

/// Every invariant, at rest, for a sale of `stock` units where `expected` orders of one unit
/// were accepted.
async fn assert_invariants(ctx: &TestContext, sku: &SkuId, stock: i64, orders: &[OrderRequested]) {
    let store = ctx.store().await;
    let stats = store.sale_stats(sku).await.unwrap().unwrap();
    let rows = store.orders_of(sku).await.unwrap();
    assert!(stats.held_units() <= stock, "oversold: {stats:?}");
    assert_eq!(rows.len(), orders.len(), "one row per accepted order");
    for o in orders {
        assert!(
            rows.iter().any(|r| r.order_id == o.order_id.as_str()),
            "lost {}",
            o.order_id
        );
    }
    assert_eq!(
        stats.awaiting_payment.orders as usize,
        orders.len(),
        "{stats:?}"
    );
    assert_eq!(stats.initial_stock - stats.stock, stats.held_units());
    let snapshot = ctx.ledger().snapshot(sku).await.unwrap().unwrap();
    assert_eq!(
        snapshot.remaining + stats.held_units(),
        stock,
        "{snapshot:?}"
    );
    assert_eq!(snapshot.reserved - snapshot.released, stats.held_units());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_database_is_down_the_worker_retries_dead_letters_as_retryable_and_the_replay_catches_up(
) {
    let mut ctx = TestContext::new().await.unwrap();
    ctx.settings.worker.max_attempts = 3;
    ctx.settings.worker.retry_backoff_ms = 50;
    ctx.settings.worker.retry_backoff_max_ms = 100;
    ctx.settings.database.connect_timeout_secs = 1;
    ctx.settings.replayer.max_replays = 5;
    let sku = SkuId::parse(testkit::unique("sku-")).unwrap();
    const STOCK: i64 = 30;
    ctx.open_sale(&sku, STOCK, 1).await;
    let worker = order_worker::Worker::connect(&ctx.settings, None)
        .await
        .unwrap();
    let metrics = worker.metrics();
    let stop = CancellationToken::new();
    let worker = tokio::spawn(worker.run_until_stopped(stop.clone()));

    testkit::set_database_up(&ctx.database, false)
        .await
        .unwrap();
    let orders = reserve_and_queue(&ctx, &sku, 20).await;
    eventually(
        Duration::from_secs(60),
        "orders dead-lettered as retryable",
        || async {
            let letters = metrics
                .dead_letters
                .with_label_values(&["retries_exhausted"])
                .get();
            (letters >= 20).then_some(())
        },
    )
    .await;
    assert!(
        metrics.retries.get() >= 2,
        "the worker retried in place before giving up"
    );
    testkit::set_database_up(&ctx.database, true).await.unwrap();

    let replayer = dlq_replayer::Replayer::connect(&ctx.settings, None)
        .await
        .unwrap();
    let replayed = replayer.metrics();
    let replayer = tokio::spawn(replayer.run_until_stopped(stop.clone()));
    let store = ctx.store().await;
    eventually(
        Duration::from_secs(60),
        "the replayed orders to be confirmed",
        || async {
            let stats = store.sale_stats(&sku).await.ok()??;
            (stats.awaiting_payment.orders == 20).then_some(())
        },
    )
    .await;
    assert!(replayed.settled.with_label_values(&["retried"]).get() >= 20);
    assert_eq!(
        replayed.settled.with_label_values(&["compensated"]).get(),
        0
    );
    assert_invariants(&ctx, &sku, STOCK, &orders).await;
    stop.cancel();
    worker.await.unwrap().unwrap();
    replayer.await.unwrap().unwrap();
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
/// worker and checks the invariants.
async fn drain_through_broker_errors(api: RDKafkaApiKey, errors: &[RDKafkaRespErr]) {
    let ctx = TestContext::new().await.unwrap();
    let sku = SkuId::parse(testkit::unique("sku-")).unwrap();
    const STOCK: i64 = 40;
    ctx.open_sale(&sku, STOCK, 1).await;
    let orders = reserve_and_queue(&ctx, &sku, 25).await;
    ctx.broker.mock().request_errors(api, errors);
    drain(&ctx).await;
    assert_invariants(&ctx, &sku, STOCK, &orders).await;
}

/// Runs a worker until the group has committed the whole orders topic, then stops it cleanly.
async fn drain(ctx: &TestContext) {
    let worker = order_worker::Worker::connect(&ctx.settings, None)
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let handle = tokio::spawn(worker.run_until_stopped(stop.clone()));
    let group = ctx.settings.kafka.worker_group.clone();
    eventually(
        Duration::from_secs(90),
        "the group to commit everything",
        || async {
            let lag =
                testkit::group_lag(&ctx.endpoint(), &group, &ctx.settings.kafka.orders_topic).await;
            (lag == 0).then_some(())
        },
    )
    .await;
    stop.cancel();
    handle.await.unwrap().unwrap();
}
