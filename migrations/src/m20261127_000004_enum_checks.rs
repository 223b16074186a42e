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
use sea_orm_migration::sea_orm::DbBackend;

use crate::common::{add_check, count_failing, drop_check, RowCheck};

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

/// One check per table.
const CHECKS: [RowCheck; 2] = [
    RowCheck {
        name: "orders_known_status_and_reason",
        table: "orders",
        columns: "status, reason",
        condition: orders_condition,
    },
    RowCheck {
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

/// Refuses to go on when a row of the table breaks the check: SQLite's triggers see only the
/// rows written after them, and PostgreSQL refuses such a row as it adds the constraint.
async fn ensure_rows_pass(manager: &SchemaManager<'_>, check: &RowCheck) -> Result<(), DbErr> {
    let failing = count_failing(manager, check.table, &(check.condition)("")).await?;
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
            if manager.get_database_backend() == DbBackend::Sqlite {
                ensure_rows_pass(manager, check).await?;
            }
            add_check(manager, check).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for check in &CHECKS {
            drop_check(manager, check).await?;
        }
        Ok(())
    }
}
