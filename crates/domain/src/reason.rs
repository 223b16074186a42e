//! Reason codes: why an order failed or why a message became a dead letter. They are stable
//! strings, shown to buyers, written into Kafka headers and used as metric labels.

use serde::{Deserialize, Serialize};
use strum::{Display, EnumString, IntoStaticStr, VariantArray};

/// A stable, low-cardinality reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(Display, EnumString, IntoStaticStr, VariantArray)]
#[strum(serialize_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// The message's signature is missing or does not check out ([`crate::signing`]): nobody
    /// of ours wrote it. It is never written, retried nor compensated: the order it names may
    /// be a real buyer's, whose reservation is not this message's to give back.
    Forged,
}

impl ReasonCode {
    /// The stable string form (Kafka headers, the database, metric labels, the API), also that
    /// of `Display` and `FromStr`: snake_case of the variant's name, like its serde form (a
    /// test pins each).
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether a later attempt could succeed (a dead letter worth republishing).
    pub fn is_retryable(self) -> bool {
        match self {
            ReasonCode::RetriesExhausted => true,
            // Listed one by one so that a new reason is placed on purpose.
            ReasonCode::Undecodable
            | ReasonCode::Oversized
            | ReasonCode::UnsupportedVersion
            | ReasonCode::InvalidField
            | ReasonCode::UnknownSku
            | ReasonCode::DbOutOfStock
            | ReasonCode::ReservationReleased
            | ReasonCode::ReplayAttemptsExhausted
            | ReasonCode::IdempotencyConflict
            | ReasonCode::UnreadableState
            | ReasonCode::PaymentWindowElapsed
            | ReasonCode::Forged => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enum_checks::{assert_serde_is_the_string, assert_stable_strings};

    #[test]
    fn every_reason_keeps_its_stored_string_and_parses_back() {
        assert_stable_strings::<ReasonCode>(&[
            "undecodable",
            "oversized",
            "unsupported_version",
            "invalid_field",
            "unknown_sku",
            "db_out_of_stock",
            "reservation_released",
            "retries_exhausted",
            "replay_attempts_exhausted",
            "idempotency_conflict",
            "unreadable_state",
            "payment_window_elapsed",
            "forged",
        ]);
        assert_serde_is_the_string::<ReasonCode>();
    }
}
