//! Scenario 9 of the fault suite: the replayer, as a separate process, is SIGKILLed in the middle
//! of draining a full dead-letter topic and a new one takes over. Every letter is handled once in
//! effect: each compensated order is failed once and its units come back once; each retryable
//! order is back on the orders topic (a letter settled but not committed before the kill is
//! republished again, which the worker's idempotent write absorbs).

use super::{orders_probe, reserved, send_letters, PATIENCE};
use domain::ReasonCode;
use kafka::rdkafka::Message;
use std::collections::HashSet;
use std::time::Duration;
use testkit::process::ServiceProcess;
use testkit::{eventually, TestContext};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayer_killed_mid_drain_is_replaced_and_each_letter_has_one_effect() {
    const PERMANENT: usize = 240;
    const RETRYABLE: usize = 60;
    const STOCK: i64 = (PERMANENT + RETRYABLE) as i64;
    let (ctx, sku) = TestContext::with_sale(STOCK, 1).await;
    let mut compensated = Vec::new();
    let mut retried = HashSet::new();
    let mut letters = Vec::new();
    for i in 0..PERMANENT + RETRYABLE {
        let o = reserved(&ctx, &sku, &format!("buyer-{i}"), 1).await;
        if i % 5 == 4 {
            letters.push((o.encode(), ReasonCode::RetriesExhausted, 1));
            retried.insert(o.order_id.to_string());
        } else {
            letters.push((o.encode(), ReasonCode::UnknownSku, 1));
            compensated.push(o);
        }
    }
    send_letters(&ctx, &letters).await;
    let store = ctx.store().await;
    let failed = || async {
        store
            .sale_stats(&sku)
            .await
            .unwrap()
            .map_or(0, |s| s.failed.orders)
    };
    let binary = env!("CARGO_BIN_EXE_seckill-dlq-replayer");
    let mut doomed = ServiceProcess::start(binary, &["run"], &ctx.settings);
    eventually(PATIENCE, "the replayer to be mid-drain", || async {
        (failed().await > 0).then_some(())
    })
    .await;
    doomed.signal("-KILL");
    doomed.wait_exit(Duration::from_secs(5));
    let at_kill = failed().await;
    let mut successor = ServiceProcess::start(binary, &["run"], &ctx.settings);
    let kafka = &ctx.settings.kafka;
    testkit::until_committed(
        &ctx.endpoint(),
        &kafka.replayer_group,
        &kafka.dlq_topic,
        Duration::from_secs(90),
    )
    .await;
    assert!(successor
        .terminate(Duration::from_secs(ctx.settings.shutdown.grace_secs))
        .success());

    // Compensations: once each, whatever the kill interrupted.
    let stats = ctx.sale_stats(&sku).await;
    assert_eq!(
        stats.failed.orders, PERMANENT as i64,
        "killed after {at_kill} compensations"
    );
    assert_eq!(stats.awaiting_payment.orders, 0);
    assert_eq!(stats.stock, STOCK, "the database stock is untouched");
    let snapshot = ctx.snapshot(&sku).await;
    assert_eq!(
        snapshot.released, PERMANENT as i64,
        "each compensated order's unit came back exactly once"
    );
    assert_eq!(snapshot.remaining, PERMANENT as i64);
    assert_eq!(snapshot.reserved, STOCK);
    for o in &compensated {
        let row = store.order(&o.order_id).await.unwrap().unwrap();
        assert_eq!(row.reason.as_deref(), Some("unknown_sku"));
    }
    // Retries: every retryable order is back on the orders topic, none lost.
    let consumer = orders_probe(&ctx);
    let (mut seen, mut copies) = (HashSet::new(), 0);
    while seen.len() < RETRYABLE {
        let message =
            testkit::next_message(&consumer, PATIENCE, "every retryable order is republished")
                .await;
        let order = domain::OrderRequested::decode(message.payload().unwrap()).unwrap();
        copies += 1;
        seen.insert(order.order_id.to_string());
    }
    assert_eq!(seen, retried);
    assert!(copies >= RETRYABLE);
}
