//! Sales (the authoritative stock) and orders (one row per accepted order, idempotent by id and
//! by buyer + SKU + idempotency key).

use sea_orm_migration::prelude::*;

use crate::common::{drop_table, new_index, new_table, text, text_key, timestamp};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Sales {
    Table,
    SkuId,
    InitialStock,
    Stock,
    PerUserLimit,
    StartsAt,
    EndsAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Orders {
    Table,
    OrderId,
    UserId,
    SkuId,
    Quantity,
    IdempotencyKey,
    Status,
    Reason,
    RequestedAt,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                new_table(Sales::Table)
                    .col(text_key(Sales::SkuId, 64))
                    .col(ColumnDef::new(Sales::InitialStock).big_integer().not_null())
                    .col(ColumnDef::new(Sales::Stock).big_integer().not_null())
                    .col(ColumnDef::new(Sales::PerUserLimit).integer().not_null())
                    .col(timestamp(Sales::StartsAt))
                    .col(timestamp(Sales::EndsAt))
                    .col(timestamp(Sales::CreatedAt))
                    .col(timestamp(Sales::UpdatedAt))
                    .check(Expr::col(Sales::Stock).gte(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                new_table(Orders::Table)
                    .col(text_key(Orders::OrderId, 100))
                    .col(text(Orders::UserId, 128))
                    .col(text(Orders::SkuId, 64))
                    .col(ColumnDef::new(Orders::Quantity).integer().not_null())
                    .col(text(Orders::IdempotencyKey, 64))
                    .col(text(Orders::Status, 16))
                    .col(ColumnDef::new(Orders::Reason).string_len(64).null())
                    .col(timestamp(Orders::RequestedAt))
                    .col(timestamp(Orders::CreatedAt))
                    .col(timestamp(Orders::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                new_index(
                    "orders_user_sku_idempotency_key",
                    Orders::Table,
                    [Orders::UserId, Orders::SkuId, Orders::IdempotencyKey],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        manager
            .create_index(new_index(
                "orders_sku_status",
                Orders::Table,
                [Orders::SkuId, Orders::Status],
            ))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_table(manager, Orders::Table).await?;
        drop_table(manager, Sales::Table).await
    }
}
