//! The order repository: the worker's batch write (orders inserted idempotently, their stock
//! taken with a guarded update in the same transaction), marking an order failed, and reading
//! orders back. Every stored status and reason is read through `entity`, so a value this build
//! cannot read is an error, never a default.

use crate::entity::{self, orders, sales};
use crate::{insert_rows, Store, StoreError};
use chrono::{DateTime, Utc};
use domain::{OrderId, OrderRequested, OrderStatus, ReasonCode, SkuId};
use sea_orm::sea_query::{Expr, OnConflict, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter,
    QuerySelect, Statement,
};
use std::collections::{BTreeMap, HashMap, HashSet};

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
    let mut insert = insert_rows(
        orders::Entity,
        orders.iter().map(|o| {
            let pay_by = windows.get(o.sku_id.as_str()).map(|window| now + *window);
            [
                (orders::Column::OrderId, o.order_id.as_str().into()),
                (orders::Column::UserId, o.user_id.as_str().into()),
                (orders::Column::SkuId, o.sku_id.as_str().into()),
                (orders::Column::Quantity, (o.quantity.get() as i32).into()),
                (
                    orders::Column::IdempotencyKey,
                    o.idempotency_key.as_str().into(),
                ),
                (orders::Column::Status, status.as_str().into()),
                (
                    orders::Column::Reason,
                    reason.map(ReasonCode::as_str).into(),
                ),
                (orders::Column::RequestedAt, o.requested_at.into()),
                (orders::Column::CreatedAt, now.into()),
                (orders::Column::UpdatedAt, now.into()),
                (orders::Column::PayBy, pay_by.into()),
            ]
        }),
    );
    insert.on_conflict(OnConflict::new().do_nothing().to_owned());
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
            self.write(txn, &update).await?;
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
            self.write(txn, &update).await?;
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
        Ok(self.write(txn, &update).await? == 1)
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
        self.write(&self.db, &insert).await?;
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

    /// Orders of `sku` (verdicts and tests).
    pub async fn orders_of(&self, sku: &SkuId) -> Result<Vec<orders::Model>, StoreError> {
        Ok(orders::Entity::find()
            .filter(Condition::all().add(orders::Column::SkuId.eq(sku.as_str())))
            .all(&self.db)
            .await?)
    }
}
