//! Readiness, and the ops server of the background services: liveness, readiness and metrics on
//! a port of their own, so Kubernetes probes and Prometheus reach a consumer that has no API.
//!
//! Every service answers `/readyz` the same way: `200 {"status":"ok"}`, or
//! `503 {"status":"unavailable","failing":["redis",...]}` naming the dependencies that did not
//! answer. Why they did not answer goes to the log, not to the caller.
//!
//! An answer is at most [`Readiness::MAX_AGE`] old: the checks run for the first `/readyz`
//! after that, and every request meanwhile gets the same answer, so however often `/readyz` is
//! asked, each dependency sees about one ping a second.

use actix_web::{web, App, HttpResponse, HttpServer};
use futures::future::{join_all, BoxFuture};
use prometheus::Registry;
use std::future::Future;
use std::net::TcpListener;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

type Probe = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// The last answer: when the checks ran, and what failed.
type Answer = Option<(Instant, Vec<&'static str>)>;

/// The named checks that say whether a service can do its work now (clones share the last
/// answer).
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, Probe)>,
    /// The last answer.
    last: Arc<std::sync::Mutex<Answer>>,
    /// Held by the one caller whose checks run; the others wait for their answer.
    running: Arc<tokio::sync::Mutex<()>>,
}

impl Readiness {
    /// The oldest answer `/readyz` gives before running the checks again.
    pub const MAX_AGE: Duration = Duration::from_secs(1);

    /// No checks yet: always ready.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the check `name`: ready only while `probe` answers `Ok`.
    pub fn check<F, Fut, E>(mut self, name: &'static str, probe: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let probe: Probe = Arc::new(move || {
            let answer = probe();
            Box::pin(async move { answer.await.map_err(|e| e.to_string()) })
        });
        self.checks.push((name, probe));
        self
    }

    /// Adds the check `name` that probes its own clone of `dependency` (a pool, a client).
    pub fn check_with<T, F, Fut, E>(self, name: &'static str, dependency: T, probe: F) -> Self
    where
        T: Clone + Send + Sync + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        self.check(name, move || probe(dependency.clone()))
    }

    /// Runs every check at once; the names of those that failed, in the order they were added.
    /// Each failure is logged with its reason.
    pub async fn failing(&self) -> Vec<&'static str> {
        let answers = join_all(self.checks.iter().map(|(_, probe)| probe())).await;
        self.checks
            .iter()
            .zip(answers)
            .filter_map(|((name, _), answer)| {
                let problem = answer.err()?;
                tracing::warn!(dependency = name, %problem, "not ready");
                Some(*name)
            })
            .collect()
    }

    /// What [`failing`](Self::failing) answered at most [`MAX_AGE`](Self::MAX_AGE) ago, or
    /// answers now. While the checks run, other callers wait for their answer instead of
    /// running their own.
    pub async fn recently_failing(&self) -> Vec<&'static str> {
        if let Some(failing) = self.fresh() {
            return failing;
        }
        let _running = self.running.lock().await;
        if let Some(failing) = self.fresh() {
            return failing;
        }
        // In a task of its own, so that the answer is kept even when the caller gives up
        // first (the kubelet's probe timeout), and the next caller finds it.
        let checks = self.clone();
        let ran = tokio::spawn(async move {
            let failing = checks.failing().await;
            let answer = Some((Instant::now(), failing.clone()));
            *checks.last.lock().unwrap_or_else(PoisonError::into_inner) = answer;
            failing
        });
        ran.await.unwrap_or_else(|_| vec!["readiness"])
    }

    /// The last answer, if it is younger than [`MAX_AGE`](Self::MAX_AGE).
    fn fresh(&self) -> Option<Vec<&'static str>> {
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let (at, failing) = last.as_ref()?;
        (at.elapsed() < Self::MAX_AGE).then(|| failing.clone())
    }

    /// The `/readyz` answer.
    pub async fn respond(&self) -> HttpResponse {
        let failing = self.recently_failing().await;
        if failing.is_empty() {
            HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
        } else {
            HttpResponse::ServiceUnavailable()
                .json(serde_json::json!({"status": "unavailable", "failing": failing}))
        }
    }
}

#[derive(Clone)]
struct OpsState {
    registry: Registry,
    ready: Readiness,
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn readyz(state: web::Data<OpsState>) -> HttpResponse {
    state.ready.respond().await
}

async fn metrics(state: web::Data<OpsState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::render(&state.registry))
}

/// Serves `/healthz`, `/readyz` and `/metrics` on `listener` until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    ready: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let state = web::Data::new(OpsState { registry, ready });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    let handle = server.handle();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        handle.stop(true).await;
    });
    server.await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readiness_names_every_failing_check_in_order_and_only_those() {
        let ready = Readiness::new()
            .check("redis", || async { Err::<(), _>("refused") })
            .check("database", || async { Ok::<(), String>(()) })
            .check("kafka", || async { Err::<(), _>("timed out") });
        assert_eq!(ready.failing().await, vec!["redis", "kafka"]);
        let all_good = Readiness::new().check("redis", || async { Ok::<(), String>(()) });
        assert!(all_good.failing().await.is_empty());
    }

    #[tokio::test]
    async fn a_flood_of_readiness_requests_runs_the_checks_about_once_a_second() {
        let pings = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = pings.clone();
        let ready = Readiness::new().check("database", move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { Ok::<(), String>(()) }
        });
        let answers = join_all((0..1_000).map(|_| ready.recently_failing())).await;
        assert!(answers.iter().all(Vec::is_empty));
        assert_eq!(pings.load(std::sync::atomic::Ordering::SeqCst), 1);
        // A clone (another HTTP worker) shares the answer.
        assert!(ready.clone().recently_failing().await.is_empty());
        assert_eq!(pings.load(std::sync::atomic::Ordering::SeqCst), 1);
        tokio::time::sleep(Readiness::MAX_AGE).await;
        ready.recently_failing().await;
        assert_eq!(pings.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
