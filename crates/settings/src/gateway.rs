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
    /// Order-status reads (`GET /v1/orders/{id}`) per second per user (0 = unlimited).
    pub per_user_read_rate_per_sec: u32,
    /// Burst allowance of the reads.
    pub per_user_read_burst: u32,
    /// Requests per second per client address to the buyer API (0 = unlimited).
    pub per_address_rate_per_sec: u32,
    /// Burst allowance per address.
    pub per_address_burst: u32,
    /// How often the rate limiters forget the callers that are back to a full allowance, in
    /// seconds (what bounds their memory).
    pub limiter_prune_secs: u64,
    /// Most buy requests served at once by one gateway process; past it the gateway answers
    /// 503 `overloaded` with `Retry-After` at once, before verifying the token.
    pub max_in_flight: usize,
    /// Most order-status reads served at once by one gateway process (each holds a database
    /// connection); past it, 503 `overloaded`. The gateway serves at most
    /// `database.max_connections` − 1 at once whatever this says, so that payment notices
    /// always find a connection ([`reads_in_flight`](Self::reads_in_flight)).
    pub max_reads_in_flight: usize,
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
    /// The order-status reads one gateway serves at once: `max_reads_in_flight`, and one
    /// connection of the pool of `database_connections` always left to the others.
    pub fn reads_in_flight(&self, database_connections: u32) -> usize {
        let spare = (database_connections as usize).saturating_sub(1).max(1);
        self.max_reads_in_flight.min(spare)
    }

    /// A bound on requests in flight, and intervals short enough to keep the answers fresh.
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        at_least_one("gateway.max_in_flight", self.max_in_flight)?;
        at_least_one("gateway.max_reads_in_flight", self.max_reads_in_flight)?;
        between(
            "gateway.limiter_prune_secs",
            self.limiter_prune_secs,
            1,
            3_600,
        )?;
        between(
            "gateway.sold_out_recheck_ms",
            self.sold_out_recheck_ms,
            1,
            60_000,
        )?;
        between("gateway.ack_flush_ms", self.ack_flush_ms, 1, 1_000)
    }
}
