//! `[gateway]`: how the gateway protects itself and Redis under a flash crowd (rate limits,
//! load shedding, the sold-out memory) and how often it batches its Redis writes.

use crate::error::{at_least_one, between, SettingsError};
use serde::Deserialize;

/// `[gateway]`
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "test-util", derive(serde::Serialize))]
pub struct GatewaySettings {
    /// Buy requests per second per user (0 = unlimited).
    pub per_user_rate_per_sec: u32,
    /// Burst allowance.
    pub per_user_burst: u32,
    /// Most buy requests served at once by one gateway process; past it the gateway answers
    /// 503 `overloaded` with `Retry-After` at once, before verifying the token.
    pub max_in_flight: usize,
    /// How late an HTTP worker's event loop may run before the buy requests it reads are shed
    /// (the gateway short of CPU), in ms; 0 turns this off.
    pub max_loop_lag_ms: u64,
    /// How long a gateway answers `sold_out` from memory before it asks Redis again (the bound
    /// on how long units that came back can go unoffered by one replica), in ms.
    pub sold_out_recheck_ms: u64,
    /// Most orders a sold-out sale may have for the gateway to remember it (it keeps one
    /// 8-byte fingerprint per order so that a retry of an accepted order still reaches Redis).
    pub sold_out_max_orders: usize,
    /// How long the gateway gathers broker acknowledgements before marking them in Redis in
    /// one call per SKU, in ms.
    pub ack_flush_ms: u64,
}

impl GatewaySettings {
    /// A bound on requests in flight, and intervals short enough to keep the answers fresh.
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        at_least_one("gateway.max_in_flight", self.max_in_flight)?;
        between(
            "gateway.sold_out_recheck_ms",
            self.sold_out_recheck_ms,
            1,
            60_000,
        )?;
        between("gateway.ack_flush_ms", self.ack_flush_ms, 1, 1_000)
    }
}
