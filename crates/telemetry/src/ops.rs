//! Readiness, and the ops server of the background services: liveness, readiness and metrics on
//! a port of their own, so Kubernetes probes and Prometheus reach a consumer that has no API.
//!
//! Every service answers `/readyz` the same way: `200 {"status":"ok"}`, or
//! `503 {"status":"unavailable","failing":["redis",...]}` naming the dependencies that did not
//! answer. Why they did not answer goes to the log, not to the caller.

use actix_web::{web, App, HttpResponse, HttpServer};
use futures::future::{join_all, BoxFuture};
use prometheus::Registry;
use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

type Probe = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// The named checks that say whether a service can do its work now.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, Probe)>,
}

impl Readiness {
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

    /// The `/readyz` answer.
    pub async fn respond(&self) -> HttpResponse {
        let failing = self.failing().await;
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
}
