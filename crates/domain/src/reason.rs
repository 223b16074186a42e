//! Reason codes: why an order failed or why a message became a dead letter. They are stable
//! strings, shown to buyers, written into Kafka headers and used as metric labels.

use serde::{Deserialize, Serialize};

/// A stable, low-cardinality reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// The payload is not JSON (or not an object).
    Undecodable,
    /// The payload is larger than any order can be.
    Oversized,
    /// A schema version this build does not know.
    UnsupportedVersion,
    /// A field is missing or invalid.
    InvalidField,
    /// The SKU has no sale in the database.
    UnknownSku,
    /// The database's authoritative stock check refused the order.
    DbOutOfStock,
    /// The gateway released the reservation (its produce was not acknowledged).
    ReservationReleased,
    /// A transient failure outlasted the worker's in-place retries; worth retrying later.
    RetriesExhausted,
    /// The replayer gave up retrying.
    ReplayAttemptsExhausted,
    /// Another order already holds this buyer's idempotency key for the SKU.
    IdempotencyConflict,
    /// A stored value of the order (its row's status or reason) cannot be read by this build.
    UnreadableState,
    /// The buyer did not pay within the sale's payment window; the units went back on sale.
    PaymentWindowElapsed,
}

impl ReasonCode {
    /// Every reason, for metrics pre-registration and documentation.
    pub const ALL: [ReasonCode; 12] = [
        ReasonCode::Undecodable,
        ReasonCode::Oversized,
        ReasonCode::UnsupportedVersion,
        ReasonCode::InvalidField,
        ReasonCode::UnknownSku,
        ReasonCode::DbOutOfStock,
        ReasonCode::ReservationReleased,
        ReasonCode::RetriesExhausted,
        ReasonCode::ReplayAttemptsExhausted,
        ReasonCode::IdempotencyConflict,
        ReasonCode::UnreadableState,
        ReasonCode::PaymentWindowElapsed,
    ];

    /// The stable string form.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::Undecodable => "undecodable",
            ReasonCode::Oversized => "oversized",
            ReasonCode::UnsupportedVersion => "unsupported_version",
            ReasonCode::InvalidField => "invalid_field",
            ReasonCode::UnknownSku => "unknown_sku",
            ReasonCode::DbOutOfStock => "db_out_of_stock",
            ReasonCode::ReservationReleased => "reservation_released",
            ReasonCode::RetriesExhausted => "retries_exhausted",
            ReasonCode::ReplayAttemptsExhausted => "replay_attempts_exhausted",
            ReasonCode::IdempotencyConflict => "idempotency_conflict",
            ReasonCode::UnreadableState => "unreadable_state",
            ReasonCode::PaymentWindowElapsed => "payment_window_elapsed",
        }
    }

    /// Parses the string form.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == value)
    }

    /// Whether a later attempt could succeed (a dead letter worth republishing).
    pub fn is_retryable(self) -> bool {
        matches!(self, ReasonCode::RetriesExhausted)
    }
}

impl std::fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_round_trips_through_its_string() {
        for reason in ReasonCode::ALL {
            assert_eq!(ReasonCode::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(ReasonCode::parse("nope"), None);
    }
}
