//! Which partitions this member holds, as librdkafka tells it: the consumer's context, whose
//! rebalance callbacks record, per partition, whether it is assigned and its assignment
//! generation (bumped each time the partition is assigned).
//!
//! The callbacks run inside the consumer's poll, so a message received after a callback belongs
//! to the assignment that callback made. The runtime tags each message with its partition's
//! generation as it is received, and hands a run over only while the partition is still assigned
//! under that generation. A run prepared before its partition was revoked is dropped, also when
//! the partition came back in the meantime: the partition's owner reads it again from the
//! group's committed offset, and handling the stale run could commit past or behind it.
//!
//! Lists from the client are turned into plain values at once: a list alive when the consumer
//! drops would hang the drop.

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::TopicPartitionList;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// A partition's assignment generation: how many times it was assigned to this member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Generation(u64);

/// What this member knows of one partition.
#[derive(Debug, Clone, Copy, Default)]
struct Holding {
    assigned: bool,
    generation: u64,
}

type Partition = (String, i32);

/// Per topic, per partition. Looked up for every message received, by the topic's name as the
/// message borrows it.
type Record = HashMap<String, HashMap<i32, Holding>>;

/// The consumer context that tracks the assignment, and keeps the assigned-partitions gauge.
pub(crate) struct Assignments {
    partitions: Mutex<Record>,
    assigned: prometheus::IntGauge,
}

impl Assignments {
    /// Nothing assigned yet; `assigned` follows the count of assigned partitions.
    pub(crate) fn new(assigned: prometheus::IntGauge) -> Self {
        assigned.set(0);
        Self {
            partitions: Mutex::new(HashMap::new()),
            assigned,
        }
    }

    /// The generation of `partition` now: what a message of it received now is tagged with.
    pub(crate) fn generation(&self, topic: &str, partition: i32) -> Generation {
        Generation(self.holding(topic, partition).generation)
    }

    /// Whether `partition` is still assigned under `generation`.
    pub(crate) fn holds(&self, topic: &str, partition: i32, generation: Generation) -> bool {
        let holding = self.holding(topic, partition);
        holding.assigned && holding.generation == generation.0
    }

    fn holding(&self, topic: &str, partition: i32) -> Holding {
        self.partitions()
            .get(topic)
            .and_then(|partitions| partitions.get(&partition))
            .copied()
            .unwrap_or_default()
    }

    fn assign(&self, partitions: Vec<Partition>) {
        let mut record = self.partitions();
        for (topic, partition) in partitions {
            let holding = holding_of(&mut record, topic, partition);
            holding.assigned = true;
            holding.generation += 1;
        }
    }

    fn revoke(&self, partitions: Vec<Partition>) {
        let mut record = self.partitions();
        for (topic, partition) in partitions {
            let holding = holding_of(&mut record, topic, partition);
            holding.assigned = false;
        }
    }

    /// Makes the record agree with `assignment` (what the client holds after a rebalance the
    /// callbacks could not read): partitions it lacks are revoked, partitions it has that were
    /// not assigned are assigned anew.
    fn resync(&self, assignment: Vec<Partition>) {
        let mut record = self.partitions();
        for (topic, partitions) in record.iter_mut() {
            for (partition, holding) in partitions.iter_mut() {
                if !assignment.contains(&(topic.clone(), *partition)) {
                    holding.assigned = false;
                }
            }
        }
        for (topic, partition) in assignment {
            let holding = holding_of(&mut record, topic, partition);
            if !holding.assigned {
                holding.assigned = true;
                holding.generation += 1;
            }
        }
    }

    fn count_assigned(&self) {
        let count = self
            .partitions()
            .values()
            .flat_map(HashMap::values)
            .filter(|holding| holding.assigned)
            .count();
        self.assigned.set(count as i64);
    }

    fn partitions(&self) -> MutexGuard<'_, Record> {
        // The map is updated in one step per call: a panic elsewhere cannot leave it half
        // written, so a poisoned lock still holds a true record.
        self.partitions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What `record` has of `partition`, made (unassigned, generation 0) if it has nothing.
fn holding_of(record: &mut Record, topic: String, partition: i32) -> &mut Holding {
    record
        .entry(topic)
        .or_default()
        .entry(partition)
        .or_default()
}

/// The partitions of a list from the client, as plain values.
fn plain(list: &TopicPartitionList) -> Vec<Partition> {
    list.elements()
        .iter()
        .map(|element| (element.topic().to_owned(), element.partition()))
        .collect()
}

impl ClientContext for Assignments {}

impl ConsumerContext for Assignments {
    /// A revocation is recorded before the client lets the partitions go, so that no run of
    /// them is handed over from then on.
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let partitions = plain(list);
            tracing::info!(?partitions, "partitions revoked");
            self.revoke(partitions);
        }
    }

    /// An assignment is recorded once the client took the partitions: the messages received
    /// from then on are of the new generation.
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let partitions = plain(list);
                tracing::info!(?partitions, "partitions assigned");
                self.assign(partitions);
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => {
                // The client changed its assignment without saying which partitions: read what
                // it holds now.
                tracing::warn!(%error, "rebalance error");
                match consumer.assignment() {
                    Ok(list) => self.resync(plain(&list)),
                    Err(error) => {
                        // Nothing can be vouched for: no run is handed over until the next
                        // assignment.
                        tracing::error!(%error, "assignment unreadable after a rebalance error");
                        self.resync(Vec::new());
                    }
                }
            }
        }
        self.count_assigned();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge() -> prometheus::IntGauge {
        prometheus::IntGauge::new("assigned", "assigned").expect("valid metric")
    }

    fn topic(partitions: &[i32]) -> Vec<Partition> {
        partitions.iter().map(|&p| ("t".to_owned(), p)).collect()
    }

    #[test]
    fn a_run_fetched_before_a_revocation_is_not_held_even_once_the_partition_is_back() {
        let assignments = Assignments::new(gauge());
        assignments.assign(topic(&[0, 1]));
        let before = assignments.generation("t", 0);
        assert!(assignments.holds("t", 0, before));
        assignments.revoke(topic(&[0]));
        assert!(!assignments.holds("t", 0, before));
        assignments.assign(topic(&[0]));
        assert!(!assignments.holds("t", 0, before));
        let after = assignments.generation("t", 0);
        assert!(assignments.holds("t", 0, after));
        assert!(assignments.holds("t", 1, assignments.generation("t", 1)));
    }

    #[test]
    fn a_message_of_a_partition_never_assigned_is_not_held() {
        let assignments = Assignments::new(gauge());
        assert!(!assignments.holds("t", 3, assignments.generation("t", 3)));
    }

    #[test]
    fn a_resync_revokes_what_the_client_lost_and_assigns_anew_what_it_gained() {
        let assignments = Assignments::new(gauge());
        assignments.assign(topic(&[0, 1]));
        let kept = assignments.generation("t", 0);
        assignments.resync(topic(&[0, 2]));
        assert!(
            assignments.holds("t", 0, kept),
            "a partition kept keeps its generation"
        );
        assert!(!assignments.holds("t", 1, assignments.generation("t", 1)));
        assert!(assignments.holds("t", 2, assignments.generation("t", 2)));
    }
}
