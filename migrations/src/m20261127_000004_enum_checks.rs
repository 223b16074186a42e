//! The columns that hold a domain enum as text accept only its stored strings, so the database
//! refuses a value no build can read (a bug, a statement typed by hand) instead of keeping it for
//! every reader to trip over:
//! - `orders.status`: a status an order row can hold (`pending` orders live only in Redis and
//!   Kafka; the store reads a stored `pending` as corrupt);
//! - `orders.reason`: `NULL` or a reason code;
//! - `payments.outcome` and `payments.reason`: `paid` without a reason, or `refund_due` with a
//!   refund reason.
//!
//! The lists are written out here, as the SQL text the constraints hold, rather than read
//! from the domain's enums: a migration is history, applied once, and a list read when it runs
//! would give a database migrated today a different constraint from one migrated last month.
//! The store's tests write every variant of each enum into a migrated database, so a new
//! variant fails them until a migration widens the list.
//!
//! PostgreSQL gets a named `CHECK` constraint per table (`ALTER TABLE .. ADD CONSTRAINT`,
//! which checks the rows already there). SQLite cannot add a constraint to an existing table,
//! and rebuilding the table would restate every column and index of it here and copy all its
//! rows; so on SQLite a `BEFORE INSERT` and a `BEFORE UPDATE` trigger per table refuse the same
//! rows with `RAISE(ABORT)` (a constraint error, `SQLITE_CONSTRAINT_TRIGGER`), after the rows
//! already there are checked. Widening a list later is a drop and a create on both.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, Statement};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `OrderStatus` as an order row can hold it: all but `pending`.
const ORDER_STATUSES: &str = "'awaiting_payment', 'paid', 'expired', 'failed'";

/// Every `ReasonCode`.
const REASON_CODES: &str = "'undecodable', 'oversized', 'unsupported_version', \
    'invalid_field', 'unknown_sku', 'db_out_of_stock', 'reservation_released', \
    'retries_exhausted', 'replay_attempts_exhausted', 'idempotency_conflict', \
    'unreadable_state', 'payment_window_elapsed'";

/// Every `RefundReason`.
const REFUND_REASONS: &str = "'order_expired', 'order_already_paid', 'order_failed'";

/// One table's check: its name (the constraint's, and the triggers' prefix), the table, the
/// columns it reads, and its condition over a row whose columns are named `<row><column>`.
struct Check {
    name: &'static str,
    table: &'static str,
    columns: &'static str,
    condition: fn(row: &str) -> String,
}

const CHECKS: [Check; 2] = [
    Check {
        name: "orders_known_status_and_reason",
        table: "orders",
        columns: "status, reason",
        condition: orders_condition,
    },
    Check {
        name: "payments_known_outcome_and_reason",
        table: "payments",
        columns: "outcome, reason",
        condition: payments_condition,
    },
];

fn orders_condition(row: &str) -> String {
    format!(
        "{row}status IN ({ORDER_STATUSES}) \
         AND ({row}reason IS NULL OR {row}reason IN ({REASON_CODES}))"
    )
}

/// `reason IS NOT NULL` is spelled out: `NULL IN (..)` is unknown, which a `CHECK` lets pass.
fn payments_condition(row: &str) -> String {
    format!(
        "({row}outcome = 'paid' AND {row}reason IS NULL) \
         OR ({row}outcome = 'refund_due' AND {row}reason IS NOT NULL \
         AND {row}reason IN ({REFUND_REASONS}))"
    )
}

/// seckill runs on PostgreSQL and on the embedded SQLite only.
fn unsupported() -> DbErr {
    DbErr::Migration("the enum checks are written for PostgreSQL and SQLite only".into())
}

async fn execute(manager: &SchemaManager<'_>, sql: String) -> Result<(), DbErr> {
    manager.get_connection().execute_unprepared(&sql).await?;
    Ok(())
}

/// Refuses to go on when a row of the table breaks the check: SQLite's triggers see only the
/// rows written after them, and PostgreSQL refuses such a row as it adds the constraint.
async fn ensure_rows_pass(manager: &SchemaManager<'_>, check: &Check) -> Result<(), DbErr> {
    let sql = format!(
        "SELECT COUNT(*) AS failing FROM {} WHERE NOT ({})",
        check.table,
        (check.condition)("")
    );
    let backend = manager.get_database_backend();
    let failing: i64 = manager
        .get_connection()
        .query_one(Statement::from_string(backend, sql))
        .await?
        .ok_or_else(|| DbErr::Migration("COUNT(*) returned no row".into()))?
        .try_get("", "failing")?;
    if failing > 0 {
        return Err(DbErr::Migration(format!(
            "{failing} rows of {} hold a value outside {} ({}): correct them first",
            check.table, check.name, check.columns
        )));
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for check in &CHECKS {
            match manager.get_database_backend() {
                DbBackend::Sqlite => {
                    ensure_rows_pass(manager, check).await?;
                    let refuse = format!(
                        "WHEN NOT ({}) BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: {}'); END",
                        (check.condition)("NEW."),
                        check.name
                    );
                    execute(
                        manager,
                        format!(
                            "CREATE TRIGGER {name}_insert BEFORE INSERT ON {table} {refuse}",
                            name = check.name,
                            table = check.table,
                        ),
                    )
                    .await?;
                    execute(
                        manager,
                        format!(
                            "CREATE TRIGGER {name}_update BEFORE UPDATE OF {columns} ON {table} \
                             {refuse}",
                            name = check.name,
                            columns = check.columns,
                            table = check.table,
                        ),
                    )
                    .await?;
                }
                DbBackend::Postgres => {
                    execute(
                        manager,
                        format!(
                            "ALTER TABLE {} ADD CONSTRAINT {} CHECK ({})",
                            check.table,
                            check.name,
                            (check.condition)("")
                        ),
                    )
                    .await?;
                }
                DbBackend::MySql => return Err(unsupported()),
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for check in &CHECKS {
            match manager.get_database_backend() {
                DbBackend::Sqlite => {
                    for event in ["insert", "update"] {
                        execute(
                            manager,
                            format!("DROP TRIGGER IF EXISTS {}_{event}", check.name),
                        )
                        .await?;
                    }
                }
                DbBackend::Postgres => {
                    execute(
                        manager,
                        format!(
                            "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
                            check.table, check.name
                        ),
                    )
                    .await?;
                }
                DbBackend::MySql => return Err(unsupported()),
            }
        }
        Ok(())
    }
}
