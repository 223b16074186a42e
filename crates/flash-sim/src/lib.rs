//! The flash-sale simulator and the all-in-one local stack.
//!
//! `seckill-sim demo` starts the whole pipeline in one process on the embedded defaults, puts a
//! SKU on sale, sends a crowd of buyers at it over HTTP, waits until the worker has drained the
//! queue, and prints a verdict on the invariants. It is what `make demo` runs.

pub mod crowd;
pub mod hostile;
pub mod load;
pub mod pow;
pub mod provider;
pub mod room;
pub mod stack;
pub mod verdict;

use anyhow::{bail, Context};
use domain::{OrderId, OrderStatus, SkuId};
use indicatif::ProgressBar;
use kafka::rdkafka::consumer::StreamConsumer;
use settings::secrecy::ExposeSecret;
use settings::Settings;
use stack::LocalStack;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use verdict::{Evidence, Verdict};

/// The shape of a simulated sale.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Units on sale.
    pub stock: i64,
    /// Most units per buyer.
    pub per_user_limit: i64,
    /// Distinct buyers of the first crowd.
    pub users: usize,
    /// Requests of the first crowd in all.
    pub requests: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Seed of the request mix and of who pays.
    pub seed: u64,
    /// Longest wait for the pipeline to drain.
    pub drain_timeout: Duration,
    /// Show progress bars.
    pub progress: bool,
    /// Seconds buyers have to pay.
    pub payment_window_secs: i64,
    /// Price of a unit in minor units (EUR); payments must match it.
    pub price_minor: i64,
    /// Share of the first crowd's orders paid as soon as they are written (0 to 1).
    pub pay_share: f64,
    /// Buyers among those who did not pay who send their payment after the window closed.
    pub late_payers: usize,
    /// Buyers of the second crowd, who come once the unpaid units are back on sale (they send
    /// twice as many requests, and all pay).
    pub latecomers: usize,
    /// Stock buckets of the sale in Redis (more than one for a SKU too hot for one Redis core).
    pub buckets: u8,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            stock: 1_000,
            per_user_limit: 2,
            users: 10_000,
            requests: 20_000,
            concurrency: 128,
            seed: 42,
            drain_timeout: Duration::from_secs(120),
            progress: false,
            payment_window_secs: 10,
            price_minor: 19_999,
            pay_share: 0.7,
            buckets: 1,
            late_payers: 100,
            latecomers: 2_000,
        }
    }
}

/// Runs a whole flash sale against a fresh local stack and returns its verdict.
pub async fn demo(settings: Settings, scenario: &Scenario) -> anyhow::Result<Verdict> {
    let stack = LocalStack::start(settings).await?;
    let result = run_sale(&stack, scenario).await;
    stack.stop().await?;
    result
}

/// Runs a flash sale against a running stack and judges the invariants at rest:
/// 1. a fresh SKU goes on sale with a payment window; the first crowd buys;
/// 2. once their orders are written, a share of the buyers pay (some notices twice, as a
///    provider retries);
/// 3. the others' orders expire and their units go back on sale; some of them pay late, and are
///    refused;
/// 4. a second crowd buys the returned units, and pays.
pub async fn run_sale(stack: &LocalStack, scenario: &Scenario) -> anyhow::Result<Verdict> {
    let settings = &stack.settings;
    let sku = SkuId::parse(format!("demo-{}", chrono::Utc::now().timestamp_millis()))?;
    let secret = settings.auth.jwt_secret.expose_secret().as_bytes().to_vec();
    wait_ready(&stack.admin_url()).await?;
    create_sale(&stack.admin_url(), &secret, &sku, scenario).await?;
    println!(
        "sale {sku}: {} units in {} stock bucket(s) at {} (minor units of EUR), limit {} per buyer, {} s to pay; {} buyers send {} requests, {} at a time",
        scenario.stock,
        scenario.buckets,
        scenario.price_minor,
        scenario.per_user_limit,
        scenario.payment_window_secs,
        scenario.users,
        scenario.requests,
        scenario.concurrency
    );
    let target = crowd::Target {
        base_url: stack.gateway_url(),
        sku: sku.to_string(),
        secret,
        concurrency: scenario.concurrency,
    };
    let watch = Watch::connect(settings, scenario).await?;
    let provider = provider::Provider::new(
        &stack.gateway_url(),
        settings
            .payments
            .webhook_secret
            .expose_secret()
            .as_bytes()
            .to_vec(),
        16,
    );
    let mut payments = verdict::PaymentEvidence {
        window_secs: scenario.payment_window_secs,
        latecomers: scenario.latecomers,
        ..Default::default()
    };

    let plan = crowd::plan(scenario.users, scenario.requests, scenario.seed);
    let first = crowd::run(&target, plan, scenario.progress).await;
    let drained = watch.drain(&sku, &first).await?;

    let mut rng = fastrand::Rng::with_seed(scenario.seed);
    let written = watch.awaiting_payment(&sku).await?;
    let (paying, unpaid): (Vec<_>, Vec<_>) = written
        .into_iter()
        .partition(|_| rng.f64() < scenario.pay_share);
    println!(
        "{} orders written: {} buyers pay now, {} let the {} s window pass",
        paying.len() + unpaid.len(),
        paying.len(),
        unpaid.len(),
        scenario.payment_window_secs
    );
    pay_in_time(&provider, scenario, &paying, &mut payments).await;

    watch.wait_for_expiry(&sku, scenario).await?;
    pay_late(&provider, &watch, &sku, scenario, &unpaid, &mut payments).await?;

    let back_on_sale = watch.stock(&sku).await?;
    let latecomers = crowd::plan_named(
        verdict::LATECOMER,
        scenario.latecomers,
        scenario.latecomers * 2,
        scenario.seed + 1,
    );
    println!(
        "{back_on_sale} units back on sale; {} later buyers send {} requests",
        scenario.latecomers,
        latecomers.len()
    );
    let second = crowd::run(&target, latecomers, scenario.progress).await;
    let (orders_lag, dlq_lag, _) = watch.drain(&sku, &second).await?;
    let resold = watch.awaiting_payment(&sku).await?;
    pay_in_time(&provider, scenario, &resold, &mut payments).await;

    verdict::judge(Evidence {
        crowds: &[&first, &second],
        payments,
        sku: &sku,
        per_user_limit: scenario.per_user_limit,
        store: &watch.store,
        ledger: &watch.ledger,
        orders_lag,
        dlq_lag,
        drain_secs: drained.2,
    })
    .await
}

/// Pays `orders` (order id, units) at the sale's price, every tenth notice sent twice.
async fn pay_in_time(
    provider: &provider::Provider,
    scenario: &Scenario,
    orders: &[(OrderId, i64)],
    evidence: &mut verdict::PaymentEvidence,
) {
    let notices = notices(scenario, "pay", orders);
    let answers = provider.notify_all(&notices).await;
    for answer in &answers {
        evidence.sent += 1;
        match (answer.status, answer.code.as_deref()) {
            (200, _) => evidence.paid += 1,
            (409, Some("order_expired")) => evidence.too_late += 1,
            _ => unexpected(evidence, answer),
        }
    }
    let retried: Vec<(provider::Payment, provider::Answered)> =
        notices.into_iter().zip(answers).step_by(10).collect();
    let again: Vec<provider::Payment> = retried.iter().map(|(p, _)| p.clone()).collect();
    for ((_, first), second) in retried.iter().zip(provider.notify_all(&again).await) {
        evidence.replays += 1;
        if *first == second {
            evidence.replays_same += 1;
        }
    }
}

/// Sends the payments of up to `late_payers` of the expired orders, and checks that they move
/// no unit.
async fn pay_late(
    provider: &provider::Provider,
    watch: &Watch,
    sku: &SkuId,
    scenario: &Scenario,
    unpaid: &[(OrderId, i64)],
    evidence: &mut verdict::PaymentEvidence,
) -> anyhow::Result<()> {
    let before = watch.units(sku).await?;
    let late = &unpaid[..unpaid.len().min(scenario.late_payers)];
    let notices = notices(scenario, "late", late);
    for answer in provider.notify_all(&notices).await {
        evidence.late_sent += 1;
        match (answer.status, answer.code.as_deref()) {
            (409, Some("order_expired")) => evidence.late_refused += 1,
            _ => unexpected(evidence, &answer),
        }
    }
    let after = watch.units(sku).await?;
    evidence.late_moved_units = (after.0 - before.0).abs() + (after.1 - before.1).abs();
    println!(
        "{} late payments sent after the window: {} refused",
        evidence.late_sent, evidence.late_refused
    );
    Ok(())
}

/// The notices paying `orders` (id, units) at the sale's price, with ids `<prefix>-<order id>`.
fn notices(scenario: &Scenario, prefix: &str, orders: &[(OrderId, i64)]) -> Vec<provider::Payment> {
    orders
        .iter()
        .map(|(order_id, units)| provider::Payment {
            payment_id: format!("{prefix}-{order_id}"),
            order_id: order_id.clone(),
            amount_minor: (scenario.price_minor * units) as u64,
            currency: "EUR",
        })
        .collect()
}

fn unexpected(evidence: &mut verdict::PaymentEvidence, answer: &provider::Answered) {
    let code = answer.code.clone().unwrap_or_else(|| "-".into());
    *evidence
        .unexpected
        .entry(format!("{} {code}", answer.status))
        .or_default() += 1;
}

/// What the demo reads of the pipeline: the database, Redis and the consumer groups' lag.
struct Watch {
    settings: Settings,
    ledger: stock::StockLedger,
    store: store::Store,
    orders_watch: Arc<StreamConsumer>,
    dlq_watch: Arc<StreamConsumer>,
    drain_timeout: Duration,
    progress: bool,
}

impl Watch {
    async fn connect(settings: &Settings, scenario: &Scenario) -> anyhow::Result<Self> {
        let endpoint = kafka::Endpoint::from_settings(&settings.kafka, None);
        Ok(Self {
            settings: settings.clone(),
            ledger: stock::StockLedger::new(&settings.redis)?,
            store: store::Store::connect(&settings.database).await?,
            orders_watch: Arc::new(kafka::consumer(&endpoint, &settings.kafka.worker_group)?),
            dlq_watch: Arc::new(kafka::consumer(&endpoint, &settings.kafka.replayer_group)?),
            drain_timeout: scenario.drain_timeout,
            progress: scenario.progress,
        })
    }

    fn spinner(&self) -> ProgressBar {
        let spinner = if self.progress {
            ProgressBar::new_spinner()
        } else {
            ProgressBar::hidden()
        };
        spinner.enable_steady_tick(Duration::from_millis(120));
        spinner
    }

    /// Waits until every order `crowd` was told was accepted has a row, both topics are
    /// consumed and the outbox is empty: (orders lag, dead-letter lag, seconds it took).
    async fn drain(
        &self,
        sku: &SkuId,
        crowd: &crowd::CrowdResult,
    ) -> anyhow::Result<(i64, i64, f64)> {
        let accepted: HashSet<&str> = crowd
            .answers
            .iter()
            .filter(|a| a.status == 202)
            .filter_map(|a| a.order_id.as_deref())
            .collect();
        let spinner = self.spinner();
        let started = Instant::now();
        let kafka = &self.settings.kafka;
        loop {
            let rows = self.store.orders_of(sku).await?;
            let mut settled: HashSet<&str> = HashSet::with_capacity(rows.len());
            for row in &rows {
                if row.order_status()? != OrderStatus::Pending {
                    settled.insert(row.order_id.as_str());
                }
            }
            let waiting = accepted.iter().filter(|id| !settled.contains(*id)).count();
            let orders_lag = total_lag(&self.orders_watch, &kafka.orders_topic).await;
            let dlq_lag = total_lag(&self.dlq_watch, &kafka.dlq_topic).await;
            // The worker takes written orders out of the outbox a flush interval later.
            let unfinished = self.ledger.snapshot(sku).await?.map_or(0, |s| s.unfinished);
            spinner.set_message(format!(
                "draining: {waiting} accepted orders not yet in the database, lag {orders_lag} orders / {dlq_lag} dead letters, {unfinished} in the outbox"
            ));
            let drained = waiting == 0 && orders_lag == 0 && dlq_lag == 0 && unfinished == 0;
            if drained || started.elapsed() > self.drain_timeout {
                spinner.finish_and_clear();
                if !drained {
                    println!("pipeline did not drain within {:?}", self.drain_timeout);
                }
                return Ok((orders_lag, dlq_lag, started.elapsed().as_secs_f64()));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The orders of `sku` awaiting payment (id, units), oldest first.
    async fn awaiting_payment(&self, sku: &SkuId) -> anyhow::Result<Vec<(OrderId, i64)>> {
        let mut awaiting = Vec::new();
        for row in self.store.orders_of(sku).await? {
            if row.order_status()? == OrderStatus::AwaitingPayment {
                awaiting.push((
                    OrderId::parse(row.order_id.as_str())?,
                    i64::from(row.quantity),
                ));
            }
        }
        awaiting.sort();
        Ok(awaiting)
    }

    /// Units on sale in the database.
    async fn stock(&self, sku: &SkuId) -> anyhow::Result<i64> {
        Ok(self.units(sku).await?.0)
    }

    /// Units on sale: (in the database, in Redis).
    async fn units(&self, sku: &SkuId) -> anyhow::Result<(i64, i64)> {
        let stats = self
            .store
            .sale_stats(sku)
            .await?
            .context("the sale vanished from the database")?;
        let redis = self
            .ledger
            .snapshot(sku)
            .await?
            .context("the sale vanished from Redis")?;
        Ok((stats.stock, redis.remaining))
    }

    /// Waits until no order awaits payment and Redis has every expired unit back.
    async fn wait_for_expiry(&self, sku: &SkuId, scenario: &Scenario) -> anyhow::Result<()> {
        let spinner = self.spinner();
        let limit = Duration::from_secs(scenario.payment_window_secs as u64) + self.drain_timeout;
        let started = Instant::now();
        loop {
            let stats = self
                .store
                .sale_stats(sku)
                .await?
                .context("the sale vanished from the database")?;
            let remaining = self.ledger.snapshot(sku).await?.map_or(0, |s| s.remaining);
            spinner.set_message(format!(
                "waiting for the payment window to close: {} orders awaiting payment, {} units expired, {} back in Redis",
                stats.awaiting_payment.orders, stats.expired.units, remaining
            ));
            if stats.awaiting_payment.orders == 0 && remaining == stats.stock {
                spinner.finish_and_clear();
                println!(
                    "{} unpaid orders expired after {:.1} s; their {} units are back on sale",
                    stats.expired.orders,
                    started.elapsed().as_secs_f64(),
                    stats.expired.units
                );
                return Ok(());
            }
            if started.elapsed() > limit {
                spinner.finish_and_clear();
                bail!("unpaid orders did not expire within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Sum of the group's lag over the partitions of `topic` (-1 if the broker cannot tell).
pub async fn total_lag(consumer: &Arc<StreamConsumer>, topic: &str) -> i64 {
    kafka::lag::total_lag(consumer.clone(), topic).await
}

/// Waits for the gateway whose admin port (where `/readyz` is served) is at `admin_url`.
async fn wait_ready(admin_url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if let Ok(response) = client.get(format!("{admin_url}/readyz")).send().await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the gateway did not become ready within 10 s")
}

/// Creates the sale through the admin API at `admin_url`, open from now for an hour, with the
/// scenario's payment window and price.
pub async fn create_sale(
    admin_url: &str,
    secret: &[u8],
    sku: &SkuId,
    scenario: &Scenario,
) -> anyhow::Result<()> {
    let token = gateway::auth::sign(secret, "demo-admin", Some("admin"), 600);
    put_sale_with(
        admin_url,
        &token,
        sku,
        scenario.stock,
        scenario.per_user_limit,
        serde_json::json!({
            "payment_window_secs": scenario.payment_window_secs,
            "price_minor": scenario.price_minor,
            "currency": "EUR",
            "buckets": scenario.buckets,
        }),
    )
    .await
}

/// Puts `sku` on sale through the admin API at `admin_url` with `admin_token`: `stock` units in
/// `buckets` stock buckets, at most `per_user_limit` per buyer, open from a second ago for an
/// hour, with the default payment window, free (its orders are not paid).
pub async fn put_sale(
    admin_url: &str,
    admin_token: &str,
    sku: &SkuId,
    stock: i64,
    per_user_limit: i64,
    buckets: u8,
) -> anyhow::Result<()> {
    put_sale_with(
        admin_url,
        admin_token,
        sku,
        stock,
        per_user_limit,
        serde_json::json!({ "buckets": buckets, "free": true }),
    )
    .await
}

/// [`put_sale`] with `terms` (`payment_window_secs`, `price_minor` and `currency` or `free`,
/// `buckets`) added to the body.
pub(crate) async fn put_sale_with(
    admin_url: &str,
    admin_token: &str,
    sku: &SkuId,
    stock: i64,
    per_user_limit: i64,
    terms: serde_json::Value,
) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    let mut body = serde_json::json!({
        "stock": stock,
        "per_user_limit": per_user_limit,
        "starts_at": now - chrono::Duration::seconds(1),
        "ends_at": now + chrono::Duration::hours(1),
    });
    if let (Some(body), Some(terms)) = (body.as_object_mut(), terms.as_object()) {
        body.extend(terms.clone());
    }
    let response = reqwest::Client::new()
        .put(format!("{admin_url}/v1/admin/sales/{sku}"))
        .bearer_auth(admin_token)
        .json(&body)
        .send()
        .await
        .context("creating the sale")?;
    if !response.status().is_success() {
        bail!(
            "creating the sale answered {}: {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    Ok(())
}
