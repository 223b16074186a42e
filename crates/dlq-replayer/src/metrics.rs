//! The replayer's own metrics (the consumer runtime adds lag, assignment, batch and commit
//! metrics to the same registry).

use crate::Settled;
use prometheus::{IntCounterVec, Registry};
use telemetry::metrics::counter_by;

/// Every metric the replayer records.
#[derive(Clone)]
pub struct ReplayerMetrics {
    /// The registry.
    pub registry: Registry,
    /// `seckill_dead_letters_settled_total{outcome}`
    pub settled: IntCounterVec,
}

impl ReplayerMetrics {
    /// Creates and registers the metrics.
    pub fn new(registry: Registry) -> Self {
        let settled = counter_by(
            &registry,
            "seckill_dead_letters_settled_total",
            "Dead letters settled, by outcome (retried, compensated, already_written, unrecoverable, abandoned, unreadable, forged, unauthentic).",
            "outcome",
            [
                "retried",
                "compensated",
                "already_written",
                "unrecoverable",
                "abandoned",
                "unreadable",
                "forged",
                "unauthentic",
            ],
        );
        Self { registry, settled }
    }

    /// Counts a settled letter.
    pub fn observe(&self, settled: Settled) {
        let outcome = match settled {
            Settled::Retried => "retried",
            Settled::Compensated => "compensated",
            Settled::AlreadyWritten => "already_written",
            Settled::Unrecoverable => "unrecoverable",
            Settled::Abandoned => "abandoned",
            Settled::Unreadable => "unreadable",
            Settled::Forged => "forged",
            Settled::Unauthentic => "unauthentic",
        };
        self.settled.with_label_values(&[outcome]).inc();
    }
}
