//! `[http]`: where the services listen. Port 0 picks a free port, which is how the tests and the
//! dev stack run several services on one machine.

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
}
