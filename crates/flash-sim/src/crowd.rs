//! The crowd: a planned mix of buyers' requests, fired concurrently over HTTP, every answer
//! recorded.

use futures::StreamExt;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What kind of request a planned request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A buyer's first order (quantity 1).
    First,
    /// The same request again, same Idempotency-Key (a client retry).
    Retry,
    /// A second order of 1 unit under a new key (fits a limit of 2).
    Second,
    /// An order of 2 more units under a new key (over a limit of 2 once one unit is held).
    OverLimit,
    /// Malformed: must be answered 4xx and reserve nothing.
    Malformed(Malformed),
}

/// The malformed variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Malformed {
    /// No Idempotency-Key header.
    MissingKey,
    /// Quantity 0.
    ZeroQuantity,
    /// Quantity is a string.
    TextQuantity,
    /// Body is not JSON.
    NotJson,
    /// Token signed with another secret.
    BadToken,
    /// SKU with characters the API refuses.
    BadSku,
}

/// One planned request.
#[derive(Debug, Clone)]
pub struct Planned {
    /// Buyer.
    pub user: String,
    /// Idempotency key.
    pub key: String,
    /// What it is.
    pub kind: Kind,
}

/// Builds the plan: one first order per user, then retries, second orders, over-limit orders
/// and malformed requests in fixed shares, shuffled with `seed`.
pub fn plan(users: usize, requests: usize, seed: u64) -> Vec<Planned> {
    plan_named("buyer", users, requests, seed)
}

/// [`plan`] with buyers named `<name>-<n>`.
pub fn plan_named(name: &str, users: usize, requests: usize, seed: u64) -> Vec<Planned> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut plan: Vec<Planned> = (0..users)
        .map(|u| Planned {
            user: format!("{name}-{u}"),
            key: format!("{name}-{u}-order-1"),
            kind: Kind::First,
        })
        .collect();
    let extra = requests.saturating_sub(users);
    let malformed = [
        Malformed::MissingKey,
        Malformed::ZeroQuantity,
        Malformed::TextQuantity,
        Malformed::NotJson,
        Malformed::BadToken,
        Malformed::BadSku,
    ];
    for i in 0..extra {
        let u = rng.usize(..users.max(1));
        let share = i * 10 / extra.max(1);
        let (key, kind) = match share {
            0..=2 => (format!("{name}-{u}-order-1"), Kind::Retry),
            3..=4 => (format!("{name}-{u}-order-2"), Kind::Second),
            5..=7 => (format!("{name}-{u}-order-3"), Kind::OverLimit),
            _ => (
                format!("{name}-{u}-bad-{i}"),
                Kind::Malformed(malformed[i % malformed.len()]),
            ),
        };
        plan.push(Planned {
            user: format!("{name}-{u}"),
            key,
            kind,
        });
    }
    rng.shuffle(&mut plan);
    plan
}

/// One answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The request.
    pub planned: Planned,
    /// HTTP status (0 = no answer).
    pub status: u16,
    /// The error code, or the order id of a 202.
    pub code: Option<String>,
    /// The order id of a 202.
    pub order_id: Option<String>,
    /// Round-trip time.
    pub latency: Duration,
}

/// All answers plus timing.
pub struct CrowdResult {
    /// Every answer.
    pub answers: Vec<Answer>,
    /// Wall time of the crowd.
    pub elapsed: Duration,
    /// Latencies in microseconds.
    pub latency: Histogram<u64>,
}

impl CrowdResult {
    /// Answers per second.
    pub fn throughput(&self) -> f64 {
        self.answers.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Count of answers per (status, code).
    pub fn by_code(&self) -> BTreeMap<(u16, String), usize> {
        let mut counts = BTreeMap::new();
        for answer in &self.answers {
            let code = answer.code.clone().unwrap_or_else(|| "-".into());
            *counts.entry((answer.status, code)).or_insert(0) += 1;
        }
        counts
    }
}

/// Where and how the crowd buys.
pub struct Target {
    /// Gateway base URL.
    pub base_url: String,
    /// The SKU on sale.
    pub sku: String,
    /// Secret to sign buyer tokens with.
    pub secret: Vec<u8>,
    /// Requests in flight at once.
    pub concurrency: usize,
}

/// Sends every planned request, `concurrency` at a time, with a progress bar.
pub async fn run(target: &Target, plan: Vec<Planned>, progress: bool) -> CrowdResult {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(target.concurrency)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a plain HTTP client builds");
    let bar = if progress {
        let bar = ProgressBar::new(plan.len() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "  buyers {bar:40.cyan/blue} {pos}/{len} requests  {per_sec}  eta {eta}",
            )
            .expect("valid template"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let started = Instant::now();
    let answers: Vec<Answer> = futures::stream::iter(plan)
        .map(|planned| {
            let client = client.clone();
            let bar = bar.clone();
            async move {
                let answer = send(&client, target, planned).await;
                bar.inc(1);
                answer
            }
        })
        .buffer_unordered(target.concurrency.max(1))
        .collect()
        .await;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let mut latency = Histogram::<u64>::new(3).expect("valid histogram");
    for answer in &answers {
        let _ = latency.record(answer.latency.as_micros() as u64);
    }
    CrowdResult {
        answers,
        elapsed,
        latency,
    }
}

async fn send(client: &reqwest::Client, target: &Target, planned: Planned) -> Answer {
    let token = match planned.kind {
        Kind::Malformed(Malformed::BadToken) => {
            gateway::auth::sign(b"not-the-gateway-secret-at-all", &planned.user, None, 600)
        }
        _ => gateway::auth::sign(&target.secret, &planned.user, None, 600),
    };
    let sku = match planned.kind {
        Kind::Malformed(Malformed::BadSku) => "bad%20sku%7B%7D".to_owned(),
        _ => target.sku.clone(),
    };
    let body: &str = match planned.kind {
        Kind::OverLimit => r#"{"quantity": 2}"#,
        Kind::Malformed(Malformed::ZeroQuantity) => r#"{"quantity": 0}"#,
        Kind::Malformed(Malformed::TextQuantity) => r#"{"quantity": "lots"}"#,
        Kind::Malformed(Malformed::NotJson) => "quantity=1",
        _ => r#"{"quantity": 1}"#,
    };
    let mut request = client
        .post(format!("{}/v1/sales/{sku}/orders", target.base_url))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_owned());
    if planned.kind != Kind::Malformed(Malformed::MissingKey) {
        request = request.header("Idempotency-Key", &planned.key);
    }
    let started = Instant::now();
    let response = request.send().await;
    let (status, json) = match response {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.ok())
        }
        Err(_) => (0, None),
    };
    let latency = started.elapsed();
    let order_id = json
        .as_ref()
        .and_then(|j| j.get("order_id"))
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let code = json
        .as_ref()
        .and_then(|j| j.get("code"))
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .or_else(|| order_id.as_ref().map(|_| "accepted".to_owned()));
    Answer {
        planned,
        status,
        code,
        order_id,
        latency,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_has_the_requested_size_and_one_first_order_per_user() {
        let plan = plan(100, 250, 7);
        assert_eq!(plan.len(), 250);
        assert_eq!(plan.iter().filter(|p| p.kind == Kind::First).count(), 100);
        assert!(plan.iter().any(|p| p.kind == Kind::Retry));
        assert!(plan.iter().any(|p| matches!(p.kind, Kind::Malformed(_))));
    }
}
