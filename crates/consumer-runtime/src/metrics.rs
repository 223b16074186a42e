//! The metrics every consumer service exports, whatever it consumes.

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};
use telemetry::metrics::{counter, counter_vec, exponential_buckets, gauge, histogram, register};

/// The consumer metrics, registered in the service's registry.
#[derive(Clone)]
pub struct ConsumerMetrics {
    /// `seckill_consumer_lag_messages{topic,partition}`: log end offset minus committed offset.
    pub lag: IntGaugeVec,
    /// `seckill_consumer_assigned_partitions`
    pub assigned: IntGauge,
    /// `seckill_consumer_batch_size_messages`
    pub batch_size: Histogram,
    /// `seckill_consumer_batch_duration_seconds`
    pub batch_duration: Histogram,
    /// `seckill_consumer_commit_failures_total`
    pub commit_failures: IntCounter,
    /// `seckill_consumer_offset_gaps_total{topic}`: times the next message was past the
    /// group's committed offset (the broker no longer had messages the group had not read).
    pub offset_gaps: IntCounterVec,
    /// `seckill_consumer_offsets_skipped_total{topic}`: offsets those gaps jumped over.
    pub offsets_skipped: IntCounterVec,
}

impl ConsumerMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Self {
        let r = registry;
        Self {
            lag: register(r, kafka::lag::lag_gauge()),
            assigned: gauge(
                r,
                "seckill_consumer_assigned_partitions",
                "Partitions assigned to this consumer.",
            ),
            batch_size: histogram(
                r,
                "seckill_consumer_batch_size_messages",
                "Messages per partition run handed to the service.",
                exponential_buckets(1.0, 2.0, 11),
            ),
            batch_duration: histogram(
                r,
                "seckill_consumer_batch_duration_seconds",
                "Time to handle and commit one partition run (not its preparation, done while the run before was handled).",
                exponential_buckets(0.0005, 2.0, 14),
            ),
            commit_failures: counter(
                r,
                "seckill_consumer_commit_failures_total",
                "Offset commits the broker refused or did not answer (the partition is redelivered).",
            ),
            offset_gaps: counter_vec(
                r,
                "seckill_consumer_offset_gaps_total",
                "Times the next message was past the group's committed offset: the broker no longer had messages the group had not read.",
                &["topic"],
            ),
            offsets_skipped: counter_vec(
                r,
                "seckill_consumer_offsets_skipped_total",
                "Offsets the consumer never saw because of those gaps.",
                &["topic"],
            ),
        }
    }
}
