//! The reservation sweeper: no reservation stays stranded.
//!
//! Every accepted reservation keeps its order message in Redis (the outbox, written by the same
//! script that takes the stock) and sits in the sale's pending index until the worker has
//! settled the order (`StockLedger::finish`) or it is released. A reservation still pending
//! after `sweeper.stale_after_secs` is either already written (the worker died between its
//! database commit and its Redis call: it is finished now) or has its order published again: the
//! gateway died before the broker had it, the gateway's Redis call after the produce failed, or
//! the broker lost the message. The worker's idempotent write turns any copy that was not lost
//! into nothing, so a republication is always safe; a release on a timeout would not be (a `202`
//! may stand behind the reservation, and its message may still be in the queue behind a lag).
//!
//! It runs in the order worker, beside its consumer loop: the worker already holds Redis, the
//! database and a producer, it is the service whose progress decides what is stale, and it
//! scales with the consumers. Several replicas sweep at once safely: taking stale reservations
//! (`sweep.lua`) makes each one due again in the same atomic step, so two sweepers never take
//! the same reservation in one round.
//!
//! Once a sale has ended and nothing of it is pending, its per-order Redis keys (buyer counts,
//! idempotency entries, reservation records) are set to expire `sweeper.retain_after_end_secs`
//! after its end.
//!
//! A republished order is signed as the gateway signs it (`messages.signing_keys`): the outbox
//! keeps the bytes, not the signature, which is made with the key of the moment. So the sweeper
//! also brings back an order the worker refused as forged because its producer did not sign it
//! (a gateway of an older build during an upgrade).

use crate::metrics::WorkerMetrics;
use chrono::{DateTime, Utc};
use domain::{Keyring, OrderId, OrderRequested, Signed, SkuId};
use futures::future::join_all;
use kafka::rdkafka::message::OwnedHeaders;
use kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use kafka::rdkafka::util::Timeout;
use settings::SweeperSettings;
use std::time::Duration;
use stock::{OutboxEntry, RetireOutcome, StaleReservation, StockLedger};
use store::Store;
use telemetry::TraceContext;

/// What one sweep round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// Sales looked at.
    pub sales: usize,
    /// Orders published again.
    pub republished: usize,
    /// Stale reservations whose order was written after all: finished without a republication.
    pub already_written: usize,
    /// Stale reservations without a readable outbox entry: left pending, reported.
    pub unpublishable: usize,
    /// Ended sales whose per-order keys were set to expire.
    pub retired: usize,
    /// Transfers of units between the stock buckets of a sale that were left half done (their
    /// gateway died between the two steps) and were completed.
    pub transfers_completed: usize,
    /// Sales whose sweep failed this round (logged; the others were swept).
    pub failed_sales: usize,
}

/// Sweeps the sales' stale reservations.
#[derive(Clone)]
pub struct Sweeper {
    ledger: StockLedger,
    store: Store,
    producer: FutureProducer,
    orders_topic: String,
    keyring: Keyring,
    config: SweeperSettings,
    produce_timeout: Duration,
    metrics: WorkerMetrics,
}

impl Sweeper {
    /// A sweeper publishing to `orders_topic` through `producer`, signing with `keyring`; a
    /// produce not acknowledged within `produce_timeout` is tried again next round.
    // Each argument is a handle or a setting the worker already holds: a struct of them would
    // only rename this list.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ledger: StockLedger,
        store: Store,
        producer: FutureProducer,
        orders_topic: String,
        keyring: Keyring,
        config: SweeperSettings,
        produce_timeout: Duration,
        metrics: WorkerMetrics,
    ) -> Self {
        Self {
            ledger,
            store,
            producer,
            orders_topic,
            keyring,
            config,
            produce_timeout,
            metrics,
        }
    }

    /// One round over every sale that has not been over for longer than the retention.
    pub async fn sweep(&self) -> anyhow::Result<SweepReport> {
        let now = Utc::now();
        let retain = chrono::Duration::seconds(self.config.retain_after_end_secs as i64);
        let sales = self.store.sales_ending_after(now - retain).await?;
        let mut report = SweepReport::default();
        for sale in sales {
            report.sales += 1;
            // One sale's failure (a reply this build cannot read, say) must not keep the
            // others from being swept.
            let swept = async {
                let sku = SkuId::parse(&sale.sku_id)?;
                // The database's number: Redis may have lost bucket 0 and not the others.
                let buckets = u8::try_from(sale.buckets)?;
                if buckets > 1 {
                    let stale_after = Duration::from_secs(self.config.stale_after_secs)
                        .max(stock::TRANSFER_STALE);
                    let cutoff = now - chrono::Duration::from_std(stale_after)?;
                    report.transfers_completed += self
                        .ledger
                        .complete_transfers(&sku, buckets, cutoff.timestamp_millis())
                        .await?;
                }
                self.sweep_sale(&sku, buckets, now, &mut report).await?;
                if sale.ends_at <= now {
                    self.retire(&sku, buckets, sale.ends_at + retain, &mut report)
                        .await?;
                }
                anyhow::Ok(())
            };
            if let Err(error) = swept.await {
                report.failed_sales += 1;
                tracing::warn!(sku = %sale.sku_id, error = %format!("{error:#}"), "sweeping a sale failed");
            }
        }
        Ok(report)
    }

    /// One round, counted and logged: what the worker runs on its timer.
    pub async fn round(&self) -> anyhow::Result<()> {
        let swept = self.sweep().await;
        let result = match &swept {
            Ok(report) if report.failed_sales == 0 => "ok",
            _ => "error",
        };
        self.metrics
            .sweeper_rounds
            .with_label_values(&[result])
            .inc();
        let report = swept?;
        if report.republished > 0
            || report.already_written > 0
            || report.unpublishable > 0
            || report.transfers_completed > 0
        {
            tracing::info!(?report, "reservations swept");
        }
        anyhow::ensure!(
            report.failed_sales == 0,
            "{} of {} sales could not be swept",
            report.failed_sales,
            report.sales
        );
        Ok(())
    }

    /// Takes the sale's stale reservations, batch after batch, and settles each batch.
    async fn sweep_sale(
        &self,
        sku: &SkuId,
        buckets: u8,
        now: DateTime<Utc>,
        report: &mut SweepReport,
    ) -> anyhow::Result<()> {
        let cutoff = now - chrono::Duration::seconds(self.config.stale_after_secs as i64);
        loop {
            let stale = self
                .ledger
                .take_stale(sku, buckets, cutoff, now, self.config.batch_max)
                .await?;
            let full = stale.len() == self.config.batch_max;
            if !stale.is_empty() {
                self.settle(sku, stale, now, report).await?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Finishes the stale reservations whose order is written, publishes the others again
    /// (a failed order still pending has a compensation or a dead letter to come, which its
    /// copy brings about again if the broker lost the first).
    async fn settle(
        &self,
        sku: &SkuId,
        stale: Vec<StaleReservation>,
        now: DateTime<Utc>,
        report: &mut SweepReport,
    ) -> anyhow::Result<()> {
        let ids: Vec<&OrderId> = stale.iter().map(|s| &s.order_id).collect();
        let written = self.store.accepted_among(&ids).await?;
        let written_ids: Vec<&OrderId> = written.iter().collect();
        self.ledger.finish(sku, &written_ids).await?;
        report.already_written += written.len();
        self.metrics
            .sweeper_already_written
            .inc_by(written.len() as u64);

        let mut publishing = Vec::new();
        for reservation in stale.iter().filter(|s| !written.contains(&s.order_id)) {
            match &reservation.entry {
                Some(Ok(entry)) => publishing.push((reservation, entry)),
                Some(Err(error)) => self.unpublishable(reservation, &error.to_string(), report),
                None => self.unpublishable(reservation, "no outbox entry", report),
            }
        }
        let sends = publishing
            .iter()
            .map(|(reservation, entry)| self.republish(sku, reservation, entry, now));
        for sent in join_all(sends).await {
            if sent? {
                report.republished += 1;
            }
        }
        Ok(())
    }

    /// Publishes one order again, in its trace, and marks its reservation acknowledged (a
    /// retry of its buyer then gets the order, not `409`). `false` when the broker did not
    /// take it; the next round tries again.
    async fn republish(
        &self,
        sku: &SkuId,
        reservation: &StaleReservation,
        entry: &OutboxEntry,
        now: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let trace = entry
            .traceparent
            .as_deref()
            .and_then(|traceparent| {
                TraceContext::from_headers(|name| (name == "traceparent").then_some(traceparent))
            })
            .map(|sender| sender.child())
            .unwrap_or_else(TraceContext::start);
        let signed = Signed::Order {
            key: sku.as_str().as_bytes(),
            payload: &entry.payload,
            replays: b"",
        };
        let headers = kafka::trace::with_trace(OwnedHeaders::new(), &trace);
        let record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&self.orders_topic)
            .key(sku.as_str())
            .payload(entry.payload.as_slice())
            .headers(kafka::signature::with_signature(
                headers,
                &self.keyring,
                &signed,
            ));
        let span = tracing::info_span!(
            "sweep",
            order_id = %reservation.order_id,
            trace_id = %trace.trace_id(),
            span_id = %trace.span_id(),
        );
        if let Err((error, _)) = self
            .producer
            .send(record, Timeout::After(self.produce_timeout))
            .await
        {
            span.in_scope(|| tracing::warn!(%error, "republishing a stale order failed"));
            return Ok(false);
        }
        self.ledger.mark_acknowledged(&reservation.order_id).await?;
        let requested_at = OrderRequested::decode(&entry.payload)
            .map(|order| order.requested_at)
            .unwrap_or(reservation.due_since);
        let age = (now - requested_at).to_std().unwrap_or_default();
        self.metrics.sweeper_republished.inc();
        self.metrics
            .sweeper_republished_age
            .observe(age.as_secs_f64());
        span.in_scope(|| tracing::warn!(age_secs = age.as_secs(), "stale order published again"));
        Ok(true)
    }

    fn unpublishable(&self, reservation: &StaleReservation, why: &str, report: &mut SweepReport) {
        report.unpublishable += 1;
        self.metrics.sweeper_unpublishable.inc();
        tracing::error!(
            order_id = %reservation.order_id,
            problem = why,
            "a stale reservation cannot be published again; it stays reserved"
        );
    }

    /// Lets an ended sale's per-order keys expire at `expire_at`, once nothing is pending.
    async fn retire(
        &self,
        sku: &SkuId,
        buckets: u8,
        expire_at: DateTime<Utc>,
        report: &mut SweepReport,
    ) -> anyhow::Result<()> {
        match self.ledger.retire(sku, buckets, expire_at).await? {
            RetireOutcome::Retired => report.retired += 1,
            RetireOutcome::Unfinished(pending) => {
                tracing::warn!(%sku, pending, "the sale has ended with orders not yet written");
            }
            // Reopened since the round read the sales: swept as a running sale next round.
            RetireOutcome::Open => {}
        }
        Ok(())
    }
}
