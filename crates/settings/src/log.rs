//! `[log]`: the format and filter of every service's log, for people at a terminal or for a
//! log collector.

use serde::Deserialize;

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "test-util", derive(serde::Serialize))]
pub struct LogSettings {
    /// Output format.
    pub format: LogFormat,
    /// EnvFilter directives.
    pub filter: String,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "test-util", derive(serde::Serialize))]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, for terminals.
    Pretty,
    /// One JSON object per line, for collectors.
    Json,
}
