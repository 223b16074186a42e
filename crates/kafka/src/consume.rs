//! Reading batches from a consumer. Messages are detached from the client at once: a borrowed
//! message alive while the consumer drops would hang the drop.
//!
//! Each message is tagged the moment it is received. librdkafka runs a consumer's rebalance
//! callbacks inside the receive, so a tag read from the consumer's context right then says
//! which assignment the message belongs to; read later, a rebalance might have come between.

use rdkafka::consumer::{ConsumerContext, StreamConsumer};
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::Message;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Waits for the next message, then takes whatever else arrives within `wait`, up to `max`
/// messages, each with what `tag` says of it as it is received. `None` when `shutdown` fired
/// first.
pub async fn next_batch<C, T>(
    consumer: &StreamConsumer<C>,
    max: usize,
    wait: Duration,
    shutdown: &CancellationToken,
    mut tag: impl FnMut(&OwnedMessage) -> T,
) -> Option<Vec<(OwnedMessage, T)>>
where
    C: ConsumerContext + 'static,
{
    let mut tagged = |message: OwnedMessage| {
        let tag = tag(&message);
        (message, tag)
    };
    let first = loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return None,
            received = consumer.recv() => match received {
                Ok(message) => break tagged(message.detach()),
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
            Ok(Ok(message)) => batch.push(tagged(message.detach())),
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

/// Splits a tagged batch into runs of one partition and one tag, each in offset order, with its
/// tag, in first-seen order. Messages of a partition under two tags (a rebalance came between
/// them) make two runs.
pub fn by_partition<T: PartialEq>(batch: Vec<(OwnedMessage, T)>) -> Vec<(Vec<OwnedMessage>, T)> {
    let mut runs: Vec<(Vec<OwnedMessage>, T)> = Vec::new();
    for (message, tag) in batch {
        match runs.iter_mut().find(|(run, run_tag)| {
            run[0].topic() == message.topic()
                && run[0].partition() == message.partition()
                && *run_tag == tag
        }) {
            Some((run, _)) => run.push(message),
            None => runs.push((vec![message], tag)),
        }
    }
    for (run, _) in &mut runs {
        run.sort_by_key(|m| m.offset());
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;

    fn message(partition: i32, offset: i64) -> OwnedMessage {
        OwnedMessage::new(
            None,
            None,
            "t".to_owned(),
            Timestamp::NotAvailable,
            partition,
            offset,
            None,
        )
    }

    fn offsets(run: &[OwnedMessage]) -> Vec<(i32, i64)> {
        run.iter().map(|m| (m.partition(), m.offset())).collect()
    }

    #[test]
    fn a_batch_splits_into_runs_of_one_partition_and_one_tag_in_offset_order() {
        let batch = vec![
            (message(0, 4), 1),
            (message(1, 7), 1),
            (message(0, 3), 1),
            (message(0, 3), 2),
            (message(1, 8), 1),
            (message(0, 4), 2),
        ];
        let runs: Vec<_> = by_partition(batch)
            .iter()
            .map(|(run, tag)| (offsets(run), *tag))
            .collect();
        assert_eq!(
            runs,
            vec![
                (vec![(0, 3), (0, 4)], 1),
                (vec![(1, 7), (1, 8)], 1),
                (vec![(0, 3), (0, 4)], 2),
            ]
        );
    }
}
