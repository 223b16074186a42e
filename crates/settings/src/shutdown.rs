//! `[shutdown]`: how long a service may take, after SIGTERM, to finish what it holds and commit
//! before it exits (Kubernetes kills it after its own grace period).

use serde::Deserialize;

/// `[shutdown]`
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "test-util", derive(serde::Serialize))]
pub struct ShutdownSettings {
    /// Seconds allowed between SIGTERM and exit.
    pub grace_secs: u64,
}
