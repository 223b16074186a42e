//! `[proof_of_work]`: the challenge a client solves before it joins a waiting room, or buys
//! without an admission ticket: how hard it is, how much harder under load, and how long one
//! stays good. Challenges are signed with a key derived from `waiting_room.ticket_secret`, so
//! a deployment has no further secret to manage.

use crate::error::{between, invalid, SettingsError};
use serde::Deserialize;

/// The largest difficulty accepted (a few seconds of a phone's CPU at most).
pub const MAX_DIFFICULTY: u64 = 10_000_000;

/// `[proof_of_work]`
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "test-util", derive(serde::Serialize))]
pub struct ProofOfWorkSettings {
    /// The largest number a client may have to try (it tries half on average); 0: no proof of
    /// work is asked.
    pub max_number: u64,
    /// The same while the gateway is under load (half its buy slots taken, or its event loop
    /// late); 0: `max_number` always.
    pub max_number_under_load: u64,
    /// How long a challenge stays good, in seconds.
    pub expires_secs: u64,
}

impl ProofOfWorkSettings {
    /// Difficulties within the bound, the one under load not below the other, and a lifetime
    /// long enough to solve one on a slow phone and short enough not to hoard them.
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        between(
            "proof_of_work.max_number",
            self.max_number,
            0,
            MAX_DIFFICULTY,
        )?;
        between(
            "proof_of_work.max_number_under_load",
            self.max_number_under_load,
            0,
            MAX_DIFFICULTY,
        )?;
        if self.max_number == 0 && self.max_number_under_load != 0 {
            return invalid(
                "proof_of_work.max_number_under_load",
                "asks work under load only when proof_of_work.max_number asks some (0 turns the proof of work off)",
            );
        }
        if self.max_number_under_load != 0 && self.max_number_under_load < self.max_number {
            return invalid(
                "proof_of_work.max_number_under_load",
                "must not be below proof_of_work.max_number (0: the same)",
            );
        }
        between("proof_of_work.expires_secs", self.expires_secs, 10, 3_600)
    }

    /// The difficulty now: `under_load` says whether the gateway is.
    pub fn difficulty(&self, under_load: bool) -> u64 {
        match under_load && self.max_number_under_load != 0 {
            true => self.max_number_under_load,
            false => self.max_number,
        }
    }
}
