//! Payments, in the database: a notice pays its order, or is recorded as a refund due, in one
//! transaction that holds the order's row. A payment and the expiry of the same order are
//! decided by that row: whichever takes it first changes its status, and the other finds the
//! status changed (see `expiry`).

use crate::entity::{orders, payments, sales};
use crate::expiry::expire_rows;
use crate::{insert_rows, Store, StoreError};
use chrono::{DateTime, Utc};
use domain::payment::PaymentOutcomeKind;
use domain::sale::Pricing;
use domain::{Currency, OrderStatus, PaymentNotice, PaymentOutcome, RefundReason, SkuId};
use sea_orm::sea_query::{Expr, OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

/// What a payment notice came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Paid {
    /// Recorded now with this outcome. A notice that found its order past its `pay_by` and
    /// not yet expired expired it on the spot: its units went back to the database's stock,
    /// and Redis gets them from the expirer's next round (its `units_returned_at` is empty).
    Recorded(PaymentOutcome),
    /// The same payment was notified before and answered with this outcome; nothing changed.
    Replayed(PaymentOutcome),
    /// The payment id was notified before for another order, amount or currency.
    Conflict,
    /// No such order in the database (it may still be queued).
    OrderNotFound,
    /// The amount or the currency is not what the order costs: `quantity x price` in the
    /// price's currency, or 0 for an order of a free sale; nothing is recorded.
    AmountMismatch {
        /// What the order costs.
        expected_minor: i64,
        /// In this currency; `None` for a free sale, whose payments may name any.
        currency: Option<Currency>,
    },
    /// The order's sale names no price and does not say it is free (it was stored before a
    /// sale had to), so nothing tells what the order costs; nothing is recorded until the
    /// sale is put again with a price or as free.
    SaleUnpriced,
}

/// A payment that pays no order and must be refunded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefundDue {
    /// The provider's payment id.
    pub payment_id: String,
    /// The order it was for.
    pub order_id: String,
    /// The order's SKU.
    pub sku_id: String,
    /// Amount to refund, in the currency's minor unit.
    pub amount_minor: i64,
    /// Its currency.
    pub currency: String,
    /// Why it pays nothing.
    pub reason: RefundReason,
    /// When the notice came.
    pub received_at: DateTime<Utc>,
}

impl Store {
    /// Applies a payment notice at `now`: pays its order if it awaits payment, its window is
    /// open and the notice pays exactly what the order costs (else refuses it, recording
    /// nothing); else records the payment as a refund due (the order expired, was paid by another
    /// payment, or failed). An order found past its `pay_by` and not yet expired is expired
    /// here, so the answer and the order agree at once. Idempotent on the payment id.
    pub async fn pay(
        &self,
        notice: &PaymentNotice,
        now: DateTime<Utc>,
    ) -> Result<Paid, StoreError> {
        let txn = self.begin_write().await?;
        let mut find = orders::Entity::find_by_id(notice.order_id.as_str());
        if self.backend() == DbBackend::Postgres {
            find = find.lock_exclusive();
        }
        let Some(order) = find.one(&txn).await? else {
            // A payment id already used (for an order that exists) is a conflict, whatever the
            // order this notice names.
            let used = payments::Entity::find_by_id(notice.payment_id.as_str())
                .one(&txn)
                .await?
                .is_some();
            return Ok(if used {
                Paid::Conflict
            } else {
                Paid::OrderNotFound
            });
        };
        if let Some(earlier) = payments::Entity::find_by_id(notice.payment_id.as_str())
            .one(&txn)
            .await?
        {
            let same = earlier.order_id == notice.order_id.as_str()
                && earlier.amount_minor == notice.amount_minor as i64
                && earlier.currency == notice.currency.as_str();
            return Ok(if same {
                Paid::Replayed(earlier.payment_outcome()?)
            } else {
                Paid::Conflict
            });
        }
        let outcome = match order.order_status()? {
            OrderStatus::AwaitingPayment if order.pay_by.is_some_and(|pay_by| now < pay_by) => {
                if let Some(refused) = self.check_amount(&txn, &order, notice).await? {
                    return Ok(refused);
                }
                self.mark_paid(&txn, &order, notice, now).await?;
                PaymentOutcome::Paid
            }
            OrderStatus::AwaitingPayment => {
                let ids = [order.order_id.clone()];
                expire_rows(&txn, self.backend(), &ids, now).await?;
                PaymentOutcome::RefundDue(RefundReason::OrderExpired)
            }
            OrderStatus::Expired => PaymentOutcome::RefundDue(RefundReason::OrderExpired),
            OrderStatus::Paid => PaymentOutcome::RefundDue(RefundReason::OrderAlreadyPaid),
            OrderStatus::Failed => PaymentOutcome::RefundDue(RefundReason::OrderFailed),
            OrderStatus::Pending => {
                return Err(StoreError::Corrupt {
                    order_id: order.order_id,
                    column: "status",
                    value: "pending".into(),
                })
            }
        };
        if !self
            .record(&txn, notice, &order.sku_id, outcome, now)
            .await?
        {
            // The same payment id is being recorded for another order right now.
            return Ok(Paid::Conflict);
        }
        txn.commit().await?;
        Ok(Paid::Recorded(outcome))
    }

    /// `None` when the notice pays exactly what the order costs; else why it does not.
    async fn check_amount(
        &self,
        txn: &impl ConnectionTrait,
        order: &orders::Model,
        notice: &PaymentNotice,
    ) -> Result<Option<Paid>, StoreError> {
        let sale = sales::Entity::find_by_id(order.sku_id.as_str())
            .one(txn)
            .await?;
        // An order whose sale is gone has no price either: refused the same way.
        let pricing = match sale {
            Some(sale) => sale.payment_terms()?.pricing,
            None => Pricing::Unpriced,
        };
        let amount = i64::try_from(notice.amount_minor).ok();
        Ok(match pricing {
            Pricing::Priced(price) => {
                // Both factors are bounded (a price, a quantity), so the product fits.
                let expected_minor = price
                    .minor_per_unit
                    .saturating_mul(i64::from(order.quantity));
                let right = notice.currency == price.currency && amount == Some(expected_minor);
                (!right).then_some(Paid::AmountMismatch {
                    expected_minor,
                    currency: Some(price.currency),
                })
            }
            Pricing::Free => (amount != Some(0)).then_some(Paid::AmountMismatch {
                expected_minor: 0,
                currency: None,
            }),
            Pricing::Unpriced => Some(Paid::SaleUnpriced),
        })
    }

    async fn mark_paid(
        &self,
        txn: &impl ConnectionTrait,
        order: &orders::Model,
        notice: &PaymentNotice,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let update = Query::update()
            .table(orders::Entity)
            .value(orders::Column::Status, OrderStatus::Paid.as_str())
            .value(orders::Column::PaidAt, now)
            .value(orders::Column::PaymentId, notice.payment_id.as_str())
            .value(orders::Column::UpdatedAt, now)
            .and_where(Expr::col(orders::Column::OrderId).eq(order.order_id.as_str()))
            .and_where(Expr::col(orders::Column::Status).eq(OrderStatus::AwaitingPayment.as_str()))
            .to_owned();
        if self.write(txn, &update).await? != 1 {
            // Cannot happen while the row (PostgreSQL) or the database (SQLite) is locked by this
            // transaction; checked so that no bug can pay an order twice.
            return Err(StoreError::Db(sea_orm::DbErr::Custom(format!(
                "order {} changed while it was being paid",
                order.order_id
            ))));
        }
        Ok(())
    }

    /// Inserts the payment row; `false` if its id is taken.
    async fn record(
        &self,
        txn: &impl ConnectionTrait,
        notice: &PaymentNotice,
        sku: &str,
        outcome: PaymentOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut insert = insert_rows(
            payments::Entity,
            [[
                (
                    payments::Column::PaymentId,
                    notice.payment_id.as_str().into(),
                ),
                (payments::Column::OrderId, notice.order_id.as_str().into()),
                (payments::Column::SkuId, sku.into()),
                (
                    payments::Column::AmountMinor,
                    (notice.amount_minor as i64).into(),
                ),
                (payments::Column::Currency, notice.currency.as_str().into()),
                (payments::Column::Outcome, outcome.as_str().into()),
                (
                    payments::Column::Reason,
                    outcome.reason().map(RefundReason::as_str).into(),
                ),
                (payments::Column::ReceivedAt, now.into()),
            ]],
        );
        insert.on_conflict(
            OnConflict::column(payments::Column::PaymentId)
                .do_nothing()
                .to_owned(),
        );
        Ok(self.write(txn, &insert).await? == 1)
    }

    /// The payments that must be refunded, oldest first, at most `limit`.
    pub async fn refunds_due(&self, limit: u64) -> Result<Vec<RefundDue>, StoreError> {
        payments::Entity::find()
            .filter(payments::Column::Outcome.eq(PaymentOutcomeKind::RefundDue.as_str()))
            .order_by_asc(payments::Column::ReceivedAt)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| {
                let reason =
                    row.payment_outcome()?
                        .reason()
                        .ok_or_else(|| StoreError::Corrupt {
                            order_id: row.order_id.clone(),
                            column: "payments.reason",
                            value: "NULL on a refund due".into(),
                        })?;
                Ok(RefundDue {
                    payment_id: row.payment_id,
                    order_id: row.order_id,
                    sku_id: row.sku_id,
                    amount_minor: row.amount_minor,
                    currency: row.currency,
                    reason,
                    received_at: row.received_at,
                })
            })
            .collect()
    }

    /// How many payments of `sku`'s orders must be refunded.
    pub(crate) async fn refunds_due_of(
        &self,
        txn: &impl ConnectionTrait,
        sku: &SkuId,
    ) -> Result<i64, StoreError> {
        Ok(payments::Entity::find()
            .filter(payments::Column::SkuId.eq(sku.as_str()))
            .filter(payments::Column::Outcome.eq(PaymentOutcomeKind::RefundDue.as_str()))
            .count(txn)
            .await? as i64)
    }

    /// The payments of the orders of `sku` (tests and the demo's verdict).
    pub async fn payments_of_sku(&self, sku: &SkuId) -> Result<Vec<payments::Model>, StoreError> {
        Ok(payments::Entity::find()
            .filter(payments::Column::SkuId.eq(sku.as_str()))
            .all(&self.db)
            .await?)
    }
}
