//! `seckill-ctl reconcile`: rebuilds in Redis the sales Redis has lost (a restart of a Redis
//! that keeps nothing on disk, a failover to an empty replica), from the database.
//!
//! While a sale is missing from Redis the gateway sells none of it (503 `sale_not_ready`), so
//! every order of that SKU that is still pending was queued before the loss. Reconcile waits until
//! the dead-letter replayer and then the order worker have committed everything that was in their
//! topics when it looked (the orders still pending are then in the database), and writes each lost
//! sale back: remaining stock = the database's stock, each buyer's units held (awaiting payment or
//! paid), every order's idempotency key, orders that hold stock as claimed, failed and expired ones
//! as released. Sales Redis still has
//! are left alone, so running it twice, or on a healthy Redis, changes nothing; `--rebuild`
//! rebuilds named sales Redis still has (after a failover that lost acknowledged writes).

use anyhow::Context;
use domain::{IdempotencyKey, OrderId, SkuId, UserId};
use settings::KafkaSettings;
use std::sync::Arc;
use std::time::Duration;
use stock::{RestoreOutcome, RestoredOrder, StockLedger};
use store::Store;

/// What to reconcile.
#[derive(Debug, Clone)]
pub struct Options {
    /// Only these SKUs (all sales of the database when empty).
    pub skus: Vec<SkuId>,
    /// Longest wait for the consumers to catch up.
    pub drain_timeout: Duration,
    /// Rebuild the named sales although Redis has them: after a failover that lost the last
    /// acknowledged writes, Redis counts units as on sale that the database has sold. Their
    /// keys are dropped first (the gateway answers 503 `sale_not_ready` for them until they
    /// are rebuilt), then they are rebuilt as lost sales are.
    pub rebuild: bool,
}

/// What reconcile did to one sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleReport {
    /// The sale.
    pub sku: SkuId,
    /// Restored with its remaining stock, or present in Redis and left alone.
    pub outcome: RestoreOutcome,
    /// Orders of the database written back (0 when left alone).
    pub orders: usize,
}

impl std::fmt::Display for SaleReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.outcome {
            RestoreOutcome::Restored(left) => write!(
                f,
                "{}: restored from the database, {left} units left, {} orders",
                self.sku, self.orders
            ),
            RestoreOutcome::AlreadyPresent(left) => {
                write!(
                    f,
                    "{}: present in Redis ({left} units left), left alone",
                    self.sku
                )
            }
        }
    }
}

/// Reconciles the sales of `options` (see the module documentation).
pub async fn reconcile(
    ledger: &StockLedger,
    store: &Store,
    endpoint: &kafka::Endpoint,
    topics: &KafkaSettings,
    options: &Options,
) -> anyhow::Result<Vec<SaleReport>> {
    let mut sales = store.sales().await.context("listing the sales")?;
    if !options.skus.is_empty() {
        for sku in &options.skus {
            anyhow::ensure!(
                sales.iter().any(|s| s.sku_id == sku.as_str()),
                "no sale {sku} in the database"
            );
        }
        sales.retain(|s| options.skus.iter().any(|sku| sku.as_str() == s.sku_id));
    }
    if options.rebuild {
        anyhow::ensure!(
            !options.skus.is_empty(),
            "rebuilding needs the sales named (--sku): it stops them selling until they are rebuilt"
        );
        for sku in &options.skus {
            tracing::warn!(%sku, "dropping the sale from Redis to rebuild it; its buyers get 503 sale_not_ready until then");
            ledger
                .forget(sku)
                .await
                .with_context(|| format!("dropping {sku} from Redis"))?;
        }
        // An order reserved just before the drop may still be on its way to the broker: give
        // its produce the time it may take, so that the drain below waits for it too.
        let in_flight =
            Duration::from_millis(u64::from(topics.delivery_timeout_ms)) + Duration::from_secs(1);
        tracing::info!(
            wait_ms = in_flight.as_millis() as u64,
            "waiting for produces in flight"
        );
        tokio::time::sleep(in_flight).await;
    }
    let mut lost = Vec::new();
    let mut reports = Vec::new();
    for sale in &sales {
        let sku = SkuId::parse(&sale.sku_id)?;
        match ledger.snapshot(&sku).await.context("reading Redis")? {
            Some(snapshot) => reports.push(SaleReport {
                sku,
                outcome: RestoreOutcome::AlreadyPresent(snapshot.remaining),
                orders: 0,
            }),
            None => lost.push(sku),
        }
    }
    if lost.is_empty() {
        tracing::info!(
            sales = sales.len(),
            "Redis has every sale; nothing to rebuild"
        );
        return Ok(reports);
    }
    tracing::info!(
        lost = lost.len(),
        "sales missing from Redis; waiting for the pending orders to reach the database"
    );
    // Dead letters first: a retryable one goes back to the orders topic before it is committed.
    for (group, topic) in [
        (&topics.replayer_group, &topics.dlq_topic),
        (&topics.worker_group, &topics.orders_topic),
    ] {
        let watcher = Arc::new(kafka::consumer(endpoint, group)?);
        let mut last = -1;
        kafka::lag::wait_caught_up(watcher, topic, options.drain_timeout, |to_go| {
            if to_go != last {
                tracing::info!(%group, %topic, to_go, "waiting for the consumers to catch up");
                last = to_go;
            }
        })
        .await
        .with_context(|| {
            format!(
                "the consumers did not catch up; the sales {lost:?} are still missing from Redis \
                 (their buyers get 503 sale_not_ready): run reconcile for them again"
            )
        })?;
    }
    for sku in lost {
        // One snapshot: an order the expirer expires meanwhile is either still holding its units
        // in both reads, or expired with its units back in both.
        let (sale, rows) = store
            .sale_with_orders(&sku)
            .await?
            .with_context(|| format!("sale {sku} vanished from the database"))?;
        let spec = sale.spec()?;
        let orders = rows
            .into_iter()
            .map(|row| {
                Ok(RestoredOrder {
                    order_id: OrderId::parse(&row.order_id)?,
                    user: UserId::parse(&row.user_id)?,
                    key: IdempotencyKey::parse(&row.idempotency_key)?,
                    quantity: i64::from(row.quantity),
                    holds_stock: row.order_status()?.holds_stock(),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()
            .with_context(|| format!("reading the orders of {sku}"))?;
        let outcome = ledger.restore(&sku, &spec, sale.stock, &orders).await?;
        let report = SaleReport {
            sku,
            outcome,
            orders: orders.len(),
        };
        tracing::info!(%report, "reconciled");
        reports.push(report);
    }
    Ok(reports)
}
