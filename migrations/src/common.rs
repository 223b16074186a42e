//! The column definitions and schema steps the migrations are written with. A migration that
//! has run must go on issuing the same statements, so a helper here is as fixed as the
//! migrations that call it: a different definition is a new helper, never an edit of one in use.

use sea_orm_migration::prelude::*;

/// A `NOT NULL` `varchar(len)` column.
pub fn text(column: impl IntoIden, len: u32) -> ColumnDef {
    ColumnDef::new(column).string_len(len).not_null().to_owned()
}

/// A table's key: a `NOT NULL` `varchar(len)` primary key.
pub fn text_key(column: impl IntoIden, len: u32) -> ColumnDef {
    text(column, len).primary_key().to_owned()
}

/// A `NOT NULL` timestamp with time zone.
pub fn timestamp(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

/// A nullable timestamp with time zone.
pub fn optional_timestamp(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column)
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}

/// `CREATE TABLE IF NOT EXISTS`, for the caller to add the columns to.
pub fn new_table(table: impl IntoIden + 'static) -> TableCreateStatement {
    Table::create().table(table).if_not_exists().to_owned()
}

/// `DROP TABLE IF EXISTS`.
pub async fn drop_table(
    manager: &SchemaManager<'_>,
    table: impl IntoIden + 'static,
) -> Result<(), DbErr> {
    manager
        .drop_table(Table::drop().table(table).if_exists().to_owned())
        .await
}

/// `CREATE INDEX IF NOT EXISTS name ON table (columns..)`; the caller may make it unique.
pub fn new_index<C: IntoIden>(
    name: &str,
    table: impl IntoIden + 'static,
    columns: impl IntoIterator<Item = C>,
) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(table).if_not_exists();
    for column in columns {
        index.col(column);
    }
    index
}

/// Adds the columns, in order.
pub async fn add_columns(
    manager: &SchemaManager<'_>,
    table: impl IntoIden + Copy + 'static,
    columns: impl IntoIterator<Item = ColumnDef>,
) -> Result<(), DbErr> {
    alter_each(manager, table, columns, |alter, column| {
        alter.add_column(column);
    })
    .await
}

/// Drops the columns, in order.
pub async fn drop_columns<C: IntoIden>(
    manager: &SchemaManager<'_>,
    table: impl IntoIden + Copy + 'static,
    columns: impl IntoIterator<Item = C>,
) -> Result<(), DbErr> {
    alter_each(manager, table, columns, |alter, column| {
        alter.drop_column(column);
    })
    .await
}

/// One `ALTER TABLE` per column: SQLite takes one change per statement.
async fn alter_each<C>(
    manager: &SchemaManager<'_>,
    table: impl IntoIden + Copy + 'static,
    columns: impl IntoIterator<Item = C>,
    change: impl Fn(&mut TableAlterStatement, C),
) -> Result<(), DbErr> {
    for column in columns {
        let mut alter = Table::alter();
        alter.table(table);
        change(&mut alter, column);
        manager.alter_table(alter).await?;
    }
    Ok(())
}

/// A check a table's rows must pass: its name (the constraint's, and the triggers' prefix), the
/// table, the columns it reads, and its condition over a row whose columns are named
/// `<row><column>` (`NEW.` in a trigger, nothing in a constraint).
pub struct RowCheck {
    pub name: &'static str,
    pub table: &'static str,
    pub columns: &'static str,
    pub condition: fn(row: &str) -> String,
}

/// The error of a check on a database seckill does not run on (MySQL).
pub fn unsupported(check: &RowCheck) -> DbErr {
    DbErr::Migration(format!(
        "the check {} is written for PostgreSQL and SQLite only",
        check.name
    ))
}

async fn execute(manager: &SchemaManager<'_>, sql: String) -> Result<(), DbErr> {
    use sea_orm_migration::sea_orm::ConnectionTrait;
    manager.get_connection().execute_unprepared(&sql).await?;
    Ok(())
}

/// Adds `check`: on PostgreSQL a named `CHECK` constraint (which checks the rows already
/// there); on SQLite, which cannot add one to an existing table, a `BEFORE INSERT` and a
/// `BEFORE UPDATE OF <columns>` trigger that refuse the same rows with `RAISE(ABORT)` (the rows
/// already there are the caller's to check first, with [`count_failing`]).
pub async fn add_check(manager: &SchemaManager<'_>, check: &RowCheck) -> Result<(), DbErr> {
    use sea_orm_migration::sea_orm::DbBackend;
    let RowCheck {
        name,
        table,
        columns,
        condition,
    } = check;
    match manager.get_database_backend() {
        DbBackend::Sqlite => {
            let refuse = format!(
                "WHEN NOT ({}) BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: {name}'); END",
                condition("NEW."),
            );
            let sql = format!("CREATE TRIGGER {name}_insert BEFORE INSERT ON {table} {refuse}");
            execute(manager, sql).await?;
            let sql = format!(
                "CREATE TRIGGER {name}_update BEFORE UPDATE OF {columns} ON {table} {refuse}"
            );
            execute(manager, sql).await
        }
        DbBackend::Postgres => {
            let sql = format!(
                "ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({})",
                condition("")
            );
            execute(manager, sql).await
        }
        DbBackend::MySql => Err(unsupported(check)),
    }
}

/// Drops `check` (what [`add_check`] made), if it is there.
pub async fn drop_check(manager: &SchemaManager<'_>, check: &RowCheck) -> Result<(), DbErr> {
    use sea_orm_migration::sea_orm::DbBackend;
    match manager.get_database_backend() {
        DbBackend::Sqlite => {
            for event in ["insert", "update"] {
                let sql = format!("DROP TRIGGER IF EXISTS {}_{event}", check.name);
                execute(manager, sql).await?;
            }
            Ok(())
        }
        DbBackend::Postgres => {
            let sql = format!(
                "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
                check.table, check.name
            );
            execute(manager, sql).await
        }
        DbBackend::MySql => Err(unsupported(check)),
    }
}

/// How many rows of `table` fail `condition` (SQL over its columns).
pub async fn count_failing(
    manager: &SchemaManager<'_>,
    table: &str,
    condition: &str,
) -> Result<i64, DbErr> {
    use sea_orm_migration::sea_orm::{ConnectionTrait, Statement};
    let sql = format!("SELECT COUNT(*) AS failing FROM {table} WHERE NOT ({condition})");
    let backend = manager.get_database_backend();
    manager
        .get_connection()
        .query_one(Statement::from_string(backend, sql))
        .await?
        .ok_or_else(|| DbErr::Migration("COUNT(*) returned no row".into()))?
        .try_get("", "failing")
}
