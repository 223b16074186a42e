//! A payment provider's notice that an order was paid, how it is signed, and what it can come
//! to. The signature follows the scheme common providers use for webhooks: the header
//! `Seckill-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`, where several
//! `v1` entries may stand side by side while a secret is being rotated.

use crate::sale::Currency;
use crate::OrderId;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use strum::{Display, EnumDiscriminants, EnumString, IntoStaticStr, VariantArray};

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "Seckill-Signature";

/// Payloads above this size are refused before their signature is checked.
pub const MAX_NOTICE_BYTES: usize = 2 * 1024;

/// The largest amount a notice may carry, in minor units (10^15: ten trillion in a currency of
/// cents), so that every amount fits the database's signed 64-bit column.
pub const MAX_AMOUNT_MINOR: u64 = 1_000_000_000_000_000;

fn bounded_amount<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let amount = u64::deserialize(deserializer)?;
    if amount > MAX_AMOUNT_MINOR {
        return Err(serde::de::Error::custom(format!(
            "amount_minor must be at most {MAX_AMOUNT_MINOR}"
        )));
    }
    Ok(amount)
}

pub use crate::ids::PaymentId;

/// "This order was paid": the body of `POST /v1/payments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PaymentNotice {
    /// The provider's payment id: 1 to 128 visible ASCII characters.
    #[cfg_attr(feature = "openapi", schema(value_type = String, min_length = 1, max_length = 128, example = "pay_7Hq2"))]
    pub payment_id: PaymentId,
    /// The order paid for.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "phone-x.019abf3c5e7d7c3a9d2e4b1f0a6c8e21"))]
    pub order_id: OrderId,
    /// The amount, in the currency's minor unit (0 to 10^15).
    #[serde(deserialize_with = "bounded_amount")]
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 0, maximum = 1_000_000_000_000_000_u64, example = 19999)
    )]
    pub amount_minor: u64,
    /// The currency: an ISO 4217 code.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[A-Z]{3}$", example = "EUR"))]
    pub currency: Currency,
}

/// What a payment came to. Every outcome is final and stored with the payment, so the same
/// notice again is answered the same. It is stored in two columns: its kind
/// ([`PaymentOutcomeKind`], `paid` or `refund_due`) and, for a refund due, its [`RefundReason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(IntoStaticStr, EnumDiscriminants)]
#[strum(serialize_all = "snake_case")]
#[strum_discriminants(
    name(PaymentOutcomeKind),
    doc = "The stored `outcome` column of a payment: what it came to, without the reason.",
    derive(Display, EnumString, IntoStaticStr, VariantArray),
    strum(serialize_all = "snake_case")
)]
pub enum PaymentOutcome {
    /// The order is paid by it.
    Paid,
    /// The money came, but pays no order: it must be refunded.
    RefundDue(RefundReason),
}

/// Why money that came in must go back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(Display, EnumString, IntoStaticStr, VariantArray)]
#[strum(serialize_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RefundReason {
    /// The order's payment window had closed: its units went back on sale.
    OrderExpired,
    /// The order was already paid by another payment.
    OrderAlreadyPaid,
    /// The order failed and never held a unit.
    OrderFailed,
}

impl RefundReason {
    /// The stable string form (stored, shown, and the API's error code): snake_case of the
    /// variant's name, like its serde form (a test pins each).
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl PaymentOutcomeKind {
    /// The stored `outcome` column.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl PaymentOutcome {
    /// The stored outcome column: `paid` or `refund_due`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The stored reason column.
    pub fn reason(self) -> Option<RefundReason> {
        match self {
            PaymentOutcome::Paid => None,
            PaymentOutcome::RefundDue(reason) => Some(reason),
        }
    }

    /// Reads the stored columns back; `None` when they do not make an outcome this build
    /// knows (an unknown string, a refund without its reason, a payment with one).
    pub fn from_columns(outcome: &str, reason: Option<&str>) -> Option<Self> {
        let kind: PaymentOutcomeKind = outcome.parse().ok()?;
        match (kind, reason) {
            (PaymentOutcomeKind::Paid, None) => Some(PaymentOutcome::Paid),
            (PaymentOutcomeKind::RefundDue, Some(reason)) => {
                reason.parse().ok().map(PaymentOutcome::RefundDue)
            }
            (PaymentOutcomeKind::Paid, Some(_)) | (PaymentOutcomeKind::RefundDue, None) => None,
        }
    }
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `Seckill-Signature` header.
    #[error("the Seckill-Signature header is required")]
    Missing,
    /// The header is not `t=<unix seconds>,v1=<hex>[,v1=<hex>...]`.
    #[error("the Seckill-Signature header must read t=<unix seconds>,v1=<hex HMAC-SHA256>")]
    Malformed,
    /// The timestamp is further from now than the tolerance: a replayed or delayed notice.
    #[error("the signature's timestamp is more than {tolerance_secs} s away from now")]
    Stale {
        /// The tolerance.
        tolerance_secs: u64,
    },
    /// No `v1` matches the body under the secret.
    #[error("the signature does not match the body")]
    Mismatch,
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = crate::signing::hmac_sha256(secret);
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header value signing `body` at `timestamp` (unix seconds) with `secret`: what a provider
/// sends (the demo and the tests sign with it).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let digest = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(digest))
}

/// Checks `header` against `body`: a timestamp within `tolerance_secs` of `now` (unix seconds)
/// and a `v1` that is the body's HMAC under `secret` (compared in constant time).
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secret: &[u8],
    now: i64,
    tolerance_secs: u64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let (name, value) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match name {
            "t" => {
                let t: i64 = value.parse().map_err(|_| SignatureError::Malformed)?;
                if timestamp.replace(t).is_some() {
                    return Err(SignatureError::Malformed);
                }
            }
            // An entry that is not hex matches nothing; another entry may (secret rotation).
            "v1" => signatures.push(hex::decode(value).unwrap_or_default()),
            // Other schemes (a future v2) are skipped, as providers' clients do.
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if now.abs_diff(timestamp) > tolerance_secs {
        return Err(SignatureError::Stale { tolerance_secs });
    }
    let expected = mac(secret, timestamp, body);
    if signatures
        .iter()
        .any(|signature| expected.clone().verify_slice(signature).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray;

    const SECRET: &[u8] = b"whsec-test";
    const BODY: &[u8] = br#"{"payment_id":"p-1"}"#;

    #[test]
    fn a_signed_body_verifies_within_the_tolerance_and_not_outside_it() {
        let header = sign(SECRET, 1_000, BODY);
        assert_eq!(verify(Some(&header), BODY, SECRET, 1_000, 300), Ok(()));
        assert_eq!(verify(Some(&header), BODY, SECRET, 1_300, 300), Ok(()));
        assert_eq!(
            verify(Some(&header), BODY, SECRET, 1_301, 300),
            Err(SignatureError::Stale {
                tolerance_secs: 300
            })
        );
        assert_eq!(
            verify(Some(&header), BODY, SECRET, 699, 300),
            Err(SignatureError::Stale {
                tolerance_secs: 300
            }),
            "a timestamp from the future beyond the tolerance"
        );
    }

    #[test]
    fn another_body_another_secret_or_another_timestamp_does_not_verify() {
        let header = sign(SECRET, 1_000, BODY);
        let mismatch = Err(SignatureError::Mismatch);
        assert_eq!(verify(Some(&header), b"{}", SECRET, 1_000, 300), mismatch);
        assert_eq!(verify(Some(&header), BODY, b"other", 1_000, 300), mismatch);
        let moved = header.replace("t=1000", "t=1001");
        assert_eq!(verify(Some(&moved), BODY, SECRET, 1_000, 300), mismatch);
    }

    #[test]
    fn a_rotated_secret_verifies_through_any_of_several_v1_entries() {
        let old = sign(b"old", 1_000, BODY);
        let new = sign(SECRET, 1_000, BODY);
        let both = format!("{old}, {}", new.split_once(',').unwrap().1);
        assert_eq!(verify(Some(&both), BODY, SECRET, 1_000, 300), Ok(()));
        assert_eq!(verify(Some(&both), BODY, b"old", 1_000, 300), Ok(()));
    }

    #[test]
    fn malformed_headers_are_refused_as_such() {
        for bad in ["", "t=1000", "v1=00", "t=x,v1=00", "t=1,t=1,v1=00", "junk"] {
            assert_eq!(
                verify(Some(bad), BODY, SECRET, 1_000, 300),
                Err(SignatureError::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            verify(None, BODY, SECRET, 1_000, 300),
            Err(SignatureError::Missing)
        );
        // An entry that is not hex matches nothing, and does not spoil a good one.
        let with_junk = format!("{},v1=zz", sign(SECRET, 1_000, BODY));
        assert_eq!(verify(Some(&with_junk), BODY, SECRET, 1_000, 300), Ok(()));
        assert_eq!(
            verify(Some("t=1000,v1=zz"), BODY, SECRET, 1_000, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_notice_parses_strictly_and_outcomes_round_trip_through_their_columns() {
        let notice: PaymentNotice = serde_json::from_str(
            r#"{"payment_id":"pay_1","order_id":"sku-1.0000000000000000000000000000000a","amount_minor":1999,"currency":"EUR"}"#,
        )
        .unwrap();
        assert_eq!(notice.payment_id.as_str(), "pay_1");
        for bad in [
            r#"{"payment_id":"","order_id":"sku-1.0000000000000000000000000000000a","amount_minor":1,"currency":"EUR"}"#,
            r#"{"payment_id":"p","order_id":"nope","amount_minor":1,"currency":"EUR"}"#,
            r#"{"payment_id":"p","order_id":"sku-1.0000000000000000000000000000000a","amount_minor":-1,"currency":"EUR"}"#,
            r#"{"payment_id":"p","order_id":"sku-1.0000000000000000000000000000000a","amount_minor":1,"currency":"eur"}"#,
            r#"{"payment_id":"p","order_id":"sku-1.0000000000000000000000000000000a","amount_minor":1,"currency":"EUR","x":1}"#,
            r#"{"payment_id":"p","order_id":"sku-1.0000000000000000000000000000000a","amount_minor":1000000000000000001,"currency":"EUR"}"#,
        ] {
            assert!(serde_json::from_str::<PaymentNotice>(bad).is_err(), "{bad}");
        }
        let mut outcomes = vec![PaymentOutcome::Paid];
        outcomes.extend(
            RefundReason::VARIANTS
                .iter()
                .map(|r| PaymentOutcome::RefundDue(*r)),
        );
        for outcome in outcomes {
            let reason = outcome.reason().map(RefundReason::as_str);
            assert_eq!(
                PaymentOutcome::from_columns(outcome.as_str(), reason),
                Some(outcome)
            );
            assert_eq!(outcome.as_str(), PaymentOutcomeKind::from(outcome).as_str());
        }
        assert_eq!(
            PaymentOutcome::from_columns("paid", Some("order_expired")),
            None
        );
        assert_eq!(PaymentOutcome::from_columns("refund_due", None), None);
        assert_eq!(
            PaymentOutcome::from_columns("refund_due", Some("gremlins")),
            None
        );
        assert_eq!(PaymentOutcome::from_columns("refunded", None), None);
    }

    #[test]
    fn every_outcome_and_refund_reason_keeps_its_stored_string() {
        crate::enum_checks::assert_stable_strings::<PaymentOutcomeKind>(&["paid", "refund_due"]);
        crate::enum_checks::assert_stable_strings::<RefundReason>(&[
            "order_expired",
            "order_already_paid",
            "order_failed",
        ]);
        crate::enum_checks::assert_serde_is_the_string::<RefundReason>();
        assert_eq!(
            serde_json::to_value(PaymentOutcome::Paid).unwrap(),
            serde_json::json!("paid")
        );
        assert_eq!(
            serde_json::to_value(PaymentOutcome::RefundDue(RefundReason::OrderFailed)).unwrap(),
            serde_json::json!({"refund_due": "order_failed"})
        );
    }
}
