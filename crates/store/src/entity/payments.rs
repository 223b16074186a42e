//! A payment the provider notified, with the final outcome it was answered with.

use sea_orm::entity::prelude::*;

/// One row of `payments`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payments")]
pub struct Model {
    /// The provider's payment id (the notice is idempotent on it).
    #[sea_orm(primary_key, auto_increment = false)]
    pub payment_id: String,
    /// The order it was for.
    pub order_id: String,
    /// The order's SKU.
    pub sku_id: String,
    /// Amount in the currency's minor unit.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// `paid` or `refund_due`; read it with [`Model::payment_outcome`].
    pub outcome: String,
    /// Why a refund is due.
    pub reason: Option<String>,
    /// When the notice came.
    pub received_at: DateTimeUtc,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// The stored outcome; a value this build cannot read is an error.
    pub fn payment_outcome(&self) -> Result<domain::PaymentOutcome, crate::StoreError> {
        domain::PaymentOutcome::from_columns(&self.outcome, self.reason.as_deref()).ok_or_else(
            || crate::StoreError::Corrupt {
                order_id: self.order_id.clone(),
                column: "payments.outcome",
                value: format!("{} / {:?}", self.outcome, self.reason),
            },
        )
    }
}
