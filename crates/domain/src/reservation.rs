//! Where a reservation of stock is in its life, between the buy that took the units and the
//! order row that settles them. The stock ledger stores it (one letter per state, in Redis), the
//! gateway reads it to answer a retried buy or a lookup of an order not yet written, and the
//! worker moves it forward; so it lives here, beside the order, rather than in any one of them.
//!
//! ```text
//! Reserved ──broker acknowledged──> Acknowledged ──worker claimed──> Claimed
//!     │                                   │                            │
//!     └──────────────── released (produce failed, or compensated) ─────┴──> Released
//! ```
//! A state only moves forward (right, or down to `Released`); `Released` is final.

use strum::{Display, EnumString, IntoStaticStr, VariantArray};

/// Where a reservation is in its life. Its string form is the one letter the ledger's record
/// and Lua scripts use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Display, EnumString, IntoStaticStr, VariantArray)]
pub enum ReservationState {
    /// Stock taken; the order is not yet known to be in the queue.
    #[strum(serialize = "R")]
    Reserved,
    /// The broker acknowledged the order message.
    #[strum(serialize = "A")]
    Acknowledged,
    /// The worker took the order into a batch.
    #[strum(serialize = "C")]
    Claimed,
    /// Given back (produce failure or compensation).
    #[strum(serialize = "X")]
    Released,
}

impl ReservationState {
    /// The letter the ledger's record and scripts use.
    pub fn letter(self) -> &'static str {
        self.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_state_keeps_the_letter_the_lua_scripts_use_and_parses_back() {
        crate::enum_checks::assert_stable_strings::<ReservationState>(&["R", "A", "C", "X"]);
    }
}
