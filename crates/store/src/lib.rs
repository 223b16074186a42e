//! The SQL store: the authoritative second check of a flash sale. Orders are written here by the
//! worker, idempotently, in batches, each batch taking its stock with a guarded update in the same
//! transaction. PostgreSQL in production and tests, SQLite as the embedded default; all SQL is
//! built with sea-query so both speak the same statements.
//!
//! One `Store`, its methods grouped by what they keep: `orders` (the worker's batch write and
//! reading orders back), `sales` (a sale and its figures), `payments`, `expiry` (the end of the
//! payment window); `entity` maps the tables and `error` says which failures are worth a retry.

pub mod entity;
mod error;
mod expiry;
mod orders;
mod payments;
mod sales;

pub use error::StoreError;
pub use expiry::ExpiredOrder;
pub use orders::Written;
pub use payments::{Paid, RefundDue};
pub use sales::{SaleStats, Tally};

use chrono::{DateTime, Utc};
use migration::{Migrator, MigratorTrait};
use sea_orm::sea_query::{InsertStatement, IntoIden, IntoTableRef, Query, SimpleExpr};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr,
    IsolationLevel, Statement, StatementBuilder, TransactionTrait,
};
use settings::DatabaseSettings;
use std::time::Duration;

pub use sea_orm;

/// The store: a pooled connection.
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
}

impl Store {
    /// Connects (creating the SQLite file and its directory in embedded mode) and, if the
    /// settings say so, applies pending migrations.
    pub async fn connect(settings: &DatabaseSettings) -> Result<Self, StoreError> {
        if settings.is_embedded() {
            if let Some(dir) = settings.sqlite_path.parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        DbErr::Custom(format!("cannot create {}: {e}", dir.display()))
                    })?;
                }
            }
        }
        let mut options = ConnectOptions::new(settings.effective_url());
        options
            .max_connections(settings.max_connections)
            .min_connections(1)
            .connect_timeout(Duration::from_secs(settings.connect_timeout_secs))
            .acquire_timeout(Duration::from_secs(settings.connect_timeout_secs))
            .sqlx_logging(false);
        let db = Database::connect(options).await?;
        if db.get_database_backend() == DbBackend::Sqlite {
            // WAL lets the gateway read while the worker writes; busy_timeout queues writers.
            db.execute_unprepared("PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000;")
                .await?;
        }
        let store = Self { db };
        if settings.migrate_on_start {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Wraps an existing connection.
    pub fn from_connection(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// The underlying connection (migrations, tests).
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        Migrator::up(&self.db, None).await?;
        Ok(())
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db.ping().await?;
        Ok(())
    }

    fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// A read-only view of one moment: a repeatable-read transaction on PostgreSQL (SQLite's
    /// read transaction is one already).
    async fn begin_snapshot(&self) -> Result<sea_orm::DatabaseTransaction, StoreError> {
        let isolation =
            (self.backend() == DbBackend::Postgres).then_some(IsolationLevel::RepeatableRead);
        Ok(self.db.begin_with_config(isolation, None).await?)
    }

    /// A transaction that will write. On SQLite it takes the write lock first, as
    /// `BEGIN IMMEDIATE` would: a transaction that reads before it writes cannot wait for
    /// another writer (SQLite refuses its first write at once with `SQLITE_BUSY`), and the
    /// worker, the expirer and payments write at the same time.
    async fn begin_write(&self) -> Result<sea_orm::DatabaseTransaction, StoreError> {
        let txn = self.db.begin().await?;
        if self.backend() == DbBackend::Sqlite {
            txn.execute_unprepared("UPDATE sales SET sku_id = sku_id WHERE 0")
                .await?;
        }
        Ok(txn)
    }

    /// Runs a write on `conn` (the pool or a transaction); how many rows it changed.
    async fn write(
        &self,
        conn: &impl ConnectionTrait,
        statement: &impl StatementBuilder,
    ) -> Result<u64, StoreError> {
        Ok(conn
            .execute(self.backend().build(statement))
            .await?
            .rows_affected())
    }
}

/// An insert of `rows`, each written as `(column, value)` pairs so that every value stands
/// beside its column. The first row names the columns: the rows are built by one expression.
fn insert_rows<C: IntoIden + Copy, const N: usize>(
    table: impl IntoTableRef,
    rows: impl IntoIterator<Item = [(C, SimpleExpr); N]>,
) -> InsertStatement {
    let mut insert = Query::insert();
    insert.into_table(table);
    let mut rows = rows.into_iter().peekable();
    if let Some(first) = rows.peek() {
        insert.columns(first.iter().map(|(column, _)| *column));
    }
    for row in rows {
        insert.values_panic(row.map(|(_, value)| value));
    }
    insert
}

/// Builds a statement for the store's backend (tests that need raw SQL).
pub fn statement(backend: DbBackend, sql: &str) -> Statement {
    Statement::from_string(backend, sql.to_owned())
}

/// When a timestamp from the store was written, in UTC (sea-orm's `DateTimeUtc`).
pub type Timestamp = DateTime<Utc>;
