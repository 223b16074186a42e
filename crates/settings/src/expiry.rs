//! `[expiry]`: the order worker's expirer of unpaid orders, how often it runs and how many
//! orders one database transaction expires.

use crate::error::{at_least_one, between, SettingsError};
use serde::Deserialize;

/// `[expiry]`
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "test-util", derive(serde::Serialize))]
pub struct ExpirySettings {
    /// Milliseconds between two rounds of the expirer.
    pub interval_ms: u64,
    /// Most orders expired per database transaction.
    pub batch_max: usize,
}

impl ExpirySettings {
    /// A round between every 10 ms and every minute, batches of at least one order.
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        between("expiry.interval_ms", self.interval_ms, 10, 60_000)?;
        at_least_one("expiry.batch_max", self.batch_max)
    }
}
