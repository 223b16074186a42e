//! `[worker]`: how the order worker batches the orders it writes and retries a transient
//! failure before it dead-letters a message.

use crate::error::{at_least_one, between, not_above, SettingsError};
use serde::Deserialize;

/// `[worker]`
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "test-util", derive(serde::Serialize))]
pub struct WorkerSettings {
    /// Messages per transaction.
    pub batch_max: usize,
    /// Milliseconds to let a batch fill.
    pub batch_wait_ms: u64,
    /// In-place attempts for transient failures.
    pub max_attempts: u32,
    /// First retry delay in ms.
    pub retry_backoff_ms: u64,
    /// Retry delay cap in ms.
    pub retry_backoff_max_ms: u64,
    /// How long the worker gathers written orders before taking them out of the Redis outbox
    /// in one call per SKU, in ms.
    pub finish_flush_ms: u64,
}

impl WorkerSettings {
    /// Batches and attempts of at least one, a backoff within its cap, a short flush interval.
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        between("worker.finish_flush_ms", self.finish_flush_ms, 1, 1_000)?;
        at_least_one("worker.batch_max", self.batch_max)?;
        at_least_one("worker.max_attempts", self.max_attempts)?;
        not_above(
            "worker.retry_backoff_ms",
            self.retry_backoff_ms,
            "worker.retry_backoff_max_ms",
            self.retry_backoff_max_ms,
        )
    }
}
