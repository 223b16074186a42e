//! The replayer's own metrics (the consumer runtime adds lag, assignment, batch and commit
//! metrics to the same registry).

use crate::Settled;
use prometheus::{IntCounterVec, Opts, Registry};

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
        let settled = IntCounterVec::new(
            Opts::new(
                "seckill_dead_letters_settled_total",
                "Dead letters settled, by outcome (retried, compensated, already_written, unrecoverable, abandoned).",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        for outcome in [
            "retried",
            "compensated",
            "already_written",
            "unrecoverable",
            "abandoned",
        ] {
            settled.with_label_values(&[outcome]);
        }
        registry
            .register(Box::new(settled.clone()))
            .expect("metric registered once");
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
        };
        self.settled.with_label_values(&[outcome]).inc();
    }
}
