//! Consumer lag: for each partition, the log end offset minus the group's committed offset.
//! Computed from the broker's view (committed offsets of the group, high watermarks), so it
//! stays true when no message flows and whoever asks.

use rdkafka::consumer::{Consumer, ConsumerContext, DefaultConsumerContext, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use std::time::Duration;

/// The lag of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLag {
    /// Partition number.
    pub partition: i32,
    /// Committed offset of the group. Where it has committed nothing, the partition's earliest
    /// offset still kept (low watermark): where the group will start, as every consumer is
    /// built with `auto.offset.reset = earliest`.
    pub committed: i64,
    /// Log end offset (high watermark).
    pub end: i64,
}

impl PartitionLag {
    /// Messages not yet committed by the group.
    pub fn lag(&self) -> i64 {
        (self.end - self.committed).max(0)
    }
}

/// Reads the lag of every partition of `topic` for the consumer's group. Blocking: call from a
/// blocking context. Lists are turned into plain values at once (a live list from the client can
/// hang the consumer's drop). A partition whose committed offset the broker could not read, or
/// reads as no position at all, is an error rather than a guess.
pub fn topic_lag<K: Consumer<C>, C: ConsumerContext>(
    consumer: &K,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<PartitionLag>, crate::KafkaError> {
    let partitions: Vec<i32> = {
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect()
    };
    let committed: Vec<(i32, Option<i64>)> = {
        let mut list = TopicPartitionList::new();
        for partition in &partitions {
            list.add_partition(topic, *partition);
        }
        let list = consumer.committed_offsets(list, timeout)?;
        list.elements()
            .iter()
            .map(|e| {
                e.error()?;
                Ok((
                    e.partition(),
                    committed_position(topic, e.partition(), e.offset())?,
                ))
            })
            .collect::<Result<_, crate::KafkaError>>()?
    };
    let mut lags = Vec::with_capacity(partitions.len());
    for (partition, committed) in committed {
        let (start, end) = consumer.fetch_watermarks(topic, partition, timeout)?;
        lags.push(PartitionLag {
            partition,
            committed: committed.unwrap_or(start),
            end,
        });
    }
    lags.sort_by_key(|l| l.partition);
    Ok(lags)
}

/// The position a group's committed offset names: `None` where it has committed nothing
/// (librdkafka's `Invalid`), an error for an answer that is no position.
fn committed_position(
    topic: &str,
    partition: i32,
    offset: Offset,
) -> Result<Option<i64>, crate::KafkaError> {
    match offset {
        Offset::Offset(o) => Ok(Some(o)),
        Offset::Invalid => Ok(None),
        Offset::Beginning | Offset::End | Offset::Stored | Offset::OffsetTail(_) => {
            Err(crate::KafkaError::UnexpectedOffset {
                topic: topic.to_owned(),
                partition,
                offset: format!("{offset:?}"),
            })
        }
    }
}

/// `seckill_consumer_lag_messages{topic,partition}`, the one lag gauge every consumer exports
/// (same name and help everywhere, so Prometheus can aggregate across services and replicas).
pub fn lag_gauge() -> prometheus::IntGaugeVec {
    prometheus::IntGaugeVec::new(
        prometheus::Opts::new(
            "seckill_consumer_lag_messages",
            "Messages not yet committed by the consumer group: log end offset minus committed offset.",
        ),
        &["topic", "partition"],
    )
    .expect("valid metric")
}

/// The group's lag summed over the partitions of `topic` (-1 when the broker cannot tell),
/// computed off the async threads.
pub async fn total_lag(
    consumer: std::sync::Arc<rdkafka::consumer::StreamConsumer>,
    topic: &str,
) -> i64 {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        topic_lag(&*consumer, &topic, Duration::from_secs(5))
            .map(|lags| lags.iter().map(PartitionLag::lag).sum())
            .unwrap_or(-1)
    })
    .await
    .unwrap_or(-1)
}

/// Waits until the group has committed, on every partition of `topic`, everything that was in
/// the partition when the wait began (the group caught up with "now", even while new messages
/// keep coming). `progress` is told the messages still to go after each look. Errors when the
/// broker cannot tell or `timeout` passes first.
pub async fn wait_caught_up(
    consumer: std::sync::Arc<rdkafka::consumer::StreamConsumer>,
    topic: &str,
    timeout: Duration,
    mut progress: impl FnMut(i64),
) -> anyhow::Result<()> {
    let look = |consumer: std::sync::Arc<rdkafka::consumer::StreamConsumer>, topic: String| {
        tokio::task::spawn_blocking(move || topic_lag(&*consumer, &topic, Duration::from_secs(5)))
    };
    let started = std::time::Instant::now();
    let marks = look(consumer.clone(), topic.to_owned()).await??;
    loop {
        let now = look(consumer.clone(), topic.to_owned()).await??;
        let to_go: i64 = marks
            .iter()
            .map(|mark| {
                let committed = now
                    .iter()
                    .find(|l| l.partition == mark.partition)
                    .map_or(0, |l| l.committed);
                (mark.end - committed).max(0)
            })
            .sum();
        progress(to_go);
        if to_go == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "the group has not caught up with {topic} within {timeout:?}: {to_go} messages to go"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Keeps a consumer's lag gauge (`seckill_consumer_lag_messages`) current: one
/// [`LagReporter::refresh`] reads it from the broker. The consumer runtime refreshes it on a
/// timer, whether messages flow or not (its assigned-partitions gauge is set by the consumer's
/// rebalance callbacks instead).
pub struct LagReporter<C: ConsumerContext + 'static = DefaultConsumerContext> {
    consumer: std::sync::Arc<StreamConsumer<C>>,
    topic: String,
    gauge: prometheus::IntGaugeVec,
}

impl<C: ConsumerContext + 'static> LagReporter<C> {
    /// A reporter of `consumer`'s group lag on `topic` into `gauge`.
    pub fn new(
        consumer: std::sync::Arc<StreamConsumer<C>>,
        topic: String,
        gauge: prometheus::IntGaugeVec,
    ) -> Self {
        Self {
            consumer,
            topic,
            gauge,
        }
    }

    /// Reads the lag once (blocking broker calls, on the blocking pool) and sets the gauge.
    pub async fn refresh(&self) -> Result<(), crate::KafkaError> {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        let lags = tokio::task::spawn_blocking(move || {
            topic_lag(&*consumer, &topic, Duration::from_secs(2))
        })
        .await
        .map_err(|_| rdkafka::error::KafkaError::Canceled)?;
        for lag in lags? {
            self.gauge
                .with_label_values(&[self.topic.as_str(), &lag.partition.to_string()])
                .set(lag.lag());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_committed_offset_is_a_position_nothing_committed_is_none_and_anything_else_an_error() {
        assert_eq!(
            committed_position("t", 0, Offset::Offset(7)).ok(),
            Some(Some(7))
        );
        assert_eq!(committed_position("t", 0, Offset::Invalid).ok(), Some(None));
        for offset in [
            Offset::Beginning,
            Offset::End,
            Offset::Stored,
            Offset::OffsetTail(3),
        ] {
            let error = committed_position("t", 2, offset).unwrap_err();
            assert!(error.to_string().contains("t/2"), "{error}");
        }
    }
}
