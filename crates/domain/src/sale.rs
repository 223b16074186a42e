//! A sale: how much of a SKU is on offer, to whom, and when.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Why a sale definition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaleError {
    /// Stock below zero or absurdly large.
    #[error("stock must be between 0 and {max}")]
    Stock {
        /// Largest allowed stock.
        max: i64,
    },
    /// Per-user limit outside `1..=1000`.
    #[error("per_user_limit must be between 1 and 1000")]
    PerUserLimit,
    /// The window ends before it starts.
    #[error("ends_at must be after starts_at")]
    Window,
    /// Payment window outside `1..=MAX_PAYMENT_WINDOW_SECS`.
    #[error("payment_window_secs must be between 1 and {max}")]
    PaymentWindow {
        /// Longest allowed window.
        max: u32,
    },
    /// A price without a currency, a currency without a price, or a price out of range.
    #[error("price_minor (1 to 10000000000000) and currency (ISO 4217, e.g. \"EUR\") go together; a sale that costs nothing says \"free\": true instead")]
    Price,
    /// Neither a price nor `free`.
    #[error("a sale must name its price: price_minor (1 to 10000000000000) with currency (ISO 4217, e.g. \"EUR\"), or \"free\": true")]
    Unpriced,
    /// `free` with a price or a currency.
    #[error("a free sale (\"free\": true) takes neither price_minor nor currency")]
    FreeWithPrice,
    /// Not three upper-case ASCII letters.
    #[error("currency must be an ISO 4217 code of three upper-case letters, e.g. \"EUR\"")]
    Currency,
    /// Stock buckets outside `1..=MAX_BUCKETS`.
    #[error("buckets must be between 1 and {max}")]
    Buckets {
        /// Most buckets.
        max: u8,
    },
}

/// An ISO 4217 currency code: three upper-case ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    /// Parses a code.
    pub fn parse(value: &str) -> Result<Self, SaleError> {
        match value.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Self([a, b, c])),
            _ => Err(SaleError::Currency),
        }
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl TryFrom<String> for Currency {
    type Error = SaleError;
    fn try_from(value: String) -> Result<Self, SaleError> {
        Self::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> String {
        value.as_str().to_owned()
    }
}

impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The price of one unit, in the currency's minor unit (cents for EUR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    /// Minor units per unit sold.
    pub minor_per_unit: i64,
    /// Its currency.
    pub currency: Currency,
}

/// What a payment that pays an order of the sale must amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pricing {
    /// Exactly `quantity x price`, in the price's currency.
    Priced(Price),
    /// Nothing: the sale says it is free, and a notice that pays one of its orders carries
    /// `amount_minor` 0. Its currency is not checked: a free sale names none.
    Free,
    /// Neither a price nor free: a sale stored before a sale had to say which. No payment pays
    /// its orders until it is put again with a price or as free (fail closed: nothing tells what
    /// its orders cost). [`PaymentTerms::new`] never makes it.
    Unpriced,
}

impl Pricing {
    /// The price, when the sale has one.
    pub fn price(&self) -> Option<Price> {
        match self {
            Pricing::Priced(price) => Some(*price),
            Pricing::Free | Pricing::Unpriced => None,
        }
    }

    /// Whether the sale says it is free.
    pub fn is_free(&self) -> bool {
        matches!(self, Pricing::Free)
    }
}

/// How a sale is paid: the time a buyer has, and what a payment must amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentTerms {
    /// Seconds a buyer has to pay, counted from when the order is written (the moment it can be
    /// paid).
    pub window_secs: u32,
    /// What a payment must amount to.
    pub pricing: Pricing,
}

impl PaymentTerms {
    /// The window when a sale does not name one: 15 minutes.
    pub const DEFAULT_WINDOW_SECS: u32 = 900;
    /// Longest window: a week.
    pub const MAX_WINDOW_SECS: u32 = 7 * 24 * 3600;
    /// Highest price of one unit, in minor units: an order of the largest quantity stays within
    /// the largest amount a payment notice may carry.
    pub const MAX_PRICE_MINOR: i64 = 10_000_000_000_000;

    /// Validates terms as an admin sets them: a window of `1..=MAX_WINDOW_SECS` seconds, and
    /// either a price of `1..=MAX_PRICE_MINOR` with its currency or `free` (never both, never
    /// neither).
    pub fn new(
        window_secs: i64,
        price_minor: Option<i64>,
        currency: Option<&str>,
        free: bool,
    ) -> Result<Self, SaleError> {
        let window_secs = Self::window_of(window_secs)?;
        let pricing = match (price_minor, currency, free) {
            (None, None, true) => Pricing::Free,
            (_, _, true) => return Err(SaleError::FreeWithPrice),
            (None, None, false) => return Err(SaleError::Unpriced),
            (Some(minor), Some(currency), false)
                if (1..=Self::MAX_PRICE_MINOR).contains(&minor) =>
            {
                Pricing::Priced(Price {
                    minor_per_unit: minor,
                    currency: Currency::parse(currency)?,
                })
            }
            (_, _, false) => return Err(SaleError::Price),
        };
        Ok(Self {
            window_secs,
            pricing,
        })
    }

    /// Reads terms as a stored sale holds them: as [`PaymentTerms::new`] validates them, except
    /// that neither a price nor `free` is [`Pricing::Unpriced`] (a sale stored before a sale had
    /// to say which) instead of an error.
    pub fn stored(
        window_secs: i64,
        price_minor: Option<i64>,
        currency: Option<&str>,
        free: bool,
    ) -> Result<Self, SaleError> {
        match (price_minor, currency, free) {
            (None, None, false) => Ok(Self {
                window_secs: Self::window_of(window_secs)?,
                pricing: Pricing::Unpriced,
            }),
            _ => Self::new(window_secs, price_minor, currency, free),
        }
    }

    fn window_of(window_secs: i64) -> Result<u32, SaleError> {
        u32::try_from(window_secs)
            .ok()
            .filter(|secs| (1..=Self::MAX_WINDOW_SECS).contains(secs))
            .ok_or(SaleError::PaymentWindow {
                max: Self::MAX_WINDOW_SECS,
            })
    }

    /// The window as a duration.
    pub fn window(&self) -> chrono::Duration {
        chrono::Duration::seconds(i64::from(self.window_secs))
    }
}

/// The terms a sale built in code starts with ([`SaleSpec::new`]) until
/// [`SaleSpec::with_payment`] names its own: the default window, free. The admin API and a
/// stored sale always name theirs.
/// The terms of a sale built in code without any: the default window, and no price, so that a
/// sale nobody priced takes no payment (fail closed) rather than counting as free.
impl Default for PaymentTerms {
    fn default() -> Self {
        Self {
            window_secs: Self::DEFAULT_WINDOW_SECS,
            pricing: Pricing::Unpriced,
        }
    }
}

/// When a sale is open: `starts_at <= now < ends_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleWindow {
    /// Opening time.
    pub starts_at: DateTime<Utc>,
    /// Closing time (exclusive).
    pub ends_at: DateTime<Utc>,
}

impl SaleWindow {
    /// Whether the sale is open at `now`.
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        self.starts_at <= now && now < self.ends_at
    }
}

/// A validated sale definition, as an admin sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleSpec {
    /// Total units on offer (including any already sold).
    pub stock: i64,
    /// Most units one buyer may hold.
    pub per_user_limit: u32,
    /// When it is open.
    pub window: SaleWindow,
    /// How it is paid.
    pub payment: PaymentTerms,
    /// How many stock buckets the sale's units are split into in Redis (1: one; more for a SKU
    /// whose buyers need more than one Redis core). Fixed once the sale exists.
    #[serde(default = "SaleSpec::one_bucket")]
    pub buckets: u8,
    /// The sale's waiting room, when its buyers queue before they buy (see
    /// [`crate::admission`]).
    #[serde(default)]
    pub admission: Option<crate::Admission>,
}

impl SaleSpec {
    /// Largest stock a sale may have.
    pub const MAX_STOCK: i64 = 1_000_000_000;
    /// Most stock buckets a sale may have.
    pub const MAX_BUCKETS: u8 = 64;

    fn one_bucket() -> u8 {
        1
    }

    /// Validates a definition, with the default payment terms (see [`SaleSpec::with_payment`]).
    pub fn new(
        stock: i64,
        per_user_limit: i64,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
    ) -> Result<Self, SaleError> {
        if !(0..=Self::MAX_STOCK).contains(&stock) {
            return Err(SaleError::Stock {
                max: Self::MAX_STOCK,
            });
        }
        if !(1..=1000).contains(&per_user_limit) {
            return Err(SaleError::PerUserLimit);
        }
        if ends_at <= starts_at {
            return Err(SaleError::Window);
        }
        Ok(Self {
            stock,
            per_user_limit: per_user_limit as u32,
            window: SaleWindow { starts_at, ends_at },
            payment: PaymentTerms::default(),
            buckets: 1,
            admission: None,
        })
    }

    /// The same sale split into `buckets` stock buckets, `1..=MAX_BUCKETS`.
    pub fn with_buckets(mut self, buckets: i64) -> Result<Self, SaleError> {
        if !(1..=i64::from(Self::MAX_BUCKETS)).contains(&buckets) {
            return Err(SaleError::Buckets {
                max: Self::MAX_BUCKETS,
            });
        }
        self.buckets = buckets as u8;
        Ok(self)
    }

    /// The units bucket `bucket` starts with: [`SaleSpec::share_of`] the stock.
    pub fn bucket_share(&self, bucket: u8) -> i64 {
        Self::share_of(self.stock, self.buckets, bucket)
    }

    /// Bucket `bucket`'s part of `units` split over `buckets` as evenly as it goes, the first
    /// buckets taking one more when it does not divide.
    pub fn share_of(units: i64, buckets: u8, bucket: u8) -> i64 {
        let buckets = i64::from(buckets.max(1));
        units / buckets + i64::from(i64::from(bucket) < units % buckets)
    }

    /// The same sale behind this waiting room (or none).
    pub fn with_admission(mut self, admission: Option<crate::Admission>) -> Self {
        self.admission = admission;
        self
    }

    /// The same sale with these payment terms.
    pub fn with_payment(mut self, payment: PaymentTerms) -> Self {
        self.payment = payment;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn a_sale_is_open_from_its_start_until_just_before_its_end() {
        let start = Utc::now();
        let spec = SaleSpec::new(10, 2, start, start + Duration::seconds(60)).unwrap();
        assert!(!spec.window.is_open(start - Duration::milliseconds(1)));
        assert!(spec.window.is_open(start));
        assert!(!spec.window.is_open(start + Duration::seconds(60)));
    }

    #[test]
    fn a_sale_splits_its_stock_over_its_buckets_without_losing_a_unit() {
        let start = Utc::now();
        let spec = SaleSpec::new(10, 2, start, start + Duration::seconds(60)).unwrap();
        assert_eq!(spec.buckets, 1);
        assert_eq!(spec.bucket_share(0), 10);
        let split = spec.with_buckets(4).unwrap();
        let shares: Vec<i64> = (0..4).map(|b| split.bucket_share(b)).collect();
        assert_eq!(shares, [3, 3, 2, 2]);
        let few = SaleSpec::new(2, 1, start, start + Duration::seconds(60))
            .unwrap()
            .with_buckets(3)
            .unwrap();
        assert_eq!((0..3).map(|b| few.bucket_share(b)).sum::<i64>(), 2);
        let max = SaleSpec::MAX_BUCKETS;
        assert_eq!(spec.with_buckets(0), Err(SaleError::Buckets { max }));
        assert_eq!(
            spec.with_buckets(i64::from(max) + 1),
            Err(SaleError::Buckets { max })
        );
    }

    #[test]
    fn invalid_sales_are_refused_with_a_reason() {
        let now = Utc::now();
        let later = now + Duration::seconds(1);
        assert_eq!(
            SaleSpec::new(-1, 1, now, later),
            Err(SaleError::Stock {
                max: SaleSpec::MAX_STOCK
            })
        );
        assert_eq!(
            SaleSpec::new(1, 0, now, later),
            Err(SaleError::PerUserLimit)
        );
        assert_eq!(SaleSpec::new(1, 1, later, now), Err(SaleError::Window));
    }

    #[test]
    fn payment_terms_bound_the_window_and_take_a_price_only_with_its_currency() {
        let terms = PaymentTerms::new(60, Some(1999), Some("EUR"), false).unwrap();
        assert_eq!(terms.window_secs, 60);
        assert_eq!(terms.pricing.price().unwrap().currency.as_str(), "EUR");
        let max = PaymentTerms::MAX_WINDOW_SECS;
        assert_eq!(
            PaymentTerms::new(0, None, None, true),
            Err(SaleError::PaymentWindow { max })
        );
        assert_eq!(
            PaymentTerms::new(i64::from(max) + 1, None, None, true),
            Err(SaleError::PaymentWindow { max })
        );
        assert_eq!(
            PaymentTerms::new(60, Some(5), None, false),
            Err(SaleError::Price)
        );
        assert_eq!(
            PaymentTerms::new(60, None, Some("EUR"), false),
            Err(SaleError::Price)
        );
        let too_dear = PaymentTerms::MAX_PRICE_MINOR + 1;
        for minor in [-1, 0, too_dear] {
            assert_eq!(
                PaymentTerms::new(60, Some(minor), Some("EUR"), false),
                Err(SaleError::Price),
                "{minor}"
            );
        }
        for bad in ["eur", "EU", "EURO", "€UR"] {
            assert_eq!(
                PaymentTerms::new(60, Some(5), Some(bad), false),
                Err(SaleError::Currency),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_sale_names_its_price_or_says_it_is_free_and_only_a_stored_one_may_do_neither() {
        let free = PaymentTerms::new(60, None, None, true).unwrap();
        assert_eq!(free.pricing, Pricing::Free);
        assert!(free.pricing.is_free() && free.pricing.price().is_none());
        assert_eq!(
            PaymentTerms::new(60, None, None, false),
            Err(SaleError::Unpriced)
        );
        for (minor, currency) in [(Some(5), Some("EUR")), (Some(5), None), (None, Some("EUR"))] {
            assert_eq!(
                PaymentTerms::new(60, minor, currency, true),
                Err(SaleError::FreeWithPrice),
                "{minor:?} {currency:?}"
            );
        }
        let legacy = PaymentTerms::stored(60, None, None, false).unwrap();
        assert_eq!(legacy.pricing, Pricing::Unpriced);
        assert_eq!(
            PaymentTerms::stored(60, Some(1999), Some("EUR"), false),
            PaymentTerms::new(60, Some(1999), Some("EUR"), false)
        );
        assert_eq!(
            PaymentTerms::stored(60, None, None, true).unwrap().pricing,
            Pricing::Free
        );
        assert_eq!(
            PaymentTerms::stored(60, Some(5), Some("EUR"), true),
            Err(SaleError::FreeWithPrice)
        );
        assert_eq!(PaymentTerms::default().pricing, Pricing::Unpriced);
    }
}
