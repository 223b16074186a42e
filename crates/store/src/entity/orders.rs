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
    /// `confirmed` or `failed` (`pending` orders exist only in Redis and Kafka).
    pub status: String,
    /// Why it failed.
    pub reason: Option<String>,
    /// When the gateway accepted it.
    pub requested_at: DateTimeUtc,
    /// When the worker wrote it.
    pub created_at: DateTimeUtc,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
