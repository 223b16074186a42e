//! An order as the worker wrote it.

use sea_orm::entity::prelude::*;

/// One row of `orders`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "orders")]
pub struct Model {
    /// `<sku_id>.<hex>`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub order_id: String,
    /// The buyer.
    pub user_id: String,
    /// The SKU.
    pub sku_id: String,
    /// Units.
    pub quantity: i32,
    /// The buyer's idempotency key.
    pub idempotency_key: String,
    /// `awaiting_payment`, `paid`, `expired` or `failed` (`pending` orders exist only in Redis
    /// and Kafka); read it with [`Model::order_status`].
    pub status: String,
    /// Why it failed or expired; read it with [`Model::failure_reason`].
    pub reason: Option<String>,
    /// When the gateway accepted it.
    pub requested_at: DateTimeUtc,
    /// When the worker wrote it.
    pub created_at: DateTimeUtc,
    /// Last change.
    pub updated_at: DateTimeUtc,
    /// The end of the payment window (orders that took stock).
    pub pay_by: Option<DateTimeUtc>,
    /// When it was paid.
    pub paid_at: Option<DateTimeUtc>,
    /// The payment that paid it.
    pub payment_id: Option<String>,
    /// When Redis got the units of the expired order back (`NULL` while the expirer still owes
    /// them).
    pub units_returned_at: Option<DateTimeUtc>,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// The order's status; a value this build cannot read is an error.
    pub fn order_status(&self) -> Result<domain::OrderStatus, crate::StoreError> {
        super::parse_status(&self.order_id, &self.status)
    }

    /// Why the order failed or expired, if it did; a value this build cannot read is an error.
    pub fn failure_reason(&self) -> Result<Option<domain::ReasonCode>, crate::StoreError> {
        super::parse_reason(&self.order_id, self.reason.as_deref())
    }
}
