//! The SQL store: the authoritative second check of a flash sale. Orders are written here by the
//! worker, idempotently, in batches, each batch taking its stock with a guarded update in the same
//! transaction. PostgreSQL in production and tests, SQLite as the embedded default; all SQL is
//! built with sea-query so both speak the same statements.

pub mod entity;
mod expiry;
mod payments;

pub use expiry::ExpiredOrder;
pub use payments::{Paid, RefundDue};

use chrono::{DateTime, Utc};
use domain::{OrderId, OrderRequested, OrderStatus, ReasonCode, SaleSpec, SkuId};
use entity::{orders, sales};
use migration::{Migrator, MigratorTrait};
use sea_orm::sea_query::{Alias, Expr, OnConflict, Query};
use sea_orm::{ColumnTrait, Condition};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, EntityTrait,
    FromQueryResult, IsolationLevel, QueryFilter, QueryOrder, QuerySelect, Statement,
    TransactionTrait,
};
use settings::DatabaseSettings;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

pub use sea_orm;

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
    /// exception, 23 integrity constraint, 42 syntax or access rule; SQLite constraint errors),
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
                        });
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

/// The store: a pooled connection.
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
}

/// How an order stands after a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Stock taken and the row written (now or by an earlier delivery); the order may since have
    /// been paid or have expired.
    Accepted,
    /// Row failed with this reason (now or earlier).
    Failed(ReasonCode),
    /// Another order of the same buyer, SKU and idempotency key holds the row.
    KeyConflict,
    /// The order has a row whose status or reason this build cannot read (written by a newer
    /// version or by hand); the batch's other orders are not held up by it.
    Unreadable,
}

/// Orders and their units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tally {
    /// Orders.
    pub orders: i64,
    /// Their units.
    pub units: i64,
}

/// A sale with its figures, as the database sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SaleStats {
    /// Total units.
    pub initial_stock: i64,
    /// Units not held by an order: on sale.
    pub stock: i64,
    /// Orders written and not yet paid; they hold their units until their `pay_by`.
    pub awaiting_payment: Tally,
    /// Orders paid: their units are sold.
    pub paid: Tally,
    /// Orders not paid in time: their units went back on sale.
    pub expired: Tally,
    /// Orders that failed: they never held a unit in the database.
    pub failed: Tally,
    /// Payments that pay no order (late, a second payment, a failed order) and must be
    /// refunded.
    pub refunds_due: i64,
}

impl SaleStats {
    /// Units held by orders: awaiting payment or paid.
    pub fn held_units(&self) -> i64 {
        self.awaiting_payment.units + self.paid.units
    }
}

#[derive(Debug, FromQueryResult)]
struct StatusTotals {
    status: String,
    orders: i64,
    units: Option<i64>,
}

#[derive(Debug, FromQueryResult)]
struct StoredStatus {
    order_id: String,
    status: String,
    reason: Option<String>,
}

impl StoredStatus {
    /// How the order stands; a value this build cannot read is an error.
    fn written(&self) -> Result<Written, StoreError> {
        match entity::parse_status(&self.order_id, &self.status)? {
            OrderStatus::AwaitingPayment | OrderStatus::Paid | OrderStatus::Expired => {
                Ok(Written::Accepted)
            }
            OrderStatus::Failed => {
                let reason = entity::parse_reason(&self.order_id, self.reason.as_deref())?;
                reason
                    .map(Written::Failed)
                    .ok_or_else(|| StoreError::Corrupt {
                        order_id: self.order_id.clone(),
                        column: "reason",
                        value: "NULL on a failed order".into(),
                    })
            }
            OrderStatus::Pending => Err(StoreError::Corrupt {
                order_id: self.order_id.clone(),
                column: "status",
                value: self.status.clone(),
            }),
        }
    }
}

/// An insert of `orders` with `status` and `reason`, skipping any that conflict; each order's
/// `pay_by` is `now` plus its SKU's payment window when `windows` has one.
fn insert_orders(
    orders: &[&OrderRequested],
    status: OrderStatus,
    reason: Option<ReasonCode>,
    now: DateTime<Utc>,
    windows: &HashMap<String, chrono::Duration>,
) -> sea_orm::sea_query::InsertStatement {
    let mut insert = Query::insert();
    insert
        .into_table(orders::Entity)
        .columns([
            orders::Column::OrderId,
            orders::Column::UserId,
            orders::Column::SkuId,
            orders::Column::Quantity,
            orders::Column::IdempotencyKey,
            orders::Column::Status,
            orders::Column::Reason,
            orders::Column::RequestedAt,
            orders::Column::CreatedAt,
            orders::Column::UpdatedAt,
            orders::Column::PayBy,
        ])
        .on_conflict(OnConflict::new().do_nothing().to_owned());
    for o in orders {
        let pay_by = windows.get(o.sku_id.as_str()).map(|window| now + *window);
        insert.values_panic([
            o.order_id.as_str().into(),
            o.user_id.as_str().into(),
            o.sku_id.as_str().into(),
            (o.quantity.get() as i32).into(),
            o.idempotency_key.as_str().into(),
            status.as_str().into(),
            reason.map(ReasonCode::as_str).into(),
            o.requested_at.into(),
            now.into(),
            now.into(),
            pay_by.into(),
        ]);
    }
    insert
}

/// The batch insert of [`insert_orders`] for PostgreSQL, awaiting payment: one array
/// parameter per column instead of one parameter per value. For a batch of 500 that is 8
/// parameters (six arrays, the status and the time) instead of 5,500, which the client builds
/// and binds, and the server parses, far faster; the statement's text is the same for every batch size. `pay_by` is `now` plus the
/// window of the order's sale as this statement sees it (`NULL` without a sale). Rows go in
/// the batch's order, so of two orders holding the same key the first is written.
fn insert_awaiting_payment_unnest(orders: &[&OrderRequested], now: DateTime<Utc>) -> Statement {
    const SQL: &str = r#"INSERT INTO "orders" ("order_id", "user_id", "sku_id", "quantity",
    "idempotency_key", "status", "reason", "requested_at", "created_at", "updated_at", "pay_by")
SELECT o.order_id, o.user_id, o.sku_id, o.quantity, o.idempotency_key, $6, NULL,
    o.requested_at, $7, $7, $7 + make_interval(secs => s.payment_window_secs)
FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int4[], $5::text[], $8::timestamptz[])
    WITH ORDINALITY AS o(order_id, user_id, sku_id, quantity, idempotency_key, requested_at, n)
LEFT JOIN "sales" s ON s.sku_id = o.sku_id
ORDER BY o.n
ON CONFLICT DO NOTHING
RETURNING "order_id""#;
    let text = |field: fn(&OrderRequested) -> &str| -> sea_orm::Value {
        orders
            .iter()
            .map(|o| field(o).to_owned())
            .collect::<Vec<String>>()
            .into()
    };
    Statement::from_sql_and_values(
        DbBackend::Postgres,
        SQL,
        [
            text(|o| o.order_id.as_str()),
            text(|o| o.user_id.as_str()),
            text(|o| o.sku_id.as_str()),
            orders
                .iter()
                .map(|o| o.quantity.get() as i32)
                .collect::<Vec<i32>>()
                .into(),
            text(|o| o.idempotency_key.as_str()),
            OrderStatus::AwaitingPayment.as_str().into(),
            now.into(),
            orders
                .iter()
                .map(|o| o.requested_at)
                .collect::<Vec<DateTime<Utc>>>()
                .into(),
        ],
    )
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

    /// The sale of `sku`, if any.
    pub async fn sale(&self, sku: &SkuId) -> Result<Option<sales::Model>, StoreError> {
        Ok(sales::Entity::find_by_id(sku.as_str())
            .one(&self.db)
            .await?)
    }

    /// Every sale, by SKU.
    pub async fn sales(&self) -> Result<Vec<sales::Model>, StoreError> {
        Ok(sales::Entity::find()
            .order_by_asc(sales::Column::SkuId)
            .all(&self.db)
            .await?)
    }

    /// The sales that end after `t` (running, or ended since `t`), by SKU.
    pub async fn sales_ending_after(
        &self,
        t: DateTime<Utc>,
    ) -> Result<Vec<sales::Model>, StoreError> {
        Ok(sales::Entity::find()
            .filter(sales::Column::EndsAt.gt(t))
            .order_by_asc(sales::Column::SkuId)
            .all(&self.db)
            .await?)
    }

    /// Which of `ids` have a row that took its stock (awaiting payment, paid or expired since).
    pub async fn accepted_among(&self, ids: &[&OrderId]) -> Result<HashSet<OrderId>, StoreError> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let found: HashSet<String> = orders::Entity::find()
            .select_only()
            .column(orders::Column::OrderId)
            .filter(orders::Column::OrderId.is_in(ids.iter().map(|id| id.as_str())))
            .filter(orders::Column::Status.is_in([
                OrderStatus::AwaitingPayment.as_str(),
                OrderStatus::Paid.as_str(),
                OrderStatus::Expired.as_str(),
            ]))
            .into_tuple::<String>()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        Ok(ids
            .iter()
            .filter(|id| found.contains(id.as_str()))
            .map(|&id| id.clone())
            .collect())
    }

    /// Creates the sale or changes it. A change of the total is applied as a delta to the
    /// remaining stock, refused if it would go below what is sold.
    pub async fn upsert_sale(&self, sku: &SkuId, spec: &SaleSpec) -> Result<(), StoreError> {
        let now = Utc::now();
        let txn = self.begin_write().await?;
        let mut find = sales::Entity::find_by_id(sku.as_str());
        if self.backend() == DbBackend::Postgres {
            find = find.lock_exclusive();
        }
        let existing = find.one(&txn).await?;
        match existing {
            None => {
                let insert = Query::insert()
                    .into_table(sales::Entity)
                    .columns([
                        sales::Column::SkuId,
                        sales::Column::InitialStock,
                        sales::Column::Stock,
                        sales::Column::PerUserLimit,
                        sales::Column::StartsAt,
                        sales::Column::EndsAt,
                        sales::Column::CreatedAt,
                        sales::Column::UpdatedAt,
                        sales::Column::PaymentWindowSecs,
                        sales::Column::PriceMinor,
                        sales::Column::Currency,
                        sales::Column::Buckets,
                    ])
                    .values_panic([
                        sku.as_str().into(),
                        spec.stock.into(),
                        spec.stock.into(),
                        (spec.per_user_limit as i32).into(),
                        spec.window.starts_at.into(),
                        spec.window.ends_at.into(),
                        now.into(),
                        now.into(),
                        (spec.payment.window_secs as i32).into(),
                        spec.payment.price.map(|p| p.minor_per_unit).into(),
                        spec.payment.price.map(|p| p.currency.to_string()).into(),
                        i16::from(spec.buckets).into(),
                    ])
                    .to_owned();
                txn.execute(self.backend().build(&insert)).await?;
            }
            Some(sale) => {
                let sold = sale.initial_stock - sale.stock;
                if spec.stock < sold {
                    return Err(StoreError::BelowSold {
                        sku: sku.to_string(),
                        sold,
                    });
                }
                let update = Query::update()
                    .table(sales::Entity)
                    .value(sales::Column::InitialStock, spec.stock)
                    .value(
                        sales::Column::Stock,
                        Expr::col(sales::Column::Stock).add(spec.stock - sale.initial_stock),
                    )
                    .value(sales::Column::PerUserLimit, spec.per_user_limit as i32)
                    .value(sales::Column::StartsAt, spec.window.starts_at)
                    .value(sales::Column::EndsAt, spec.window.ends_at)
                    .value(
                        sales::Column::PaymentWindowSecs,
                        spec.payment.window_secs as i32,
                    )
                    .value(
                        sales::Column::PriceMinor,
                        spec.payment.price.map(|p| p.minor_per_unit),
                    )
                    .value(
                        sales::Column::Currency,
                        spec.payment.price.map(|p| p.currency.to_string()),
                    )
                    .value(sales::Column::UpdatedAt, now)
                    .and_where(Expr::col(sales::Column::SkuId).eq(sku.as_str()))
                    .to_owned();
                txn.execute(self.backend().build(&update)).await?;
            }
        }
        txn.commit().await?;
        Ok(())
    }

    /// Writes a batch of orders in one transaction and returns how each order stands, by order
    /// id. An order id that comes twice is written once.
    ///
    /// The steps: read the payment windows of the batch's sales; insert the orders as awaiting
    /// payment until now plus their sale's window (`ON CONFLICT DO NOTHING`, so a redelivered
    /// order is written once); take the stock of the newly inserted ones per SKU with one guarded update
    /// (`stock >= sum`), or, when the sum does not fit, order by order in message order, marking
    /// failed the ones the stock cannot cover (`db_out_of_stock`) or that have no sale
    /// (`unknown_sku`); read back how the orders it did not insert stand.
    pub async fn persist_batch<'o>(
        &self,
        orders: impl IntoIterator<Item = &'o OrderRequested>,
    ) -> Result<HashMap<OrderId, Written>, StoreError> {
        let mut seen = HashSet::new();
        let orders: Vec<&OrderRequested> = orders
            .into_iter()
            .filter(|o| seen.insert(&o.order_id))
            .collect();
        if orders.is_empty() {
            return Ok(HashMap::new());
        }
        let now = Utc::now();
        let txn = self.begin_write().await?;
        let windows = self.payment_windows(&txn, &orders).await?;
        let inserted = self.insert_new(&txn, &orders, now, &windows).await?;
        let taking: Vec<&OrderRequested> = orders
            .iter()
            .copied()
            .filter(|o| inserted.contains(o.order_id.as_str()))
            .collect();
        let refused = self.take_stock_for(&txn, &taking).await?;
        self.mark_refused(&txn, &refused, now).await?;
        self.set_missed_windows(&txn, &taking, &windows, &refused, now)
            .await?;
        // What this transaction wrote it knows; only the orders it did not insert (written by
        // an earlier delivery, or kept out by the key index) are read back.
        let earlier: Vec<&OrderRequested> = orders
            .iter()
            .copied()
            .filter(|o| !inserted.contains(o.order_id.as_str()))
            .collect();
        let mut stored = self.stored_outcomes(&txn, &earlier).await?;
        txn.commit().await?;
        let refused: HashMap<&OrderId, ReasonCode> = refused.into_iter().collect();
        Ok(orders
            .iter()
            .map(|o| {
                let written = if inserted.contains(o.order_id.as_str()) {
                    refused
                        .get(&o.order_id)
                        .map_or(Written::Accepted, |reason| Written::Failed(*reason))
                } else {
                    // No row under this id: the unique (user, sku, key) index kept it out.
                    stored.remove(&o.order_id).unwrap_or(Written::KeyConflict)
                };
                (o.order_id.clone(), written)
            })
            .collect())
    }

    /// The payment window of each sale the orders are for, by SKU (a SKU without a sale is
    /// absent; its orders fail as `unknown_sku`).
    async fn payment_windows(
        &self,
        txn: &impl ConnectionTrait,
        orders: &[&OrderRequested],
    ) -> Result<HashMap<String, chrono::Duration>, StoreError> {
        let skus: HashSet<&str> = orders.iter().map(|o| o.sku_id.as_str()).collect();
        Ok(sales::Entity::find()
            .select_only()
            .column(sales::Column::SkuId)
            .column(sales::Column::PaymentWindowSecs)
            .filter(sales::Column::SkuId.is_in(skus))
            .into_tuple::<(String, i32)>()
            .all(txn)
            .await?
            .into_iter()
            .map(|(sku, secs)| (sku, chrono::Duration::seconds(i64::from(secs))))
            .collect())
    }

    /// Sets `pay_by` on the orders that took stock from a sale whose window this transaction
    /// did not see when it inserted them: the sale's row was committed between the two reads
    /// (an admin creating it while its first orders arrive). Without it they would never expire.
    async fn set_missed_windows(
        &self,
        txn: &impl ConnectionTrait,
        taking: &[&OrderRequested],
        windows: &HashMap<String, chrono::Duration>,
        refused: &[(&OrderId, ReasonCode)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let refused: HashSet<&OrderId> = refused.iter().map(|(id, _)| *id).collect();
        let missed: Vec<&OrderRequested> = taking
            .iter()
            .copied()
            .filter(|o| !windows.contains_key(o.sku_id.as_str()) && !refused.contains(&o.order_id))
            .collect();
        if missed.is_empty() {
            return Ok(());
        }
        for (sku, window) in self.payment_windows(txn, &missed).await? {
            let update = Query::update()
                .table(orders::Entity)
                .value(orders::Column::PayBy, now + window)
                .and_where(Expr::col(orders::Column::SkuId).eq(sku.as_str()))
                .and_where(
                    Expr::col(orders::Column::OrderId)
                        .is_in(missed.iter().map(|o| o.order_id.as_str())),
                )
                .and_where(Expr::col(orders::Column::PayBy).is_null())
                .to_owned();
            txn.execute(self.backend().build(&update)).await?;
        }
        Ok(())
    }

    /// Inserts the orders as awaiting payment, skipping any that conflict; the ids inserted now.
    async fn insert_new(
        &self,
        txn: &impl ConnectionTrait,
        orders: &[&OrderRequested],
        now: DateTime<Utc>,
        windows: &HashMap<String, chrono::Duration>,
    ) -> Result<HashSet<String>, StoreError> {
        let statement = if self.backend() == DbBackend::Postgres {
            insert_awaiting_payment_unnest(orders, now)
        } else {
            let mut insert =
                insert_orders(orders, OrderStatus::AwaitingPayment, None, now, windows);
            insert.returning_col(orders::Column::OrderId);
            self.backend().build(&insert)
        };
        txn.query_all(statement)
            .await?
            .iter()
            .map(|row| {
                row.try_get::<String>("", "order_id")
                    .map_err(StoreError::from)
            })
            .collect()
    }

    /// Takes the stock of `orders` (just inserted, in message order), SKU by SKU: the sum at
    /// once when it fits, else order by order. The orders the stock did not cover, and why.
    async fn take_stock_for<'o>(
        &self,
        txn: &impl ConnectionTrait,
        orders: &[&'o OrderRequested],
    ) -> Result<Vec<(&'o OrderId, ReasonCode)>, StoreError> {
        let mut by_sku: BTreeMap<&SkuId, Vec<&OrderRequested>> = BTreeMap::new();
        for order in orders {
            by_sku.entry(&order.sku_id).or_default().push(order);
        }
        let mut refused = Vec::new();
        for (sku, orders) in by_sku {
            let total: i64 = orders.iter().map(|o| i64::from(o.quantity.get())).sum();
            if self.take_stock(txn, sku, total).await? {
                continue;
            }
            if !self.sale_exists(txn, sku).await? {
                refused.extend(orders.iter().map(|o| (&o.order_id, ReasonCode::UnknownSku)));
                continue;
            }
            for order in orders {
                if !self
                    .take_stock(txn, sku, i64::from(order.quantity.get()))
                    .await?
                {
                    refused.push((&order.order_id, ReasonCode::DbOutOfStock));
                }
            }
        }
        Ok(refused)
    }

    async fn sale_exists(
        &self,
        txn: &impl ConnectionTrait,
        sku: &SkuId,
    ) -> Result<bool, StoreError> {
        Ok(sales::Entity::find_by_id(sku.as_str())
            .select_only()
            .column(sales::Column::SkuId)
            .into_tuple::<String>()
            .one(txn)
            .await?
            .is_some())
    }

    /// Marks each refused order failed with its reason.
    async fn mark_refused(
        &self,
        txn: &impl ConnectionTrait,
        refused: &[(&OrderId, ReasonCode)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        for (order_id, reason) in refused {
            let update = Query::update()
                .table(orders::Entity)
                .value(orders::Column::Status, OrderStatus::Failed.as_str())
                .value(orders::Column::Reason, reason.as_str())
                .value(orders::Column::UpdatedAt, now)
                .and_where(Expr::col(orders::Column::OrderId).eq(order_id.as_str()))
                .to_owned();
            txn.execute(self.backend().build(&update)).await?;
        }
        Ok(())
    }

    /// How the rows of `orders` stand; an order without a row is absent.
    async fn stored_outcomes(
        &self,
        txn: &impl ConnectionTrait,
        orders: &[&OrderRequested],
    ) -> Result<HashMap<OrderId, Written>, StoreError> {
        if orders.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<&str> = orders.iter().map(|o| o.order_id.as_str()).collect();
        let rows = StoredStatus::find_by_statement(
            self.backend().build(
                Query::select()
                    .columns([
                        orders::Column::OrderId,
                        orders::Column::Status,
                        orders::Column::Reason,
                    ])
                    .from(orders::Entity)
                    .and_where(Expr::col(orders::Column::OrderId).is_in(ids)),
            ),
        )
        .all(txn)
        .await?;
        let by_id: HashMap<&str, &OrderId> = orders
            .iter()
            .map(|o| (o.order_id.as_str(), &o.order_id))
            .collect();
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let id = (*by_id.get(row.order_id.as_str())?).clone();
                let written = row.written().unwrap_or_else(|error| {
                    tracing::error!(%error, "an order row cannot be read");
                    Written::Unreadable
                });
                Some((id, written))
            })
            .collect())
    }

    async fn take_stock(
        &self,
        txn: &impl ConnectionTrait,
        sku: &SkuId,
        units: i64,
    ) -> Result<bool, StoreError> {
        let update = Query::update()
            .table(sales::Entity)
            .value(
                sales::Column::Stock,
                Expr::col(sales::Column::Stock).sub(units),
            )
            .and_where(Expr::col(sales::Column::SkuId).eq(sku.as_str()))
            .and_where(Expr::col(sales::Column::Stock).gte(units))
            .to_owned();
        Ok(txn
            .execute(self.backend().build(&update))
            .await?
            .rows_affected()
            == 1)
    }

    /// Records `order` as failed with `reason`, unless it has a row already. Returns the status
    /// it ends with: `Failed` means the caller should release its reservation (idempotently);
    /// any other means the order went through after all and its row's life (payment or expiry)
    /// decides what is given back.
    pub async fn mark_failed(
        &self,
        order: &OrderRequested,
        reason: ReasonCode,
    ) -> Result<OrderStatus, StoreError> {
        let insert = insert_orders(
            &[order],
            OrderStatus::Failed,
            Some(reason),
            Utc::now(),
            &HashMap::new(),
        );
        self.db.execute(self.backend().build(&insert)).await?;
        let stored = orders::Entity::find_by_id(order.order_id.as_str())
            .one(&self.db)
            .await?;
        match stored {
            Some(row) => row.order_status(),
            // The unique (user, sku, key) index kept it out: another order holds the key, and
            // this one never took stock in the database.
            None => Ok(OrderStatus::Failed),
        }
    }

    /// One order.
    pub async fn order(&self, id: &OrderId) -> Result<Option<orders::Model>, StoreError> {
        Ok(orders::Entity::find_by_id(id.as_str())
            .one(&self.db)
            .await?)
    }

    /// The sale of `sku` and all its orders, read in one snapshot (a repeatable-read
    /// transaction on PostgreSQL; SQLite's read transaction is one): what `reconcile` rebuilds
    /// Redis from, while the expirer may be expiring orders.
    pub async fn sale_with_orders(
        &self,
        sku: &SkuId,
    ) -> Result<Option<(sales::Model, Vec<orders::Model>)>, StoreError> {
        let txn = self.begin_snapshot().await?;
        let Some(sale) = sales::Entity::find_by_id(sku.as_str()).one(&txn).await? else {
            return Ok(None);
        };
        let orders = orders::Entity::find()
            .filter(orders::Column::SkuId.eq(sku.as_str()))
            .all(&txn)
            .await?;
        txn.commit().await?;
        Ok(Some((sale, orders)))
    }

    /// Orders of `sku` (verdicts and tests).
    pub async fn orders_of(&self, sku: &SkuId) -> Result<Vec<orders::Model>, StoreError> {
        Ok(orders::Entity::find()
            .filter(Condition::all().add(orders::Column::SkuId.eq(sku.as_str())))
            .all(&self.db)
            .await?)
    }

    /// The sale's figures, `None` if there is no such sale. Stock and order totals come from
    /// one snapshot (a repeatable-read transaction on PostgreSQL; SQLite's read transaction is
    /// one), so a batch committed between the two reads cannot show its orders without the
    /// stock they took.
    pub async fn sale_stats(&self, sku: &SkuId) -> Result<Option<SaleStats>, StoreError> {
        let txn = self.begin_snapshot().await?;
        let Some(sale) = sales::Entity::find_by_id(sku.as_str()).one(&txn).await? else {
            return Ok(None);
        };
        let totals = StatusTotals::find_by_statement(
            self.backend().build(
                Query::select()
                    .column(orders::Column::Status)
                    .expr_as(
                        Expr::col(orders::Column::OrderId).count(),
                        Alias::new("orders"),
                    )
                    .expr_as(
                        Expr::cust("CAST(SUM(quantity) AS BIGINT)"),
                        Alias::new("units"),
                    )
                    .from(orders::Entity)
                    .and_where(Expr::col(orders::Column::SkuId).eq(sku.as_str()))
                    .group_by_col(orders::Column::Status),
            ),
        )
        .all(&txn)
        .await?;
        let refunds_due = self.refunds_due_of(&txn, sku).await?;
        txn.commit().await?;
        let mut stats = SaleStats {
            initial_stock: sale.initial_stock,
            stock: sale.stock,
            awaiting_payment: Tally::default(),
            paid: Tally::default(),
            expired: Tally::default(),
            failed: Tally::default(),
            refunds_due,
        };
        for row in totals {
            let tally = Tally {
                orders: row.orders,
                units: row.units.unwrap_or(0),
            };
            match entity::parse_status(sku.as_str(), &row.status)? {
                OrderStatus::AwaitingPayment => stats.awaiting_payment = tally,
                OrderStatus::Paid => stats.paid = tally,
                OrderStatus::Expired => stats.expired = tally,
                OrderStatus::Failed => stats.failed = tally,
                OrderStatus::Pending => {
                    return Err(StoreError::Corrupt {
                        order_id: format!("(an order of {sku})"),
                        column: "status",
                        value: row.status,
                    })
                }
            }
        }
        Ok(Some(stats))
    }
}

/// Builds a statement for the store's backend (tests that need raw SQL).
pub fn statement(backend: DbBackend, sql: &str) -> Statement {
    Statement::from_string(backend, sql.to_owned())
}

/// When a timestamp from the store was written, in UTC (sea-orm's `DateTimeUtc`).
pub type Timestamp = DateTime<Utc>;
