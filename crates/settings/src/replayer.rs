//! `[replayer]`: when the dead-letter replayer republishes a retryable letter, when it gives up
//! and compensates, and how it backs off while a backend is down.

use crate::error::{at_least_one, not_above, SettingsError};
use serde::Deserialize;

/// `[replayer]`
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "test-util", derive(serde::Serialize))]
pub struct ReplayerSettings {
    /// Replays before compensating.
    pub max_replays: u32,
    /// Seconds before a retryable letter is republished.
    pub replay_delay_secs: u64,
    /// Most letters per batch.
    pub batch_max: usize,
    /// Milliseconds to let a batch fill.
    pub batch_wait_ms: u64,
    /// First delay before settling a letter again after a transient failure, in ms.
    pub retry_backoff_ms: u64,
    /// Cap of that delay in ms.
    pub retry_backoff_max_ms: u64,
}

impl ReplayerSettings {
    /// Batches of at least one letter, a backoff within its cap.
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        at_least_one("replayer.batch_max", self.batch_max)?;
        not_above(
            "replayer.retry_backoff_ms",
            self.retry_backoff_ms,
            "replayer.retry_backoff_max_ms",
            self.retry_backoff_max_ms,
        )
    }
}
