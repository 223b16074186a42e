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
}

impl SaleSpec {
    /// Largest stock a sale may have.
    pub const MAX_STOCK: i64 = 1_000_000_000;

    /// Validates a definition.
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
        })
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
}
