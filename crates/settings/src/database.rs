//! `[database]`: the SQL database of orders and sales. An empty URL means the embedded SQLite
//! file, so that a service runs on a laptop with no server at all.

use crate::error::{at_least_one, SettingsError};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::path::PathBuf;

/// `[database]`
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "test-util", derive(serde::Serialize))]
pub struct DatabaseSettings {
    /// Database URL (secret); empty = SQLite at `sqlite_path`.
    #[cfg_attr(feature = "test-util", serde(serialize_with = "crate::export::secret"))]
    pub url: SecretString,
    /// SQLite file for the embedded default.
    pub sqlite_path: PathBuf,
    /// Pool size.
    pub max_connections: u32,
    /// Seconds to wait for a connection.
    pub connect_timeout_secs: u64,
    /// Run migrations at start-up.
    pub migrate_on_start: bool,
}

impl DatabaseSettings {
    /// The URL to connect to: the configured one, or the embedded SQLite file.
    pub fn effective_url(&self) -> String {
        let url = self.url.expose_secret().trim();
        if url.is_empty() {
            format!("sqlite://{}?mode=rwc", self.sqlite_path.display())
        } else {
            url.to_owned()
        }
    }

    /// Whether the embedded SQLite default is meant.
    pub fn is_embedded(&self) -> bool {
        self.url.expose_secret().trim().is_empty()
    }

    /// A pool of at least one connection.
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        at_least_one("database.max_connections", self.max_connections)
    }
}
