//! The replayer against the machine's Redis and PostgreSQL and an embedded Kafka.

// Test helpers panic to report, like the tests themselves.
#![allow(clippy::unwrap_used)]

use dlq_replayer::{Settled, Settler};
use domain::dead_letter::header;
use domain::{DeadLetter, OrderRequested, ReasonCode, SkuId};
use kafka::rdkafka::consumer::{Consumer, StreamConsumer};
use kafka::rdkafka::message::{Header, OwnedHeaders};
use kafka::rdkafka::producer::FutureRecord;
use kafka::rdkafka::Message;
use std::time::Duration;
use stock::ReserveOutcome;
use testkit::{eventually, order, TestContext};
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(30);

async fn reserved(ctx: &TestContext, sku: &SkuId, user: &str, quantity: i64) -> OrderRequested {
    let o = order(sku, user, "k", quantity);
    assert!(matches!(
        testkit::reserve(&ctx.ledger(), &o).await,
        ReserveOutcome::Accepted(_)
    ));
    o
}

async fn send_letter(ctx: &TestContext, payload: &[u8], reason: ReasonCode, attempts: u32) {
    let letter = DeadLetter {
        reason,
        error: "test".into(),
        attempts,
        original_topic: ctx.settings.kafka.orders_topic.clone(),
        original_partition: 0,
        original_offset: 0,
        failed_at: chrono::Utc::now(),
    };
    let mut headers = OwnedHeaders::new();
    for (name, value) in letter.to_headers() {
        headers = headers.insert(Header {
            key: name,
            value: Some(value.as_bytes()),
        });
    }
    kafka::producer(&ctx.endpoint())
        .unwrap()
        .send(
            FutureRecord::to(&ctx.settings.kafka.dlq_topic)
                .key("k")
                .payload(payload)
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compensating_the_same_dead_letter_twice_has_one_effect() {
    let ctx = TestContext::new().await.unwrap();
    let sku = SkuId::parse(testkit::unique("sku-")).unwrap();
    ctx.open_sale(&sku, 10, 5).await;
    let o = reserved(&ctx, &sku, "alice", 3).await;
    let settler = Settler {
        ledger: ctx.ledger(),
        store: ctx.store().await,
        producer: kafka::producer(&ctx.endpoint()).unwrap(),
        orders_topic: ctx.settings.kafka.orders_topic.clone(),
        config: ctx.settings.replayer.clone(),
    };
    for _ in 0..2 {
        assert_eq!(
            settler
                .compensate(&o, ReasonCode::UnknownSku)
                .await
                .unwrap(),
            Settled::Compensated
        );
    }
    let snapshot = ctx.ledger().snapshot(&sku).await.unwrap().unwrap();
    assert_eq!((snapshot.remaining, snapshot.released), (10, 3));
    let stats = ctx.store().await.sale_stats(&sku).await.unwrap().unwrap();
    assert_eq!(
        (stats.failed_orders, stats.confirmed_orders, stats.stock),
        (1, 0, 10)
    );
    let row = ctx.store().await.order(&o.order_id).await.unwrap().unwrap();
    assert_eq!(row.reason.as_deref(), Some("unknown_sku"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replayer_retries_what_is_retryable_compensates_the_rest_and_commits() {
    let ctx = TestContext::new().await.unwrap();
    let sku = SkuId::parse(testkit::unique("sku-")).unwrap();
    ctx.open_sale(&sku, 10, 5).await;
    let permanent = reserved(&ctx, &sku, "p", 2).await;
    let retryable = reserved(&ctx, &sku, "r", 1).await;
    let exhausted = reserved(&ctx, &sku, "x", 1).await;
    send_letter(&ctx, &permanent.encode(), ReasonCode::UnknownSku, 1).await;
    send_letter(&ctx, &retryable.encode(), ReasonCode::RetriesExhausted, 1).await;
    send_letter(
        &ctx,
        &exhausted.encode(),
        ReasonCode::RetriesExhausted,
        ctx.settings.replayer.max_replays + 1,
    )
    .await;
    send_letter(&ctx, b"garbage", ReasonCode::Undecodable, 1).await;

    let replayer = dlq_replayer::Replayer::build(
        &ctx.settings,
        dlq_replayer::Dependencies::connect(&ctx.settings, None)
            .await
            .unwrap(),
    )
    .unwrap();
    let metrics = replayer.metrics();
    let stop = CancellationToken::new();
    let handle = tokio::spawn(replayer.run_until_stopped(stop.clone()));
    let group = ctx.settings.kafka.replayer_group.clone();
    eventually(PATIENCE, "the dead-letter topic to drain", || async {
        let lag = testkit::group_lag(&ctx.endpoint(), &group, &ctx.settings.kafka.dlq_topic).await;
        (lag == 0).then_some(())
    })
    .await;
    let count = |outcome: &str| metrics.settled.with_label_values(&[outcome]).get();
    assert_eq!(
        (
            count("retried"),
            count("compensated"),
            count("unrecoverable")
        ),
        (1, 2, 1)
    );
    let snapshot = ctx.ledger().snapshot(&sku).await.unwrap().unwrap();
    assert_eq!(
        snapshot.released, 3,
        "the permanent and the exhausted letters' units came back"
    );
    let store = ctx.store().await;
    let row = store.order(&exhausted.order_id).await.unwrap().unwrap();
    assert_eq!(row.reason.as_deref(), Some("replay_attempts_exhausted"));

    // The retryable order is back on the orders topic with its replay count.
    let consumer: StreamConsumer =
        kafka::consumer(&ctx.endpoint(), &testkit::unique("probe-")).unwrap();
    consumer
        .subscribe(&[ctx.settings.kafka.orders_topic.as_str()])
        .unwrap();
    let message = tokio::time::timeout(PATIENCE, consumer.recv())
        .await
        .unwrap()
        .unwrap()
        .detach();
    assert_eq!(
        OrderRequested::decode(message.payload().unwrap())
            .unwrap()
            .order_id,
        retryable.order_id
    );
    assert_eq!(
        kafka::consume::header(&message, header::REPLAYS),
        Some(b"1".as_slice())
    );
    stop.cancel();
    handle.await.unwrap().unwrap();
}
