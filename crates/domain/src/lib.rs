//! The pure core of seckill: what an order, a sale and a dead letter are, how they are named in
//! Kafka, and which inputs are valid. Nothing here does I/O, so every service and every
//! test agrees on the same definitions and can check them without a network.

pub mod admission;
pub mod dead_letter;
pub mod ids;
pub mod order;
pub mod payment;
pub mod pow;
pub mod reason;
pub mod reservation;
pub mod retry;
pub mod sale;
pub mod signing;

pub use admission::{Admission, AdmissionError, AdmissionMode, AdmissionRate};
pub use dead_letter::{DeadLetter, DeadLetterError};
pub use ids::{IdError, IdempotencyKey, KeyId, OrderId, Quantity, SkuId, UserId};
pub use order::{DecodeError, OrderRequested, OrderStatus, ORDER_SCHEMA_VERSION};
pub use payment::{PaymentId, PaymentNotice, PaymentOutcome, RefundReason};
pub use reason::ReasonCode;
pub use reservation::ReservationState;
pub use retry::Backoff;
pub use sale::{Currency, PaymentTerms, Price, SaleError, SaleSpec, SaleWindow};
pub use signing::{Forgery, Keyring, Signed};

/// Default name of the topic that carries accepted orders from the gateway to the worker.
pub const ORDERS_TOPIC: &str = "seckill.orders";
/// Default name of the dead-letter topic drained by the replayer.
pub const DLQ_TOPIC: &str = "seckill.orders.dlq";

/// Checks shared by the tests of the domain's enums.
#[cfg(test)]
pub(crate) mod enum_checks {
    use std::fmt::{Debug, Display};
    use std::str::FromStr;
    use strum::VariantArray;

    /// Each variant of `E` has, in order, the string of `expected` (stored, sent and shown, so it
    /// must never change), displays as it, and parses back from it and only from it.
    pub(crate) fn assert_stable_strings<E>(expected: &[&str])
    where
        E: VariantArray + Copy + PartialEq + Debug + Display + FromStr + Into<&'static str>,
    {
        let strings: Vec<&'static str> = E::VARIANTS.iter().map(|&v| v.into()).collect();
        assert_eq!(strings, expected);
        for &variant in E::VARIANTS {
            let string: &'static str = variant.into();
            assert_eq!(variant.to_string(), string);
            assert!(string.parse::<E>().is_ok_and(|parsed| parsed == variant));
            // Parsing is exact: another case of the same letters is no variant.
            let other_case = if string == string.to_uppercase() {
                string.to_lowercase()
            } else {
                string.to_uppercase()
            };
            assert!(other_case.parse::<E>().is_err(), "{other_case}");
        }
        assert!("no such variant".parse::<E>().is_err());
    }

    /// Each variant of `E` serializes (in JSON, the API's and the messages' form) as its string.
    pub(crate) fn assert_serde_is_the_string<E>()
    where
        E: VariantArray + Copy + serde::Serialize + Into<&'static str>,
    {
        for &variant in E::VARIANTS {
            let string: &'static str = variant.into();
            assert_eq!(serde_json::to_value(variant).unwrap(), string);
        }
    }
}
