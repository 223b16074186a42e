//! A sale names its price or says it is free: `sales.free` (`NOT NULL`, default `false`), and
//! a check, `sales_priced_or_free`, that a row holds either a price of at least 1 with its
//! currency (not free), or no price and no currency (free, or a sale stored before this change,
//! which the store reads as unpriced and whose orders no payment pays until it is put again).
//!
//! A sale priced at 0 before this change cost nothing: it becomes free (its currency goes; a
//! free sale's payments are checked for the amount only). Going down drops the column and the
//! check: a free sale is then one without a price, whose payments the previous build does not
//! check.
//!
//! As in `m20261127_000004_enum_checks`: PostgreSQL gets a named `CHECK` constraint; SQLite,
//! which cannot add one to an existing table, a `BEFORE INSERT` and a `BEFORE UPDATE` trigger
//! that refuse the same rows with `RAISE(ABORT)`. The rows already there are checked before
//! anything changes (SQLite runs a migration's statements outside a transaction), so a row this
//! migration cannot bring within the check stops it with a message that names the check, and
//! leaves the schema as it was.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::common::{
    add_check, add_columns, count_failing, drop_check, drop_columns, unsupported, RowCheck,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Sales {
    Table,
    PriceMinor,
    Currency,
    Free,
}

/// The check: a price of at least 1 with its currency, or no price and no currency.
const CHECK: RowCheck = RowCheck {
    name: "sales_priced_or_free",
    table: "sales",
    columns: "free, price_minor, currency",
    condition,
};

/// The check over a row whose columns are named `<row><column>`. `price_minor IS NOT NULL` is
/// spelled out: `NULL >= 1` is unknown, which a `CHECK` (and a trigger's `WHEN NOT`) lets pass.
fn condition(row: &str) -> String {
    format!(
        "({row}price_minor IS NULL AND {row}currency IS NULL) \
         OR (NOT {row}free AND {row}price_minor IS NOT NULL AND {row}price_minor >= 1 \
         AND {row}currency IS NOT NULL)"
    )
}

/// The rows of the previous build that this migration brings within the check: a price of 0
/// or more with its currency (0 becomes free), or neither.
const CONVERTIBLE: &str = "(price_minor IS NULL AND currency IS NULL) \
    OR (price_minor IS NOT NULL AND price_minor >= 0 AND currency IS NOT NULL)";

/// Refuses to go on when a row cannot be brought within the check: PostgreSQL would refuse the
/// constraint, and SQLite's triggers see only the rows written after them.
async fn ensure_rows_convert(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let failing = count_failing(manager, CHECK.table, CONVERTIBLE).await?;
    if failing > 0 {
        return Err(DbErr::Migration(format!(
            "{failing} rows of sales hold a price without a currency or the reverse, or a \
             negative price, outside {} ({}): correct them first",
            CHECK.name, CHECK.columns
        )));
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::MySql {
            return Err(unsupported(&CHECK));
        }
        ensure_rows_convert(manager).await?;
        add_columns(
            manager,
            Sales::Table,
            [ColumnDef::new(Sales::Free)
                .boolean()
                .not_null()
                .default(false)
                .to_owned()],
        )
        .await?;
        let priced_at_nothing = Query::update()
            .table(Sales::Table)
            .value(Sales::Free, true)
            .value(Sales::PriceMinor, Option::<i64>::None)
            .value(Sales::Currency, Option::<String>::None)
            .and_where(Expr::col(Sales::PriceMinor).eq(0))
            .to_owned();
        manager.exec_stmt(priced_at_nothing).await?;
        add_check(manager, &CHECK).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_check(manager, &CHECK).await?;
        drop_columns(manager, Sales::Table, [Sales::Free]).await
    }
}
