//! The flash-sale simulator and the all-in-one local stack.
//!
//! `seckill-sim demo` starts the whole pipeline in one process on the embedded defaults, puts a
//! SKU on sale, sends a crowd of buyers at it over HTTP, waits until the worker has drained the
//! queue, and prints a verdict on the invariants. It is what `make demo` runs.

pub mod crowd;
pub mod load;
pub mod stack;
pub mod verdict;

use anyhow::{bail, Context};
use domain::{OrderStatus, SkuId};
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
    /// Distinct buyers.
    pub users: usize,
    /// Requests in all.
    pub requests: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Seed of the request mix.
    pub seed: u64,
    /// Longest wait for the pipeline to drain.
    pub drain_timeout: Duration,
    /// Show progress bars.
    pub progress: bool,
}

/// Runs a whole flash sale against a fresh local stack and returns its verdict.
pub async fn demo(settings: Settings, scenario: &Scenario) -> anyhow::Result<Verdict> {
    let stack = LocalStack::start(settings).await?;
    let result = run_sale(&stack, scenario).await;
    stack.stop().await?;
    result
}

/// Runs a flash sale against a running stack: creates a fresh SKU, sends the crowd, waits for
/// the pipeline to drain and judges the invariants.
pub async fn run_sale(stack: &LocalStack, scenario: &Scenario) -> anyhow::Result<Verdict> {
    let settings = &stack.settings;
    let sku = SkuId::parse(format!("demo-{}", chrono::Utc::now().timestamp_millis()))?;
    let secret = settings.auth.jwt_secret.expose_secret().as_bytes().to_vec();
    wait_ready(&stack.gateway_url()).await?;
    create_sale(&stack.gateway_url(), &secret, &sku, scenario).await?;
    println!(
        "sale {sku}: {} units, limit {} per buyer; {} buyers send {} requests, {} at a time",
        scenario.stock,
        scenario.per_user_limit,
        scenario.users,
        scenario.requests,
        scenario.concurrency
    );
    let plan = crowd::plan(scenario.users, scenario.requests, scenario.seed);
    let target = crowd::Target {
        base_url: stack.gateway_url(),
        sku: sku.to_string(),
        secret,
        concurrency: scenario.concurrency,
    };
    let result = crowd::run(&target, plan, scenario.progress).await;

    let ledger = stock::StockLedger::new(&settings.redis)?;
    let store = store::Store::connect(&settings.database).await?;
    let endpoint = kafka::Endpoint::from_settings(&settings.kafka, None);
    let orders_watch = Arc::new(kafka::consumer(&endpoint, &settings.kafka.worker_group)?);
    let dlq_watch = Arc::new(kafka::consumer(&endpoint, &settings.kafka.replayer_group)?);
    let accepted: HashSet<String> = result
        .answers
        .iter()
        .filter(|a| a.status == 202)
        .filter_map(|a| a.order_id.clone())
        .collect();
    let spinner = if scenario.progress {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    spinner.enable_steady_tick(Duration::from_millis(120));
    let drain_started = Instant::now();
    let (orders_lag, dlq_lag) = loop {
        let rows = store.orders_of(&sku).await?;
        let mut settled: HashSet<&str> = HashSet::with_capacity(rows.len());
        for row in &rows {
            if row.order_status()? != OrderStatus::Pending {
                settled.insert(row.order_id.as_str());
            }
        }
        let waiting = accepted
            .iter()
            .filter(|id| !settled.contains(id.as_str()))
            .count();
        let orders_lag = total_lag(&orders_watch, &settings.kafka.orders_topic).await;
        let dlq_lag = total_lag(&dlq_watch, &settings.kafka.dlq_topic).await;
        // The worker takes written orders out of the outbox a flush interval later.
        let unfinished = ledger.snapshot(&sku).await?.map_or(0, |s| s.unfinished);
        spinner.set_message(format!(
            "draining: {waiting} accepted orders not yet in the database, lag {orders_lag} orders / {dlq_lag} dead letters, {unfinished} in the outbox"
        ));
        if waiting == 0 && orders_lag == 0 && dlq_lag == 0 && unfinished == 0 {
            break (orders_lag, dlq_lag);
        }
        if drain_started.elapsed() > scenario.drain_timeout {
            spinner.finish_and_clear();
            println!("pipeline did not drain within {:?}", scenario.drain_timeout);
            break (orders_lag, dlq_lag);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    spinner.finish_and_clear();
    verdict::judge(Evidence {
        crowd: &result,
        sku: &sku,
        per_user_limit: scenario.per_user_limit,
        store: &store,
        ledger: &ledger,
        orders_lag,
        dlq_lag,
        drain_secs: drain_started.elapsed().as_secs_f64(),
    })
    .await
}

/// Sum of the group's lag over the partitions of `topic` (-1 if the broker cannot tell).
pub async fn total_lag(consumer: &Arc<StreamConsumer>, topic: &str) -> i64 {
    kafka::lag::total_lag(consumer.clone(), topic).await
}

async fn wait_ready(base_url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if let Ok(response) = client.get(format!("{base_url}/readyz")).send().await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the gateway did not become ready within 10 s")
}

/// Creates the sale through the admin API, open from now for an hour.
pub async fn create_sale(
    base_url: &str,
    secret: &[u8],
    sku: &SkuId,
    scenario: &Scenario,
) -> anyhow::Result<()> {
    let token = gateway::auth::sign(secret, "demo-admin", Some("admin"), 600);
    put_sale(
        base_url,
        &token,
        sku,
        scenario.stock,
        scenario.per_user_limit,
    )
    .await
}

/// Puts `sku` on sale through the admin API with `admin_token`: `stock` units, at most
/// `per_user_limit` per buyer, open from a second ago for an hour.
pub async fn put_sale(
    base_url: &str,
    admin_token: &str,
    sku: &SkuId,
    stock: i64,
    per_user_limit: i64,
) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    let response = reqwest::Client::new()
        .put(format!("{base_url}/v1/admin/sales/{sku}"))
        .bearer_auth(admin_token)
        .json(&serde_json::json!({
            "stock": stock,
            "per_user_limit": per_user_limit,
            "starts_at": now - chrono::Duration::seconds(1),
            "ends_at": now + chrono::Duration::hours(1),
        }))
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
