//! `[sweeper]`: the order worker's sweep of reservations whose order was never written. Its
//! waits are bounded below by the producer's timeout, so that it never republishes an order a
//! gateway may still be producing.

use crate::error::{at_least_one, invalid, SettingsError};
use crate::kafka::KafkaSettings;
use serde::Deserialize;

/// `[sweeper]`
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "test-util", derive(serde::Serialize))]
pub struct SweeperSettings {
    /// Seconds between two sweeps.
    pub interval_secs: u64,
    /// Seconds a reservation the broker never acknowledged may wait to be written before its
    /// order is published again.
    pub stale_after_secs: u64,
    /// Seconds a reservation whose message the broker acknowledged may wait to be written before
    /// its order is published again (its message is in the queue unless the broker lost it).
    pub acknowledged_stale_after_secs: u64,
    /// Most reservations of one sale taken per script call.
    pub batch_max: usize,
    /// Seconds the per-order keys of a sale are kept after it ends (once nothing is pending).
    pub retain_after_end_secs: u64,
}

impl SweeperSettings {
    /// How much longer an acknowledged reservation waits than one the broker never had.
    pub fn queued_grace(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.acknowledged_stale_after_secs
                .saturating_sub(self.stale_after_secs),
        )
    }

    /// A sweep at least every second, batches of at least one, and waits that outlast the
    /// producer's `kafka.delivery_timeout_ms` and come in order.
    pub(crate) fn validate(&self, kafka: &KafkaSettings) -> Result<(), SettingsError> {
        at_least_one("sweeper.interval_secs", self.interval_secs)?;
        at_least_one("sweeper.batch_max", self.batch_max)?;
        if self.stale_after_secs.saturating_mul(1000) <= u64::from(kafka.delivery_timeout_ms) {
            return invalid(
                "sweeper.stale_after_secs",
                "must be longer than kafka.delivery_timeout_ms: a gateway may still be producing",
            );
        }
        if self.acknowledged_stale_after_secs < self.stale_after_secs {
            return invalid(
                "sweeper.acknowledged_stale_after_secs",
                "must not be shorter than sweeper.stale_after_secs",
            );
        }
        Ok(())
    }
}
