//! The replayer's metrics.

use crate::Settled;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

/// Every metric the replayer records.
#[derive(Clone)]
pub struct ReplayerMetrics {
    /// The registry.
    pub registry: Registry,
    /// `seckill_consumer_lag_messages{topic,partition}` of the dead-letter topic.
    pub lag: IntGaugeVec,
    /// `seckill_dead_letters_settled_total{outcome}`
    pub settled: IntCounterVec,
}

impl ReplayerMetrics {
    /// Creates and registers the metrics.
    pub fn new(registry: Registry) -> Self {
        let lag = kafka::lag::lag_gauge();
        let settled = IntCounterVec::new(
            Opts::new(
                "seckill_dead_letters_settled_total",
                "Dead letters settled, by outcome (retried, compensated, already_confirmed, unrecoverable).",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        for outcome in [
            "retried",
            "compensated",
            "already_confirmed",
            "unrecoverable",
        ] {
            settled.with_label_values(&[outcome]);
        }
        registry
            .register(Box::new(lag.clone()))
            .expect("metric registered once");
        registry
            .register(Box::new(settled.clone()))
            .expect("metric registered once");
        Self {
            registry,
            lag,
            settled,
        }
    }

    /// Counts a settled letter.
    pub fn observe(&self, settled: Settled) {
        let outcome = match settled {
            Settled::Retried => "retried",
            Settled::Compensated => "compensated",
            Settled::AlreadyConfirmed => "already_confirmed",
            Settled::Unrecoverable => "unrecoverable",
        };
        self.settled.with_label_values(&[outcome]).inc();
    }
}
