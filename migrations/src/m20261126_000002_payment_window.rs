//! The payment window: a sale's payment terms, an order's `pay_by` deadline and payment, and
//! the payments the provider notified (one row per provider payment id, with its final outcome).
//!
//! Orders written before this change were `confirmed`, a status that meant "sold"; they become
//! `paid` (with no payment id), so no buyer loses a unit that was confirmed to them.

use sea_orm_migration::prelude::*;

use crate::common::{
    add_columns, drop_columns, drop_table, new_index, new_table, optional_timestamp, text,
    text_key, timestamp,
};

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
        add_columns(
            manager,
            Sales::Table,
            [
                ColumnDef::new(Sales::PaymentWindowSecs)
                    .integer()
                    .not_null()
                    .default(900)
                    .to_owned(),
                ColumnDef::new(Sales::PriceMinor)
                    .big_integer()
                    .null()
                    .to_owned(),
                ColumnDef::new(Sales::Currency)
                    .string_len(3)
                    .null()
                    .to_owned(),
            ],
        )
        .await?;
        add_columns(
            manager,
            Orders::Table,
            [
                optional_timestamp(Orders::PayBy),
                optional_timestamp(Orders::PaidAt),
                optional_timestamp(Orders::UnitsReturnedAt),
                ColumnDef::new(Orders::PaymentId)
                    .string_len(128)
                    .null()
                    .to_owned(),
            ],
        )
        .await?;
        manager
            .create_index(new_index(
                "orders_status_pay_by",
                Orders::Table,
                [Orders::Status, Orders::PayBy],
            ))
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
                new_table(Payments::Table)
                    .col(text_key(Payments::PaymentId, 128))
                    .col(text(Payments::OrderId, 100))
                    .col(text(Payments::SkuId, 64))
                    .col(
                        ColumnDef::new(Payments::AmountMinor)
                            .big_integer()
                            .not_null(),
                    )
                    .col(text(Payments::Currency, 3))
                    .col(text(Payments::Outcome, 16))
                    .col(ColumnDef::new(Payments::Reason).string_len(32).null())
                    .col(timestamp(Payments::ReceivedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(new_index(
                "payments_sku_outcome",
                Payments::Table,
                [Payments::SkuId, Payments::Outcome],
            ))
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
        drop_table(manager, Payments::Table).await?;
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
        drop_columns(
            manager,
            Orders::Table,
            [
                Orders::PayBy,
                Orders::PaidAt,
                Orders::PaymentId,
                Orders::UnitsReturnedAt,
            ],
        )
        .await?;
        drop_columns(
            manager,
            Sales::Table,
            [Sales::PaymentWindowSecs, Sales::PriceMinor, Sales::Currency],
        )
        .await
    }
}
