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
    /// Units not yet taken by a confirmed order.
    pub stock: i64,
    /// Most units per buyer.
    pub per_user_limit: i32,
    /// Opening time.
    pub starts_at: DateTimeUtc,
    /// Closing time (exclusive).
    pub ends_at: DateTimeUtc,
    /// Row creation.
    pub created_at: DateTimeUtc,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
