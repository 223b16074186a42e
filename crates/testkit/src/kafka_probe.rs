//! The tests' window on Kafka: producing raw messages (signed as the gateway signs orders, or
//! not at all, as a forger would), reading a topic from a group of the test's own, and a group's
//! lag.

use crate::{eventually, unique};
use domain::signing::SIGNATURE_HEADER;
use settings::Settings;
use std::time::Duration;

/// Produces `payload` with `key` to `topic` and waits for the acknowledgement.
pub async fn produce(
    endpoint: &kafka::Endpoint,
    topic: &str,
    key: &[u8],
    payload: &[u8],
) -> anyhow::Result<()> {
    produce_with_headers(endpoint, topic, key, payload, &[]).await
}

/// The `seckill-signature` header value of the order message `payload` keyed `key`, signed as
/// the gateway signs one with the keys of `settings`: what a test that produces orders by hand
/// adds, or the worker dead-letters them as forged.
pub fn order_signature(settings: &Settings, key: &[u8], payload: &[u8]) -> String {
    let keyring = settings
        .messages
        .keyring()
        .expect("the test's message keys are valid");
    keyring.sign(&domain::Signed::Order {
        key,
        payload,
        replays: b"",
    })
}

/// Produces `payload` with `key` to the orders topic of `settings`, signed as the gateway signs
/// an order ([`order_signature`]), and waits for the acknowledgement.
pub async fn produce_signed(
    endpoint: &kafka::Endpoint,
    settings: &Settings,
    key: &[u8],
    payload: &[u8],
) -> anyhow::Result<()> {
    let signature = order_signature(settings, key, payload);
    produce_with_headers(
        endpoint,
        &settings.kafka.orders_topic,
        key,
        payload,
        &[(SIGNATURE_HEADER, signature.as_str())],
    )
    .await
}

/// Like [`produce`], with `headers` (name, value) on the message.
pub async fn produce_with_headers(
    endpoint: &kafka::Endpoint,
    topic: &str,
    key: &[u8],
    payload: &[u8],
    headers: &[(&str, &str)],
) -> anyhow::Result<()> {
    use kafka::rdkafka::message::{Header, OwnedHeaders};
    use kafka::rdkafka::producer::FutureRecord;
    let producer = kafka::producer(endpoint)?;
    let mut owned = OwnedHeaders::new();
    for (name, value) in headers {
        owned = owned.insert(Header {
            key: name,
            value: Some(value.as_bytes()),
        });
    }
    producer
        .send(
            FutureRecord::to(topic)
                .key(key)
                .payload(payload)
                .headers(owned),
            kafka::rdkafka::util::Timeout::After(Duration::from_secs(10)),
        )
        .await
        .map_err(|(e, _)| e)?;
    Ok(())
}

/// A consumer of `topic` from its start, in a consumer group of its own: a test's window on
/// what reached the topic, taking nothing from the services' groups.
pub fn probe(endpoint: &kafka::Endpoint, topic: &str) -> kafka::rdkafka::consumer::StreamConsumer {
    use kafka::rdkafka::consumer::Consumer;
    let consumer = kafka::consumer(endpoint, &unique("probe-")).expect("a probe consumer");
    consumer.subscribe(&[topic]).expect("the probe subscribes");
    consumer
}

/// The next message of `consumer`, detached; fails the test with `what` after `within`.
pub async fn next_message(
    consumer: &kafka::rdkafka::consumer::StreamConsumer,
    within: Duration,
    what: &str,
) -> kafka::rdkafka::message::OwnedMessage {
    tokio::time::timeout(within, consumer.recv())
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {within:?}"))
        .unwrap_or_else(|e| panic!("{what}: {e}"))
        .detach()
}

/// Total lag of `group` on `topic`.
pub async fn group_lag(endpoint: &kafka::Endpoint, group: &str, topic: &str) -> i64 {
    let consumer = std::sync::Arc::new(kafka::consumer(endpoint, group).expect("consumer"));
    kafka::lag::total_lag(consumer, topic).await
}

/// Waits up to `within` until `group` has committed every message of `topic`.
pub async fn until_committed(
    endpoint: &kafka::Endpoint,
    group: &str,
    topic: &str,
    within: Duration,
) {
    eventually(
        within,
        &format!("{group} to commit all of {topic}"),
        || async { (group_lag(endpoint, group, topic).await == 0).then_some(()) },
    )
    .await;
}
