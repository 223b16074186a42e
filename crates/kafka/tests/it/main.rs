//! Lag and commits against an embedded broker.

// Test helpers panic to report, like the tests themselves.
#![allow(clippy::unwrap_used)]

use kafka::rdkafka::consumer::Consumer;
use kafka::rdkafka::Message;
use kafka::PartitionOffsets;
use std::sync::Arc;
use std::time::Duration;
use testkit::{eventually, TestContext};

mod security;

fn lag_of(gauge: &prometheus::IntGaugeVec, topic: &str, partitions: i32) -> i64 {
    (0..partitions)
        .map(|p| gauge.with_label_values(&[topic, &p.to_string()]).get())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lag_gauge_rises_as_messages_are_produced_and_falls_as_they_are_committed() {
    let ctx = TestContext::new().await.unwrap();
    let topic = ctx.settings.kafka.orders_topic.clone();
    let group = ctx.settings.kafka.worker_group.clone();
    let partitions = ctx.settings.kafka.partitions;
    let consumer = Arc::new(kafka::consumer(&ctx.endpoint(), &group).unwrap());
    let gauge = kafka::lag::lag_gauge();
    let reporter = kafka::lag::LagReporter::new(consumer.clone(), topic.clone(), gauge.clone());
    for i in 0..7 {
        testkit::produce(
            &ctx.endpoint(),
            &topic,
            format!("sku-{i}").as_bytes(),
            b"{}",
        )
        .await
        .unwrap();
    }
    eventually(Duration::from_secs(20), "lag 7", || async {
        reporter.refresh().await.ok()?;
        (lag_of(&gauge, &topic, partitions) == 7).then_some(())
    })
    .await;

    // Consume and commit four of them: the gauge follows the committed offsets, not the reads.
    consumer.subscribe(&[topic.as_str()]).unwrap();
    let mut offsets = PartitionOffsets::new();
    let mut read = 0;
    while read < 7 {
        let message = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
            .await
            .unwrap()
            .unwrap()
            .detach();
        read += 1;
        if read <= 4 {
            offsets.processed(message.topic(), message.partition(), message.offset());
        }
    }
    let committed_partitions: Vec<i32> = offsets.iter().map(|(_, p, _)| p).collect();
    kafka::commit_processed(&consumer, &offsets).await.unwrap();
    let expected_left = 7 - 4;
    // Per-partition commits mark everything up to the highest committed offset of a partition.
    let left = eventually(Duration::from_secs(20), "lag to fall", || async {
        reporter.refresh().await.ok()?;
        let lag = lag_of(&gauge, &topic, partitions);
        (lag < 7).then_some(lag)
    })
    .await;
    assert!(
        left <= expected_left,
        "lag {left} after committing 4 of 7 ({committed_partitions:?})"
    );
    assert!(left >= 0);
    drop(reporter);
    consumer.unsubscribe();
}

/// The commit waits for the group coordinator on the blocking pool: on a runtime with a single
/// thread, the other tasks keep running while a slow coordinator answers.
#[tokio::test(flavor = "current_thread")]
async fn a_slow_coordinator_stalls_the_commit_not_the_runtime() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let ctx = TestContext::new().await.unwrap();
    let topic = ctx.settings.kafka.orders_topic.clone();
    testkit::produce(&ctx.endpoint(), &topic, b"sku", b"{}")
        .await
        .unwrap();
    let consumer =
        Arc::new(kafka::consumer(&ctx.endpoint(), &ctx.settings.kafka.worker_group).unwrap());
    consumer.subscribe(&[topic.as_str()]).unwrap();
    let message = testkit::next_message(&consumer, Duration::from_secs(20), "the message").await;
    let offsets = PartitionOffsets::of(std::slice::from_ref(&message));

    ctx.broker
        .mock()
        .broker_round_trip_time(1, Duration::from_millis(1500))
        .unwrap();
    let ticks = Arc::new(AtomicU32::new(0));
    let ticker = {
        let ticks = ticks.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                ticks.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let started = std::time::Instant::now();
    kafka::commit_processed(&consumer, &offsets).await.unwrap();
    let waited = started.elapsed();
    let ticked = ticks.load(Ordering::SeqCst);
    ticker.abort();
    assert!(
        waited >= Duration::from_millis(1000),
        "the coordinator answered in {waited:?}: not slow, the test proves nothing"
    );
    assert!(
        u128::from(ticked) >= waited.as_millis() / 50 / 2,
        "the runtime ran {ticked} ticks of 50 ms in {waited:?}: the commit blocked it"
    );
    ctx.broker
        .mock()
        .broker_round_trip_time(1, Duration::ZERO)
        .unwrap();
    consumer.unsubscribe();
}
