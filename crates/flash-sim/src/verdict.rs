//! The verdict of a flash sale: the project's invariants (docs/architecture.md) checked against what the buyers
//! were told, what the database holds and what Redis holds, at rest.

use crate::crowd::{CrowdResult, Kind};
use domain::{OrderStatus, SkuId};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use stock::StockLedger;
use store::Store;

/// Everything the verdict reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verdict {
    /// Requests sent.
    pub requests: usize,
    /// 202 answers naming a new order.
    pub accepted_orders: usize,
    /// 202 answers repeating an order already accepted for the same key.
    pub idempotent_replays: usize,
    /// Rejections by `status code`.
    pub rejected: BTreeMap<String, usize>,
    /// Stock of the sale.
    pub initial_stock: i64,
    /// Confirmed orders and units in the database.
    pub confirmed_orders: usize,
    /// Units of confirmed orders.
    pub confirmed_units: i64,
    /// Failed orders in the database.
    pub failed_orders: usize,
    /// Units sold beyond the stock (must be 0).
    pub oversold: i64,
    /// Duplicate orders (must be 0): two order ids for one key, buyers above the limit, or
    /// confirmed rows nobody was told about.
    pub duplicates: usize,
    /// Accepted orders without a final row (must be 0).
    pub lost: usize,
    /// |Redis remaining + confirmed - initial| + |Redis reserved - released - confirmed|
    /// + |database initial - database stock - confirmed|, at rest (must be 0).
    pub conservation_gap: i64,
    /// Reservations still waiting in Redis to be written or released at the end (must be 0):
    /// units a crash could have stranded.
    pub unfinished_reservations: i64,
    /// 5xx answers other than 503, and malformed requests not answered 4xx (must be 0).
    pub bad_input_violations: usize,
    /// Consumer lag of the orders topic at the end.
    pub orders_lag: i64,
    /// Consumer lag of the dead-letter topic at the end.
    pub dlq_lag: i64,
    /// Requests per second.
    pub throughput: f64,
    /// Latency percentiles in milliseconds: p50, p90, p99, max.
    pub latency_ms: [f64; 4],
    /// Seconds the crowd took.
    pub crowd_secs: f64,
    /// Seconds from the last answer until the pipeline was drained.
    pub drain_secs: f64,
}

impl Verdict {
    /// Whether every invariant holds.
    pub fn holds(&self) -> bool {
        self.oversold == 0
            && self.duplicates == 0
            && self.lost == 0
            && self.conservation_gap == 0
            && self.unfinished_reservations == 0
            && self.bad_input_violations == 0
    }

    /// The verdict for people.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let ok = |good: bool| if good { "ok" } else { "FAILED" };
        let _ = writeln!(out, "\n== flash sale verdict ==");
        let _ = writeln!(out, "requests sent             {:>8}", self.requests);
        let _ = writeln!(out, "accepted (202, new order) {:>8}", self.accepted_orders);
        let _ = writeln!(
            out,
            "idempotent replays (202)  {:>8}",
            self.idempotent_replays
        );
        let _ = writeln!(out, "rejected:");
        for (code, count) in &self.rejected {
            let _ = writeln!(out, "  {code:<28}{count:>8}");
        }
        let _ = writeln!(out, "stock                     {:>8}", self.initial_stock);
        let _ = writeln!(
            out,
            "confirmed in database     {:>8} orders, {} units",
            self.confirmed_orders, self.confirmed_units
        );
        let _ = writeln!(out, "failed in database        {:>8}", self.failed_orders);
        let _ = writeln!(
            out,
            "oversold                  {:>8}  {}",
            self.oversold,
            ok(self.oversold == 0)
        );
        let _ = writeln!(
            out,
            "duplicates                {:>8}  {}",
            self.duplicates,
            ok(self.duplicates == 0)
        );
        let _ = writeln!(
            out,
            "lost                      {:>8}  {}",
            self.lost,
            ok(self.lost == 0)
        );
        let _ = writeln!(
            out,
            "stock conservation gap    {:>8}  {}",
            self.conservation_gap,
            ok(self.conservation_gap == 0)
        );
        let _ = writeln!(
            out,
            "unfinished reservations   {:>8}  {}",
            self.unfinished_reservations,
            ok(self.unfinished_reservations == 0)
        );
        let _ = writeln!(
            out,
            "bad input not 4xx / 500s  {:>8}  {}",
            self.bad_input_violations,
            ok(self.bad_input_violations == 0)
        );
        let _ = writeln!(
            out,
            "consumer lag at the end   {:>8} orders, {} dead letters",
            self.orders_lag, self.dlq_lag
        );
        let _ = writeln!(
            out,
            "throughput                {:>8.0} req/s over {:.2} s (drained {:.2} s later)",
            self.throughput, self.crowd_secs, self.drain_secs
        );
        let [p50, p90, p99, max] = self.latency_ms;
        let _ = writeln!(
            out,
            "latency                   p50 {p50:.2} ms, p90 {p90:.2} ms, p99 {p99:.2} ms, max {max:.2} ms"
        );
        let _ = writeln!(
            out,
            "VERDICT: {}",
            if self.holds() {
                "PASS: every invariant holds"
            } else {
                "FAIL: an invariant is broken"
            }
        );
        out
    }
}

/// What the verdict is computed from.
pub struct Evidence<'a> {
    /// The crowd's answers.
    pub crowd: &'a CrowdResult,
    /// The SKU.
    pub sku: &'a SkuId,
    /// Per-user limit of the sale.
    pub per_user_limit: i64,
    /// The database.
    pub store: &'a Store,
    /// Redis.
    pub ledger: &'a StockLedger,
    /// Lag of the orders topic.
    pub orders_lag: i64,
    /// Lag of the dead-letter topic.
    pub dlq_lag: i64,
    /// Drain time.
    pub drain_secs: f64,
}

/// Computes the verdict.
pub async fn judge(evidence: Evidence<'_>) -> anyhow::Result<Verdict> {
    let crowd = evidence.crowd;
    let mut ids_by_key: HashMap<(&str, &str), HashSet<&str>> = HashMap::new();
    let mut accepted: HashSet<&str> = HashSet::new();
    let mut accepted_answers = 0usize;
    let mut rejected: BTreeMap<String, usize> = BTreeMap::new();
    let mut bad_input_violations = 0usize;
    for answer in &crowd.answers {
        if let (202, Some(id)) = (answer.status, answer.order_id.as_deref()) {
            accepted_answers += 1;
            accepted.insert(id);
            ids_by_key
                .entry((answer.planned.user.as_str(), answer.planned.key.as_str()))
                .or_default()
                .insert(id);
        } else {
            let code = answer.code.clone().unwrap_or_else(|| "no_answer".into());
            *rejected
                .entry(format!("{} {code}", answer.status))
                .or_insert(0) += 1;
        }
        let malformed = matches!(answer.planned.kind, Kind::Malformed(_));
        if (answer.status >= 500 && answer.status != 503)
            || (malformed && !(400..500).contains(&answer.status))
        {
            bad_input_violations += 1;
        }
    }
    let rows = evidence.store.orders_of(evidence.sku).await?;
    let stats = evidence
        .store
        .sale_stats(evidence.sku)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the sale vanished from the database"))?;
    let snapshot = evidence
        .ledger
        .snapshot(evidence.sku)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the sale vanished from Redis"))?;

    let mut confirmed_units = 0i64;
    let mut confirmed_orders = 0usize;
    let mut failed_orders = 0usize;
    let mut units_by_user: HashMap<&str, i64> = HashMap::new();
    let mut final_rows: HashSet<&str> = HashSet::new();
    let mut unannounced = 0usize;
    for row in &rows {
        match row.order_status()? {
            OrderStatus::AwaitingPayment | OrderStatus::Paid => {
                confirmed_orders += 1;
                confirmed_units += i64::from(row.quantity);
                *units_by_user.entry(row.user_id.as_str()).or_insert(0) += i64::from(row.quantity);
                final_rows.insert(row.order_id.as_str());
                if !accepted.contains(row.order_id.as_str()) {
                    unannounced += 1;
                }
            }
            OrderStatus::Failed | OrderStatus::Expired => {
                failed_orders += 1;
                final_rows.insert(row.order_id.as_str());
            }
            OrderStatus::Pending => {}
        }
    }
    let two_ids_for_one_key = ids_by_key.values().filter(|ids| ids.len() > 1).count();
    let over_limit = units_by_user
        .values()
        .filter(|&&units| units > evidence.per_user_limit)
        .count();
    let lost = accepted
        .iter()
        .filter(|id| !final_rows.contains(*id))
        .count();
    let conservation_gap = (snapshot.remaining + confirmed_units - stats.initial_stock).abs()
        + (snapshot.reserved - snapshot.released - confirmed_units).abs()
        + (stats.initial_stock - stats.stock - confirmed_units).abs();
    let histogram = &crowd.latency;
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    Ok(Verdict {
        requests: crowd.answers.len(),
        accepted_orders: accepted.len(),
        idempotent_replays: accepted_answers - accepted.len(),
        rejected,
        initial_stock: stats.initial_stock,
        confirmed_orders,
        confirmed_units,
        failed_orders,
        oversold: (confirmed_units - stats.initial_stock).max(0),
        duplicates: two_ids_for_one_key + over_limit + unannounced,
        lost,
        conservation_gap,
        unfinished_reservations: snapshot.unfinished,
        bad_input_violations,
        orders_lag: evidence.orders_lag,
        dlq_lag: evidence.dlq_lag,
        throughput: crowd.throughput(),
        latency_ms: [ms(0.5), ms(0.9), ms(0.99), histogram.max() as f64 / 1000.0],
        crowd_secs: crowd.elapsed.as_secs_f64(),
        drain_secs: evidence.drain_secs,
    })
}
