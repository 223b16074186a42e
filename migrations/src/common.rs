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
