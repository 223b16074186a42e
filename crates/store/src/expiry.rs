//! The end of the payment window, in the database: orders not paid by their `pay_by` become
//! `expired` and their units go back to the sale's stock, in one transaction per batch. Redis
//! gets the units back after the commit (the expirer's `release` call, idempotent); until it
//! has, the order's `units_returned_at` stays empty, so an expirer that stopped in between is
//! followed up by the next round, on any replica.

use crate::entity::{orders, sales};
use crate::{Store, StoreError};
use chrono::{DateTime, Utc};
use domain::{OrderId, OrderStatus, ReasonCode};
use sea_orm::sea_query::{Expr, LockBehavior, LockType, Query};
use sea_orm::{ConnectionTrait, DbBackend};
use std::collections::BTreeMap;

/// An expired order whose units Redis must get back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredOrder {
    /// The order.
    pub order_id: OrderId,
    /// Its units.
    pub quantity: i64,
}

fn expired_order(order_id: String, quantity: i32) -> Result<ExpiredOrder, StoreError> {
    let parsed = OrderId::parse(order_id.as_str()).map_err(|_| StoreError::Corrupt {
        order_id: order_id.clone(),
        column: "order_id",
        value: order_id.clone(),
    })?;
    Ok(ExpiredOrder {
        order_id: parsed,
        quantity: i64::from(quantity),
    })
}

impl Store {
    /// Expires up to `limit` orders whose payment window closed at or before `now`, and gives
    /// their units back to their sales' stock, in one transaction; the orders it expired.
    ///
    /// On PostgreSQL the due rows are taken `FOR UPDATE SKIP LOCKED`: expirers of several
    /// replicas take disjoint orders, and a row a payment holds is left to that payment, which
    /// decides it under the same lock. The update is guarded (`status = 'awaiting_payment'`),
    /// so an order paid or expired by anyone else is never expired twice.
    pub async fn expire_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<ExpiredOrder>, StoreError> {
        let txn = self.begin_write().await?;
        let due = Query::select()
            .column(orders::Column::OrderId)
            .from(orders::Entity)
            .and_where(Expr::col(orders::Column::Status).eq(OrderStatus::AwaitingPayment.as_str()))
            .and_where(Expr::col(orders::Column::PayBy).lte(now))
            .order_by(orders::Column::PayBy, sea_orm::Order::Asc)
            .limit(limit as u64)
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            .to_owned();
        let ids: Vec<String> = txn
            .query_all(self.backend().build(&due))
            .await?
            .iter()
            .map(|row| row.try_get::<String>("", "order_id"))
            .collect::<Result<_, _>>()?;
        let expired = expire_rows(&txn, self.backend(), &ids, now).await?;
        txn.commit().await?;
        Ok(expired)
    }

    /// Expired orders whose units Redis has not been given back yet, by order id, at most
    /// `limit`, after the order id `after` (pages, so that orders left owed do not hold up
    /// the others).
    pub async fn unreturned_expiries(
        &self,
        limit: usize,
        after: Option<&OrderId>,
    ) -> Result<Vec<ExpiredOrder>, StoreError> {
        let mut select = Query::select();
        select
            .columns([orders::Column::OrderId, orders::Column::Quantity])
            .from(orders::Entity)
            .and_where(Expr::col(orders::Column::Status).eq(OrderStatus::Expired.as_str()))
            .and_where(Expr::col(orders::Column::UnitsReturnedAt).is_null())
            .order_by(orders::Column::OrderId, sea_orm::Order::Asc)
            .limit(limit as u64);
        if let Some(after) = after {
            select.and_where(Expr::col(orders::Column::OrderId).gt(after.as_str()));
        }
        self.db
            .query_all(self.backend().build(&select))
            .await?
            .iter()
            .map(|row| expired_order(row.try_get("", "order_id")?, row.try_get("", "quantity")?))
            .collect()
    }

    /// Orders awaiting payment across all sales, and their units (the expirer's gauges; the
    /// `(status, pay_by)` index bounds the read to those orders).
    pub async fn awaiting_payment_totals(&self) -> Result<crate::Tally, StoreError> {
        let select = Query::select()
            .expr_as(
                Expr::col(orders::Column::OrderId).count(),
                sea_orm::sea_query::Alias::new("orders"),
            )
            .expr_as(
                Expr::cust("CAST(COALESCE(SUM(quantity), 0) AS BIGINT)"),
                sea_orm::sea_query::Alias::new("units"),
            )
            .from(orders::Entity)
            .and_where(Expr::col(orders::Column::Status).eq(OrderStatus::AwaitingPayment.as_str()))
            .to_owned();
        let row = self.db.query_one(self.backend().build(&select)).await?;
        Ok(match row {
            Some(row) => crate::Tally {
                orders: row.try_get("", "orders")?,
                units: row.try_get("", "units")?,
            },
            None => crate::Tally::default(),
        })
    }

    /// Records that Redis has the units of these expired orders back. Idempotent.
    pub async fn mark_units_returned(
        &self,
        ids: &[&OrderId],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let update = Query::update()
            .table(orders::Entity)
            .value(orders::Column::UnitsReturnedAt, now)
            .and_where(Expr::col(orders::Column::OrderId).is_in(ids.iter().map(|id| id.as_str())))
            .and_where(Expr::col(orders::Column::UnitsReturnedAt).is_null())
            .to_owned();
        self.write(&self.db, &update).await?;
        Ok(())
    }
}

/// Expires the orders `ids` that still await payment and gives their units back to their
/// sales' stock (SKU by SKU in order, the order every writer of `sales` takes its row locks
/// in); the orders it expired.
pub(crate) async fn expire_rows(
    txn: &impl ConnectionTrait,
    backend: DbBackend,
    ids: &[String],
    now: DateTime<Utc>,
) -> Result<Vec<ExpiredOrder>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut update = Query::update();
    update
        .table(orders::Entity)
        .value(orders::Column::Status, OrderStatus::Expired.as_str())
        .value(
            orders::Column::Reason,
            ReasonCode::PaymentWindowElapsed.as_str(),
        )
        .value(orders::Column::UpdatedAt, now)
        .and_where(Expr::col(orders::Column::OrderId).is_in(ids.iter().map(String::as_str)))
        .and_where(Expr::col(orders::Column::Status).eq(OrderStatus::AwaitingPayment.as_str()))
        .returning(Query::returning().columns([
            orders::Column::OrderId,
            orders::Column::SkuId,
            orders::Column::Quantity,
        ]));
    let mut expired = Vec::new();
    let mut units_by_sku: BTreeMap<String, i64> = BTreeMap::new();
    for row in txn.query_all(backend.build(&update)).await? {
        let order = expired_order(row.try_get("", "order_id")?, row.try_get("", "quantity")?)?;
        *units_by_sku.entry(row.try_get("", "sku_id")?).or_default() += order.quantity;
        expired.push(order);
    }
    for (sku, units) in units_by_sku {
        let give_back = Query::update()
            .table(sales::Entity)
            .value(
                sales::Column::Stock,
                Expr::col(sales::Column::Stock).add(units),
            )
            .and_where(Expr::col(sales::Column::SkuId).eq(sku))
            .to_owned();
        txn.execute(backend.build(&give_back)).await?;
    }
    Ok(expired)
}
