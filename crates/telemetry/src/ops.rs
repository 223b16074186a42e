//! The ops server of the background services: liveness, readiness and metrics on a port of
//! their own, so Kubernetes probes and Prometheus reach a consumer that has no API.

use actix_web::{web, App, HttpResponse, HttpServer};
use prometheus::Registry;
use std::future::Future;
use std::net::TcpListener;
use std::pin::Pin;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Answers whether the service can do its work now; `Err` names what is missing.
pub type ReadinessCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

#[derive(Clone)]
struct OpsState {
    registry: Registry,
    ready: ReadinessCheck,
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json_ok())
}

fn serde_json_ok() -> std::collections::BTreeMap<&'static str, &'static str> {
    [("status", "ok")].into()
}

async fn readyz(state: web::Data<OpsState>) -> HttpResponse {
    match (state.ready)().await {
        Ok(()) => HttpResponse::Ok().json(serde_json_ok()),
        Err(problem) => {
            HttpResponse::ServiceUnavailable().json(std::collections::BTreeMap::from([
                ("status", "unavailable"),
                ("detail", &problem),
            ]))
        }
    }
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
    ready: ReadinessCheck,
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
