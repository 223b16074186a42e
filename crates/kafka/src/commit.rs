//! The one way offsets are committed, for every consumer of the project: synchronously, only
//! for messages whose effect is durable, as "next offset to read" per partition.

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;

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

    /// Whether nothing was marked.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Processed partitions and their highest processed offset.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i32, i64)> {
        self.0.iter().map(|((t, p), o)| (t.as_str(), *p, *o))
    }
}

/// Commits `offsets` (each as offset + 1, the next to read) and waits for the broker. A commit
/// with nothing new to commit is a success.
pub fn commit_processed<C: Consumer>(
    consumer: &C,
    offsets: &PartitionOffsets,
) -> Result<(), RdKafkaError> {
    if offsets.is_empty() {
        return Ok(());
    }
    let mut list = TopicPartitionList::new();
    for (topic, partition, offset) in offsets.iter() {
        list.add_partition_offset(topic, partition, Offset::Offset(offset + 1))?;
    }
    match consumer.commit(&list, CommitMode::Sync) {
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
