//! `[redis]` and `[redis.tls]`: the stock ledger's Redis, one server or a cluster. The checks
//! keep the URL, the mode and the TLS files consistent, since a mismatch would otherwise show
//! only as failing connections once the sale is on.

use crate::deployment::{Backend, UnverifiedTransport};
use crate::error::{at_least_one, invalid, SettingsError};
use crate::tls::TlsFiles;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// `[redis]`
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "test-util", derive(serde::Serialize))]
pub struct RedisSettings {
    /// One Redis, or a Redis Cluster.
    #[serde(default)]
    pub mode: RedisMode,
    /// Connection URL (secret: may hold a password); in cluster mode, the comma-separated URLs
    /// of some of the cluster's nodes.
    #[cfg_attr(feature = "test-util", serde(serialize_with = "crate::export::secret"))]
    pub url: SecretString,
    /// Key prefix.
    pub key_prefix: String,
    /// Most commands in flight on the one multiplexed connection; callers past it wait for a
    /// slot (a bounded Redis queue).
    pub max_in_flight: usize,
    /// Seconds to wait for a connection or reply.
    pub timeout_secs: u64,
    /// TLS of a `rediss://` URL.
    #[serde(default)]
    pub tls: TlsFiles,
}

/// Whether the ledger is one Redis or a Redis Cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "test-util", derive(serde::Serialize))]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// One Redis server (with replicas and Sentinel or a managed failover behind one URL).
    #[default]
    Standalone,
    /// A Redis Cluster: keys spread over its primaries by hash slot.
    Cluster,
}

impl RedisSettings {
    /// The node URLs of `url`: one in standalone mode, the comma-separated seeds of a cluster.
    pub fn node_urls(&self) -> Vec<String> {
        self.url
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The key prefix, the connection's bound, and the URLs and TLS files: consistent with the
    /// mode and with each other, every file readable.
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        if self.key_prefix.is_empty() || self.key_prefix.contains(['{', '}', ' ']) {
            return invalid(
                "redis.key_prefix",
                "must be non-empty without braces or spaces",
            );
        }
        at_least_one("redis.max_in_flight", self.max_in_flight)?;
        let nodes = self.node_urls();
        if nodes.is_empty() {
            return invalid("redis.url", "is empty");
        }
        if self.mode == RedisMode::Standalone && nodes.len() > 1 {
            return invalid(
                "redis.url",
                "holds several URLs, which only redis.mode = \"cluster\" reads",
            );
        }
        let tls = nodes[0].starts_with("rediss://");
        if nodes.iter().any(|url| url.starts_with("rediss://") != tls) {
            return invalid(
                "redis.url",
                "mixes redis:// and rediss:// nodes: a cluster is TLS on every node or on none",
            );
        }
        self.tls
            .validate("redis.tls", tls, "redis.url is not a rediss:// URL")
    }

    /// Why a connection to these nodes would not verify the server, if it would not: a
    /// `redis://` URL is plaintext, and the client reads a `#insecure` fragment of a
    /// `rediss://` one as "skip the certificate check". A Unix socket is no network connection.
    /// The URLs hold the password, so the problem never quotes them.
    pub(crate) fn unverified_transport(&self) -> Option<UnverifiedTransport> {
        let problem = self.node_urls().into_iter().find_map(|url| {
            let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
            let fragment = url.split_once('#').map(|(_, fragment)| fragment);
            match scheme.to_ascii_lowercase().as_str() {
                "unix" | "redis+unix" => None,
                "rediss" if fragment.is_some_and(|f| f.eq_ignore_ascii_case("insecure")) => Some(
                    "ends in #insecure, which turns off the check of the server's certificate: remove it, and give the server's CA in redis.tls.ca_file unless the system's CAs sign it",
                ),
                "rediss" => None,
                _ => Some(
                    "is not a rediss:// URL, so the stock ledger and its password travel in the clear: use rediss:// (TLS; the server's certificate and host name are checked against redis.tls.ca_file or the system's CAs)",
                ),
            }
        })?;
        Some(UnverifiedTransport::new(
            Backend::Redis,
            "redis.url",
            problem,
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::load::tests::{load_with, readable_file, refused};
    use crate::RedisMode;
    use secrecy::SecretString;

    #[test]
    fn a_tls_directory_several_urls_without_cluster_mode_and_mixed_schemes_are_refused() {
        let error = refused(|s| {
            s.redis.url = SecretString::from("rediss://cache:6380".to_owned());
            s.redis.tls.ca_file = std::env::temp_dir();
        });
        assert!(error.contains("not a file"), "{error}");
        let error = refused(|s| {
            s.redis.url = SecretString::from("redis://a:1,redis://b:2".to_owned());
        });
        assert!(error.contains("redis.mode"), "{error}");
        let error = refused(|s| {
            s.redis.mode = RedisMode::Cluster;
            s.redis.url = SecretString::from("redis://a:1,rediss://b:2".to_owned());
        });
        assert!(error.contains("mixes"), "{error}");
    }

    #[test]
    fn redis_tls_files_need_a_rediss_url_and_come_in_pairs() {
        let (file, path) = readable_file("cert");
        let path = path.as_str();
        let plaintext = load_with(&[("T__REDIS__TLS__CA_FILE", path)]).unwrap_err();
        assert!(plaintext
            .to_string()
            .contains("redis.url is not a rediss:// URL"));
        let loaded = load_with(&[
            ("T__REDIS__URL", "rediss://seckill:pw@cache:6380"),
            ("T__REDIS__TLS__CA_FILE", path),
            ("T__REDIS__TLS__CERTIFICATE_FILE", path),
            ("T__REDIS__TLS__KEY_FILE", path),
        ])
        .unwrap();
        assert_eq!(loaded.redis.tls.key_file, file);
        let alone = load_with(&[
            ("T__REDIS__URL", "rediss://cache:6380"),
            ("T__REDIS__TLS__CERTIFICATE_FILE", path),
        ])
        .unwrap_err();
        assert!(alone.to_string().contains("set both or neither"), "{alone}");
        std::fs::remove_file(file).unwrap();
    }
}
