//! Reading batches from a consumer. Messages are detached from the client at once: a borrowed
//! message alive while the consumer drops would hang the drop.

use rdkafka::consumer::StreamConsumer;
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::Message;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Waits for the next message, then takes whatever else arrives within `wait`, up to `max`
/// messages. `None` when `shutdown` fired first.
pub async fn next_batch(
    consumer: &StreamConsumer,
    max: usize,
    wait: Duration,
    shutdown: &CancellationToken,
) -> Option<Vec<OwnedMessage>> {
    let first = loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return None,
            received = consumer.recv() => match received {
                Ok(message) => break message.detach(),
                Err(error) => {
                    tracing::warn!(%error, "consumer error");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    };
    let mut batch = vec![first];
    let deadline = tokio::time::Instant::now() + wait;
    while batch.len() < max {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(message)) => batch.push(message.detach()),
            Ok(Err(error)) => {
                tracing::warn!(%error, "consumer error");
                break;
            }
            Err(_) => break,
        }
    }
    Some(batch)
}

/// The value of the header `name` of `message`, if it has one.
pub fn header<'m>(message: &'m OwnedMessage, name: &str) -> Option<&'m [u8]> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
}

/// Splits a batch into per-partition runs, each in offset order, partitions in first-seen order.
pub fn by_partition(batch: Vec<OwnedMessage>) -> Vec<Vec<OwnedMessage>> {
    let mut runs: Vec<Vec<OwnedMessage>> = Vec::new();
    for message in batch {
        match runs.iter_mut().find(|run| {
            run[0].topic() == message.topic() && run[0].partition() == message.partition()
        }) {
            Some(run) => run.push(message),
            None => runs.push(vec![message]),
        }
    }
    for run in &mut runs {
        run.sort_by_key(|m| m.offset());
    }
    runs
}
