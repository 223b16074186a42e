//! The reservation record, as the Lua scripts write it (`scripts/prelude/record.lua` is their
//! one definition; this is Rust's): `<state>|<quantity>|<user>|<idempotency key>`, the state
//! being [`ReservationState`]'s letter.

use domain::{IdempotencyKey, ReservationState, UserId};

/// One order's reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationRecord {
    /// Where it is.
    pub state: ReservationState,
    /// Units reserved.
    pub quantity: i64,
    /// The buyer.
    pub user: UserId,
    /// The buyer's idempotency key.
    pub key: IdempotencyKey,
}

/// A stored record that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable reservation record {0:?}")]
pub struct CorruptRecord(pub String);

impl ReservationRecord {
    /// The stored form.
    pub fn encode(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.state.letter(),
            self.quantity,
            self.user.as_str(),
            self.key.as_str()
        )
    }

    /// Parses the stored form.
    pub fn parse(record: &str) -> Result<Self, CorruptRecord> {
        let corrupt = || CorruptRecord(record.to_owned());
        let mut parts = record.splitn(4, '|');
        let mut next = || parts.next().ok_or_else(corrupt);
        let state: ReservationState = next()?.parse().map_err(|_| corrupt())?;
        let quantity = next()?;
        if quantity.is_empty() || !quantity.bytes().all(|b| b.is_ascii_digit()) {
            return Err(corrupt());
        }
        let quantity = quantity.parse().map_err(|_| corrupt())?;
        let user = UserId::parse(next()?).map_err(|_| corrupt())?;
        let key = IdempotencyKey::parse(next()?).map_err(|_| corrupt())?;
        Ok(Self {
            state,
            quantity,
            user,
            key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_survives_encode_and_parse_even_with_a_bar_in_its_key() {
        let record = ReservationRecord {
            state: ReservationState::Acknowledged,
            quantity: 3,
            user: UserId::parse("alice@example.com").unwrap(),
            key: IdempotencyKey::parse("k|with|bars").unwrap(),
        };
        assert_eq!(record.encode(), "A|3|alice@example.com|k|with|bars");
        assert_eq!(ReservationRecord::parse(&record.encode()).unwrap(), record);
    }

    #[test]
    fn a_record_that_does_not_parse_is_an_error_not_a_default() {
        for bad in [
            "", "Z|1|u|k", "R|x|u|k", "R|+1|u|k", "R|-1|u|k", "R|1|u", "R|1||k", "R|1|u|",
        ] {
            assert!(ReservationRecord::parse(bad).is_err(), "{bad:?}");
        }
    }
}
