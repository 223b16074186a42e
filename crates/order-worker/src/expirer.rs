//! The expirer: an order not paid by its `pay_by` expires, and its units go back on sale.
//!
//! Each round, in two steps:
//! 1. **Follow-up**: expired orders whose units Redis has not got back yet (an expirer, or a
//!    late payment, stopped between its database commit and its Redis call) get them now.
//! 2. **Expiry**: the orders due are expired in the database, a batch per transaction
//!    (`Store::expire_due`: status `expired`, units back to the sale's stock, rows taken
//!    `FOR UPDATE SKIP LOCKED`), then released in Redis (`release.lua` in `compensate` mode:
//!    the stock, the buyer's count toward the per-user limit, and the reservation marked
//!    released, so a second release changes nothing), then marked returned.
//!
//! So the units go back exactly once whatever stops where: the database's share is guarded by
//! the order's status in one transaction, Redis's by the reservation's state in one script, and
//! the link between them (`units_returned_at`) is only set once Redis has answered. A sale Redis
//! has lost (`release.lua` answers `no_sale` and changes nothing) keeps its expired orders owed
//! until `reconcile` has rebuilt it; a later round then releases what reconcile wrote.
//!
//! It runs in the order worker, beside its consumer loop and the sweeper: the worker already
//! holds the database and Redis, writes the orders whose windows it closes, and scales with its
//! replicas, which expire disjoint orders at once. A gateway caching "sold out" sells the
//! returned units again within `gateway.sold_out_recheck_ms`.

use crate::metrics::WorkerMetrics;
use chrono::Utc;
use domain::OrderId;
use futures::future::join_all;
use settings::ExpirySettings;
use std::time::Duration;
use stock::{ReleaseMode, ReleaseOutcome, StockLedger};
use store::{ExpiredOrder, Store};

/// How often the worker reads the awaiting-payment gauges ([`Expirer::read_gauges`]).
pub const GAUGES_EVERY: Duration = Duration::from_secs(15);

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryReport {
    /// Orders expired in the database this round.
    pub expired: usize,
    /// Units Redis got back this round (expired now or owed by an earlier round).
    pub units_returned: i64,
    /// Expired orders whose reservation Redis no longer has although it has the sale (the
    /// sale ended and its per-order keys expired): recorded as returned, nothing to give back.
    pub missing: usize,
    /// Expired orders of sales Redis has lost: left owed until `reconcile` has rebuilt the
    /// sale.
    pub owed: usize,
    /// Expired orders whose release failed this round (Redis unreachable): left owed, tried
    /// again next round.
    pub failed: usize,
    /// Expired orders whose reservation record cannot be read: Redis cannot take their units
    /// back; recorded as returned and logged, so they do not hold up the others.
    pub unreadable: usize,
}

/// Expires unpaid orders.
#[derive(Clone)]
pub struct Expirer {
    ledger: StockLedger,
    store: Store,
    config: ExpirySettings,
    metrics: WorkerMetrics,
}

impl Expirer {
    /// An expirer taking `config.batch_max` orders per transaction.
    pub fn new(
        ledger: StockLedger,
        store: Store,
        config: ExpirySettings,
        metrics: WorkerMetrics,
    ) -> Self {
        Self {
            ledger,
            store,
            config,
            metrics,
        }
    }

    /// One round: the follow-up of what earlier rounds owe Redis, then the orders due now.
    /// A release that fails does not stop the round (the order stays owed); the round then
    /// ends in an error after it has done all it could. A database error ends it at once.
    pub async fn expire(&self) -> anyhow::Result<ExpiryReport> {
        let mut report = ExpiryReport::default();
        let mut failure = None;
        let mut after = None;
        loop {
            let owed = self
                .store
                .unreturned_expiries(self.config.batch_max, after.as_ref())
                .await?;
            let full = owed.len() == self.config.batch_max;
            self.return_units(&owed, &mut report, &mut failure).await?;
            // Orders left owed (a sale Redis lost, Redis unreachable) are paged past.
            after = owed.last().map(|order| order.order_id.clone());
            if !full {
                break;
            }
        }
        loop {
            let expired = self
                .store
                .expire_due(Utc::now(), self.config.batch_max)
                .await?;
            report.expired += expired.len();
            self.metrics.orders_expired.inc_by(expired.len() as u64);
            let full = expired.len() == self.config.batch_max;
            self.return_units(&expired, &mut report, &mut failure)
                .await?;
            if !full {
                break;
            }
        }
        match failure {
            Some(error) => Err(anyhow::Error::new(error).context(format!(
                "{} expired orders stay owed to Redis",
                report.failed
            ))),
            None => Ok(report),
        }
    }

    /// One round, counted and logged: what the worker runs on its timer.
    pub async fn round(&self) -> anyhow::Result<()> {
        let expired = self.expire().await;
        self.metrics
            .expiry_rounds
            .with_label_values(&[if expired.is_ok() { "ok" } else { "error" }])
            .inc();
        let report = expired?;
        if report.expired > 0 || report.units_returned > 0 {
            tracing::info!(?report, "unpaid orders expired");
        }
        if report.owed > 0 {
            tracing::warn!(
                owed = report.owed,
                "expired orders of sales Redis has lost wait for `reconcile` to give their units back"
            );
        }
        Ok(())
    }

    /// Reads how many orders await payment, and their units, into the gauges. The count
    /// reads every order awaiting payment (all of a sale's orders during its payment window:
    /// about 50 ms of the database's CPU for a million), so the worker runs it on a slower
    /// timer of its own ([`GAUGES_EVERY`]), not with every round.
    pub async fn read_gauges(&self) -> anyhow::Result<()> {
        let awaiting = self.store.awaiting_payment_totals().await?;
        self.metrics.orders_awaiting_payment.set(awaiting.orders);
        self.metrics.units_awaiting_payment.set(awaiting.units);
        Ok(())
    }

    /// Gives the units of expired orders back to Redis, then records that it did. The calls
    /// run at once on the multiplexed connection.
    async fn return_units(
        &self,
        orders: &[ExpiredOrder],
        report: &mut ExpiryReport,
        failure: &mut Option<stock::StockError>,
    ) -> anyhow::Result<()> {
        if orders.is_empty() {
            return Ok(());
        }
        let releases = orders.iter().map(|order| {
            self.ledger
                .release(&order.order_id, ReleaseMode::Compensate)
        });
        let mut returned: Vec<&OrderId> = Vec::with_capacity(orders.len());
        for (order, released) in orders.iter().zip(join_all(releases).await) {
            match released {
                Ok(ReleaseOutcome::Released) => {
                    report.units_returned += order.quantity;
                    self.metrics
                        .expiry_units_returned
                        .inc_by(order.quantity as u64);
                    returned.push(&order.order_id);
                }
                Ok(ReleaseOutcome::AlreadyReleased | ReleaseOutcome::Claimed) => {
                    returned.push(&order.order_id);
                }
                // The sale is there but not the reservation: its sale ended and its per-order keys
                // expired (`sweeper.retain_after_end_secs`). There is nothing Redis can take
                // back; the ended sale's Redis stock stays short by these units.
                Ok(ReleaseOutcome::Missing) => {
                    report.missing += 1;
                    tracing::warn!(
                        order_id = %order.order_id,
                        "an expired order's reservation is gone from Redis (its sale's keys expired); its units are back in the database only"
                    );
                    returned.push(&order.order_id);
                }
                // Redis lost the whole sale: `reconcile` rebuilds it from the database. Until it
                // has, the order stays owed, and a later round releases what reconcile wrote.
                Ok(ReleaseOutcome::SaleMissing) => {
                    report.owed += 1;
                }
                Err(error) if !error.is_transient() => {
                    report.unreadable += 1;
                    tracing::error!(
                        order_id = %order.order_id,
                        %error,
                        "an expired order's reservation cannot be released; its units are back in the database only"
                    );
                    returned.push(&order.order_id);
                }
                Err(error) => {
                    report.failed += 1;
                    tracing::warn!(order_id = %order.order_id, %error, "giving an expired order's units back to Redis failed; the next round tries again");
                    failure.get_or_insert(error);
                }
            }
        }
        self.store
            .mark_units_returned(&returned, Utc::now())
            .await?;
        Ok(())
    }
}
