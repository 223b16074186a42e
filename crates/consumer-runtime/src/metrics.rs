//! The metrics every consumer service exports, whatever it consumes.

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

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
        let metrics = Self {
            lag: kafka::lag::lag_gauge(),
            assigned: IntGauge::new(
                "seckill_consumer_assigned_partitions",
                "Partitions assigned to this consumer.",
            )
            .expect("valid metric"),
            batch_size: Histogram::with_opts(
                HistogramOpts::new(
                    "seckill_consumer_batch_size_messages",
                    "Messages per partition run handed to the service.",
                )
                .buckets(exponential_buckets(1.0, 2.0, 11).expect("valid buckets")),
            )
            .expect("valid metric"),
            batch_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "seckill_consumer_batch_duration_seconds",
                    "Time to handle and commit one partition run (not its preparation, done while the run before was handled).",
                )
                .buckets(exponential_buckets(0.0005, 2.0, 14).expect("valid buckets")),
            )
            .expect("valid metric"),
            commit_failures: IntCounter::new(
                "seckill_consumer_commit_failures_total",
                "Offset commits the broker refused or did not answer (the partition is redelivered).",
            )
            .expect("valid metric"),
            offset_gaps: IntCounterVec::new(
                Opts::new(
                    "seckill_consumer_offset_gaps_total",
                    "Times the next message was past the group's committed offset: the broker no longer had messages the group had not read.",
                ),
                &["topic"],
            )
            .expect("valid metric"),
            offsets_skipped: IntCounterVec::new(
                Opts::new(
                    "seckill_consumer_offsets_skipped_total",
                    "Offsets the consumer never saw because of those gaps.",
                ),
                &["topic"],
            )
            .expect("valid metric"),
        };
        for collector in [
            Box::new(metrics.lag.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(metrics.assigned.clone()),
            Box::new(metrics.batch_size.clone()),
            Box::new(metrics.batch_duration.clone()),
            Box::new(metrics.commit_failures.clone()),
            Box::new(metrics.offset_gaps.clone()),
            Box::new(metrics.offsets_skipped.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric registered once");
        }
        metrics
    }
}
