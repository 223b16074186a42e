//! The verdict of a flash sale: the project's invariants (docs/architecture.md) checked against
//! what the buyers and the payment provider were told, what the database holds and what Redis
//! holds, at rest.

use crate::crowd::{CrowdResult, Kind};
use domain::{OrderStatus, SkuId};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::{Display, Write as _};
use stock::StockLedger;
use store::{Store, Tally};

/// Buyers of the second crowd are named `<LATECOMER>-<n>`.
pub const LATECOMER: &str = "latecomer";

/// Everything the verdict reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verdict {
    /// Requests sent (both crowds).
    pub requests: usize,
    /// 202 answers naming a new order.
    pub accepted_orders: usize,
    /// 202 answers repeating an order already accepted for the same key.
    pub idempotent_replays: usize,
    /// Rejections by `status code`.
    pub rejected: BTreeMap<String, usize>,
    /// Stock of the sale.
    pub initial_stock: i64,
    /// Orders written to the database (they took stock; awaiting payment, paid or expired since).
    pub written_orders: usize,
    /// Orders paid.
    pub paid: Tally,
    /// Orders still awaiting payment.
    pub awaiting_payment: Tally,
    /// Orders expired unpaid: their units went back on sale.
    pub expired: Tally,
    /// Failed orders in the database.
    pub failed_orders: usize,
    /// Units bought by the second crowd, who came after the unpaid units went back on sale.
    pub resold_units: i64,
    /// Units held (awaiting payment or paid) beyond the stock (must be 0).
    pub oversold: i64,
    /// Duplicate orders (must be 0): two order ids for one key, buyers above the limit, or
    /// held rows nobody was told about.
    pub duplicates: usize,
    /// Accepted orders without a final row (must be 0).
    pub lost: usize,
    /// `|Redis remaining + held - initial| + |Redis reserved - released - held| +
    /// |database initial - database stock - held|`, at rest, where held = awaiting payment +
    /// paid units (must be 0): every unit is paid, awaiting payment, or back on sale.
    pub conservation_gap: i64,
    /// Reservations still waiting in Redis to be written or released at the end (must be 0):
    /// units a crash could have stranded.
    pub unfinished_reservations: i64,
    /// 5xx answers other than 503, and malformed requests not answered 4xx (must be 0).
    pub bad_input_violations: usize,
    /// What the payment provider sent and was told.
    pub payments: PaymentEvidence,
    /// Orders paid by two payments, paid orders without their payment, or `paid` payments of
    /// orders that are not paid (must be 0).
    pub paid_twice: usize,
    /// Payments recorded as refunds due.
    pub refunds_due: i64,
    /// Consumer lag of the orders topic at the end.
    pub orders_lag: i64,
    /// Consumer lag of the dead-letter topic at the end.
    pub dlq_lag: i64,
    /// Requests per second of the first crowd.
    pub throughput: f64,
    /// Latency percentiles of the first crowd in milliseconds: p50, p90, p99, max.
    pub latency_ms: [f64; 4],
    /// Seconds the first crowd took.
    pub crowd_secs: f64,
    /// Seconds from the first crowd's last answer until its orders were all written.
    pub drain_secs: f64,
}

/// What the demo's payment provider did, and how it was answered.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PaymentEvidence {
    /// Seconds buyers had to pay.
    pub window_secs: i64,
    /// Buyers of the second crowd, who came once the unpaid units were back on sale.
    pub latecomers: usize,
    /// Notices sent for orders whose buyers paid (as soon as the order was written).
    pub sent: usize,
    /// Of them, answered `200 paid`.
    pub paid: usize,
    /// Of them, answered `409 order_expired`: they reached the gateway after the window closed
    /// (a slow machine); recorded as refunds due.
    pub too_late: usize,
    /// Notices sent a second time, as a provider retries.
    pub replays: usize,
    /// Of them, answered exactly as the first time.
    pub replays_same: usize,
    /// Notices sent for orders that had expired.
    pub late_sent: usize,
    /// Of them, refused `409 order_expired`.
    pub late_refused: usize,
    /// Units the late notices moved, in the database or in Redis (must be 0).
    pub late_moved_units: i64,
    /// Any other answer, by `status code` (must be none).
    pub unexpected: BTreeMap<String, usize>,
}

impl PaymentEvidence {
    fn holds(&self) -> bool {
        self.replays_same == self.replays
            && self.late_refused == self.late_sent
            && self.late_moved_units == 0
            && self.unexpected.is_empty()
    }
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
            && self.paid_twice == 0
            && self.paid.units <= self.initial_stock
            && self.payments.holds()
            && self.resold()
    }

    /// Whether the units that expired were sold again (when a second crowd came to buy them).
    fn resold(&self) -> bool {
        self.expired.units == 0 || self.payments.latecomers == 0 || self.resold_units > 0
    }

    /// The verdict for people.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let ok = |good: bool| if good { "ok" } else { "FAILED" };
        // One checked figure: its label, its value, whether it holds, and a note after.
        fn check(out: &mut String, label: &str, value: impl Display, holds: bool, note: &str) {
            let verdict = if holds { "ok" } else { "FAILED" };
            let note = if note.is_empty() {
                String::new()
            } else {
                format!("  {note}")
            };
            let _ = writeln!(out, "{label:<26}{value:>8}  {verdict}{note}");
        }
        let tally = |t: &Tally| format!("{:>8} orders, {} units", t.orders, t.units);
        let p = &self.payments;
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
        let _ = writeln!(out, "written to the database   {:>8}", self.written_orders);
        let _ = writeln!(out, "  paid                  {}", tally(&self.paid));
        let _ = writeln!(
            out,
            "  awaiting payment      {}",
            tally(&self.awaiting_payment)
        );
        let _ = writeln!(
            out,
            "  expired unpaid        {}  (back on sale after {} s)",
            tally(&self.expired),
            p.window_secs
        );
        let _ = writeln!(out, "failed in database        {:>8}", self.failed_orders);
        let _ = writeln!(
            out,
            "payments                  {:>8} sent, {} paid, {} reached the gateway after the window",
            p.sent, p.paid, p.too_late
        );
        check(&mut out, "oversold", self.oversold, self.oversold == 0, "");
        check(
            &mut out,
            "paid units <= stock",
            self.paid.units,
            self.paid.units <= self.initial_stock,
            "",
        );
        check(
            &mut out,
            "units paid twice",
            self.paid_twice,
            self.paid_twice == 0,
            "",
        );
        check(
            &mut out,
            "duplicates",
            self.duplicates,
            self.duplicates == 0,
            "",
        );
        check(&mut out, "lost", self.lost, self.lost == 0, "");
        check(
            &mut out,
            "stock conservation gap",
            self.conservation_gap,
            self.conservation_gap == 0,
            "(every unit paid, awaiting payment, or back on sale)",
        );
        check(
            &mut out,
            "expired units sold again",
            self.resold_units,
            self.resold(),
            "",
        );
        let _ = writeln!(
            out,
            "late payments refused     {:>8}/{}  {}  (409 order_expired, {} refunds due, {} units moved)",
            p.late_refused,
            p.late_sent,
            ok(p.late_refused == p.late_sent && p.late_moved_units == 0),
            self.refunds_due,
            p.late_moved_units
        );
        let _ = writeln!(
            out,
            "payment retries answered the same {:>4}/{}  {}",
            p.replays_same,
            p.replays,
            ok(p.replays_same == p.replays)
        );
        if !p.unexpected.is_empty() {
            let _ = writeln!(
                out,
                "unexpected payment answers: {:?}  FAILED",
                p.unexpected
            );
        }
        check(
            &mut out,
            "unfinished reservations",
            self.unfinished_reservations,
            self.unfinished_reservations == 0,
            "",
        );
        check(
            &mut out,
            "bad input not 4xx / 500s",
            self.bad_input_violations,
            self.bad_input_violations == 0,
            "",
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
    /// The crowds' answers; the first one's speed is reported.
    pub crowds: &'a [&'a CrowdResult],
    /// What the payment provider did.
    pub payments: PaymentEvidence,
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
    /// Drain time of the first crowd.
    pub drain_secs: f64,
}

/// What the buyers were told.
#[derive(Default)]
struct Told<'a> {
    ids_by_key: HashMap<(&'a str, &'a str), HashSet<&'a str>>,
    accepted: HashSet<&'a str>,
    accepted_answers: usize,
    rejected: BTreeMap<String, usize>,
    bad_input_violations: usize,
    requests: usize,
}

fn told<'a>(crowds: &[&'a CrowdResult]) -> Told<'a> {
    let mut told = Told::default();
    for answer in crowds.iter().flat_map(|crowd| &crowd.answers) {
        told.requests += 1;
        if let (202, Some(id)) = (answer.status, answer.order_id.as_deref()) {
            told.accepted_answers += 1;
            told.accepted.insert(id);
            told.ids_by_key
                .entry((answer.planned.user.as_str(), answer.planned.key.as_str()))
                .or_default()
                .insert(id);
        } else {
            let code = answer.code.clone().unwrap_or_else(|| "no_answer".into());
            *told
                .rejected
                .entry(format!("{} {code}", answer.status))
                .or_insert(0) += 1;
        }
        let malformed = matches!(answer.planned.kind, Kind::Malformed(_));
        if (answer.status >= 500 && answer.status != 503)
            || (malformed && !(400..500).contains(&answer.status))
        {
            told.bad_input_violations += 1;
        }
    }
    told
}

/// Computes the verdict.
pub async fn judge(evidence: Evidence<'_>) -> anyhow::Result<Verdict> {
    let told = told(evidence.crowds);
    let rows = evidence.store.orders_of(evidence.sku).await?;
    let payments = evidence.store.payments_of_sku(evidence.sku).await?;
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

    let (mut paid, mut awaiting, mut expired) =
        (Tally::default(), Tally::default(), Tally::default());
    let mut failed_orders = 0usize;
    let mut resold_units = 0i64;
    let mut units_by_user: HashMap<&str, i64> = HashMap::new();
    let mut final_rows: HashSet<&str> = HashSet::new();
    let mut unannounced = 0usize;
    let mut paid_by: HashMap<&str, Option<&str>> = HashMap::new();
    for row in &rows {
        let units = i64::from(row.quantity);
        let status = row.order_status()?;
        final_rows.insert(row.order_id.as_str());
        let tally = match status {
            OrderStatus::Paid => &mut paid,
            OrderStatus::AwaitingPayment => &mut awaiting,
            OrderStatus::Expired => &mut expired,
            OrderStatus::Failed => {
                failed_orders += 1;
                continue;
            }
            OrderStatus::Pending => {
                final_rows.remove(row.order_id.as_str());
                continue;
            }
        };
        tally.orders += 1;
        tally.units += units;
        if status == OrderStatus::Paid {
            paid_by.insert(row.order_id.as_str(), row.payment_id.as_deref());
        }
        if status.holds_stock() {
            *units_by_user.entry(row.user_id.as_str()).or_insert(0) += units;
            if row.user_id.starts_with(LATECOMER) {
                resold_units += units;
            }
            if !told.accepted.contains(row.order_id.as_str()) {
                unannounced += 1;
            }
        }
    }
    let paid_twice = paid_twice(&payments, &paid_by);
    let held = paid.units + awaiting.units;
    let two_ids_for_one_key = told.ids_by_key.values().filter(|ids| ids.len() > 1).count();
    let over_limit = units_by_user
        .values()
        .filter(|&&units| units > evidence.per_user_limit)
        .count();
    let lost = told
        .accepted
        .iter()
        .filter(|id| !final_rows.contains(*id))
        .count();
    let conservation_gap = (snapshot.remaining + held - stats.initial_stock).abs()
        + (snapshot.reserved - snapshot.released - held).abs()
        + (stats.initial_stock - stats.stock - held).abs();
    let first = evidence
        .crowds
        .first()
        .ok_or_else(|| anyhow::anyhow!("no crowd"))?;
    let histogram = &first.latency;
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    Ok(Verdict {
        requests: told.requests,
        accepted_orders: told.accepted.len(),
        idempotent_replays: told.accepted_answers - told.accepted.len(),
        rejected: told.rejected,
        initial_stock: stats.initial_stock,
        written_orders: (paid.orders + awaiting.orders + expired.orders) as usize,
        paid,
        awaiting_payment: awaiting,
        expired,
        failed_orders,
        resold_units,
        oversold: (held - stats.initial_stock).max(0),
        duplicates: two_ids_for_one_key + over_limit + unannounced,
        lost,
        conservation_gap,
        unfinished_reservations: snapshot.unfinished,
        bad_input_violations: told.bad_input_violations,
        payments: evidence.payments,
        paid_twice,
        refunds_due: stats.refunds_due,
        orders_lag: evidence.orders_lag,
        dlq_lag: evidence.dlq_lag,
        throughput: first.throughput(),
        latency_ms: [ms(0.5), ms(0.9), ms(0.99), histogram.max() as f64 / 1000.0],
        crowd_secs: first.elapsed.as_secs_f64(),
        drain_secs: evidence.drain_secs,
    })
}

/// Orders paid by more than one payment, paid orders whose payment is not recorded as paying
/// them, and payments recorded as paying an order that is not paid.
fn paid_twice(
    payments: &[store::entity::payments::Model],
    paid_by: &HashMap<&str, Option<&str>>,
) -> usize {
    let mut paying: HashMap<&str, Vec<&str>> = HashMap::new();
    let paid = domain::PaymentOutcome::Paid.as_str();
    for payment in payments.iter().filter(|p| p.outcome == paid) {
        paying
            .entry(payment.order_id.as_str())
            .or_default()
            .push(payment.payment_id.as_str());
    }
    let twice = paying.values().filter(|ids| ids.len() > 1).count();
    let not_paid = paying
        .keys()
        .filter(|order| !paid_by.contains_key(*order))
        .count();
    let unrecorded = paid_by
        .iter()
        .filter(|(order, payment)| {
            let recorded = paying.get(*order);
            !matches!((payment, recorded), (Some(p), Some(ids)) if ids.contains(p))
        })
        .count();
    twice + not_paid + unrecorded
}
