//! The worker's own metrics (the consumer runtime adds lag, assignment, batch and commit
//! metrics to the same registry).

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry,
};

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
    /// `seckill_sweeper_rounds_total{result}`
    pub sweeper_rounds: IntCounterVec,
    /// `seckill_sweeper_republished_total`
    pub sweeper_republished: IntCounter,
    /// `seckill_sweeper_republished_age_seconds`
    pub sweeper_republished_age: Histogram,
    /// `seckill_sweeper_already_written_total`
    pub sweeper_already_written: IntCounter,
    /// `seckill_sweeper_unpublishable_total`
    pub sweeper_unpublishable: IntCounter,
    /// `seckill_orders_expired_total`
    pub orders_expired: IntCounter,
    /// `seckill_expiry_units_returned_total`
    pub expiry_units_returned: IntCounter,
    /// `seckill_expiry_rounds_total{result}`
    pub expiry_rounds: IntCounterVec,
    /// `seckill_orders_awaiting_payment`
    pub orders_awaiting_payment: IntGauge,
    /// `seckill_units_awaiting_payment`
    pub units_awaiting_payment: IntGauge,
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
        let sweeper_rounds = IntCounterVec::new(
            Opts::new(
                "seckill_sweeper_rounds_total",
                "Sweeps of the stale reservations, by result (ok, error).",
            ),
            &["result"],
        )
        .expect("valid metric");
        for result in ["ok", "error"] {
            sweeper_rounds.with_label_values(&[result]);
        }
        let sweeper_republished = IntCounter::new(
            "seckill_sweeper_republished_total",
            "Orders of stale reservations published again.",
        )
        .expect("valid metric");
        let sweeper_republished_age = Histogram::with_opts(
            HistogramOpts::new(
                "seckill_sweeper_republished_age_seconds",
                "Age (since the buy request) of the orders the sweeper published again.",
            )
            .buckets(exponential_buckets(1.0, 2.0, 16).expect("valid buckets")),
        )
        .expect("valid metric");
        let sweeper_already_written = IntCounter::new(
            "seckill_sweeper_already_written_total",
            "Stale reservations whose order had a row after all (finished without publishing).",
        )
        .expect("valid metric");
        let sweeper_unpublishable = IntCounter::new(
            "seckill_sweeper_unpublishable_total",
            "Times a stale reservation was found without a readable outbox entry (each is taken again every stale period).",
        )
        .expect("valid metric");
        let orders_expired = IntCounter::new(
            "seckill_orders_expired_total",
            "Orders not paid by their pay_by, expired by the expirer (their units went back on sale).",
        )
        .expect("valid metric");
        let expiry_units_returned = IntCounter::new(
            "seckill_expiry_units_returned_total",
            "Units of expired orders given back to Redis (stock and the buyer's per-user count).",
        )
        .expect("valid metric");
        let expiry_rounds = IntCounterVec::new(
            Opts::new(
                "seckill_expiry_rounds_total",
                "Rounds of the expirer, by result (ok, error).",
            ),
            &["result"],
        )
        .expect("valid metric");
        for result in ["ok", "error"] {
            expiry_rounds.with_label_values(&[result]);
        }
        let orders_awaiting_payment = IntGauge::new(
            "seckill_orders_awaiting_payment",
            "Orders written and not yet paid nor expired, across all sales (read every 15 s; every replica reports the same figure).",
        )
        .expect("valid metric");
        let units_awaiting_payment = IntGauge::new(
            "seckill_units_awaiting_payment",
            "Units those orders hold until they are paid or expire.",
        )
        .expect("valid metric");
        for reason in domain::ReasonCode::ALL {
            dead_letters.with_label_values(&[reason.as_str()]);
        }
        for outcome in [
            "accepted",
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
            Box::new(sweeper_rounds.clone()),
            Box::new(sweeper_republished.clone()),
            Box::new(sweeper_republished_age.clone()),
            Box::new(sweeper_already_written.clone()),
            Box::new(sweeper_unpublishable.clone()),
            Box::new(orders_expired.clone()),
            Box::new(expiry_units_returned.clone()),
            Box::new(expiry_rounds.clone()),
            Box::new(orders_awaiting_payment.clone()),
            Box::new(units_awaiting_payment.clone()),
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
            sweeper_rounds,
            sweeper_republished,
            sweeper_republished_age,
            sweeper_already_written,
            sweeper_unpublishable,
            orders_expired,
            expiry_units_returned,
            expiry_rounds,
            orders_awaiting_payment,
            units_awaiting_payment,
        }
    }
}
