//! The one way offsets are committed, for every consumer of the project: synchronously, only
//! for messages whose effect is durable, as "next offset to read" per partition. The blocking
//! commit runs on Tokio's blocking pool, never on the async threads, so a slow group
//! coordinator stalls only the consumer that waits for it.

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The highest processed offset per partition of a batch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PartitionOffsets(BTreeMap<(String, i32), i64>);

impl PartitionOffsets {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks `offset` of `topic`/`partition` as processed (its effect is durable).
    pub fn processed(&mut self, topic: &str, partition: i32, offset: i64) {
        let entry = self
            .0
            .entry((topic.to_owned(), partition))
            .or_insert(offset);
        *entry = (*entry).max(offset);
    }

    /// The offsets of `messages`, all of them processed.
    pub fn of(messages: &[OwnedMessage]) -> Self {
        let mut offsets = Self::new();
        for message in messages {
            offsets.processed(message.topic(), message.partition(), message.offset());
        }
        offsets
    }

    /// Whether nothing was marked.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Processed partitions and their highest processed offset.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i32, i64)> {
        self.0.iter().map(|((t, p), o)| (t.as_str(), *p, *o))
    }
}

/// Commits `offsets` (each as offset + 1, the next to read) and waits for the broker, on the
/// blocking pool. A commit with nothing new to commit is a success.
pub async fn commit_processed<K, C>(
    consumer: &Arc<K>,
    offsets: &PartitionOffsets,
) -> Result<(), RdKafkaError>
where
    K: Consumer<C> + Send + Sync + 'static,
    C: ConsumerContext,
{
    if offsets.is_empty() {
        return Ok(());
    }
    let mut list = TopicPartitionList::new();
    for (topic, partition, offset) in offsets.iter() {
        list.add_partition_offset(topic, partition, Offset::Offset(offset + 1))?;
    }
    let consumer = Arc::clone(consumer);
    let committed = tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync))
        .await
        .map_err(|_| RdKafkaError::Canceled)?;
    match committed {
        Ok(()) | Err(RdKafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_processed_offset_of_each_partition_wins() {
        let mut offsets = PartitionOffsets::new();
        offsets.processed("t", 0, 5);
        offsets.processed("t", 0, 3);
        offsets.processed("t", 1, 0);
        let seen: Vec<_> = offsets.iter().collect();
        assert_eq!(seen, vec![("t", 0, 5), ("t", 1, 0)]);
    }
}
