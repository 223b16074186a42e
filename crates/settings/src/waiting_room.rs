//! `[waiting_room]`: how the gateways run the waiting rooms of the sales that have one (the
//! secret their place tokens and admission tickets are signed with, the room's clock, how polls
//! are paced, and the bounds of an `auto` admission rate).

use crate::error::{between, invalid, SettingsError};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// `[waiting_room]`
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "test-util", derive(serde::Serialize))]
pub struct WaitingRoomSettings {
    /// The secret place tokens and admission tickets are signed with (HMAC-SHA256), the same on
    /// every gateway.
    #[cfg_attr(feature = "test-util", serde(serialize_with = "crate::export::secret"))]
    pub ticket_secret: SecretString,
    /// How often each gateway runs the clock of the rooms its buyers poll, in ms: how stale its
    /// view of a line may be.
    pub tick_ms: u64,
    /// Longest a poll with `wait=true` is held open before it is answered unchanged, in ms.
    pub poll_hold_ms: u64,
    /// Shortest interval a waiting buyer is told to poll again after, in ms.
    pub poll_min_ms: u64,
    /// Longest interval a waiting buyer is told to poll again after, in ms.
    pub poll_max_ms: u64,
    /// A room nobody polled on this gateway for this long stops ticking here, in seconds.
    pub idle_secs: u64,
    /// Where an `auto` admission rate starts, in buyers per second.
    pub auto_start_per_sec: f64,
    /// Lowest `auto` rate.
    pub auto_min_per_sec: f64,
    /// Highest `auto` rate.
    pub auto_max_per_sec: f64,
    /// How much an `auto` rate grows per second while no gateway is under pressure.
    pub auto_step_per_sec: f64,
    /// Pressure on an `auto` rate: buy requests in flight past this share of
    /// `gateway.max_in_flight`.
    pub auto_in_flight_share: f64,
    /// Pressure on an `auto` rate: the order worker's lag past this many messages (0: not read).
    pub auto_max_worker_lag: i64,
}

impl WaitingRoomSettings {
    /// A secret of some length, a clock and poll pacing that make sense together, `auto` bounds
    /// in order.
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        if self.ticket_secret.expose_secret().len() < 16 {
            return invalid("waiting_room.ticket_secret", "must be at least 16 bytes");
        }
        // A tick admits at most a second's worth (admit.lua): a longer one would slow the rate.
        between("waiting_room.tick_ms", self.tick_ms, 10, 1_000)?;
        between("waiting_room.poll_hold_ms", self.poll_hold_ms, 0, 60_000)?;
        between("waiting_room.poll_min_ms", self.poll_min_ms, 100, 60_000)?;
        between(
            "waiting_room.poll_max_ms",
            self.poll_max_ms,
            self.poll_min_ms,
            300_000,
        )?;
        between("waiting_room.idle_secs", self.idle_secs, 1, 86_400)?;
        between(
            "waiting_room.auto_min_per_sec",
            self.auto_min_per_sec,
            0.1,
            self.auto_max_per_sec,
        )?;
        between(
            "waiting_room.auto_start_per_sec",
            self.auto_start_per_sec,
            self.auto_min_per_sec,
            self.auto_max_per_sec,
        )?;
        between(
            "waiting_room.auto_step_per_sec",
            self.auto_step_per_sec,
            0.0,
            self.auto_max_per_sec,
        )?;
        between(
            "waiting_room.auto_in_flight_share",
            self.auto_in_flight_share,
            0.01,
            1.0,
        )?;
        if self.auto_max_worker_lag < 0 {
            return invalid("waiting_room.auto_max_worker_lag", "must be at least 0");
        }
        Ok(())
    }
}
