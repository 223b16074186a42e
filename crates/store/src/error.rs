//! The store's errors, and which of them a later attempt may get past: the worker and the
//! replayer retry an outage and dead-letter or skip what will fail the same way every time.

use sea_orm::DbErr;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed or cannot be reached; worth retrying.
    #[error("database: {0}")]
    Db(#[from] DbErr),
    /// The change would leave fewer units than are already sold.
    #[error("stock of {sku} cannot go below the {sold} units already sold")]
    BelowSold {
        /// The SKU.
        sku: String,
        /// Units sold.
        sold: i64,
    },
    /// A stored value this build cannot read: a row written by a newer version or by hand.
    /// Never read as a default.
    #[error("order {order_id}: `{column}` holds {value:?}, which this build cannot read")]
    Corrupt {
        /// The order whose row it is.
        order_id: String,
        /// The column.
        column: &'static str,
        /// What it holds.
        value: String,
    },
}

impl StoreError {
    /// Whether a later attempt may succeed. Only what will be the same the next time is
    /// permanent: a stored value this build cannot read, a stock change below what is sold, a
    /// statement the database refuses for its data or its text (SQLSTATE classes 22 data
    /// exception, 23 integrity constraint, 42 syntax or access rule; SQLite constraint errors,
    /// the refusals of its triggers included),
    /// and sea-orm's own decoding errors. Everything else (no connection, timeouts, a read-only
    /// primary after a failover, lock timeouts, serialization failures, I/O errors) is an outage
    /// worth waiting out: retrying a bug stalls visibly, skipping an outage loses work.
    pub fn is_transient(&self) -> bool {
        use sea_orm::sqlx::Error as Sqlx;
        use sea_orm::RuntimeErr;
        let error = match self {
            StoreError::Db(error) => error,
            StoreError::BelowSold { .. } | StoreError::Corrupt { .. } => return false,
        };
        match error {
            DbErr::Conn(runtime) | DbErr::Exec(runtime) | DbErr::Query(runtime) => match runtime {
                RuntimeErr::SqlxError(Sqlx::Database(db)) => {
                    let refused = db.kind() != sea_orm::sqlx::error::ErrorKind::Other
                        || db.code().is_some_and(|code| {
                            ["22", "23", "42"]
                                .iter()
                                .any(|class| code.starts_with(class))
                        })
                        || is_sqlite_constraint(db.as_ref());
                    !refused
                }
                RuntimeErr::SqlxError(
                    Sqlx::ColumnDecode { .. }
                    | Sqlx::ColumnNotFound(_)
                    | Sqlx::ColumnIndexOutOfBounds { .. }
                    | Sqlx::Decode(_)
                    | Sqlx::TypeNotFound { .. }
                    | Sqlx::Configuration(_),
                ) => false,
                RuntimeErr::SqlxError(_) => true,
                RuntimeErr::Internal(_) => false,
            },
            DbErr::ConnectionAcquire(_) => true,
            _ => false,
        }
    }
}

/// Whether SQLite refused a row for a constraint: its primary result code (the low byte of the
/// extended code sqlx reports) is `SQLITE_CONSTRAINT`. sqlx gives a kind only to unique,
/// foreign-key, not-null and check failures; this also covers the triggers' `RAISE(ABORT)`
/// (`SQLITE_CONSTRAINT_TRIGGER`) that stand in for `CHECK` constraints on SQLite.
fn is_sqlite_constraint(db: &dyn sea_orm::sqlx::error::DatabaseError) -> bool {
    use sea_orm::sqlx::error::DatabaseError;
    const SQLITE_CONSTRAINT: i32 = 19;
    db.try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>()
        .and_then(DatabaseError::code)
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == SQLITE_CONSTRAINT)
}
