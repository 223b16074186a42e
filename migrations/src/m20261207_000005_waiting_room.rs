//! The waiting room of a sale: its definition (mode, rate, ticket lifetime, pre-queue window) as
//! `<mode>|<rate or auto>|<ticket ms>|<pre-queue ms>`, `NULL` for a sale without one (every sale made before this
//! change). `reconcile` reads it to rebuild a sale Redis has lost with its room.

use sea_orm_migration::prelude::*;

use crate::common::{add_columns, drop_columns};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Sales {
    Table,
    Admission,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        add_columns(
            manager,
            Sales::Table,
            [ColumnDef::new(Sales::Admission).text().null().to_owned()],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_columns(manager, Sales::Table, [Sales::Admission]).await
    }
}
