//! `seckill-sim hostile`: honest buyers keep buying while the gateway is attacked, one attack
//! at a time, and their success rate and p99 are compared with a clean run of the same load.
//!
//! The honest load is an open loop of buys at a fixed rate, from many tokens and from many
//! client addresses (connections bound to addresses of 127.0.0.0/8, so the per-address limit
//! sees a crowd, as behind the internet). Each attack comes from one address of its own:
//!
//! - **slow bodies**: connections that send a buy's head whole and its body a byte a second,
//!   with one token, reopened as soon as they are answered;
//! - **`/readyz` flood**: the readiness path hammered on the public port;
//! - **order-status flood**: one token reading its order without pause;
//! - **many tokens, one address**: a thousand accounts buying from one address;
//! - **forged orders**: order messages written straight to the orders topic by a Kafka client
//!   of its own, with no signature.
//!
//! The verdict: under every attack the honest success rate stays within one point of the clean
//! run's and the honest p99 within twice the clean run's plus 10 ms; and each attack gets what
//! the defences promise: slow bodies 408 (or 429 once their address is spent), nothing else;
//! floods nine answers in ten 404 or 429; many accounts on one address no more orders than the
//! address's allowance; forged messages all dead-lettered, none written.

use crate::load::{self, Plan, Report, Target, Until};
use anyhow::Context;
use domain::{IdempotencyKey, OrderId, OrderRequested, Quantity, SkuId, UserId};
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde::Serialize;
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// The run.
#[derive(Debug, Clone)]
pub struct HostilePlan {
    /// The gateway's public base URL (`http://host:port`).
    pub url: String,
    /// The gateway's admin base URL.
    pub admin_url: String,
    /// The secret buyer and admin tokens are signed with.
    pub secret: Vec<u8>,
    /// The brokers, for the forged orders (empty: that attack is left out).
    pub bootstrap_servers: String,
    /// The orders topic.
    pub orders_topic: String,
    /// The order worker's `/metrics` URL, to count what it refused as forged.
    pub worker_metrics: Option<String>,
    /// Honest buys per second.
    pub honest_rate: f64,
    /// Honest buyers (tokens).
    pub honest_buyers: usize,
    /// Client addresses the honest buyers come from.
    pub honest_addresses: usize,
    /// How long each round's honest load runs.
    pub round: Duration,
    /// Requests per second of each flood.
    pub flood_rate: f64,
    /// Connections of the slow-body attack.
    pub slow_connections: usize,
    /// Forged order messages written.
    pub forged: usize,
    /// The gateway's per-address limit, per second (the burst is twice it): what one address
    /// may buy in a round.
    pub per_address_rate: u32,
}

/// One round: the honest load under one attack (or none).
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    /// The attack (`clean` for none).
    pub attack: String,
    /// Honest buys accepted over honest buys sent.
    pub success: f64,
    /// The honest buys' 99th percentile latency, in ms.
    pub p99_ms: f64,
    /// What the attack got, in words.
    pub attacker: String,
    /// Whether the attack got what the defences promise.
    pub contained: bool,
    /// The honest load's report.
    pub honest: Report,
}

/// Every round, and the bounds they are judged by.
#[derive(Debug, Clone, Serialize)]
pub struct HostileReport {
    /// The rounds, the clean one first.
    pub rounds: Vec<Round>,
}

/// How far an attacked round's honest success may fall below the clean one's.
pub const SUCCESS_SLACK: f64 = 0.01;
/// How much an attacked round's honest p99 may grow: twice the clean one's, plus this.
pub const P99_SLACK_MS: f64 = 10.0;

impl HostileReport {
    /// The verdict lines, and whether each holds.
    pub fn verdict(&self) -> Vec<(String, bool)> {
        let Some(clean) = self.rounds.first() else {
            return vec![("a clean round ran".into(), false)];
        };
        let mut lines = vec![(
            format!(
                "clean: honest success {:.1}%, p99 {:.1} ms",
                clean.success * 100.0,
                clean.p99_ms
            ),
            clean.success > 0.99,
        )];
        for round in &self.rounds[1..] {
            let p99_bound = 2.0 * clean.p99_ms + P99_SLACK_MS;
            lines.push((
                format!(
                    "{}: honest success {:.1}% (bound {:.1}%), p99 {:.1} ms (bound {:.1} ms)",
                    round.attack,
                    round.success * 100.0,
                    (clean.success - SUCCESS_SLACK) * 100.0,
                    round.p99_ms,
                    p99_bound
                ),
                round.success >= clean.success - SUCCESS_SLACK && round.p99_ms <= p99_bound,
            ));
            lines.push((
                format!("{}: the attacker got {}", round.attack, round.attacker),
                round.contained,
            ));
        }
        lines
    }

    /// A table for people.
    pub fn render(&self) -> String {
        let mut out = String::from("round                  honest success   honest p99\n");
        for round in &self.rounds {
            out.push_str(&format!(
                "{:<22} {:>13.2}%   {:>7.1} ms\n",
                round.attack,
                round.success * 100.0,
                round.p99_ms
            ));
        }
        out
    }
}

/// The address attack `n` comes from (127.0.0.66 and up): one each.
fn attacker_address(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 66 + n))
}

/// What an attack saw, in words, and whether that is what the defences promise.
type Outcome = (String, bool);

/// Runs the clean round, then one round per attack.
pub async fn run(plan: HostilePlan) -> anyhow::Result<HostileReport> {
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let sku = SkuId::parse(format!("hostile-{}", &run_id[20..]))?;
    let admin = gateway::auth::sign(&plan.secret, "hostile-admin", Some("admin"), 3_600);
    let stock = 10_000_000;
    crate::put_sale_with(
        &plan.admin_url,
        &admin,
        &sku,
        stock,
        1_000,
        json!({"free": true}),
    )
    .await?;
    let address = plan
        .url
        .strip_prefix("http://")
        .context("the gateway URL must be http://")?
        .to_owned();
    let tokens = (0..plan.honest_buyers)
        .map(|i| {
            load::bearer(&gateway::auth::sign(
                &plan.secret,
                &format!("{run_id}-h{i}"),
                None,
                3_600,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let honest = |round: &str| Plan {
        address: address.clone(),
        target: Target::Buy {
            skus: vec![sku.to_string()],
            tokens: tokens.clone(),
            quantity: 1,
        },
        connections: 32,
        rate: Some(plan.honest_rate),
        until: Until::Elapsed(plan.round),
        run_id: format!("{run_id}-{round}"),
        progress: false,
        sources: (0..plan.honest_addresses)
            .map(|i| {
                IpAddr::V4(Ipv4Addr::new(
                    127,
                    0,
                    1 + (i / 250) as u8,
                    1 + (i % 250) as u8,
                ))
            })
            .collect(),
    };
    let mut rounds = Vec::new();
    rounds.push(round("clean", honest("clean"), async { ("nothing".into(), true) }).await?);

    let slow_token = gateway::auth::sign(&plan.secret, &format!("{run_id}-slow"), None, 3_600);
    let lasts = plan.round + Duration::from_secs(1);
    let slow = slow_bodies(
        address.clone(),
        sku.to_string(),
        slow_token,
        plan.slow_connections,
        lasts,
    );
    rounds.push(round("slow bodies", honest("slow"), slow).await?);

    let flood = |path: String, headers: Vec<(HeaderName, HeaderValue)>, from: u8| Plan {
        address: address.clone(),
        target: Target::Get {
            path,
            headers: vec![headers],
        },
        connections: 16,
        rate: Some(plan.flood_rate),
        until: Until::Elapsed(plan.round + Duration::from_millis(500)),
        run_id: format!("{run_id}-flood"),
        progress: false,
        sources: vec![attacker_address(from)],
    };
    let readyz = flood("/readyz".into(), Vec::new(), 1);
    let readyz = async move {
        let report = load::run(readyz).await;
        judge(
            report,
            &["other", "rate_limited"],
            "404 not_found or 429 rate_limited",
        )
    };
    rounds.push(round("/readyz flood", honest("readyz"), readyz).await?);

    let reader = gateway::auth::sign(&plan.secret, &format!("{run_id}-reader"), None, 3_600);
    let order = OrderId::new(&sku, 1);
    let status = flood(
        format!("/v1/orders/{order}"),
        vec![(AUTHORIZATION, load::bearer(&reader)?)],
        2,
    );
    let status = async move {
        let report = load::run(status).await;
        judge(report, &["rate_limited"], "429 rate_limited")
    };
    rounds.push(round("order-status flood", honest("status"), status).await?);

    let accounts = (0..1_000)
        .map(|i| {
            load::bearer(&gateway::auth::sign(
                &plan.secret,
                &format!("{run_id}-m{i}"),
                None,
                3_600,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let many = Plan {
        target: Target::Buy {
            skus: vec![sku.to_string()],
            tokens: accounts,
            quantity: 1,
        },
        ..flood(String::new(), Vec::new(), 3)
    };
    // One address may buy its allowance: the burst, then the rate, for as long as it floods.
    let allowance = f64::from(plan.per_address_rate)
        * (2.0 + (plan.round + Duration::from_millis(500)).as_secs_f64());
    let many = async move {
        let report = load::run(many).await;
        let accepted = report
            .as_ref()
            .ok()
            .and_then(|r| r.outcomes.get("accepted"))
            .map_or(0, |p| p.count);
        let (words, _) = judge(report, &["rate_limited"], "429 rate_limited");
        (
            format!("{words}; its allowance {allowance:.0} orders"),
            accepted as f64 <= allowance * 1.05,
        )
    };
    rounds.push(round("many tokens, 1 address", honest("many"), many).await?);

    if !plan.bootstrap_servers.is_empty() {
        let forged = forge(&plan, &sku);
        rounds.push(round("forged orders", honest("forged"), forged).await?);
    }
    Ok(HostileReport { rounds })
}

/// The honest load `plan` while `attack` runs (started half a second before it).
async fn round(
    name: &str,
    plan: Plan,
    attack: impl std::future::Future<Output = Outcome> + Send + 'static,
) -> anyhow::Result<Round> {
    let attack = tokio::spawn(attack);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let honest = load::run(plan).await?;
    let (attacker, contained) = attack.await.context("the attack's task failed")?;
    let accepted = honest.outcomes.get("accepted").map_or(0, |p| p.count);
    Ok(Round {
        attack: name.to_owned(),
        success: accepted as f64 / honest.requests.max(1) as f64,
        p99_ms: honest.all.p99,
        attacker,
        contained,
        honest,
    })
}

/// What a flood got: its answers by outcome, contained when nine in ten of the answers were
/// one of `expected` (a request whose connection the gateway closed after refusing the one
/// before, `no_answer`, is no answer).
fn judge(report: anyhow::Result<Report>, expected: &[&str], words: &str) -> Outcome {
    match report {
        Err(e) => (format!("no load ({e:#})"), false),
        Ok(report) => {
            let count = |outcome: &str| report.outcomes.get(outcome).map_or(0, |p| p.count);
            let got: u64 = expected.iter().map(|outcome| count(outcome)).sum();
            let closed = count("no_answer");
            let answered = report.requests.saturating_sub(closed);
            let share = got as f64 / answered.max(1) as f64;
            (
                format!(
                    "{got} of {answered} answers {words} ({:.1}%), {} accepted, {closed} requests on connections closed after a refusal",
                    share * 100.0,
                    count("accepted"),
                ),
                share >= 0.9,
            )
        }
    }
}

/// Connections that send a buy's head whole and then its body a byte a second, reopened once
/// answered, until `stop`: how many were answered 408 and how many otherwise.
async fn slow_bodies(
    address: String,
    sku: String,
    token: String,
    connections: usize,
    lasts: Duration,
) -> Outcome {
    let stop = CancellationToken::new();
    let tasks: Vec<_> = (0..connections)
        .map(|i| {
            let (address, sku, token, stop) =
                (address.clone(), sku.clone(), token.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut timed_out, mut limited, mut other) = (0u64, 0u64, 0u64);
                let mut attempt = 0;
                while !stop.is_cancelled() {
                    attempt += 1;
                    let key = format!("slow-{i}-{attempt}");
                    match slow_body(&address, &sku, &token, &key, &stop).await {
                        Some(status) if status.starts_with("HTTP/1.1 408") => timed_out += 1,
                        // Refused at once: a slow client waits before its next try, as it
                        // gains nothing by hurrying.
                        Some(status) if status.starts_with("HTTP/1.1 429") => {
                            limited += 1;
                            tokio::select! {
                                _ = stop.cancelled() => {}
                                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            }
                        }
                        Some(_) => other += 1,
                        None => {}
                    }
                }
                (timed_out, limited, other)
            })
        })
        .collect();
    // The round's honest load runs meanwhile.
    tokio::time::sleep(lasts).await;
    stop.cancel();
    let (mut timed_out, mut limited, mut other) = (0, 0, 0);
    for task in tasks {
        if let Ok((t, l, o)) = task.await {
            timed_out += t;
            limited += l;
            other += o;
        }
    }
    (
        format!(
            "{timed_out} bodies answered 408 request_timeout, {limited} tries refused 429 rate_limited at once, {other} answered otherwise"
        ),
        timed_out > 0 && other == 0,
    )
}

/// One slow buy: the status line it was answered, or `None` when stopped first.
async fn slow_body(
    address: &str,
    sku: &str,
    token: &str,
    key: &str,
    stop: &CancellationToken,
) -> Option<String> {
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket
        .bind(std::net::SocketAddr::new(attacker_address(0), 0))
        .ok()?;
    let remote = tokio::net::lookup_host(address).await.ok()?.next()?;
    let mut connection = socket.connect(remote).await.ok()?;
    let head = format!(
        "POST /v1/sales/{sku}/orders HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Idempotency-Key: {key}\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n{{"
    );
    connection.write_all(head.as_bytes()).await.ok()?;
    let mut answer = vec![0; 512];
    loop {
        tokio::select! {
            _ = stop.cancelled() => return None,
            read = connection.read(&mut answer) => {
                let read = read.ok()?;
                let text = String::from_utf8_lossy(&answer[..read]);
                return Some(text.lines().next().unwrap_or_default().to_owned());
            }
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                if connection.write_all(b" ").await.is_err() {
                    return Some("closed".into());
                }
            }
        }
    }
}

/// Order messages for units of `sku`, in the name of a buyer who never bought, written to the
/// orders topic by a producer of its own with no signature: how many the worker refused as
/// forged (from its metrics) against how many were written.
fn forge(
    plan: &HostilePlan,
    sku: &SkuId,
) -> impl std::future::Future<Output = Outcome> + Send + 'static {
    let (bootstrap, topic, metrics, count, sku) = (
        plan.bootstrap_servers.clone(),
        plan.orders_topic.clone(),
        plan.worker_metrics.clone(),
        plan.forged,
        sku.clone(),
    );
    async move {
        let before = forged_count(metrics.as_deref()).await;
        let producer: FutureProducer = match ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("message.timeout.ms", "5000")
            .create()
        {
            Ok(producer) => producer,
            Err(e) => return (format!("no producer ({e})"), false),
        };
        let mut written = 0;
        for i in 0..count {
            let order = OrderRequested {
                v: domain::ORDER_SCHEMA_VERSION,
                order_id: OrderId::new(&sku, uuid::Uuid::now_v7().as_u128()),
                user_id: UserId::parse("mallory").expect("a user id"),
                sku_id: sku.clone(),
                quantity: Quantity::ONE,
                idempotency_key: IdempotencyKey::parse(format!("forged-{i}")).expect("a key"),
                requested_at: chrono::Utc::now(),
            };
            let payload = order.encode();
            let record: FutureRecord<'_, str, [u8]> =
                FutureRecord::to(&topic).key(sku.as_str()).payload(&payload);
            if producer.send(record, Duration::from_secs(5)).await.is_ok() {
                written += 1;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The worker reads them within its batch wait; give it time before counting.
        let mut refused = 0;
        for _ in 0..100 {
            refused = forged_count(metrics.as_deref())
                .await
                .saturating_sub(before);
            if refused >= written {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (
            format!("{written} forged orders written to the topic, {refused} dead-lettered as forged by the worker"),
            written == count as u64 && refused == written,
        )
    }
}

/// `seckill_worker_forged_messages_total`, summed over its problems, at `metrics` (0 without).
async fn forged_count(metrics: Option<&str>) -> u64 {
    let Some(url) = metrics else { return 0 };
    let Ok(response) = reqwest::get(url).await else {
        return 0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|line| line.starts_with("seckill_worker_forged_messages_total"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
