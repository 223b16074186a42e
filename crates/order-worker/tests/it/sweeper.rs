//! The reservation sweeper against the machine's Redis and PostgreSQL and an embedded Kafka:
//! stale reservations become rows, whoever else is working on them.

use super::{
    assert_reservations, awaiting_payment, committed, ops_get, publish, queued_orders,
    reserved_orders, settled, Running, PATIENCE,
};
use domain::{OrderId, OrderRequested, ReservationState};
use kafka::rdkafka::consumer::Consumer;
use kafka::rdkafka::Message;
use order_worker::sweeper::{SweepReport, Sweeper};
use std::collections::HashMap;
use std::time::Duration;
use testkit::{sku, TestContext};

/// Long enough for the gateway's produce (the tests' delivery timeout is 2 s), short for a test.
const STALE_AFTER: Duration = Duration::from_secs(3);

/// The test's settings with a short sweep bound; `worker_sweeps` says whether the worker's own
/// sweeper may act within the test (otherwise only the sweepers the test runs by hand do).
fn with_sweeper(ctx: &TestContext, worker_sweeps: bool) -> settings::Settings {
    let mut settings = ctx.settings.clone();
    settings.sweeper.interval_secs = 1;
    settings.sweeper.stale_after_secs = if worker_sweeps {
        STALE_AFTER.as_secs()
    } else {
        3600
    };
    settings.sweeper.acknowledged_stale_after_secs = settings.sweeper.stale_after_secs + 1;
    settings
}

/// A sweeper of its own (as another replica's would be), taking `batch_max` per script call.
async fn sweeper(ctx: &TestContext, batch_max: usize) -> Sweeper {
    let mut config = ctx.settings.sweeper.clone();
    config.stale_after_secs = STALE_AFTER.as_secs();
    config.batch_max = batch_max;
    Sweeper::new(
        ctx.ledger(),
        ctx.store().await,
        kafka::producer(&ctx.endpoint()).unwrap(),
        ctx.settings.kafka.orders_topic.clone(),
        ctx.settings.messages.keyring().unwrap(),
        config,
        Duration::from_secs(5),
        order_worker::metrics::WorkerMetrics::new(prometheus::Registry::new()),
    )
}

/// How many times each order id is on the orders topic, read until it has been quiet for 3 s.
async fn copies_on_the_topic(ctx: &TestContext) -> HashMap<OrderId, usize> {
    let consumer = testkit::probe(&ctx.endpoint(), &ctx.settings.kafka.orders_topic);
    let mut copies = HashMap::new();
    while let Ok(Ok(message)) = tokio::time::timeout(Duration::from_secs(3), consumer.recv()).await
    {
        let order = OrderRequested::decode(message.payload().unwrap()).unwrap();
        *copies.entry(order.order_id).or_insert(0) += 1;
    }
    consumer.unsubscribe();
    copies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_and_a_slow_worker_racing_on_the_same_orders_write_each_once() {
    let (ctx, sku) = TestContext::with_sale(20, 1).await;
    // Queued, not yet consumed: the worker is slow (not started) when the sweep runs.
    queued_orders(&ctx, &sku, 10).await;
    tokio::time::sleep(STALE_AFTER + Duration::from_millis(200)).await;
    let report = sweeper(&ctx, 500).await.sweep().await.unwrap();
    assert_eq!(report.republished, 10, "{report:?}");

    let worker = Running::start(&with_sweeper(&ctx, false)).await;
    settled(&ctx, &sku, 10).await;
    // Both copies consumed.
    committed(&ctx, &ctx.settings.kafka.worker_group, PATIENCE).await;
    let persisted = worker.persisted("accepted");
    worker.stop().await;

    let copies = copies_on_the_topic(&ctx).await;
    assert!(copies.values().all(|&n| n == 2), "{copies:?}");
    assert_eq!(copies.len(), 10);
    let stats = ctx.sale_stats(&sku).await;
    assert_eq!(
        (
            stats.awaiting_payment.orders,
            stats.held_units(),
            stats.stock
        ),
        (10, 10, 10),
        "one row per order, stock taken once"
    );
    assert_eq!(
        persisted, 20,
        "both copies of each order were consumed; the second found the first's row"
    );
    let snapshot = ctx.snapshot(&sku).await;
    assert_eq!((snapshot.remaining, snapshot.unfinished), (10, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sweepers_at_once_publish_each_stale_reservation_once_per_round() {
    let (ctx, sku) = TestContext::with_sale(100, 1).await;
    // Reserved, never queued: their gateway died before the broker had them.
    let orders = reserved_orders(&ctx, &sku, 60).await;
    tokio::time::sleep(STALE_AFTER + Duration::from_millis(200)).await;
    let (a, b) = (sweeper(&ctx, 7).await, sweeper(&ctx, 7).await);
    let (first, second) = tokio::join!(a.sweep(), b.sweep());
    let (first, second): (SweepReport, SweepReport) = (first.unwrap(), second.unwrap());
    assert_eq!(
        first.republished + second.republished,
        60,
        "{first:?} {second:?}"
    );
    let again = a.sweep().await.unwrap();
    assert_eq!(
        again.republished, 0,
        "each was made due again: not twice in a round"
    );

    let copies = copies_on_the_topic(&ctx).await;
    assert_eq!(copies.len(), 60);
    assert!(copies.values().all(|&n| n == 1), "{copies:?}");
    // Each is acknowledged now: a retry of its buyer gets the order, not 409.
    assert_reservations(&ctx, &orders, ReservationState::Acknowledged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_the_broker_lost_become_rows_and_the_gap_is_counted() {
    use futures::StreamExt;
    const STOCK: i64 = 1000;
    let (ctx, sku) = TestContext::with_sale(STOCK, 1).await;
    let settings = with_sweeper(&ctx, true);
    // Acknowledged the way this deployment's gateways would: with its queued grace.
    let ledger = stock::StockLedger::new(&settings.redis)
        .unwrap()
        .with_queued_grace(settings.sweeper.queued_grace());
    let accept = |prefix: &'static str, n: usize| {
        let ctx = &ctx;
        let ledger = ledger.clone();
        let sku = sku.clone();
        async move {
            let orders: Vec<OrderRequested> = (0..n)
                .map(|i| testkit::order(&sku, &format!("{prefix}-{i}"), "k", 1))
                .collect();
            for order in &orders {
                testkit::reserve(&ctx.ledger(), order).await;
            }
            publish(ctx, &orders).await;
            for order in &orders {
                ledger.mark_acknowledged(&order.order_id).await.unwrap();
            }
            orders
        }
    };
    // The group has committed a first order: it has an offset to jump from.
    accept("first", 1).await;
    let worker = Running::start(&settings).await;
    settled(&ctx, &sku, 1).await;
    worker.stop().await;

    // With the worker stopped, 50 orders are accepted (reserved, queued, acknowledged), then
    // more than the embedded broker keeps per partition comes after them on the same partition,
    // and it drops the oldest messages without a word.
    let lost = accept("lost", 50).await;
    let producer = kafka::producer(&ctx.endpoint()).unwrap();
    let topic = ctx.settings.kafka.orders_topic.clone();
    // Large poison messages (unsigned: dead-lettered as forged) reach the broker's limit with few
    // dead letters to write later.
    let filler = vec![b'x'; 60_000];
    let sends = futures::stream::iter(0..100)
        .map(|_| {
            producer.send(
                kafka::rdkafka::producer::FutureRecord::to(&topic)
                    .key(sku.as_str())
                    .payload(filler.as_slice()),
                Duration::from_secs(10),
            )
        })
        .buffer_unordered(20)
        .collect::<Vec<_>>()
        .await;
    assert!(sends.iter().all(Result::is_ok));
    let first_kept = {
        let probe = kafka::consumer(&ctx.endpoint(), &testkit::unique("probe-")).unwrap();
        let partition = sends[0].as_ref().unwrap().partition;
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || {
            probe
                .fetch_watermarks(&topic, partition, Duration::from_secs(5))
                .unwrap()
                .0
        })
        .await
        .unwrap()
    };
    assert!(
        first_kept > 51,
        "the broker still has offset {first_kept}: nothing was lost, the test proves nothing"
    );

    let worker = Running::start(&settings).await;
    awaiting_payment(&ctx, &sku, 51, "every accepted order written").await;
    let store = ctx.store().await;
    for order in &lost {
        let row = store.order(&order.order_id).await.unwrap().unwrap();
        assert_eq!(
            row.order_status().unwrap(),
            domain::OrderStatus::AwaitingPayment
        );
    }
    // At least once each; again every STALE_AFTER while the worker works through what the broker
    // kept (the copies are absorbed by the idempotent write).
    assert!(worker.metrics.sweeper_republished.get() >= 50);
    let (_, text) = ops_get(worker.ops_port, "/metrics").await;
    let gaps: f64 = text
        .lines()
        .find(|l| l.starts_with("seckill_consumer_offset_gaps_total{") && l.contains(&topic))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap();
    assert!(gaps >= 1.0, "{text}");
    worker.stop().await;

    let snapshot = ctx.snapshot(&sku).await;
    let stats = ctx.sale_stats(&sku).await;
    assert_eq!(snapshot.unfinished, 0);
    assert_eq!(snapshot.remaining + stats.held_units(), STOCK);
    assert_eq!(stats.stock, STOCK - 51);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_retires_the_sales_that_ended_and_leaves_those_past_retention_alone() {
    let ctx = TestContext::new().await.unwrap();
    let now = chrono::Utc::now();
    let window = |from_hours: i64, to_hours: i64| {
        domain::SaleSpec::new(
            5,
            1,
            now + chrono::Duration::hours(from_hours),
            now + chrono::Duration::hours(to_hours),
        )
        .unwrap()
    };
    let (running, ended, long_gone) = (sku(), sku(), sku());
    let store = ctx.store().await;
    for (sku, spec) in [
        (&running, window(-1, 1)),
        (&ended, window(-2, -1)),
        (&long_gone, window(-50, -49)),
    ] {
        store.upsert_sale(sku, &spec).await.unwrap();
        ctx.ledger().warm(sku, &spec).await.unwrap();
    }
    let report = sweeper(&ctx, 500).await.sweep().await.unwrap();
    assert_eq!(
        (report.sales, report.retired),
        (2, 1),
        "the running and the ended sale are swept, the ended one retired; {report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_completes_a_transfer_between_stock_buckets_left_half_done() {
    let ctx = TestContext::new().await.unwrap();
    let sku = sku();
    let spec = testkit::open_spec(40, 1).with_buckets(4).unwrap();
    ctx.open_sale_as(&sku, spec).await;
    testkit::strand_transfer(&ctx.ledger(), &sku, 2, 0, 3).await;
    let stranded = ctx.snapshot(&sku).await;
    assert_eq!((stranded.remaining, stranded.in_transit), (35, 5));

    let report = sweeper(&ctx, 100).await.sweep().await.unwrap();
    assert_eq!(report.transfers_completed, 1, "{report:?}");
    let swept = ctx.snapshot(&sku).await;
    assert_eq!((swept.remaining, swept.in_transit), (40, 0));
    let again = sweeper(&ctx, 100).await.sweep().await.unwrap();
    assert_eq!(again.transfers_completed, 0, "{again:?}");
    assert_eq!(ctx.snapshot(&sku).await.remaining, 40);
}
