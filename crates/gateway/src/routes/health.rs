//! Liveness, readiness and metrics.

use crate::AppState;
use actix_web::{web, HttpResponse};
use rdkafka::producer::Producer;
use serde_json::json;
use std::time::Duration;

/// `GET /healthz`: the process answers.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`: Redis, the broker and the database all answer. While one does not, the
/// gateway is taken out of the load balancer instead of answering 503 to every buyer.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.check_dependencies().await {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "ok"})),
        Err(problems) => HttpResponse::ServiceUnavailable()
            .json(json!({"status": "unavailable", "failing": problems})),
    }
}

/// `GET /metrics`
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(telemetry::render(&state.metrics.registry))
}

impl AppState {
    /// Checks every dependency; `Err` lists the ones that do not answer.
    pub async fn check_dependencies(&self) -> Result<(), Vec<&'static str>> {
        let producer = self.producer.clone();
        let topic = self.orders_topic.clone();
        let broker = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(2))
                .map(|_| ())
        });
        let (redis, database, broker) = tokio::join!(self.ledger.ping(), self.store.ping(), broker);
        let mut failing = Vec::new();
        if redis.is_err() {
            failing.push("redis");
        }
        if database.is_err() {
            failing.push("database");
        }
        if !matches!(broker, Ok(Ok(()))) {
            failing.push("kafka");
        }
        if failing.is_empty() {
            Ok(())
        } else {
            Err(failing)
        }
    }
}
