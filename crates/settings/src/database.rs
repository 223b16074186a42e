//! `[database]`: the SQL database of orders and sales. An empty URL means the embedded SQLite
//! file, so that a service runs on a laptop with no server at all. A PostgreSQL URL carries its
//! TLS settings in its query, as libpq's do; sqlx reads them, and so does the check of a
//! deployment's transport here.

use crate::deployment::{Backend, UnverifiedTransport};
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

    /// Why a connection to this database would not verify the server, if it would not. Only
    /// `sslmode=verify-full` checks both the certificate and the host name: `verify-ca` takes
    /// any certificate of the CA (on RDS or Cloud SQL, one CA signs every customer's server),
    /// and without `sslmode` sqlx uses `prefer`, which checks nothing and which a man in the
    /// middle downgrades to plaintext. SQLite is a file, not a connection.
    pub(crate) fn unverified_transport(&self) -> Option<UnverifiedTransport> {
        let url = self.effective_url();
        if url.starts_with("sqlite:") {
            return None;
        }
        let mode = ssl_mode(&url).map(|mode| mode.to_ascii_lowercase());
        let problem = match mode.as_deref() {
            Some("verify-full") => return None,
            None => String::from(
                "has no sslmode, so the connection takes TLS only when the server offers it (prefer), checks no certificate, and falls back to plaintext: add sslmode=verify-full to its query, with sslrootcert=<the CA's PEM file> for a private CA (RDS, Cloud SQL)",
            ),
            Some("verify-ca") => String::from(
                "has sslmode=verify-ca, which checks the server's certificate but not its host name, so any server holding a certificate of that CA passes (on RDS or Cloud SQL, any customer's instance): use sslmode=verify-full",
            ),
            Some(mode) => format!(
                "has sslmode={mode}, which does not check the server's certificate: use sslmode=verify-full, with sslrootcert=<the CA's PEM file> for a private CA"
            ),
        };
        Some(UnverifiedTransport::new(
            Backend::Database,
            "database.url",
            problem,
        ))
    }
}

/// The `sslmode` of a PostgreSQL URL, read as sqlx reads it: from the query, percent-decoded,
/// the key spelled `sslmode` or `ssl-mode` exactly (sqlx ignores `SSLMODE`), the last one
/// winning.
fn ssl_mode(url: &str) -> Option<String> {
    let without_fragment = url.split_once('#').map_or(url, |(before, _)| before);
    let (_, query) = without_fragment.split_once('?')?;
    query.rsplit('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        matches!(percent_decoded(key).as_str(), "sslmode" | "ssl-mode")
            .then(|| percent_decoded(value))
    })
}

/// A query component decoded as a URL parser does (`+` is a space, `%XX` a byte), so that an
/// encoded key or value reads here as it does to sqlx.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex = bytes
            .get(at + 1..at + 3)
            .filter(|digits| digits.iter().all(u8::is_ascii_hexdigit))
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 16).ok());
        match (bytes[at], hex) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                at += 3;
            }
            (b'+', _) => {
                decoded.push(b' ');
                at += 1;
            }
            (byte, _) => {
                decoded.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}
