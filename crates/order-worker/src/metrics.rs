//! The worker's metrics.

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

/// Every metric the worker records.
#[derive(Clone)]
pub struct WorkerMetrics {
    /// The registry.
    pub registry: Registry,
    /// `seckill_consumer_lag_messages{topic,partition}`: log end offset minus committed offset.
    pub lag: IntGaugeVec,
    /// `seckill_consumer_assigned_partitions`
    pub assigned: IntGauge,
    /// `seckill_orders_persisted_total{outcome}`
    pub persisted: IntCounterVec,
    /// `seckill_worker_batch_size_messages`
    pub batch_size: Histogram,
    /// `seckill_worker_batch_duration_seconds`
    pub batch_duration: Histogram,
    /// `seckill_dlq_published_total{reason}`
    pub dead_letters: IntCounterVec,
    /// `seckill_worker_retries_total`
    pub retries: IntCounter,
    /// `seckill_worker_compensations_total`
    pub compensations: IntCounter,
}

impl WorkerMetrics {
    /// Creates and registers the metrics.
    pub fn new(registry: Registry) -> Self {
        let lag = kafka::lag::lag_gauge();
        let assigned = IntGauge::new(
            "seckill_consumer_assigned_partitions",
            "Partitions assigned to this consumer.",
        )
        .expect("valid metric");
        let persisted = IntCounterVec::new(
            Opts::new(
                "seckill_orders_persisted_total",
                "Orders written to the database, by outcome.",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "seckill_worker_batch_size_messages",
                "Messages per partition batch.",
            )
            .buckets(exponential_buckets(1.0, 2.0, 11).expect("valid buckets")),
        )
        .expect("valid metric");
        let batch_duration = Histogram::with_opts(
            HistogramOpts::new(
                "seckill_worker_batch_duration_seconds",
                "Time to process and commit one partition batch.",
            )
            .buckets(exponential_buckets(0.0005, 2.0, 14).expect("valid buckets")),
        )
        .expect("valid metric");
        let dead_letters = IntCounterVec::new(
            Opts::new(
                "seckill_dlq_published_total",
                "Messages sent to the dead-letter topic, by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let retries = IntCounter::new(
            "seckill_worker_retries_total",
            "In-place retries of a batch after a transient failure.",
        )
        .expect("valid metric");
        let compensations = IntCounter::new(
            "seckill_worker_compensations_total",
            "Reservations given back by the worker after the database refused an order.",
        )
        .expect("valid metric");
        for reason in domain::ReasonCode::ALL {
            dead_letters.with_label_values(&[reason.as_str()]);
        }
        for outcome in ["confirmed", "failed", "key_conflict", "released"] {
            persisted.with_label_values(&[outcome]);
        }
        for collector in [
            Box::new(lag.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(assigned.clone()),
            Box::new(persisted.clone()),
            Box::new(batch_size.clone()),
            Box::new(batch_duration.clone()),
            Box::new(dead_letters.clone()),
            Box::new(retries.clone()),
            Box::new(compensations.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric registered once");
        }
        Self {
            registry,
            lag,
            assigned,
            persisted,
            batch_size,
            batch_duration,
            dead_letters,
            retries,
            compensations,
        }
    }
}
