//! Liveness (public port), readiness and metrics (admin port).

use crate::AppState;
use actix_web::{web, HttpResponse};
use serde_json::json;

/// What `/healthz` and `/readyz` answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, or `unavailable` (readiness).
    #[schema(example = "ok")]
    status: String,
    /// The dependencies that do not answer (readiness only).
    #[serde(skip_serializing_if = "Option::is_none")]
    failing: Option<Vec<String>>,
}

/// `GET /healthz`: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", summary = "Liveness",
    responses((status = 200, description = "The process answers", body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz` (admin port): Redis, the broker and the database all answered within the last
/// second. While one does not, the gateway is taken out of the load balancer instead of
/// answering 503 to every buyer.
#[utoipa::path(get, path = "/readyz", tag = "ops", summary = "Readiness: Redis, the broker and the database answer (admin port)",
    description = "Served on the admin port (`http.admin_port`) only. The answer is at most a second old: however often it is asked, each dependency is checked about once a second.",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Not ready; `failing` names what does not answer", body = Health),
    ))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    state.readiness.respond().await
}

/// `GET /metrics` (admin port)
#[utoipa::path(get, path = "/metrics", tag = "ops", summary = "Prometheus metrics (admin port)",
    description = "Served on the admin port (`http.admin_port`) only.",
    responses((status = 200, description = "The text exposition format", body = String, content_type = "text/plain")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    // The ledger counts its group calls itself; the counters catch up at each scrape.
    let (calls, orders) = state.ledger.reserve_calls();
    let metrics = &state.metrics;
    metrics
        .reserve_calls
        .inc_by(calls.saturating_sub(metrics.reserve_calls.get()));
    metrics
        .reserve_orders
        .inc_by(orders.saturating_sub(metrics.reserve_orders.get()));
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(telemetry::render(&state.metrics.registry))
}
