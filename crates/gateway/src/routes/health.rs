//! Liveness, readiness and metrics.

use crate::AppState;
use actix_web::{web, HttpResponse};
use serde_json::json;

/// `GET /healthz`: the process answers.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`: Redis, the broker and the database all answer. While one does not, the
/// gateway is taken out of the load balancer instead of answering 503 to every buyer.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    state.readiness.respond().await
}

/// `GET /metrics`
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(telemetry::render(&state.metrics.registry))
}
