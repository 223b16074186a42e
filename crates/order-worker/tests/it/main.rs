//! The worker against the machine's Redis and PostgreSQL and an embedded Kafka.

// Test helpers panic to report, like the tests themselves.
#![allow(clippy::unwrap_used)]

mod expiry;
mod faults;
mod process;
mod sweeper;

use domain::dead_letter::header;
use domain::{OrderRequested, SkuId};
use kafka::rdkafka::message::OwnedMessage;
use kafka::rdkafka::Message;
use std::time::Duration;
use stock::{ReleaseMode, ReserveOutcome};
use testkit::{eventually, order, TestContext};
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(30);

async fn start_worker(
    ctx: &TestContext,
    group: &str,
) -> (
    CancellationToken,
    order_worker::metrics::WorkerMetrics,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let mut settings = ctx.settings.clone();
    settings.kafka.worker_group = group.to_owned();
    start_worker_with(&settings).await
}

/// A worker on `settings`, running in the test's process.
async fn start_worker_with(
    settings: &settings::Settings,
) -> (
    CancellationToken,
    order_worker::metrics::WorkerMetrics,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let worker = order_worker::Worker::connect(settings, None).await.unwrap();
    let metrics = worker.metrics();
    let stop = CancellationToken::new();
    let handle = tokio::spawn(worker.run_until_stopped(stop.clone()));
    (stop, metrics, handle)
}

async fn publish(ctx: &TestContext, orders: &[OrderRequested]) {
    for o in orders {
        testkit::produce(
            &ctx.endpoint(),
            &ctx.settings.kafka.orders_topic,
            o.sku_id.as_str().as_bytes(),
            &o.encode(),
        )
        .await
        .unwrap();
    }
}

async fn reserved_orders(ctx: &TestContext, sku: &SkuId, n: usize) -> Vec<OrderRequested> {
    let ledger = ctx.ledger();
    let mut orders = Vec::new();
    for i in 0..n {
        let o = order(sku, &format!("user-{i}"), "k", 1);
        assert!(matches!(
            testkit::reserve(&ledger, &o).await,
            ReserveOutcome::Accepted(_)
        ));
        orders.push(o);
    }
    orders
}

async fn settled(ctx: &TestContext, sku: &SkuId, expected: usize) -> store::SaleStats {
    let store = ctx.store().await;
    eventually(PATIENCE, "orders to be written", || async {
        let stats = store.sale_stats(sku).await.ok()??;
        (stats.awaiting_payment.orders + stats.failed.orders == expected as i64).then_some(stats)
    })
    .await
}

async fn dead_letters(ctx: &TestContext, n: usize) -> Vec<OwnedMessage> {
    let consumer = testkit::probe(&ctx.endpoint(), &ctx.settings.kafka.dlq_topic);
    let mut letters = Vec::new();
    while letters.len() < n {
        letters.push(testkit::next_message(&consumer, PATIENCE, "a dead letter").await);
    }
    letters
}

fn header_text(message: &OwnedMessage, name: &str) -> String {
    String::from_utf8(
        kafka::consume::header(message, name)
            .unwrap_or_default()
            .to_vec(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_orders_are_confirmed_claimed_and_committed_so_the_lag_drops_to_zero() {
    let ctx = TestContext::new().await.unwrap();
    let sku = SkuId::parse(testkit::unique("sku-")).unwrap();
    ctx.open_sale(&sku, 20, 1).await;
    let orders = reserved_orders(&ctx, &sku, 12).await;
    publish(&ctx, &orders).await;
    let group = ctx.settings.kafka.worker_group.clone();
    let (stop, metrics, handle) = start_worker(&ctx, &group).await;
    let stats = settled(&ctx, &sku, 12).await;
    assert_eq!(
        (
            stats.awaiting_payment.orders,
            stats.held_units(),
            stats.stock
        ),
        (12, 12, 8)
    );
    for o in &orders {
        let reservation = ctx
            .ledger()
            .reservation(&o.order_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reservation.state, stock::ReservationState::Claimed);
    }
    let lag = eventually(PATIENCE, "the lag to reach 0", || async {
        let lag =
            testkit::group_lag(&ctx.endpoint(), &group, &ctx.settings.kafka.orders_topic).await;
        (lag == 0).then_some(lag)
    })
    .await;
    assert_eq!(lag, 0);
    assert_eq!(metrics.persisted.with_label_values(&["accepted"]).get(), 12);
    stop.cancel();
    handle.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_delivered_twice_and_consumed_again_by_a_new_group_writes_one_row() {
    let ctx = TestContext::new().await.unwrap();
    let sku = SkuId::parse(testkit::unique("sku-")).unwrap();
    ctx.open_sale(&sku, 10, 5).await;
    let orders = reserved_orders(&ctx, &sku, 3).await;
    publish(&ctx, &orders).await;
    publish(&ctx, &orders[..1]).await; // the "written but ack lost" duplicate
    let (stop, _, handle) = start_worker(&ctx, "first-group").await;
    settled(&ctx, &sku, 3).await;
    stop.cancel();
    handle.await.unwrap().unwrap();
    // A new group starts from the earliest offset: every message is delivered again.
    let (stop, metrics, handle) = start_worker(&ctx, "second-group").await;
    eventually(PATIENCE, "the second group to catch up", || async {
        let lag = testkit::group_lag(
            &ctx.endpoint(),
            "second-group",
            &ctx.settings.kafka.orders_topic,
        )
        .await;
        (lag == 0).then_some(())
    })
    .await;
    let stats = ctx.store().await.sale_stats(&sku).await.unwrap().unwrap();
    assert_eq!(
        (
            stats.awaiting_payment.orders,
            stats.held_units(),
            stats.stock
        ),
        (3, 3, 7)
    );
    assert_eq!(
        metrics.persisted.with_label_values(&["accepted"]).get(),
        4,
        "redelivered orders report their stored outcome"
    );
    stop.cancel();
    handle.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_reach_the_dead_letter_topic_with_their_reason_and_the_worker_goes_on() {
    let ctx = TestContext::new().await.unwrap();
    let sku = SkuId::parse(testkit::unique("sku-")).unwrap();
    ctx.open_sale(&sku, 10, 5).await;
    let endpoint = ctx.endpoint();
    let topic = &ctx.settings.kafka.orders_topic;
    let valid = reserved_orders(&ctx, &sku, 2).await;
    let mut wrong_version = serde_json::to_value(&valid[0]).unwrap();
    wrong_version["v"] = 9.into();
    let mut negative = serde_json::to_value(&valid[0]).unwrap();
    negative["quantity"] = (-3).into();
    let no_sale = SkuId::parse(testkit::unique("nosale-")).unwrap();
    let unknown_sku = order(&no_sale, "mallory", "k", 1);
    let poison: Vec<(Vec<u8>, &str)> = vec![
        (b"not json at all".to_vec(), "undecodable"),
        (
            serde_json::to_vec(&wrong_version).unwrap(),
            "unsupported_version",
        ),
        (br#"{"v":1,"order_id":"x"}"#.to_vec(), "invalid_field"),
        (serde_json::to_vec(&negative).unwrap(), "invalid_field"),
        (vec![b'{'; 64 * 1024], "oversized"),
        // Well-formed, but no sale in the database: found out at the write, after the others.
        (unknown_sku.encode(), "unknown_sku"),
    ];
    testkit::produce(
        &endpoint,
        topic,
        sku.as_str().as_bytes(),
        &valid[0].encode(),
    )
    .await
    .unwrap();
    for (payload, _) in &poison {
        testkit::produce(&endpoint, topic, sku.as_str().as_bytes(), payload)
            .await
            .unwrap();
    }
    testkit::produce(
        &endpoint,
        topic,
        sku.as_str().as_bytes(),
        &valid[1].encode(),
    )
    .await
    .unwrap();
    let (stop, metrics, handle) = start_worker(&ctx, &ctx.settings.kafka.worker_group).await;
    let stats = settled(&ctx, &sku, 2).await;
    assert_eq!(stats.awaiting_payment.orders, 2);
    let letters = dead_letters(&ctx, poison.len()).await;
    for (letter, (payload, reason)) in letters.iter().zip(&poison) {
        assert_eq!(header_text(letter, header::REASON), *reason);
        assert_eq!(
            letter.payload(),
            Some(payload.as_slice()),
            "the original bytes are kept"
        );
        assert_eq!(letter.key(), Some(sku.as_str().as_bytes()));
        assert_eq!(header_text(letter, header::ORIGINAL_TOPIC), *topic);
        assert!(!header_text(letter, header::ERROR).is_empty());
    }
    assert_eq!(
        metrics
            .dead_letters
            .with_label_values(&["undecodable"])
            .get(),
        1
    );
    stop.cancel();
    handle.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_refuses_what_a_wrong_redis_let_through_and_the_reservation_is_given_back() {
    let ctx = TestContext::new().await.unwrap();
    let sku = SkuId::parse(testkit::unique("sku-")).unwrap();
    const DB_STOCK: i64 = 4;
    ctx.store()
        .await
        .upsert_sale(&sku, &testkit::open_spec(DB_STOCK, 1))
        .await
        .unwrap();
    // Redis believes there is one unit more than the database.
    ctx.ledger()
        .warm(&sku, &testkit::open_spec(DB_STOCK + 1, 1))
        .await
        .unwrap();
    let orders = reserved_orders(&ctx, &sku, DB_STOCK as usize + 1).await;
    publish(&ctx, &orders).await;
    let (stop, metrics, handle) = start_worker(&ctx, &ctx.settings.kafka.worker_group).await;
    let stats = settled(&ctx, &sku, orders.len()).await;
    assert_eq!(
        (stats.held_units(), stats.stock, stats.failed.orders),
        (DB_STOCK, 0, 1)
    );
    let refused = ctx
        .store()
        .await
        .order(&orders[DB_STOCK as usize].order_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (refused.status.as_str(), refused.reason.as_deref()),
        ("failed", Some("db_out_of_stock"))
    );
    let snapshot = ctx.ledger().snapshot(&sku).await.unwrap().unwrap();
    assert_eq!((snapshot.released, snapshot.remaining), (1, 1));
    assert_eq!(metrics.compensations.get(), 1);
    // Confirmed and compensated alike leave the outbox: nothing is left for the sweeper.
    eventually(PATIENCE, "every order out of the outbox", || async {
        let snapshot = ctx.ledger().snapshot(&sku).await.ok()??;
        (snapshot.unfinished == 0).then_some(())
    })
    .await;
    stop.cancel();
    handle.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_whose_reservation_the_gateway_released_gets_no_row_and_takes_no_stock() {
    let ctx = TestContext::new().await.unwrap();
    let sku = SkuId::parse(testkit::unique("sku-")).unwrap();
    ctx.open_sale(&sku, 5, 5).await;
    let orders = reserved_orders(&ctx, &sku, 1).await;
    // The gateway gave up on the produce and released; the message arrived anyway.
    ctx.ledger()
        .release(&orders[0].order_id, ReleaseMode::ProduceFailed)
        .await
        .unwrap();
    publish(&ctx, &orders).await;
    // The buyer, told 503, retries with the same key and gets a new order, which must get the row.
    let retry = order(
        &sku,
        orders[0].user_id.as_str(),
        orders[0].idempotency_key.as_str(),
        1,
    );
    assert!(matches!(
        testkit::reserve(&ctx.ledger(), &retry).await,
        ReserveOutcome::Accepted(_)
    ));
    publish(&ctx, std::slice::from_ref(&retry)).await;
    let (stop, metrics, handle) = start_worker(&ctx, &ctx.settings.kafka.worker_group).await;
    let stats = settled(&ctx, &sku, 1).await;
    assert_eq!(
        (
            stats.awaiting_payment.orders,
            stats.failed.orders,
            stats.stock
        ),
        (1, 0, 4)
    );
    let store = ctx.store().await;
    assert!(store.order(&orders[0].order_id).await.unwrap().is_none());
    assert!(store.order(&retry.order_id).await.unwrap().is_some());
    assert_eq!(metrics.persisted.with_label_values(&["released"]).get(), 1);
    assert_eq!(
        ctx.ledger()
            .snapshot(&sku)
            .await
            .unwrap()
            .unwrap()
            .remaining,
        4
    );
    stop.cancel();
    handle.await.unwrap().unwrap();
}

/// `/readyz` of the ops port, off the async threads: the status and the JSON body.
async fn readyz(port: u16) -> (u16, serde_json::Value) {
    let (status, body) =
        tokio::task::spawn_blocking(move || testkit::process::http_get(port, "/readyz"))
            .await
            .unwrap()
            .expect("the ops server answers");
    (status, serde_json::from_str(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_names_the_broker_while_it_is_down_in_the_shape_every_service_uses() {
    let ctx = TestContext::new().await.unwrap();
    let worker = order_worker::Worker::connect(&ctx.settings, None)
        .await
        .unwrap();
    let port = worker.ops_port();
    let stop = CancellationToken::new();
    let handle = tokio::spawn(worker.run_until_stopped(stop.clone()));
    let (status, body) = readyz(port).await;
    assert_eq!((status, body), (200, serde_json::json!({"status": "ok"})));
    ctx.broker.mock().broker_down(1).unwrap();
    let down = testkit::eventually(Duration::from_secs(20), "readiness to go false", || async {
        let answer = readyz(port).await;
        (answer.0 == 503).then_some(answer.1)
    })
    .await;
    assert_eq!(
        down,
        serde_json::json!({"status": "unavailable", "failing": ["kafka"]})
    );
    ctx.broker.mock().broker_up(1).unwrap();
    testkit::eventually(
        Duration::from_secs(20),
        "readiness to come back",
        || async { (readyz(port).await.0 == 200).then_some(()) },
    )
    .await;
    stop.cancel();
    handle.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_dead_lettered_as_a_key_conflict_leaves_the_outbox_once_its_letter_is_acknowledged(
) {
    let ctx = TestContext::new().await.unwrap();
    let sku = SkuId::parse(testkit::unique("sku-")).unwrap();
    ctx.open_sale(&sku, 5, 5).await;
    let orders = reserved_orders(&ctx, &sku, 1).await;
    // Another order already holds the buyer's key in the database.
    let holder = order(
        &sku,
        orders[0].user_id.as_str(),
        orders[0].idempotency_key.as_str(),
        1,
    );
    ctx.store().await.persist_batch([&holder]).await.unwrap();
    publish(&ctx, &orders).await;
    let (stop, metrics, handle) = start_worker(&ctx, &ctx.settings.kafka.worker_group).await;
    let letters = dead_letters(&ctx, 1).await;
    assert_eq!(
        header_text(&letters[0], header::REASON),
        "idempotency_conflict"
    );
    eventually(PATIENCE, "the order out of the outbox", || async {
        let snapshot = ctx.ledger().snapshot(&sku).await.ok()??;
        (snapshot.unfinished == 0).then_some(())
    })
    .await;
    assert_eq!(
        metrics.persisted.with_label_values(&["key_conflict"]).get(),
        1
    );
    stop.cancel();
    handle.await.unwrap().unwrap();
}
