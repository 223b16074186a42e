//! `[http]`: where the services listen. Port 0 picks a free port, which is how the tests and the
//! dev stack run several services on one machine; how long a slow client may take; and which
//! proxies are trusted to name the client.

use crate::error::{between, invalid, SettingsError};
use serde::Deserialize;

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "test-util", derive(serde::Serialize))]
pub struct HttpSettings {
    /// Listen address.
    pub host: String,
    /// Gateway port (0 = any free port).
    pub port: u16,
    /// actix-web workers (0 = one per core).
    pub workers: usize,
    /// Ops port of the worker and replayer (0 = any free port).
    pub ops_port: u16,
    /// Port of the gateway's admin API (0 = any free port).
    pub admin_port: u16,
    /// Whether the public port serves the admin API too.
    pub admin_on_public: bool,
    /// Longest wait for the head (line and headers) of a connection's first request, in ms; a
    /// slower client is answered 408 and closed. Later requests of a kept-alive connection are
    /// not timed by actix-web: their slow heads hold the connection, never a buy slot.
    pub header_timeout_ms: u64,
    /// Longest wait for a request's whole body once its head is read, in ms; a slower client
    /// is answered 408 `request_timeout` without holding a buy slot.
    pub body_timeout_ms: u64,
    /// The proxies whose `X-Forwarded-For` names the client: IP addresses or CIDR blocks,
    /// separated by commas. Empty: the client is the peer of the connection, and the header is
    /// never read.
    pub trusted_proxies: String,
}

impl HttpSettings {
    /// Timeouts of a sensible size, and proxies that parse.
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        between(
            "http.header_timeout_ms",
            self.header_timeout_ms,
            100,
            60_000,
        )?;
        between("http.body_timeout_ms", self.body_timeout_ms, 100, 60_000)?;
        self.trusted_proxies().map(drop)
    }

    /// The networks of [`trusted_proxies`](Self::trusted_proxies) (an address is a network of
    /// one), or which entry does not parse.
    pub fn trusted_proxies(&self) -> Result<Vec<ipnet::IpNet>, SettingsError> {
        let mut networks = Vec::new();
        for proxy in self.trusted_proxies.split(',').map(str::trim) {
            if proxy.is_empty() {
                continue;
            }
            let network = proxy
                .parse::<ipnet::IpNet>()
                .or_else(|_| proxy.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match network {
                Ok(network) => networks.push(network),
                Err(_) => {
                    invalid(
                        "http.trusted_proxies",
                        format!("{proxy:?} is neither an IP address nor a CIDR block such as 10.0.0.0/8"),
                    )?;
                }
            }
        }
        Ok(networks)
    }
}
