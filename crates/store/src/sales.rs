//! The sale repository: creating or changing a sale, reading sales, and a sale's figures as
//! the database sees them, each read from one snapshot so the figures always add up.

use crate::entity::{self, orders, sales};
use crate::{insert_rows, Store, StoreError};
use chrono::{DateTime, Utc};
use domain::{OrderStatus, SaleSpec, SkuId};
use sea_orm::sea_query::{Alias, Expr, Query};
use sea_orm::{
    ColumnTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect,
};

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

impl Store {
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

    /// Creates the sale or changes it. A change of the total is applied as a delta to the
    /// remaining stock, refused if it would go below what is sold.
    pub async fn upsert_sale(&self, sku: &SkuId, spec: &SaleSpec) -> Result<(), StoreError> {
        let now = Utc::now();
        let admission = spec.admission.map(|room| room.encode());
        let price = spec.payment.pricing.price();
        let price_minor = price.map(|p| p.minor_per_unit);
        let currency = price.map(|p| p.currency.to_string());
        let free = spec.payment.pricing.is_free();
        let txn = self.begin_write().await?;
        let mut find = sales::Entity::find_by_id(sku.as_str());
        if self.backend() == DbBackend::Postgres {
            find = find.lock_exclusive();
        }
        let existing = find.one(&txn).await?;
        match existing {
            None => {
                let insert = insert_rows(
                    sales::Entity,
                    [[
                        (sales::Column::SkuId, sku.as_str().into()),
                        (sales::Column::InitialStock, spec.stock.into()),
                        (sales::Column::Stock, spec.stock.into()),
                        (
                            sales::Column::PerUserLimit,
                            (spec.per_user_limit as i32).into(),
                        ),
                        (sales::Column::StartsAt, spec.window.starts_at.into()),
                        (sales::Column::EndsAt, spec.window.ends_at.into()),
                        (sales::Column::CreatedAt, now.into()),
                        (sales::Column::UpdatedAt, now.into()),
                        (
                            sales::Column::PaymentWindowSecs,
                            (spec.payment.window_secs as i32).into(),
                        ),
                        (sales::Column::PriceMinor, price_minor.into()),
                        (sales::Column::Currency, currency.clone().into()),
                        (sales::Column::Free, free.into()),
                        (sales::Column::Buckets, i16::from(spec.buckets).into()),
                        (sales::Column::Admission, admission.clone().into()),
                    ]],
                );
                self.write(&txn, &insert).await?;
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
                    .value(sales::Column::PriceMinor, price_minor)
                    .value(sales::Column::Currency, currency)
                    .value(sales::Column::Free, free)
                    .value(sales::Column::Admission, admission)
                    .value(sales::Column::UpdatedAt, now)
                    .and_where(Expr::col(sales::Column::SkuId).eq(sku.as_str()))
                    .to_owned();
                self.write(&txn, &update).await?;
            }
        }
        txn.commit().await?;
        Ok(())
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
