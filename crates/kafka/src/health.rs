//! Whether the brokers answer: the readiness check of every service that talks to Kafka.

use rdkafka::producer::{FutureProducer, Producer};
use std::time::Duration;

/// Asks the brokers for the metadata of `topic` through `producer`'s connections (a blocking
/// call, run on the blocking pool); `Ok` when they answer within `timeout`.
pub async fn brokers_answer(
    producer: &FutureProducer,
    topic: &str,
    timeout: Duration,
) -> Result<(), crate::KafkaError> {
    let producer = producer.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(Some(&topic), timeout)
            .map(|_| ())
    })
    .await
    .map_err(|_| rdkafka::error::KafkaError::Canceled)??;
    Ok(())
}
