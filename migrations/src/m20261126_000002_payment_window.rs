//! The payment window: a sale's payment terms, an order's `pay_by` deadline and payment, and
//! the payments the provider notified (one row per provider payment id, with its final outcome).
//!
//! Orders written before this change were `confirmed`, a status that meant "sold"; they become
//! `paid` (with no payment id), so no buyer loses a unit that was confirmed to them.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Sales {
    Table,
    PaymentWindowSecs,
    PriceMinor,
    Currency,
}

#[derive(DeriveIden, Clone, Copy)]
enum Orders {
    Table,
    Status,
    Reason,
    PayBy,
    PaidAt,
    PaymentId,
    UnitsReturnedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Payments {
    Table,
    PaymentId,
    OrderId,
    SkuId,
    AmountMinor,
    Currency,
    Outcome,
    Reason,
    ReceivedAt,
}

/// SQLite takes one change per `ALTER TABLE`.
async fn add_column(
    manager: &SchemaManager<'_>,
    table: impl IntoIden + 'static,
    column: &mut ColumnDef,
) -> Result<(), DbErr> {
    manager
        .alter_table(
            Table::alter()
                .table(table)
                .add_column(column.to_owned())
                .to_owned(),
        )
        .await
}

async fn drop_column(
    manager: &SchemaManager<'_>,
    table: impl IntoIden + 'static,
    column: impl IntoIden,
) -> Result<(), DbErr> {
    manager
        .alter_table(Table::alter().table(table).drop_column(column).to_owned())
        .await
}

async fn set_status(manager: &SchemaManager<'_>, from: &str, to: &str) -> Result<(), DbErr> {
    let update = Query::update()
        .table(Orders::Table)
        .value(Orders::Status, to)
        .and_where(Expr::col(Orders::Status).eq(from))
        .to_owned();
    manager.exec_stmt(update).await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        add_column(
            manager,
            Sales::Table,
            ColumnDef::new(Sales::PaymentWindowSecs)
                .integer()
                .not_null()
                .default(900),
        )
        .await?;
        add_column(
            manager,
            Sales::Table,
            ColumnDef::new(Sales::PriceMinor).big_integer().null(),
        )
        .await?;
        add_column(
            manager,
            Sales::Table,
            ColumnDef::new(Sales::Currency).string_len(3).null(),
        )
        .await?;
        for column in [Orders::PayBy, Orders::PaidAt, Orders::UnitsReturnedAt] {
            add_column(
                manager,
                Orders::Table,
                ColumnDef::new(column).timestamp_with_time_zone().null(),
            )
            .await?;
        }
        add_column(
            manager,
            Orders::Table,
            ColumnDef::new(Orders::PaymentId).string_len(128).null(),
        )
        .await?;
        manager
            .create_index(
                Index::create()
                    .name("orders_status_pay_by")
                    .table(Orders::Table)
                    .col(Orders::Status)
                    .col(Orders::PayBy)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // The expirer's follow-up reads the expired orders Redis is still owed every round: a
        // partial index keeps that read to those few, however many orders expired before.
        // (The same statement on PostgreSQL and SQLite.)
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS orders_units_owed ON orders (order_id) \
                 WHERE status = 'expired' AND units_returned_at IS NULL",
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Payments::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Payments::PaymentId)
                            .string_len(128)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Payments::OrderId).string_len(100).not_null())
                    .col(ColumnDef::new(Payments::SkuId).string_len(64).not_null())
                    .col(
                        ColumnDef::new(Payments::AmountMinor)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Payments::Currency).string_len(3).not_null())
                    .col(ColumnDef::new(Payments::Outcome).string_len(16).not_null())
                    .col(ColumnDef::new(Payments::Reason).string_len(32).null())
                    .col(
                        ColumnDef::new(Payments::ReceivedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("payments_sku_outcome")
                    .table(Payments::Table)
                    .col(Payments::SkuId)
                    .col(Payments::Outcome)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        set_status(manager, "confirmed", "paid").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The previous build knows `confirmed` and `failed` only. An expired order gave its
        // units back, which that build reads as a released reservation.
        set_status(manager, "paid", "confirmed").await?;
        set_status(manager, "awaiting_payment", "confirmed").await?;
        let expired = Query::update()
            .table(Orders::Table)
            .value(Orders::Status, "failed")
            .value(Orders::Reason, "reservation_released")
            .and_where(Expr::col(Orders::Status).eq("expired"))
            .to_owned();
        manager.exec_stmt(expired).await?;
        manager
            .drop_table(Table::drop().table(Payments::Table).if_exists().to_owned())
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("orders_status_pay_by")
                    .table(Orders::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS orders_units_owed")
            .await?;
        for column in [
            Orders::PayBy,
            Orders::PaidAt,
            Orders::PaymentId,
            Orders::UnitsReturnedAt,
        ] {
            drop_column(manager, Orders::Table, column).await?;
        }
        for column in [Sales::PaymentWindowSecs, Sales::PriceMinor, Sales::Currency] {
            drop_column(manager, Sales::Table, column).await?;
        }
        Ok(())
    }
}
