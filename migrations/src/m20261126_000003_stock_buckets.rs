//! Stock buckets: how many Redis buckets a sale's units are split into (1 for every sale made
//! before this change, which is how they are kept in Redis). `reconcile` reads it to rebuild a
//! bucketed sale Redis has lost.

use sea_orm_migration::prelude::*;

use crate::common::{add_columns, drop_columns};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Sales {
    Table,
    Buckets,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        add_columns(
            manager,
            Sales::Table,
            [ColumnDef::new(Sales::Buckets)
                .small_integer()
                .not_null()
                .default(1)
                .to_owned()],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_columns(manager, Sales::Table, [Sales::Buckets]).await
    }
}
