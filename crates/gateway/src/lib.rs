//! The gateway: the buyer and admin HTTP API of seckill (actix-web).
//!
//! A buy request is answered from Redis and Kafka alone: the reserve script takes the stock,
//! the order message is produced with `acks=all`, and only the broker's acknowledgement earns a
//! 202. The database is only read (order status, admin), never written on the hot path.
//!
//! Every request runs in a `request` log span with its W3C trace context: the caller's
//! `traceparent` continued, or a new trace. The order message carries it on to the worker.

pub mod auth;
pub mod error;
pub mod metrics;
pub mod reconcile;
pub mod routes;
pub mod service;

use actix_web::dev::Service;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::HttpMessage;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use backends::Backends;
use domain::UserId;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use metrics::GatewayMetrics;
use rdkafka::producer::FutureProducer;
use settings::secrecy::ExposeSecret;
use settings::Settings;
use std::net::TcpListener;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stock::StockLedger;
use store::Store;
use telemetry::TraceContext;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The response header naming the request's trace and the gateway's span in it (W3C Trace
/// Context Level 2), so a buyer's client or a support ticket can quote the trace id.
pub const TRACERESPONSE: HeaderName = HeaderName::from_static("traceresponse");

/// What every request handler shares.
pub struct AppState {
    /// The Redis stock ledger.
    pub ledger: StockLedger,
    /// The database (reads only).
    pub store: Store,
    /// The idempotent producer.
    pub producer: FutureProducer,
    /// Where orders go.
    pub orders_topic: String,
    /// How long a produce may take before the buyer gets 503.
    pub produce_timeout: Duration,
    /// Metrics.
    pub metrics: GatewayMetrics,
    /// What `/readyz` asks: Redis, the database, the brokers.
    pub readiness: telemetry::ops::Readiness,
    limiter: Option<Arc<DefaultKeyedRateLimiter<UserId>>>,
}

impl AppState {
    /// Whether `user` may make one more buy request now.
    pub fn allow(&self, user: &UserId) -> bool {
        self.limiter
            .as_ref()
            .is_none_or(|limiter| limiter.check_key(user).is_ok())
    }
}

/// A bound, not yet running gateway.
pub struct Application {
    listener: TcpListener,
    port: u16,
    state: web::Data<AppState>,
    verifier: web::Data<auth::Verifier>,
    workers: usize,
    grace: Duration,
}

impl Application {
    /// Binds the listener of the settings (port 0 = any free port) and prepares the state.
    pub fn build(settings: &Settings, deps: Backends) -> anyhow::Result<Self> {
        let address = format!("{}:{}", settings.http.host, settings.http.port);
        let listener =
            TcpListener::bind(&address).with_context(|| format!("cannot bind {address}"))?;
        let port = listener.local_addr()?.port();
        let limiter = NonZeroU32::new(settings.gateway.per_user_rate_per_sec).map(|rate| {
            let burst = NonZeroU32::new(settings.gateway.per_user_burst).unwrap_or(rate);
            Arc::new(RateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst),
            ))
        });
        let readiness = deps.readiness(&settings.kafka.orders_topic);
        let state = web::Data::new(AppState {
            readiness,
            ledger: deps.ledger,
            store: deps.store,
            producer: deps.producer,
            orders_topic: settings.kafka.orders_topic.clone(),
            produce_timeout: Duration::from_millis(u64::from(settings.kafka.delivery_timeout_ms)),
            metrics: GatewayMetrics::new(telemetry::new_registry()),
            limiter,
        });
        let verifier = web::Data::new(auth::Verifier::new(
            settings.auth.jwt_secret.expose_secret().as_bytes(),
            settings.auth.leeway_secs,
        ));
        Ok(Self {
            listener,
            port,
            state,
            verifier,
            workers: settings.http.workers,
            grace: Duration::from_secs(settings.shutdown.grace_secs),
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared state (tests read its metrics).
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until `shutdown` fires, then stops accepting, lets in-flight requests finish
    /// (up to the grace period) and returns.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let server = self.into_server()?;
        let handle = server.handle();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            tracing::info!("gateway draining in-flight requests");
            handle.stop(true).await;
        });
        server.await?;
        tracing::info!("gateway stopped");
        Ok(())
    }

    /// The actix server (built outside any `async` block: the app factory is not `Send`).
    fn into_server(self) -> anyhow::Result<actix_web::dev::Server> {
        let state = self.state.clone();
        let verifier = self.verifier.clone();
        let mut server = HttpServer::new(move || {
            let metrics = state.metrics.clone();
            App::new()
                .app_data(state.clone())
                .app_data(verifier.clone())
                .wrap_fn(move |req, srv| {
                    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
                    let method = req.method().as_str().to_owned();
                    let started = Instant::now();
                    let metrics = metrics.clone();
                    let trace = TraceContext::continued(|name| {
                        req.headers().get(name).and_then(|v| v.to_str().ok())
                    });
                    let span = tracing::info_span!(
                        "request",
                        %method,
                        %route,
                        trace_id = %trace.trace_id(),
                        span_id = %trace.span_id(),
                        order_id = tracing::field::Empty,
                    );
                    let traceresponse = HeaderValue::from_str(&trace.traceparent());
                    req.extensions_mut().insert(trace);
                    let response = srv.call(req).instrument(span);
                    async move {
                        let mut response = response.await?;
                        if let Ok(value) = traceresponse {
                            response.headers_mut().insert(TRACERESPONSE, value);
                        }
                        let status = response.status().as_u16().to_string();
                        metrics
                            .requests
                            .with_label_values(&[&route, &method, &status])
                            .inc();
                        metrics
                            .request_duration
                            .with_label_values(&[&route, &method])
                            .observe(started.elapsed().as_secs_f64());
                        Ok(response)
                    }
                })
                .service(
                    web::resource("/v1/sales/{sku_id}/orders")
                        .route(web::post().to(routes::orders::buy))
                        .default_service(web::to(routes::method_not_allowed)),
                )
                .service(
                    web::resource("/v1/orders/{order_id}")
                        .route(web::get().to(routes::orders::get_order))
                        .default_service(web::to(routes::method_not_allowed)),
                )
                .service(
                    web::resource("/v1/admin/sales/{sku_id}")
                        .route(web::put().to(routes::admin::put_sale))
                        .route(web::get().to(routes::admin::get_sale))
                        .default_service(web::to(routes::method_not_allowed)),
                )
                .route("/healthz", web::get().to(routes::health::healthz))
                .route("/readyz", web::get().to(routes::health::readyz))
                .route("/metrics", web::get().to(routes::health::metrics))
                .default_service(web::to(routes::not_found))
        })
        .disable_signals()
        .shutdown_timeout(self.grace.as_secs());
        if self.workers > 0 {
            server = server.workers(self.workers);
        }
        Ok(server.listen(self.listener)?.run())
    }
}
