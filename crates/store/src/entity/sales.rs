//! A sale and its authoritative stock.

use sea_orm::entity::prelude::*;

/// One row of `sales`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sales")]
pub struct Model {
    /// The SKU on sale.
    #[sea_orm(primary_key, auto_increment = false)]
    pub sku_id: String,
    /// Total units of the sale.
    pub initial_stock: i64,
    /// Units not held by an order (awaiting payment or paid).
    pub stock: i64,
    /// Most units per buyer.
    pub per_user_limit: i32,
    /// Opening time.
    pub starts_at: DateTimeUtc,
    /// Closing time (exclusive).
    pub ends_at: DateTimeUtc,
    /// Seconds a buyer has to pay once the order is written.
    pub payment_window_secs: i32,
    /// Price of one unit in the currency's minor unit, at least 1; `NULL` for a free sale, and
    /// for a sale stored before a sale had to name its price or say it is free (whose orders no
    /// payment pays until it is put again).
    pub price_minor: Option<i64>,
    /// ISO 4217 code of the price (set with `price_minor`).
    pub currency: Option<String>,
    /// The sale says it is free: a payment of its orders is of 0 (no price then).
    pub free: bool,
    /// Stock buckets of the sale in Redis (fixed once the sale exists).
    pub buckets: i16,
    /// The waiting room's definition (`<mode>|<rate or auto>|<ticket ms>|<pre-queue ms>`, as
    /// [`domain::Admission::encode`] writes it); `NULL`: none.
    pub admission: Option<String>,
    /// Row creation.
    pub created_at: DateTimeUtc,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// The sale's definition as an admin set it; stored values this build cannot read are an
    /// error.
    pub fn spec(&self) -> Result<domain::SaleSpec, crate::StoreError> {
        let corrupt = |error: domain::SaleError| crate::StoreError::Corrupt {
            order_id: format!("(the sale {})", self.sku_id),
            column: "sale definition",
            value: error.to_string(),
        };
        domain::SaleSpec::new(
            self.initial_stock,
            i64::from(self.per_user_limit),
            self.starts_at,
            self.ends_at,
        )
        .map_err(corrupt)?
        .with_payment(self.payment_terms()?)
        .with_buckets(i64::from(self.buckets))
        .map_err(corrupt)
        .and_then(|spec| Ok(spec.with_admission(self.admission()?)))
    }

    /// The sale's waiting room; a stored definition this build cannot read is an error.
    pub fn admission(&self) -> Result<Option<domain::Admission>, crate::StoreError> {
        let Some(stored) = self.admission.as_deref() else {
            return Ok(None);
        };
        match domain::Admission::decode(stored) {
            Some(room) => Ok(Some(room)),
            None => Err(crate::StoreError::Corrupt {
                order_id: format!("(the sale {})", self.sku_id),
                column: "admission",
                value: stored.to_owned(),
            }),
        }
    }

    /// The sale's payment terms ([`domain::sale::Pricing::Unpriced`] for a sale with neither a
    /// price nor `free`); stored values this build cannot read are an error.
    pub fn payment_terms(&self) -> Result<domain::PaymentTerms, crate::StoreError> {
        domain::PaymentTerms::stored(
            i64::from(self.payment_window_secs),
            self.price_minor,
            self.currency.as_deref(),
            self.free,
        )
        .map_err(|error| crate::StoreError::Corrupt {
            order_id: format!("(the sale {})", self.sku_id),
            column: "payment terms",
            value: error.to_string(),
        })
    }
}
