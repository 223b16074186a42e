//! `seckill-sim load`: a load generator for any seckill gateway, cheap per request so that what
//! it measures is the gateway and not itself.
//!
//! - Tokens are made before the run (signed with the gateway's secret, or read from a file
//!   for a deployed system), the request heads are built from them, the body is fixed bytes.
//! - Each connection is one HTTP/1.1 keep-alive connection (hyper's client connection, no
//!   pool), sending one request after the other.
//! - **Closed loop** (no rate): every connection sends as fast as answers come; latency is
//!   from send to answer.
//! - **Open loop** (`rate`): request *i* is due at `start + i / rate`, whatever the answers do.
//!   Its latency is measured from that due time, so a gateway that falls behind shows its
//!   queueing in the percentiles instead of slowing the generator down (no coordinated
//!   omission). Requests due while every connection is busy wait, and that wait counts.
//! - Every answer is classified (202, 409 `sold_out`, 409 `limit_exceeded`, 429, 503, other
//!   status, no answer) and recorded in one HdrHistogram per outcome.

use anyhow::{bail, Context};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// What to send.
#[derive(Debug, Clone)]
pub enum Target {
    /// `POST /v1/sales/{sku}/orders` with the buyers' tokens, a new Idempotency-Key per request,
    /// spread round-robin over the SKUs.
    Buy {
        /// The SKUs on sale.
        skus: Vec<String>,
        /// One `Bearer …` header value per buyer.
        tokens: Vec<HeaderValue>,
        /// Units per order.
        quantity: u32,
    },
    /// `GET path` with headers (none: a ceiling, the gateway's trivial handler).
    Get {
        /// The path, e.g. `/healthz`.
        path: String,
        /// Sets of headers, request `i` sending set `i % len` (a waiting room's polls: each
        /// buyer's place token), made once so that sending them costs a clone; empty: none.
        headers: Vec<Vec<(HeaderName, HeaderValue)>>,
    },
}

/// When a load run stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Until {
    /// After this many requests.
    Requests(u64),
    /// After this long.
    Elapsed(Duration),
    /// After this many requests or this long, whichever comes first.
    First(u64, Duration),
}

impl Until {
    /// The number of requests the run stops after, if any.
    pub fn requests(self) -> Option<u64> {
        match self {
            Until::Requests(n) | Until::First(n, _) => Some(n),
            Until::Elapsed(_) => None,
        }
    }

    /// How long the run lasts at most, if it is bounded in time.
    pub fn duration(self) -> Option<Duration> {
        match self {
            Until::Elapsed(d) | Until::First(_, d) => Some(d),
            Until::Requests(_) => None,
        }
    }
}

/// How much and how fast.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `host:port` of the gateway (HTTP).
    pub address: String,
    /// What to send.
    pub target: Target,
    /// Open connections.
    pub connections: usize,
    /// Requests per second, open loop: requests fall due at this rate whatever the answers do,
    /// and latency counts from the due time, so queueing is not hidden. `None`: closed loop,
    /// each connection sends its next request once the last is answered.
    pub rate: Option<f64>,
    /// When to stop.
    pub until: Until,
    /// A prefix of the Idempotency-Keys, unique per run, so that a run's buys are never taken
    /// for the retries of an earlier run's.
    pub run_id: String,
    /// Show progress.
    pub progress: bool,
    /// The local addresses the connections come from, connection `i` from `sources[i % len]`
    /// (on loopback any of 127.0.0.0/8: a crowd of client addresses on one machine); empty:
    /// the system's choice.
    pub sources: Vec<std::net::IpAddr>,
}

/// The outcome classes of answers.
pub const OUTCOMES: [&str; 8] = [
    "accepted",
    "sold_out",
    "limit_exceeded",
    "rate_limited",
    "unavailable",
    "ok",
    "other",
    "no_answer",
];

/// Latency percentiles of one outcome, in ms.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    /// Answers of this outcome.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest.
    pub max: f64,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Requests sent (answered or not).
    pub requests: u64,
    /// Wall time from the first due request to the last answer, in s.
    pub elapsed_secs: f64,
    /// Answers (of any outcome but `no_answer`) per second.
    pub throughput: f64,
    /// Offered rate (open loop), requests per second.
    pub offered_rate: Option<f64>,
    /// Connections.
    pub connections: usize,
    /// The SKUs bought (none for a GET load).
    pub skus: Vec<String>,
    /// Percentiles over every answer.
    pub all: Percentiles,
    /// Percentiles per outcome (only the outcomes that occurred).
    pub outcomes: BTreeMap<String, Percentiles>,
}

impl Report {
    /// `200` answers per second.
    pub fn ok_per_sec(&self) -> f64 {
        let ok = self.outcomes.get("ok").map_or(0, |p| p.count);
        ok as f64 / self.elapsed_secs.max(1e-9)
    }

    /// A table for people.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{} requests in {:.2} s over {} connections: {:.0} answers/s{}\n",
            self.requests,
            self.elapsed_secs,
            self.connections,
            self.throughput,
            self.offered_rate
                .map(|r| format!(" (offered {r:.0}/s, latency from the due time)"))
                .unwrap_or_default()
        );
        out.push_str(&format!(
            "{:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            "outcome", "count", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
        ));
        for (name, p) in self
            .outcomes
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .chain([("all", &self.all)])
        {
            out.push_str(&format!(
                "{:<16} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}\n",
                name, p.count, p.p50, p.p90, p.p99, p.p999, p.max
            ));
        }
        out
    }
}

struct Shared {
    plan: Plan,
    next: AtomicU64,
    started: Instant,
    deadline: Option<Instant>,
    histograms: Mutex<Vec<Histogram<u64>>>,
    bar: ProgressBar,
}

/// The `Authorization` header value of a buyer's token.
pub fn bearer(token: &str) -> anyhow::Result<HeaderValue> {
    HeaderValue::from_str(&format!("Bearer {token}")).context("a token is not a header value")
}

/// Runs the plan and reports.
pub async fn run(plan: Plan) -> anyhow::Result<Report> {
    if plan
        .rate
        .is_some_and(|rate| !(rate.is_finite() && rate > 0.0))
    {
        bail!("the rate must be a positive number of requests per second");
    }
    if let Target::Buy { skus, tokens, .. } = &plan.target {
        if skus.is_empty() || tokens.is_empty() {
            bail!("a buy load needs at least one SKU and one buyer token");
        }
    }
    // Every connection is open before the clock starts.
    let mut connections = Vec::with_capacity(plan.connections);
    for i in 0..plan.connections.max(1) {
        let source = plan.sources.get(i % plan.sources.len().max(1)).copied();
        connections.push((connect(&plan.address, source).await?, source));
    }
    let bar = if plan.progress {
        let bar = match plan.until.requests() {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::new_spinner(),
        };
        bar.set_style(
            ProgressStyle::with_template(
                "  load {bar:40.cyan/blue} {pos} requests  {per_sec}  {elapsed}",
            )
            .context("progress template")?,
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let started = Instant::now();
    let shared = Arc::new(Shared {
        deadline: plan.until.duration().map(|d| started + d),
        next: AtomicU64::new(0),
        started,
        histograms: Mutex::new(
            OUTCOMES
                .iter()
                .map(|_| Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds"))
                .collect(),
        ),
        bar,
        plan,
    });
    let tasks: Vec<_> = connections
        .into_iter()
        .map(|(sender, source)| tokio::spawn(drive(shared.clone(), sender, source)))
        .collect();
    for task in tasks {
        task.await.context("a connection task failed")??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    shared.bar.finish_and_clear();
    let histograms = shared
        .histograms
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let mut all = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("valid bounds");
    let mut outcomes = BTreeMap::new();
    for (name, histogram) in OUTCOMES.iter().zip(histograms.iter()) {
        if !histogram.is_empty() {
            all.add(histogram).expect("same bounds");
            outcomes.insert((*name).to_owned(), percentiles(histogram));
        }
    }
    // A request that got no answer (its connection failed) is not counted as an answer.
    let answered = all.len() - outcomes.get("no_answer").map_or(0, |p| p.count);
    Ok(Report {
        requests: all.len(),
        elapsed_secs: elapsed,
        throughput: answered as f64 / elapsed.max(1e-9),
        offered_rate: shared.plan.rate,
        connections: shared.plan.connections.max(1),
        skus: match &shared.plan.target {
            Target::Buy { skus, .. } => skus.clone(),
            Target::Get { .. } => Vec::new(),
        },
        all: percentiles(&all),
        outcomes,
    })
}

fn percentiles(histogram: &Histogram<u64>) -> Percentiles {
    let ms = |us: u64| us as f64 / 1000.0;
    Percentiles {
        count: histogram.len(),
        p50: ms(histogram.value_at_quantile(0.5)),
        p90: ms(histogram.value_at_quantile(0.9)),
        p99: ms(histogram.value_at_quantile(0.99)),
        p999: ms(histogram.value_at_quantile(0.999)),
        max: ms(histogram.max()),
    }
}

/// One HTTP/1.1 connection's request sender.
pub type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// A connection to `address`, from `source` when given.
pub async fn connect(address: &str, source: Option<std::net::IpAddr>) -> anyhow::Result<Sender> {
    let stream = match source {
        None => TcpStream::connect(address).await,
        Some(source) => {
            let remote = tokio::net::lookup_host(address)
                .await?
                .next()
                .with_context(|| format!("{address} resolves to no address"))?;
            let socket = match remote {
                std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
            };
            socket.bind(std::net::SocketAddr::new(source, 0))?;
            socket.connect(remote).await
        }
    }
    .with_context(|| format!("cannot connect to {address}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake")?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes; a closed connection shows up
        // as a failed send, which reconnects.
        let _ = connection.await;
    });
    Ok(sender)
}

/// One connection's loop: take the next request number, wait for its due time (open loop),
/// send, classify, record.
async fn drive(
    shared: Arc<Shared>,
    mut sender: Sender,
    source: Option<std::net::IpAddr>,
) -> anyhow::Result<()> {
    let plan = &shared.plan;
    let host = HeaderValue::from_str(&plan.address).context("address as a Host header")?;
    let body = Bytes::from_static(b"{\"quantity\":1}");
    let quantity_body = match &plan.target {
        Target::Buy { quantity, .. } if *quantity != 1 => {
            Bytes::from(format!("{{\"quantity\":{quantity}}}"))
        }
        _ => body,
    };
    let mut local: Vec<Histogram<u64>> = OUTCOMES
        .iter()
        .map(|_| Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds"))
        .collect();
    loop {
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        if plan.until.requests().is_some_and(|n| i >= n) {
            break;
        }
        let due = match plan.rate {
            Some(rate) => {
                let due = shared.started + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                due
            }
            None => Instant::now(),
        };
        if shared.deadline.is_some_and(|deadline| due >= deadline) {
            break;
        }
        let request = match &plan.target {
            Target::Buy { skus, tokens, .. } => Request::builder()
                .method(Method::POST)
                .uri(format!(
                    "/v1/sales/{}/orders",
                    skus[(i % skus.len() as u64) as usize]
                ))
                .header(HOST, host.clone())
                .header(
                    AUTHORIZATION,
                    tokens[(i % tokens.len() as u64) as usize].clone(),
                )
                .header("idempotency-key", format!("{}-{i}", plan.run_id))
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(quantity_body.clone())),
            Target::Get { path, headers } => headers
                .get((i % headers.len().max(1) as u64) as usize)
                .into_iter()
                .flatten()
                .fold(
                    Request::builder()
                        .method(Method::GET)
                        .uri(path.as_str())
                        .header(HOST, host.clone()),
                    |request, (name, value)| request.header(name.clone(), value.clone()),
                )
                .body(Full::new(Bytes::new())),
        }
        .context("building a request")?;
        let outcome = match send(&mut sender, request).await {
            Some(outcome) => outcome,
            None => {
                // The connection is gone: count the request unanswered and open a new one.
                if let Ok(fresh) = connect(&plan.address, source).await {
                    sender = fresh;
                }
                OUTCOMES.len() - 1
            }
        };
        let micros = due.elapsed().as_micros().max(1) as u64;
        let _ = local[outcome].record(micros.min(120_000_000));
        shared.bar.inc(1);
    }
    let mut histograms = shared
        .histograms
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    for (total, mine) in histograms.iter_mut().zip(&local) {
        total.add(mine).expect("same bounds");
    }
    Ok(())
}

/// Sends one request and classifies the answer (an index into [`OUTCOMES`]); `None` when the
/// connection failed.
async fn send(sender: &mut Sender, request: Request<Full<Bytes>>) -> Option<usize> {
    sender.ready().await.ok()?;
    let response = sender.send_request(request).await.ok()?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.ok()?.to_bytes();
    Some(classify(status, &body))
}

/// The outcome of an answer: an index into [`OUTCOMES`].
pub fn classify(status: u16, body: &[u8]) -> usize {
    let has = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    match status {
        202 => 0,
        409 if has(b"\"sold_out\"") => 1,
        409 if has(b"\"limit_exceeded\"") => 2,
        429 => 3,
        503 => 4,
        200 => 5,
        _ => 6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_by_status_and_code() {
        let outcome = |status, body: &str| OUTCOMES[classify(status, body.as_bytes())];
        assert_eq!(outcome(202, r#"{"order_id":"x"}"#), "accepted");
        assert_eq!(outcome(409, r#"{"code":"sold_out"}"#), "sold_out");
        assert_eq!(
            outcome(409, r#"{"code":"limit_exceeded"}"#),
            "limit_exceeded"
        );
        assert_eq!(outcome(409, r#"{"code":"request_in_progress"}"#), "other");
        assert_eq!(outcome(429, ""), "rate_limited");
        assert_eq!(outcome(503, r#"{"code":"overloaded"}"#), "unavailable");
        assert_eq!(outcome(200, "ok"), "ok");
        assert_eq!(outcome(500, ""), "other");
    }
}
