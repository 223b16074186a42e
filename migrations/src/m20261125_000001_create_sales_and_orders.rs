//! Sales (the authoritative stock) and orders (one row per accepted order, idempotent by id and
//! by buyer + SKU + idempotency key).

use sea_orm_migration::prelude::*;

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
                Table::create()
                    .table(Sales::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Sales::SkuId)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Sales::InitialStock).big_integer().not_null())
                    .col(ColumnDef::new(Sales::Stock).big_integer().not_null())
                    .col(ColumnDef::new(Sales::PerUserLimit).integer().not_null())
                    .col(
                        ColumnDef::new(Sales::StartsAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Sales::EndsAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Sales::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Sales::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .check(Expr::col(Sales::Stock).gte(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Orders::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Orders::OrderId)
                            .string_len(100)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Orders::UserId).string_len(128).not_null())
                    .col(ColumnDef::new(Orders::SkuId).string_len(64).not_null())
                    .col(ColumnDef::new(Orders::Quantity).integer().not_null())
                    .col(
                        ColumnDef::new(Orders::IdempotencyKey)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Orders::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Orders::Reason).string_len(64).null())
                    .col(
                        ColumnDef::new(Orders::RequestedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Orders::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Orders::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("orders_user_sku_idempotency_key")
                    .table(Orders::Table)
                    .col(Orders::UserId)
                    .col(Orders::SkuId)
                    .col(Orders::IdempotencyKey)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("orders_sku_status")
                    .table(Orders::Table)
                    .col(Orders::SkuId)
                    .col(Orders::Status)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Orders::Table).if_exists().to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Sales::Table).if_exists().to_owned())
            .await
    }
}
