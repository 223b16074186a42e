//! `seckill-sim room`: a crowd of polite buyers and greedy clients at one scarce sale, with the
//! sale's waiting room or with load shedding alone, and what came of it: who got the units
//! (fairness), in which order buyers were admitted, whether an admitted buyer was ever shed, how
//! fast the sold-out news reached the line, how good the wait estimates were, and what a poll
//! costs against the `/healthz` ceiling with the same generator.
//!
//! A polite buyer joins once, waits in held polls (`wait=true`) and buys once admitted (after a
//! `503`, it waits the `Retry-After`). A greedy client is one buyer on several connections that
//! never pauses: without a room it retries its buy at once on every connection; with one it polls
//! without pause on every connection and buys the moment a poll admits it.

use crate::load;
use anyhow::Context;
use domain::SkuId;
use reqwest::Client;
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The crowd and the sale.
#[derive(Debug, Clone)]
pub struct RoomPlan {
    /// The gateway's public base URL (`http://host:port`).
    pub url: String,
    /// The gateway's admin base URL.
    pub admin_url: String,
    /// The secret buyer and admin tokens are signed with.
    pub secret: Vec<u8>,
    /// Units on sale (one per buyer).
    pub stock: i64,
    /// Polite buyers.
    pub polite: usize,
    /// Greedy clients (one buyer each).
    pub greedy: usize,
    /// Connections of each greedy client.
    pub greedy_connections: usize,
    /// The sale's waiting room (the admin API's `admission`), or `None`: load shedding alone.
    pub admission: Option<Value>,
    /// How long before the opening the crowd joins (a `random_at_open` room's pre-queue), or
    /// zero: the sale opens as the crowd arrives.
    pub pre_queue: Duration,
    /// Between two polite buyers' arrivals (zero: all at once).
    pub stagger: Duration,
    /// Longest the crowd is given.
    pub timeout: Duration,
    /// Wait for the pipeline to write every order, then check the sale (needs a worker).
    pub check_sale: bool,
    /// Seconds of each `/healthz` and poll round of the polling-cost measurement (0: not
    /// measured).
    pub poll_cost_secs: f64,
    /// Buyers whose polls the polling-cost measurement sends (each within its pace).
    pub poll_cost_buyers: usize,
}

/// What one buyer saw.
#[derive(Debug, Clone, Default)]
struct Buyer {
    greedy: bool,
    bought: bool,
    /// The join's answer came (from the crowd's start).
    joined_at: Option<Duration>,
    /// The wait estimated at the join.
    estimate: Option<f64>,
    /// First admitted.
    admitted_at: Option<Duration>,
    /// The 202 came.
    bought_at: Option<Duration>,
    /// Told `sold_out` by a poll.
    told_sold_out_at: Option<Duration>,
    /// 503s answered to its buys while it held a ticket.
    shed_admitted: u64,
    /// 503s answered to its buys in all.
    shed: u64,
    /// Its ticket expired before it bought.
    expired: bool,
    /// The poll interval it was told (waiting).
    poll_after_ms: Option<u64>,
}

/// What came of a crowd.
#[derive(Debug, Clone, Serialize)]
pub struct RoomReport {
    /// With a waiting room (its mode) or `shedding`.
    pub door: String,
    /// Polite buyers and greedy clients.
    pub buyers: (usize, usize),
    /// Units bought by polite buyers and by greedy clients.
    pub units: (usize, usize),
    /// The greedy clients' share of the units over their share of the buyers (1: fair).
    pub fairness: f64,
    /// The standard deviation of `fairness` when the units go to buyers drawn at random (a fair
    /// draw's own spread: hypergeometric).
    pub fairness_draw_sd: f64,
    /// Spearman's rank correlation of join order and admission order (rooms only).
    pub rank_correlation: Option<f64>,
    /// Buyers admitted, and 503 answers to buys carrying a ticket.
    pub admitted: usize,
    /// 503 answers to buys that carried a ticket.
    pub admitted_shed: u64,
    /// 503 answers in all.
    pub shed: u64,
    /// Admitted buyers whose ticket expired unused.
    pub expired: usize,
    /// Admitted buyers who neither bought nor expired (told sold out after admission).
    pub admitted_unserved: usize,
    /// From the last unit bought to the last waiting buyer told `sold_out`, in ms.
    pub sold_out_news_ms: Option<f64>,
    /// Waiting buyers told `sold_out`.
    pub told_sold_out: usize,
    /// The median poll interval the room told waiting buyers, in ms.
    pub poll_interval_ms: Option<f64>,
    /// Median |actual wait − wait estimated at the join|, in seconds.
    pub estimate_error_secs: Option<f64>,
    /// Median actual wait, in seconds.
    pub wait_secs: Option<f64>,
    /// Poll answers per second and `/healthz` answers per second, same generator, same run
    /// (medians of three interleaved rounds).
    pub poll_cost: Option<(f64, f64)>,
    /// Seconds the crowd took.
    pub elapsed_secs: f64,
    /// The sale once the pipeline drained (when the run waited for it).
    pub sale: Option<SaleCheck>,
}

/// A sale's figures once every accepted order is written, from the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct SaleCheck {
    /// Total units.
    pub initial: i64,
    /// Units Redis can still reserve.
    pub remaining: i64,
    /// Units held by written orders (awaiting payment or paid).
    pub held: i64,
    /// Orders written.
    pub orders: i64,
    /// Units the crowd was answered 202 for.
    pub accepted: usize,
}

impl SaleCheck {
    /// No oversell, no loss or duplicate (one row per 202), stock conserved.
    pub fn holds(&self) -> bool {
        self.held <= self.initial
            && self.orders == self.accepted as i64
            && self.remaining + self.held == self.initial
    }
}

impl RoomReport {
    /// Polls per second over `/healthz` per second.
    pub fn poll_ratio(&self) -> Option<f64> {
        self.poll_cost.map(|(polls, healthz)| polls / healthz)
    }

    /// The report for people.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let opt =
            |v: Option<f64>, unit: &str| v.map_or("n/a".to_owned(), |v| format!("{v:.3}{unit}"));
        out += &format!("door                 {}\n", self.door);
        out += &format!(
            "buyers               {} polite, {} greedy\n",
            self.buyers.0, self.buyers.1
        );
        out += &format!(
            "units                {} polite, {} greedy\n",
            self.units.0, self.units.1
        );
        out += &format!(
            "fairness             {:.3} (greedy share of units / share of buyers; 1 is fair, a random draw spreads ±{:.3})\n",
            self.fairness, self.fairness_draw_sd
        );
        out += &format!("rank correlation     {}\n", opt(self.rank_correlation, ""));
        out += &format!(
            "admitted             {} ({} shed with a ticket, {} expired, {} told sold out)\n",
            self.admitted, self.admitted_shed, self.expired, self.admitted_unserved
        );
        out += &format!("503 answers          {}\n", self.shed);
        out += &format!(
            "sold-out news        {} after the last unit, {} buyers told (poll interval {})\n",
            opt(self.sold_out_news_ms, " ms"),
            self.told_sold_out,
            opt(self.poll_interval_ms, " ms")
        );
        out += &format!(
            "wait                 median {}, estimate off by {} (median)\n",
            opt(self.wait_secs, " s"),
            opt(self.estimate_error_secs, " s")
        );
        if let Some((polls, healthz)) = self.poll_cost {
            out += &format!(
                "polling cost         {polls:.0} polls/s vs {healthz:.0} /healthz/s ({:.2})\n",
                polls / healthz
            );
        }
        out += &format!("elapsed              {:.1} s\n", self.elapsed_secs);
        if let Some(sale) = &self.sale {
            out += &format!(
                "sale                 {} of {} units held by {} orders for {} accepted, {} left in Redis\n",
                sale.held, sale.initial, sale.orders, sale.accepted, sale.remaining
            );
        }
        out
    }

    /// The verdict lines of a waiting room's run (`shedding`: the same crowd without it): each
    /// a claim and whether it holds.
    pub fn verdict(&self, shedding: Option<&RoomReport>) -> Vec<(String, bool)> {
        let mut lines = Vec::new();
        if let Some(before) = shedding {
            lines.push((
                format!(
                    "fairness: greedy share of units over share of buyers {:.2} with the room (a random draw: 1 ± {:.2}; shedding only: {:.2}); at most 1.1",
                    self.fairness, self.fairness_draw_sd, before.fairness
                ),
                self.fairness <= 1.1,
            ));
        }
        lines.push((
            format!(
                "every admitted buyer served or expired: {} admitted, {} bought, {} expired, {} told sold out, {} shed with a ticket",
                self.admitted,
                self.units.0 + self.units.1,
                self.expired,
                self.admitted_unserved,
                self.admitted_shed
            ),
            self.admitted_shed == 0,
        ));
        let waiting = self.buyers.0 + self.buyers.1 - self.admitted;
        let news_ok = self
            .sold_out_news_ms
            .zip(self.poll_interval_ms)
            .is_some_and(|(news, interval)| news <= interval);
        lines.push((
            format!(
                "sold out announced: {} of {} waiting buyers told, the last {} ms after the last unit (poll interval {} ms)",
                self.told_sold_out,
                waiting,
                self.sold_out_news_ms.map_or("n/a".into(), |ms| format!("{ms:.0}")),
                self.poll_interval_ms.map_or("n/a".into(), |ms| format!("{ms:.0}")),
            ),
            self.told_sold_out == waiting && (waiting == 0 || news_ok),
        ));
        if let Some(sale) = &self.sale {
            lines.push((
                format!(
                    "invariants: {} units held of {} (no oversell), {} orders for {} accepted (none lost or doubled), {} left + {} held = {} (stock conserved)",
                    sale.held, sale.initial, sale.orders, sale.accepted, sale.remaining, sale.held, sale.initial
                ),
                sale.holds(),
            ));
        }
        lines
    }
}

/// Runs the crowd of `plan` against a fresh sale and reports.
pub async fn run(plan: RoomPlan) -> anyhow::Result<RoomReport> {
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let sku = SkuId::parse(format!("room-{}", &run_id[20..]))?;
    let admin = gateway::auth::sign(&plan.secret, "room-admin", Some("admin"), 3_600);
    let opens_in = plan.pre_queue;
    let starts = chrono::Utc::now() + chrono::Duration::from_std(opens_in)?;
    let mut terms = json!({
        "starts_at": starts - chrono::Duration::milliseconds(if opens_in.is_zero() { 1000 } else { 0 }),
        "free": true,
    });
    if let Some(admission) = &plan.admission {
        let mut admission = admission.clone();
        if !opens_in.is_zero() {
            admission["pre_queue_secs"] = json!(opens_in.as_secs() + 60);
        }
        terms["admission"] = admission;
    }
    crate::put_sale_with(&plan.admin_url, &admin, &sku, plan.stock, 1, terms).await?;
    let client = Client::builder()
        .pool_max_idle_per_host(4096)
        .timeout(Duration::from_secs(60))
        .build()?;
    let started = Instant::now();
    let total = plan.polite + plan.greedy;
    let mut tasks = Vec::with_capacity(total);
    let plan = Arc::new(plan);
    // Greedy clients spread evenly through the arrivals.
    for i in 0..total {
        let greedy = is_greedy(i, plan.polite, plan.greedy);
        let key = format!("{run_id}-{i}");
        let token = gateway::auth::sign(&plan.secret, &key, None, 3_600);
        let (client, plan, sku) = (client.clone(), plan.clone(), sku.clone());
        if !greedy && !plan.stagger.is_zero() {
            tokio::time::sleep(plan.stagger).await;
        }
        tasks.push(tokio::spawn(async move {
            let buyer = Buyer {
                greedy,
                ..Buyer::default()
            };
            let session = Session {
                client,
                plan,
                sku,
                token,
                key,
                started,
            };
            let work = session.shop(buyer);
            tokio::time::timeout(session.plan.timeout, work).await
        }));
    }
    let mut buyers = Vec::with_capacity(total);
    for task in tasks {
        match task.await.context("a buyer panicked")? {
            Ok(buyer) => buyers.push(buyer?),
            Err(_) => anyhow::bail!("the crowd did not finish within {:?}", plan.timeout),
        }
    }
    let elapsed = started.elapsed();
    let poll_cost = match plan.poll_cost_secs > 0.0 && plan.admission.is_some() {
        true => Some(poll_cost(&plan, &client).await?),
        false => None,
    };
    let mut report = report(&plan, &buyers, elapsed, poll_cost);
    if plan.check_sale {
        report.sale = Some(check_sale(&plan, &client, &admin, &sku, report.units).await?);
    }
    Ok(report)
}

/// Waits until every accepted order of `sku` is written, then reads the sale's figures.
async fn check_sale(
    plan: &RoomPlan,
    client: &Client,
    admin: &str,
    sku: &SkuId,
    (polite, greedy): (usize, usize),
) -> anyhow::Result<SaleCheck> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let view: Value = client
            .get(format!("{}/v1/admin/sales/{sku}", plan.admin_url))
            .bearer_auth(admin)
            .send()
            .await?
            .json()
            .await?;
        let database = &view["database"];
        let number = |v: &Value| v.as_i64().unwrap_or(0);
        let orders = ["awaiting_payment", "paid", "expired", "failed"]
            .iter()
            .map(|s| number(&database[s]["orders"]))
            .sum::<i64>();
        let accepted = polite + greedy;
        let drained = view["in_flight_units"] == 0 && view["redis"]["unfinished"] == 0;
        if (drained && orders >= accepted as i64) || Instant::now() > deadline {
            return Ok(SaleCheck {
                initial: number(&database["initial_stock"]),
                remaining: number(&view["redis"]["remaining"]),
                held: number(&database["awaiting_payment"]["units"])
                    + number(&database["paid"]["units"]),
                orders,
                accepted,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether arrival `i` of `polite + greedy` is a greedy client: spread evenly through the crowd.
fn is_greedy(i: usize, polite: usize, greedy: usize) -> bool {
    let total = polite + greedy;
    greedy > 0 && (i * greedy) / total != ((i + 1) * greedy) / total
}

struct Session {
    client: Client,
    plan: Arc<RoomPlan>,
    sku: SkuId,
    token: String,
    key: String,
    started: Instant,
}

/// The answer of one request: status, body, `Retry-After`.
struct Answer {
    status: u16,
    body: Value,
    retry_after: Option<u64>,
}

/// Sends `request`: its status, body and `Retry-After`.
async fn answer_of(request: reqwest::RequestBuilder) -> anyhow::Result<Answer> {
    let response = request.send().await?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = response.json().await.unwrap_or(Value::Null);
    Ok(Answer {
        status,
        body,
        retry_after,
    })
}

impl Session {
    async fn buy(&self, ticket: Option<&str>) -> anyhow::Result<Answer> {
        let url = format!("{}/v1/sales/{}/orders", self.plan.url, self.sku);
        let mut request = self
            .client
            .post(url)
            .header("Idempotency-Key", &self.key)
            .json(&json!({}));
        if let Some(ticket) = ticket {
            request = request.header("Admission-Ticket", ticket);
        }
        self.send(request).await
    }

    async fn poll(&self, place: &str, wait: bool) -> anyhow::Result<Answer> {
        let url = format!("{}/v1/sales/{}/queue?wait={wait}", self.plan.url, self.sku);
        self.send(self.client.get(url).header("Place-Token", place))
            .await
    }

    /// Sends `request` with the buyer's token: the answer.
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Answer> {
        answer_of(request.bearer_auth(&self.token)).await
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    async fn shop(&self, buyer: Buyer) -> anyhow::Result<Buyer> {
        match self.plan.admission.is_some() {
            true => self.queue(buyer).await,
            false => self.rush(buyer).await,
        }
    }

    /// Without a room: buy until bought or sold out; polite buyers honour `Retry-After`,
    /// greedy clients retry at once on every connection.
    async fn rush(&self, mut buyer: Buyer) -> anyhow::Result<Buyer> {
        let connections = if buyer.greedy {
            self.plan.greedy_connections.max(1)
        } else {
            1
        };
        let attempts = (0..connections).map(|_| async {
            let mut shed = 0;
            loop {
                let answer = self.buy(None).await?;
                match answer.status {
                    202 => return anyhow::Ok((true, shed, Some(self.now()))),
                    503 | 429 => {
                        shed += u64::from(answer.status == 503);
                        if !buyer.greedy {
                            let wait = answer.retry_after.unwrap_or(1);
                            tokio::time::sleep(Duration::from_secs(wait)).await;
                        }
                    }
                    409 if answer.body["code"] == "request_in_progress" => {}
                    _ => return Ok((false, shed, None)),
                }
            }
        });
        let results = futures::future::join_all(attempts).await;
        for result in results {
            let (bought, shed, at) = result?;
            buyer.bought |= bought;
            buyer.shed += shed;
            if at.is_some() && buyer.bought_at.is_none() {
                buyer.bought_at = at;
            }
        }
        Ok(buyer)
    }

    /// With a room: join, wait (held polls, or polls without pause for a greedy client), buy
    /// with the ticket.
    async fn queue(&self, mut buyer: Buyer) -> anyhow::Result<Buyer> {
        let url = format!("{}/v1/sales/{}/queue", self.plan.url, self.sku);
        let joined = loop {
            let answer = self.send(self.client.post(&url)).await?;
            match answer.status {
                200 => break answer.body,
                // Before the pre-queue window, or a gateway too busy: try again shortly.
                403 | 429 | 503 => tokio::time::sleep(Duration::from_millis(100)).await,
                status => anyhow::bail!("join answered {status}: {}", answer.body),
            }
        };
        buyer.joined_at = Some(self.now());
        buyer.estimate = joined["estimated_wait_secs"].as_f64();
        buyer.poll_after_ms = joined["poll_after_ms"].as_u64();
        let place = joined["place_token"]
            .as_str()
            .context("no place token")?
            .to_owned();
        let connections = if buyer.greedy {
            self.plan.greedy_connections.max(1)
        } else {
            1
        };
        let mut first = Some(joined);
        // A greedy client polls on every connection; the first to see a ticket wins.
        let ticket = {
            let polls = (0..connections).map(|_| {
                let mut start = first.take();
                let place = place.clone();
                let greedy = buyer.greedy;
                Box::pin(async move {
                    loop {
                        let body = match start.take() {
                            Some(body) => body,
                            None => {
                                let answer = self.poll(&place, !greedy).await?;
                                if answer.status != 200 {
                                    anyhow::bail!(
                                        "poll answered {}: {}",
                                        answer.status,
                                        answer.body
                                    );
                                }
                                answer.body
                            }
                        };
                        match body["status"].as_str() {
                            // A greedy client polls again at once; a polite buyer's held poll
                            // came back at its end (or at a change), so it asks again at once
                            // too: the hold is its pacing.
                            Some("waiting") => continue,
                            Some("admitted") => {
                                let ticket = body["ticket"].as_str().unwrap_or_default();
                                return Ok((Some(ticket.to_owned()), self.now(), body));
                            }
                            _ => return Ok((None, self.now(), body)),
                        }
                    }
                })
            });
            futures::future::select_ok(polls).await.map(|(won, _)| won)
        };
        let (ticket, at, body) = ticket?;
        let Some(ticket) = ticket else {
            if body["status"] == "sold_out" {
                buyer.told_sold_out_at = Some(at);
            }
            buyer.expired = body["status"] == "expired";
            return Ok(buyer);
        };
        buyer.admitted_at = Some(at);
        loop {
            let answer = self.buy(Some(&ticket)).await?;
            match answer.status {
                202 => {
                    buyer.bought = true;
                    buyer.bought_at = Some(self.now());
                    return Ok(buyer);
                }
                503 => {
                    buyer.shed += 1;
                    buyer.shed_admitted += 1;
                    if !buyer.greedy {
                        tokio::time::sleep(Duration::from_secs(answer.retry_after.unwrap_or(1)))
                            .await;
                    }
                }
                409 if answer.body["code"] == "request_in_progress" => {}
                403 if answer.body["code"] == "admission_expired" => {
                    buyer.expired = true;
                    return Ok(buyer);
                }
                _ => {
                    // Sold out between the admission and the buy.
                    buyer.told_sold_out_at = Some(self.now());
                    return Ok(buyer);
                }
            }
        }
    }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
}

/// Spearman's rank correlation of two equally long lists (ties take their mean rank).
pub fn rank_correlation(a: &[f64], b: &[f64]) -> f64 {
    fn ranks(values: &[f64]) -> Vec<f64> {
        let mut order: Vec<usize> = (0..values.len()).collect();
        order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
        let mut ranks = vec![0.0; values.len()];
        let mut i = 0;
        while i < order.len() {
            let mut j = i;
            while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
                j += 1;
            }
            for &k in &order[i..=j] {
                ranks[k] = (i + j) as f64 / 2.0;
            }
            i = j + 1;
        }
        ranks
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let n = a.len() as f64;
    let mean = (n - 1.0) / 2.0;
    let cov: f64 = ra
        .iter()
        .zip(&rb)
        .map(|(x, y)| (x - mean) * (y - mean))
        .sum();
    let var_a: f64 = ra.iter().map(|x| (x - mean).powi(2)).sum();
    let var_b: f64 = rb.iter().map(|y| (y - mean).powi(2)).sum();
    cov / (var_a * var_b).sqrt()
}

fn report(
    plan: &RoomPlan,
    buyers: &[Buyer],
    elapsed: Duration,
    poll_cost: Option<(f64, f64)>,
) -> RoomReport {
    let units = |greedy: bool| {
        buyers
            .iter()
            .filter(|b| b.greedy == greedy && b.bought)
            .count()
    };
    let (polite_units, greedy_units) = (units(false), units(true));
    let sold = polite_units + greedy_units;
    let greedy_share_buyers = plan.greedy as f64 / (plan.polite + plan.greedy).max(1) as f64;
    let fairness = match (sold, plan.greedy) {
        (0, _) | (_, 0) => 1.0,
        _ => (greedy_units as f64 / sold as f64) / greedy_share_buyers,
    };
    let admitted: Vec<&Buyer> = buyers.iter().filter(|b| b.admitted_at.is_some()).collect();
    let rank_correlation = (plan.admission.is_some() && admitted.len() > 2).then(|| {
        let joined: Vec<f64> = admitted
            .iter()
            .map(|b| b.joined_at.unwrap_or_default().as_secs_f64())
            .collect();
        let at: Vec<f64> = admitted
            .iter()
            .map(|b| b.admitted_at.unwrap_or_default().as_secs_f64())
            .collect();
        rank_correlation(&joined, &at)
    });
    let last_sold = buyers.iter().filter_map(|b| b.bought_at).max();
    let told: Vec<Duration> = buyers
        .iter()
        .filter(|b| b.admitted_at.is_none())
        .filter_map(|b| b.told_sold_out_at)
        .collect();
    let sold_out_news_ms = last_sold
        .zip(told.iter().max())
        .map(|(sold, told)| told.saturating_sub(sold).as_secs_f64() * 1000.0);
    let waits: Vec<(f64, f64)> = admitted
        .iter()
        .filter_map(|b| {
            let wait = b.admitted_at?.checked_sub(b.joined_at?)?.as_secs_f64();
            Some((wait, (wait - b.estimate?).abs()))
        })
        .collect();
    let (b, s) = ((plan.polite + plan.greedy) as f64, sold as f64);
    let fairness_draw_sd = if plan.greedy == 0 || b < 2.0 || s == 0.0 {
        0.0
    } else {
        let p = greedy_share_buyers;
        ((1.0 - p) * (b - s) / (s * p * (b - 1.0))).sqrt()
    };
    RoomReport {
        fairness_draw_sd,
        door: plan
            .admission
            .as_ref()
            .and_then(|a| a["mode"].as_str())
            .map_or("shedding".to_owned(), |mode| {
                format!("waiting room ({mode})")
            }),
        buyers: (plan.polite, plan.greedy),
        units: (polite_units, greedy_units),
        fairness,
        rank_correlation,
        admitted: admitted.len(),
        admitted_shed: buyers.iter().map(|b| b.shed_admitted).sum(),
        shed: buyers.iter().map(|b| b.shed).sum(),
        expired: buyers.iter().filter(|b| b.expired).count(),
        admitted_unserved: admitted.iter().filter(|b| !b.bought && !b.expired).count(),
        sold_out_news_ms,
        told_sold_out: told.len(),
        poll_interval_ms: median(
            buyers
                .iter()
                .filter_map(|b| b.poll_after_ms.map(|ms| ms as f64))
                .collect(),
        ),
        estimate_error_secs: median(waits.iter().map(|w| w.1).collect()),
        wait_secs: median(waits.iter().map(|w| w.0).collect()),
        poll_cost,
        elapsed_secs: elapsed.as_secs_f64(),
        sale: None,
    }
}

/// Poll answers per second against `/healthz` answers per second, the project's load generator
/// for both, three interleaved rounds: the medians. The polls are those of
/// [`RoomPlan::poll_cost_buyers`] buyers waiting in the room of a sale that opens in an hour,
/// each polling within its pace (one per `poll_min_ms`, a burst of three), round-robin.
async fn poll_cost(plan: &RoomPlan, client: &Client) -> anyhow::Result<(f64, f64)> {
    use futures::StreamExt;
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let sku = SkuId::parse(format!("room-polls-{}", &run_id[20..]))?;
    let admin = gateway::auth::sign(&plan.secret, "room-admin", Some("admin"), 3_600);
    let terms = json!({
        "starts_at": chrono::Utc::now() + chrono::Duration::hours(1),
        "free": true,
        "admission": {"mode": "fifo", "rate_per_sec": 100, "pre_queue_secs": 7_200},
    });
    crate::put_sale_with(&plan.admin_url, &admin, &sku, plan.stock, 1, terms).await?;
    let joins = (0..plan.poll_cost_buyers).map(|i| {
        let token = gateway::auth::sign(&plan.secret, &format!("{run_id}-poller-{i}"), None, 3_600);
        let request = client
            .post(format!("{}/v1/sales/{sku}/queue", plan.url))
            .bearer_auth(&token);
        async move {
            let joined: Value = request.send().await?.json().await?;
            let place = joined["place_token"]
                .as_str()
                .with_context(|| format!("a poller's join: {joined}"))?
                .to_owned();
            // A poll's credential is its place token alone.
            let name = hyper::header::HeaderName::from_static("place-token");
            anyhow::Ok(vec![(name, hyper::header::HeaderValue::from_str(&place)?)])
        }
    });
    type Headers = Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>;
    let headers: Vec<Headers> = futures::stream::iter(joins)
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let address = plan
        .url
        .strip_prefix("http://")
        .context("the gateway URL must be http://")?
        .to_owned();
    let round = |path: String, headers: Vec<Headers>| {
        let address = address.clone();
        async move {
            let report = load::run(load::Plan {
                address,
                target: load::Target::Get { path, headers },
                connections: 64,
                rate: None,
                until: load::Until::Elapsed(Duration::from_secs_f64(plan.poll_cost_secs)),
                run_id: "room-poll-cost".into(),
                progress: false,
                sources: Vec::new(),
            })
            .await?;
            anyhow::Ok(report.ok_per_sec())
        }
    };
    let (mut polls, mut healthz) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        healthz.push(round("/healthz".into(), Vec::new()).await?);
        polls.push(round(format!("/v1/sales/{sku}/queue"), headers.clone()).await?);
    }
    Ok((median(polls).unwrap_or(0.0), median(healthz).unwrap_or(0.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_clients_are_spread_through_the_crowd_in_their_number() {
        let greedy = (0..100).filter(|&i| is_greedy(i, 90, 10)).count();
        assert_eq!(greedy, 10);
        assert!(!(0..100).any(|i| is_greedy(i, 100, 0)));
        assert_eq!((0..10).filter(|&i| is_greedy(i, 5, 5)).count(), 5);
    }

    #[test]
    fn the_rank_correlation_is_one_for_the_same_order_and_minus_one_reversed() {
        let a = [1.0, 2.0, 3.0, 4.0];
        assert!((rank_correlation(&a, &[10.0, 20.0, 30.0, 40.0]) - 1.0).abs() < 1e-9);
        assert!((rank_correlation(&a, &[4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-9);
        // Ties (two admitted in one tick) keep it near one.
        assert!(rank_correlation(&a, &[1.0, 1.0, 2.0, 2.0]) > 0.89);
    }
}
