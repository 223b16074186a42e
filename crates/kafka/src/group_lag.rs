//! The lag of the project's two consumer groups as an operator reads it (`seckill-ctl lag`): the
//! worker group on the orders topic and the replayer group on the dead-letter topic, per
//! partition, with a total per group. The services export the same figure as a gauge
//! ([`crate::lag::lag_gauge`]); this is for a shell with no Prometheus at hand.

use crate::lag::{topic_lag, PartitionLag};
use crate::{Endpoint, KafkaError};
use settings::KafkaSettings;
use std::fmt::Write;
use std::time::Duration;

/// How long one broker request of the reading may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The lag of one group on one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLag {
    /// The consumer group.
    pub group: String,
    /// The topic it consumes.
    pub topic: String,
    /// One entry per partition, in partition order.
    pub partitions: Vec<PartitionLag>,
}

impl GroupLag {
    /// Messages not yet committed by the group, over every partition.
    pub fn total(&self) -> i64 {
        self.partitions.iter().map(PartitionLag::lag).sum()
    }
}

/// Reads the lag of the worker group on the orders topic and of the replayer group on the
/// dead-letter topic, from the brokers of `endpoint`. Joins neither group: the committed offsets
/// are asked by group id, so the running consumers are not rebalanced.
pub async fn project_lag(
    settings: &KafkaSettings,
    endpoint: &Endpoint,
) -> Result<Vec<GroupLag>, KafkaError> {
    let mut lags = Vec::with_capacity(2);
    for (group, topic) in [
        (&settings.worker_group, &settings.orders_topic),
        (&settings.replayer_group, &settings.dlq_topic),
    ] {
        let consumer = crate::consumer(endpoint, group)?;
        let name = topic.clone();
        // The client's metadata and offset calls block.
        let partitions = tokio::task::spawn_blocking(move || topic_lag(&consumer, &name, TIMEOUT))
            .await
            .map_err(|_| rdkafka::error::KafkaError::Canceled)??;
        lags.push(GroupLag {
            group: group.clone(),
            topic: topic.clone(),
            partitions,
        });
    }
    Ok(lags)
}

/// The lags as a table: one row per partition, then one `all` row per group with its total.
pub fn table(lags: &[GroupLag]) -> String {
    let mut out = format!(
        "{:<28} {:<28} {:>9} {:>12} {:>12} {:>10}\n",
        "group", "topic", "partition", "committed", "end", "lag"
    );
    for lag in lags {
        let (group, topic) = (&lag.group, &lag.topic);
        for partition in &lag.partitions {
            let _ = writeln!(
                out,
                "{group:<28} {topic:<28} {:>9} {:>12} {:>12} {:>10}",
                partition.partition,
                partition.committed,
                partition.end,
                partition.lag()
            );
        }
        let _ = writeln!(
            out,
            "{group:<28} {topic:<28} {:>9} {:>12} {:>12} {:>10}",
            "all",
            "",
            "",
            lag.total()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_row_per_partition_and_a_total_per_group() {
        let lags = [GroupLag {
            group: "workers".into(),
            topic: "orders".into(),
            partitions: vec![
                PartitionLag {
                    partition: 0,
                    committed: 5,
                    end: 7,
                },
                PartitionLag {
                    partition: 1,
                    committed: 3,
                    end: 3,
                },
            ],
        }];
        let table = table(&lags);
        let rows: Vec<Vec<&str>> = table
            .lines()
            .map(|line| line.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows,
            [
                vec!["group", "topic", "partition", "committed", "end", "lag"],
                vec!["workers", "orders", "0", "5", "7", "2"],
                vec!["workers", "orders", "1", "3", "3", "0"],
                vec!["workers", "orders", "all", "2"],
            ]
        );
    }
}
