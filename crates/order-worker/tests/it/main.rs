//! The worker against the machine's Redis and PostgreSQL and an embedded Kafka.

// Test helpers panic to report, like the tests themselves.
#![allow(clippy::unwrap_used)]

mod expiry;
mod faults;
mod forged;
mod process;
mod sweeper;

use domain::dead_letter::header;
use domain::signing::SIGNATURE_HEADER;
use domain::{OrderRequested, ReservationState, SkuId};
use kafka::rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use kafka::rdkafka::producer::FutureRecord;
use kafka::rdkafka::Message;
use std::time::Duration;
use stock::{ReleaseMode, ReserveOutcome};
use testkit::{eventually, order, TestContext};

const PATIENCE: Duration = Duration::from_secs(30);

/// A worker running in the test's process.
struct Running {
    metrics: order_worker::metrics::WorkerMetrics,
    /// The port of its ops server (`/readyz`, `/metrics`).
    ops_port: u16,
    task: testkit::Spawned,
}

impl Running {
    /// A worker on `settings`.
    async fn start(settings: &settings::Settings) -> Self {
        let worker = order_worker::Worker::connect(settings, None).await.unwrap();
        Self {
            metrics: worker.metrics(),
            ops_port: worker.ops_port(),
            task: testkit::Spawned::spawn(|stop| worker.run_until_stopped(stop)),
        }
    }

    /// A worker of the test's world in the consumer group `group`.
    async fn in_group(ctx: &TestContext, group: &str) -> Self {
        let mut settings = ctx.settings.clone();
        settings.kafka.worker_group = group.to_owned();
        Self::start(&settings).await
    }

    /// How many orders it counted written (or found written before) with `outcome`.
    fn persisted(&self, outcome: &str) -> u64 {
        self.metrics.persisted.with_label_values(&[outcome]).get()
    }

    /// Stops it and waits for a clean exit.
    async fn stop(self) {
        self.task.stop().await;
    }
}

/// Produces `(key, payload)` messages to the orders topic, signed as the gateway signs them,
/// all in flight at once on one producer (an idempotent one, so the messages of a key stay in
/// this order).
async fn produce(ctx: &TestContext, messages: &[(&str, Vec<u8>)]) {
    let producer = kafka::producer(&ctx.endpoint()).unwrap();
    let sends = messages.iter().map(|(key, payload)| {
        let signature = testkit::order_signature(&ctx.settings, key.as_bytes(), payload);
        let headers = OwnedHeaders::new().insert(Header {
            key: SIGNATURE_HEADER,
            value: Some(signature.as_bytes()),
        });
        producer.send(
            FutureRecord::to(&ctx.settings.kafka.orders_topic)
                .key(*key)
                .payload(payload.as_slice())
                .headers(headers),
            Duration::from_secs(10),
        )
    });
    for sent in futures::future::join_all(sends).await {
        sent.unwrap();
    }
}

/// Publishes `orders` as the gateway does: keyed by SKU.
async fn publish(ctx: &TestContext, orders: &[OrderRequested]) {
    let messages: Vec<_> = orders
        .iter()
        .map(|o| (o.sku_id.as_str(), o.encode()))
        .collect();
    produce(ctx, &messages).await;
}

/// Reserves `n` orders of one unit of `sku`, from distinct buyers, the gateway's way.
async fn reserved_orders(ctx: &TestContext, sku: &SkuId, n: usize) -> Vec<OrderRequested> {
    let ledger = ctx.ledger();
    let mut orders = Vec::new();
    for i in 0..n {
        let o = order(sku, &format!("buyer-{i}"), "k", 1);
        assert!(matches!(
            testkit::reserve(&ledger, &o).await,
            ReserveOutcome::Accepted(_)
        ));
        orders.push(o);
    }
    orders
}

/// [`reserved_orders`], then published: what a worker finds queued.
async fn queued_orders(ctx: &TestContext, sku: &SkuId, n: usize) -> Vec<OrderRequested> {
    let orders = reserved_orders(ctx, sku, n).await;
    publish(ctx, &orders).await;
    orders
}

/// Waits until `expected` orders of `sku` are written, awaiting payment or failed.
async fn settled(ctx: &TestContext, sku: &SkuId, expected: usize) -> store::SaleStats {
    ctx.sale_stats_when(sku, PATIENCE, "orders to be written", |stats| {
        stats.awaiting_payment.orders + stats.failed.orders == expected as i64
    })
    .await
}

/// Waits up to a minute, naming `what`, until `orders` orders of `sku` await payment.
async fn awaiting_payment(ctx: &TestContext, sku: &SkuId, orders: i64, what: &str) {
    let within = Duration::from_secs(60);
    let written = |stats: &store::SaleStats| stats.awaiting_payment.orders == orders;
    ctx.sale_stats_when(sku, within, what, written).await;
}

/// Waits up to `within` until `group` has committed the whole orders topic.
async fn committed(ctx: &TestContext, group: &str, within: Duration) {
    let topic = &ctx.settings.kafka.orders_topic;
    testkit::until_committed(&ctx.endpoint(), group, topic, within).await;
}

/// Waits until no order of `sku` is left in the outbox: each one written or given up.
async fn outbox_emptied(ctx: &TestContext, sku: &SkuId) {
    eventually(PATIENCE, "every order out of the outbox", || async {
        let snapshot = ctx.ledger().snapshot(sku).await.ok()??;
        (snapshot.unfinished == 0).then_some(())
    })
    .await;
}

/// Asserts that the reservation of each of `orders` is in `state`.
async fn assert_reservations(
    ctx: &TestContext,
    orders: &[OrderRequested],
    state: ReservationState,
) {
    let ledger = ctx.ledger();
    for o in orders {
        let reservation = ledger.reservation(&o.order_id).await.unwrap().unwrap();
        assert_eq!(reservation.state, state, "{}", o.order_id);
    }
}

/// Every invariant, at rest, for a sale of `stock` units of which `orders` (one unit each) were
/// accepted: no oversell, no order lost or written twice, stock conserved in the database and
/// between the database and Redis.
async fn assert_invariants(ctx: &TestContext, sku: &SkuId, stock: i64, orders: &[OrderRequested]) {
    let stats = ctx.sale_stats(sku).await;
    let rows = ctx.store().await.orders_of(sku).await.unwrap();
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
    let snapshot = ctx.snapshot(sku).await;
    assert_eq!(
        snapshot.remaining + stats.held_units(),
        stock,
        "{snapshot:?}"
    );
    assert_eq!(snapshot.reserved - snapshot.released, stats.held_units());
}

/// The first `n` messages of the dead-letter topic.
async fn dead_letters(ctx: &TestContext, n: usize) -> Vec<OwnedMessage> {
    let consumer = testkit::probe(&ctx.endpoint(), &ctx.settings.kafka.dlq_topic);
    let mut letters = Vec::new();
    while letters.len() < n {
        letters.push(testkit::next_message(&consumer, PATIENCE, "a dead letter").await);
    }
    letters
}

/// The header `name` of `message` as text (empty if it has none).
fn header_text(message: &OwnedMessage, name: &str) -> String {
    String::from_utf8(
        kafka::consume::header(message, name)
            .unwrap_or_default()
            .to_vec(),
    )
    .unwrap()
}

/// `GET path` on a worker's ops port, off the async threads: the status and the body.
async fn ops_get(port: u16, path: &'static str) -> (u16, String) {
    tokio::task::spawn_blocking(move || testkit::process::http_get(port, path))
        .await
        .unwrap()
        .expect("the ops server answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_orders_are_confirmed_claimed_and_committed_so_the_lag_drops_to_zero() {
    let (ctx, sku) = TestContext::with_sale(20, 1).await;
    let orders = queued_orders(&ctx, &sku, 12).await;
    let worker = Running::start(&ctx.settings).await;
    let stats = settled(&ctx, &sku, 12).await;
    assert_eq!(
        (
            stats.awaiting_payment.orders,
            stats.held_units(),
            stats.stock
        ),
        (12, 12, 8)
    );
    assert_reservations(&ctx, &orders, ReservationState::Claimed).await;
    committed(&ctx, &ctx.settings.kafka.worker_group, PATIENCE).await;
    assert_eq!(worker.persisted("accepted"), 12);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_delivered_twice_and_consumed_again_by_a_new_group_writes_one_row() {
    let (ctx, sku) = TestContext::with_sale(10, 5).await;
    let orders = queued_orders(&ctx, &sku, 3).await;
    publish(&ctx, &orders[..1]).await; // the "written but ack lost" duplicate
    let first = Running::in_group(&ctx, "first-group").await;
    settled(&ctx, &sku, 3).await;
    first.stop().await;
    // A new group starts from the earliest offset: every message is delivered again.
    let second = Running::in_group(&ctx, "second-group").await;
    committed(&ctx, "second-group", PATIENCE).await;
    let stats = ctx.sale_stats(&sku).await;
    assert_eq!(
        (
            stats.awaiting_payment.orders,
            stats.held_units(),
            stats.stock
        ),
        (3, 3, 7)
    );
    assert_eq!(
        second.persisted("accepted"),
        4,
        "redelivered orders report their stored outcome"
    );
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_reach_the_dead_letter_topic_with_their_reason_and_the_worker_goes_on() {
    let (ctx, sku) = TestContext::with_sale(10, 5).await;
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
    // The poison between the two valid orders, all under the sale's key.
    let payloads = std::iter::once(valid[0].encode())
        .chain(poison.iter().map(|(payload, _)| payload.clone()))
        .chain(std::iter::once(valid[1].encode()));
    let messages: Vec<_> = payloads.map(|payload| (sku.as_str(), payload)).collect();
    produce(&ctx, &messages).await;
    let worker = Running::start(&ctx.settings).await;
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
    let undecodable = worker
        .metrics
        .dead_letters
        .with_label_values(&["undecodable"]);
    assert_eq!(undecodable.get(), 1);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_refuses_what_a_wrong_redis_let_through_and_the_reservation_is_given_back() {
    let ctx = TestContext::new().await.unwrap();
    let sku = testkit::sku();
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
    let orders = queued_orders(&ctx, &sku, DB_STOCK as usize + 1).await;
    let worker = Running::start(&ctx.settings).await;
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
    let snapshot = ctx.snapshot(&sku).await;
    assert_eq!((snapshot.released, snapshot.remaining), (1, 1));
    assert_eq!(worker.metrics.compensations.get(), 1);
    // Confirmed and compensated alike leave the outbox: nothing is left for the sweeper.
    outbox_emptied(&ctx, &sku).await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_whose_reservation_the_gateway_released_gets_no_row_and_takes_no_stock() {
    let (ctx, sku) = TestContext::with_sale(5, 5).await;
    let orders = reserved_orders(&ctx, &sku, 1).await;
    // The gateway gave up on the produce and released; the message arrived anyway.
    ctx.ledger()
        .release(&orders[0].order_id, ReleaseMode::ProduceFailed)
        .await
        .unwrap();
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
    publish(&ctx, &[orders[0].clone(), retry.clone()]).await;
    let worker = Running::start(&ctx.settings).await;
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
    assert_eq!(worker.persisted("released"), 1);
    assert_eq!(ctx.snapshot(&sku).await.remaining, 4);
    worker.stop().await;
}

/// `/readyz` of the ops port: the status and the JSON body.
async fn readyz(port: u16) -> (u16, serde_json::Value) {
    let (status, body) = ops_get(port, "/readyz").await;
    (status, serde_json::from_str(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_names_the_broker_while_it_is_down_in_the_shape_every_service_uses() {
    let ctx = TestContext::new().await.unwrap();
    let worker = Running::start(&ctx.settings).await;
    let port = worker.ops_port;
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
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_dead_lettered_as_a_key_conflict_leaves_the_outbox_once_its_letter_is_acknowledged(
) {
    let (ctx, sku) = TestContext::with_sale(5, 5).await;
    let orders = queued_orders(&ctx, &sku, 1).await;
    // Another order already holds the buyer's key in the database.
    let holder = order(
        &sku,
        orders[0].user_id.as_str(),
        orders[0].idempotency_key.as_str(),
        1,
    );
    ctx.store().await.persist_batch([&holder]).await.unwrap();
    let worker = Running::start(&ctx.settings).await;
    let letters = dead_letters(&ctx, 1).await;
    assert_eq!(
        header_text(&letters[0], header::REASON),
        "idempotency_conflict"
    );
    outbox_emptied(&ctx, &sku).await;
    assert_eq!(worker.persisted("key_conflict"), 1);
    worker.stop().await;
}
