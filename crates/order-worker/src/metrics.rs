//! The worker's own metrics (the consumer runtime adds lag, assignment, batch and commit
//! metrics to the same registry).

use domain::signing::ForgeryKind;
use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, Registry};
use strum::VariantArray;
use telemetry::metrics::{counter, counter_by, exponential_buckets, gauge, histogram};

/// Every metric the worker records.
#[derive(Clone)]
pub struct WorkerMetrics {
    /// The registry.
    pub registry: Registry,
    /// `seckill_orders_persisted_total{outcome}`
    pub persisted: IntCounterVec,
    /// `seckill_dlq_published_total{reason}`
    pub dead_letters: IntCounterVec,
    /// `seckill_worker_forged_messages_total{problem}`
    pub forged: IntCounterVec,
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
        let r = &registry;
        let reasons = <domain::ReasonCode as strum::VariantArray>::VARIANTS;
        Self {
            persisted: counter_by(
                r,
                "seckill_orders_persisted_total",
                "Orders written to the database, by outcome.",
                "outcome",
                ["accepted", "failed", "key_conflict", "unreadable", "released"],
            ),
            dead_letters: counter_by(
                r,
                "seckill_dlq_published_total",
                "Messages sent to the dead-letter topic, by reason.",
                "reason",
                reasons.iter().map(|reason| reason.as_str()),
            ),
            forged: counter_by(
                r,
                "seckill_worker_forged_messages_total",
                "Messages of the orders topic whose signature is missing or does not check out, dead-lettered as forged and never written, by problem (missing, malformed, unknown_key, mismatch).",
                "problem",
                ForgeryKind::VARIANTS.iter().map(|kind| kind.as_str()),
            ),
            retries: counter(
                r,
                "seckill_worker_retries_total",
                "In-place retries of a batch after a transient failure.",
            ),
            compensations: counter(
                r,
                "seckill_worker_compensations_total",
                "Reservations given back by the worker after the database refused an order.",
            ),
            sweeper_rounds: counter_by(
                r,
                "seckill_sweeper_rounds_total",
                "Sweeps of the stale reservations, by result (ok, error).",
                "result",
                ["ok", "error"],
            ),
            sweeper_republished: counter(
                r,
                "seckill_sweeper_republished_total",
                "Orders of stale reservations published again.",
            ),
            sweeper_republished_age: histogram(
                r,
                "seckill_sweeper_republished_age_seconds",
                "Age (since the buy request) of the orders the sweeper published again.",
                exponential_buckets(1.0, 2.0, 16),
            ),
            sweeper_already_written: counter(
                r,
                "seckill_sweeper_already_written_total",
                "Stale reservations whose order had a row after all (finished without publishing).",
            ),
            sweeper_unpublishable: counter(
                r,
                "seckill_sweeper_unpublishable_total",
                "Times a stale reservation was found without a readable outbox entry (each is taken again every stale period).",
            ),
            orders_expired: counter(
                r,
                "seckill_orders_expired_total",
                "Orders not paid by their pay_by, expired by the expirer (their units went back on sale).",
            ),
            expiry_units_returned: counter(
                r,
                "seckill_expiry_units_returned_total",
                "Units of expired orders given back to Redis (stock and the buyer's per-user count).",
            ),
            expiry_rounds: counter_by(
                r,
                "seckill_expiry_rounds_total",
                "Rounds of the expirer, by result (ok, error).",
                "result",
                ["ok", "error"],
            ),
            orders_awaiting_payment: gauge(
                r,
                "seckill_orders_awaiting_payment",
                "Orders written and not yet paid nor expired, across all sales (read every 15 s; every replica reports the same figure).",
            ),
            units_awaiting_payment: gauge(
                r,
                "seckill_units_awaiting_payment",
                "Units those orders hold until they are paid or expire.",
            ),
            registry,
        }
    }
}
