//! Identifier newtypes that cannot hold an invalid value ("parse, don't validate").
//!
//! Their character sets are narrow on purpose: identifiers end up in Redis keys and hash fields
//! (where `:`, `|`, `{` and `}` have meaning), in Kafka keys and in URLs.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why an identifier or quantity was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The value is empty or longer than allowed.
    #[error("{what} must be 1 to {max} characters long")]
    Length {
        /// Which identifier.
        what: &'static str,
        /// The longest allowed value.
        max: usize,
    },
    /// The value holds a character outside the allowed set.
    #[error("{what} may only contain {allowed}")]
    Charset {
        /// Which identifier.
        what: &'static str,
        /// The allowed characters, for humans.
        allowed: &'static str,
    },
    /// A quantity outside `1..=MAX`.
    #[error("quantity must be between 1 and {max}")]
    Quantity {
        /// The largest allowed quantity.
        max: u32,
    },
    /// An order id that is not `<sku_id>.<32 hex digits>`.
    #[error("order id must look like <sku_id>.<32 hex digits>")]
    OrderId,
}

fn check(
    value: &str,
    what: &'static str,
    max: usize,
    allowed: &'static str,
    ok: impl Fn(char) -> bool,
) -> Result<(), IdError> {
    if value.is_empty() || value.len() > max {
        return Err(IdError::Length { what, max });
    }
    if !value.chars().all(ok) {
        return Err(IdError::Charset { what, allowed });
    }
    Ok(())
}

fn is_slug_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr, $allowed:literal, $ok:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Longest accepted value, in bytes.
            pub const MAX_LEN: usize = $max;

            /// Parses and validates a value.
            pub fn parse(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                check(&value, $what, $max, $allowed, $ok)?;
                Ok(Self(value))
            }

            /// The value as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// A stock-keeping unit on sale, e.g. `phone-x-128`. Also the Kafka key and the Redis hash tag.
    SkuId, "sku_id", 64, "ASCII letters, digits, '-' and '_'", is_slug_char
);
/// The characters a token's subject keeps as they are in a [`UserId`].
fn is_plain_user_char(c: char) -> bool {
    is_slug_char(c) || c == '.' || c == '@'
}

string_id!(
    /// A buyer, as named by the `sub` claim of their token ([`UserId::from_subject`]).
    UserId, "user id", 128, "ASCII letters, digits, '-', '_', '.', '@' and '%'",
    |c: char| is_plain_user_char(c) || c == '%'
);

impl UserId {
    /// The buyer a token's `sub` names. Identity providers put other characters in subjects
    /// (Auth0: `auth0|5f7c...`; others `:` or non-ASCII letters): every byte outside ASCII
    /// letters, digits and `-_.@` is written `%XX` (`auth0|42` becomes `auth0%7C42`, `%` itself
    /// `%25`), so each subject names one user id, no two subjects the same one, and none holds
    /// the characters that separate fields in Redis. Too long once written so: an error.
    pub fn from_subject(sub: &str) -> Result<Self, IdError> {
        use std::fmt::Write;
        let mut id = String::with_capacity(sub.len());
        for byte in sub.bytes() {
            let c = char::from(byte);
            if byte.is_ascii() && is_plain_user_char(c) {
                id.push(c);
            } else {
                let _ = write!(id, "%{byte:02X}");
            }
        }
        Self::parse(id)
    }
}
string_id!(
    /// The client's `Idempotency-Key`: the same key from the same user always means the same order.
    IdempotencyKey, "Idempotency-Key", 64, "visible ASCII characters",
    |c: char| c.is_ascii_graphic()
);

string_id!(
    /// A payment provider's id of a payment: a payment notice is idempotent on it.
    PaymentId, "payment_id", 128, "visible ASCII characters",
    |c: char| c.is_ascii_graphic()
);

string_id!(
    /// The id of a key that signs messages (`messages.signing_key_id`): it travels in the
    /// signature header and names the secret to check it with, so keys can be rotated. Without
    /// `:` and `,`, which separate it from the signature and the keys from each other.
    KeyId, "key id", 64, "lower-case ASCII letters, digits, '-', '_' and '.'",
    |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')
);

/// An order's id: `<sku_id>.<32 hex digits>`.
///
/// It carries its SKU so that a pending order, which so far only exists as a reservation in the
/// SKU's Redis slot, can be found from its id alone without a secondary index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OrderId(String);

impl OrderId {
    /// Builds an id from its SKU and 128 random (or time-ordered) bits.
    pub fn new(sku: &SkuId, bits: u128) -> Self {
        Self(format!("{sku}.{bits:032x}"))
    }

    /// Builds the id of an order kept in stock bucket `bucket` of its sale (see the stock
    /// ledger's `StockKeys::bucket`) from a UUIDv7's bits. Bucket 0 is the id [`OrderId::new`]
    /// makes. Any other bucket is written into the id as a UUIDv8 (RFC 9562's layout of its own):
    /// the version digit becomes `8` and the two hex digits after it hold the bucket, so the id
    /// keeps its form (`<sku_id>.<32 hex digits>`) and still names where its reservation lives.
    pub fn in_bucket(sku: &SkuId, bucket: u8, bits: u128) -> Self {
        const VERSION_AND_BUCKET: u128 = 0xfff << 68;
        if bucket == 0 && (bits >> 76) & 0xf != 0x8 {
            return Self::new(sku, bits);
        }
        let bits = (bits & !VERSION_AND_BUCKET) | (0x8 << 76) | (u128::from(bucket) << 68);
        Self::new(sku, bits)
    }

    /// This id moved to stock bucket `bucket` (the same SKU and bits otherwise).
    pub fn with_bucket(&self, bucket: u8) -> Self {
        Self::in_bucket(&self.sku(), bucket, self.bits())
    }

    /// The stock bucket this order's reservation lives in: the bucket written into a UUIDv8 id
    /// by [`OrderId::in_bucket`]; any other id (a UUIDv7 from [`OrderId::new`]) is in bucket 0.
    pub fn bucket(&self) -> u8 {
        let bits = self.bits();
        if (bits >> 76) & 0xf == 0x8 {
            ((bits >> 68) & 0xff) as u8
        } else {
            0
        }
    }

    /// The id's 128 bits. Every id holds 32 hex digits after its last `.` ([`OrderId::new`]
    /// writes them, [`OrderId::parse`] refuses anything else, and serde goes through it), so
    /// reading them back cannot fail; a default here would put a reservation in the wrong
    /// bucket without a word.
    fn bits(&self) -> u128 {
        let hex = self
            .0
            .rsplit_once('.')
            .map(|(_, hex)| hex)
            .expect("an order id is <sku_id>.<32 hex digits>");
        u128::from_str_radix(hex, 16).expect("an order id ends in 32 hex digits")
    }

    /// Parses and validates an id.
    pub fn parse(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        let (sku, hex) = value.rsplit_once('.').ok_or(IdError::OrderId)?;
        SkuId::parse(sku).map_err(|_| IdError::OrderId)?;
        if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(IdError::OrderId);
        }
        Ok(Self(value))
    }

    /// The SKU this order is for.
    pub fn sku(&self) -> SkuId {
        let (sku, _) = self.0.rsplit_once('.').unwrap_or((&self.0, ""));
        SkuId(sku.to_owned())
    }

    /// The value as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OrderId {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, IdError> {
        Self::parse(value)
    }
}

impl From<OrderId> for String {
    fn from(value: OrderId) -> String {
        value.0
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How many units one order asks for: `1..=Quantity::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u32")]
pub struct Quantity(u32);

impl Quantity {
    /// The largest quantity a single order may ask for.
    pub const MAX: u32 = 100;
    /// One unit, the default of the buyer endpoint.
    pub const ONE: Quantity = Quantity(1);

    /// Validates a quantity.
    pub fn new(value: i64) -> Result<Self, IdError> {
        if (1..=i64::from(Self::MAX)).contains(&value) {
            Ok(Self(value as u32))
        } else {
            Err(IdError::Quantity { max: Self::MAX })
        }
    }

    /// The number of units.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<i64> for Quantity {
    type Error = IdError;
    fn try_from(value: i64) -> Result<Self, IdError> {
        Self::new(value)
    }
}

impl From<Quantity> for u32 {
    fn from(value: Quantity) -> u32 {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sku_ids_refuse_characters_that_mean_something_in_redis_keys() {
        assert!(SkuId::parse("phone-x_128").is_ok());
        for bad in ["", "a{b}", "a:b", "a b", "ä", &"x".repeat(65)] {
            assert!(SkuId::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn an_order_id_carries_its_sku() {
        let sku = SkuId::parse("phone-1").unwrap();
        let id = OrderId::new(&sku, 0xabc);
        assert_eq!(id.as_str(), "phone-1.00000000000000000000000000000abc");
        assert_eq!(OrderId::parse(id.as_str()).unwrap().sku(), sku);
        assert!(OrderId::parse("phone-1.xyz").is_err());
        assert!(OrderId::parse("phone-1").is_err());
        assert!(OrderId::parse("ph{o}ne.00000000000000000000000000000abc").is_err());
    }

    #[test]
    fn an_order_id_names_its_stock_bucket_and_keeps_its_form() {
        let sku = SkuId::parse("phone-1").unwrap();
        let v7 = 0x019abf3c_5e7d_7c3a_9d2e_4b1f0a6c8e21_u128;
        assert_eq!(OrderId::new(&sku, v7).bucket(), 0);
        assert_eq!(OrderId::in_bucket(&sku, 0, v7), OrderId::new(&sku, v7));
        for bucket in [1, 7, 63, 255] {
            let id = OrderId::in_bucket(&sku, bucket, v7);
            assert_eq!(id.bucket(), bucket, "{id}");
            assert_eq!(OrderId::parse(id.as_str()).unwrap(), id);
            assert_eq!(id.sku(), sku);
            // The time and the random bits outside the version and bucket digits are kept.
            assert_eq!(&id.as_str()[8..20], "019abf3c5e7d");
            assert_eq!(&id.as_str()[23..], "a9d2e4b1f0a6c8e21");
        }
        let moved = OrderId::new(&sku, v7).with_bucket(9);
        assert_eq!(moved, OrderId::in_bucket(&sku, 9, v7));
        assert_eq!(moved.with_bucket(0).bucket(), 0);
        assert_eq!(
            OrderId::in_bucket(&sku, 5, v7).as_str(),
            "phone-1.019abf3c5e7d805a9d2e4b1f0a6c8e21"
        );
    }

    #[test]
    fn a_subject_maps_to_one_user_id_and_two_subjects_never_to_the_same() {
        let id = |sub: &str| UserId::from_subject(sub).unwrap();
        assert_eq!(id("alice@example.com").as_str(), "alice@example.com");
        assert_eq!(id("auth0|5f7c").as_str(), "auth0%7C5f7c");
        assert_eq!(id("google-oauth2|42").as_str(), "google-oauth2%7C42");
        assert_eq!(id("a:b c").as_str(), "a%3Ab%20c");
        assert_eq!(id("jürgen").as_str(), "j%C3%BCrgen");
        // `%` is written too, so a subject that looks written already stays apart.
        assert_eq!(id("auth0%7C5f7c").as_str(), "auth0%257C5f7c");
        assert_ne!(id("auth0%7C5f7c"), id("auth0|5f7c"));
        // No field separator of the Redis records survives.
        assert!(!id("x|y{z}:w").as_str().contains(['|', '{', '}', ':']));
        assert!(UserId::from_subject("").is_err());
        assert!(UserId::from_subject(&"|".repeat(43)).is_err());
    }

    #[test]
    fn quantities_are_bounded() {
        assert_eq!(Quantity::new(1).unwrap().get(), 1);
        assert_eq!(Quantity::new(100).unwrap().get(), 100);
        assert!(Quantity::new(0).is_err());
        assert!(Quantity::new(-3).is_err());
        assert!(Quantity::new(101).is_err());
    }

    #[test]
    fn idempotency_keys_are_visible_ascii_up_to_64() {
        assert!(IdempotencyKey::parse("a:b|c-1").is_ok());
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse("x".repeat(64)).is_ok());
        assert!(IdempotencyKey::parse("x".repeat(65)).is_err());
    }
}
