//! The worker's own metrics (the consumer runtime adds lag, assignment, batch and commit
//! metrics to the same registry).

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// Every metric the worker records.
#[derive(Clone)]
pub struct WorkerMetrics {
    /// The registry.
    pub registry: Registry,
    /// `seckill_orders_persisted_total{outcome}`
    pub persisted: IntCounterVec,
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
        let persisted = IntCounterVec::new(
            Opts::new(
                "seckill_orders_persisted_total",
                "Orders written to the database, by outcome.",
            ),
            &["outcome"],
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
        for outcome in [
            "confirmed",
            "failed",
            "key_conflict",
            "unreadable",
            "released",
        ] {
            persisted.with_label_values(&[outcome]);
        }
        for collector in [
            Box::new(persisted.clone()) as Box<dyn prometheus::core::Collector>,
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
            persisted,
            dead_letters,
            retries,
            compensations,
        }
    }
}
