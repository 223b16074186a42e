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
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod overload;
pub mod proof_of_work;
pub mod reconcile;
pub mod routes;
pub mod service;
pub mod sold_out;
pub mod waiting_room;

use actix_web::dev::Service;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::HttpMessage;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use connections::Connections;
use futures::future::Either;
use metrics::GatewayMetrics;
use rdkafka::producer::FutureProducer;
use settings::Settings;
use std::net::TcpListener;
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
    /// Signs the order messages: `messages.signing_key_id` of `messages.signing_keys`.
    pub keyring: domain::Keyring,
    /// How long a produce may take before the buyer gets 503.
    pub produce_timeout: Duration,
    /// Metrics.
    pub metrics: GatewayMetrics,
    /// What `/readyz` asks: Redis, the database, the brokers.
    pub readiness: telemetry::ops::Readiness,
    /// Sales this process answers `sold_out` for from memory.
    pub sold_out: sold_out::SoldOutFlags,
    /// Marks acknowledged orders in Redis, a batch at a time.
    pub acknowledger: stock::Marks,
    /// Admission of buy requests (load shedding).
    pub admission: overload::Admission,
    /// The order-status reads served at once, apart from the buys: each takes a database
    /// connection, and fewer of them than the pool holds run at once, so that payment notices
    /// always find one. A read waits a moment for its permit (a burst of polls), then is shed.
    pub reads: Arc<tokio::sync::Semaphore>,
    /// The rate limits per client address and per buyer.
    pub limits: Arc<limits::Limits>,
    /// The proof of work asked at the door.
    pub proof_of_work: proof_of_work::ProofOfWork,
    /// The payment webhook's secret and tolerance, and the default payment window of sales.
    pub payments: settings::PaymentSettings,
    /// The waiting rooms of the sales that have one.
    pub rooms: Arc<waiting_room::Rooms>,
}

impl AppState {
    /// The refusal of a request past `limit`, counted.
    pub fn rate_limited(&self, limit: limits::Limit) -> error::ApiError {
        let label: &'static str = limit.into();
        self.metrics.rate_limited.with_label_values(&[label]).inc();
        error::ApiError::RateLimited
    }
}

/// Whether a request that came in on `local_port` for `path` (decoded, as the router matches
/// it) counts against its client address's allowance: everything on the public port but
/// liveness and the payment provider's notices (signed, and from few addresses).
fn limited_by_address(admin: AdminAccess, local_port: u16, path: &str) -> bool {
    local_port != admin.port && path != "/healthz" && !path.starts_with("/v1/payments")
}

/// Where the admin API (`/v1/admin/...`) is served: its own listener's port, and on the public
/// one only when `http.admin_on_public` says so.
#[derive(Debug, Clone, Copy)]
struct AdminAccess {
    port: u16,
    on_public: bool,
}

impl AdminAccess {
    /// Whether a request that came in on `local_port` may reach the admin API.
    fn allows(self, local_port: u16) -> bool {
        self.on_public || local_port == self.port
    }
}

/// The middleware of what only the admin port serves: the public port answers its paths like
/// unknown ones (404 `not_found`).
fn admin_only<S>(
    admin: AdminAccess,
) -> impl Fn(
    actix_web::dev::ServiceRequest,
    &S,
) -> Either<
    S::Future,
    futures::future::Ready<Result<actix_web::dev::ServiceResponse, actix_web::Error>>,
> + Clone
where
    S: Service<
        actix_web::dev::ServiceRequest,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
{
    move |req, srv| {
        if admin.allows(req.app_config().local_addr().port()) {
            Either::Left(srv.call(req))
        } else {
            let refused = req.into_response(actix_web::ResponseError::error_response(
                &error::ApiError::RouteNotFound,
            ));
            Either::Right(futures::future::ok(refused))
        }
    }
}

/// How the HTTP server serves its connections.
struct Listening {
    workers: usize,
    grace: Duration,
    header_timeout: Duration,
    body_timeout: Duration,
}

/// A bound, not yet running gateway.
pub struct Application {
    listener: TcpListener,
    port: u16,
    admin_listener: TcpListener,
    admin: AdminAccess,
    state: web::Data<AppState>,
    verifier: web::Data<auth::Verifier>,
    workers: usize,
    grace: Duration,
    header_timeout: Duration,
    body_timeout: Duration,
    acknowledger: stock::MarksTask,
    /// Stops the refresh of the identity provider's keys, the waiting rooms' clocks and the
    /// reading of the worker's lag when the gateway is gone.
    background: tokio_util::sync::DropGuard,
}

impl Application {
    /// Binds the listener of the settings (port 0 = any free port) and prepares the state.
    /// Must be called inside a Tokio runtime (it starts the acknowledger task).
    pub fn build(settings: &Settings, deps: Connections) -> anyhow::Result<Self> {
        settings.require_deployed_secrets()?;
        settings.require_deployed_message_keys()?;
        let address = format!("{}:{}", settings.http.host, settings.http.port);
        let listener =
            TcpListener::bind(&address).with_context(|| format!("cannot bind {address}"))?;
        let port = listener.local_addr()?.port();
        let admin_address = format!("{}:{}", settings.http.host, settings.http.admin_port);
        let admin_listener = TcpListener::bind(&admin_address)
            .with_context(|| format!("cannot bind the admin port {admin_address}"))?;
        let admin = AdminAccess {
            port: admin_listener.local_addr()?.port(),
            on_public: settings.http.admin_on_public,
        };
        let limits = Arc::new(limits::Limits::from_settings(
            &settings.http,
            &settings.gateway,
        )?);
        let verifier = web::Data::new(auth::Verifier::from_settings(&settings.auth)?);
        let key_source = verifier.key_source();
        let mut readiness = deps.readiness(&settings.kafka.orders_topic);
        if let Some(keys) = key_source.clone() {
            readiness = readiness.check_with("identity_provider", keys, |keys| async move {
                match keys.has_keys() {
                    true => Ok(()),
                    false => Err("no key read from auth.jwks_url yet"),
                }
            });
        }

        let gateway = &settings.gateway;
        let (acknowledger, acknowledger_task) = stock::Marks::start(
            deps.ledger.clone(),
            stock::Mark::Acknowledged,
            Duration::from_millis(gateway.ack_flush_ms),
        );
        let background = CancellationToken::new();
        let metrics = GatewayMetrics::new(telemetry::new_registry());
        let admission = overload::Admission::new(
            gateway.max_in_flight,
            Duration::from_millis(gateway.max_loop_lag_ms),
        );
        let reads = Arc::new(tokio::sync::Semaphore::new(
            gateway.reads_in_flight(settings.database.max_connections),
        ));
        tokio::spawn(limits.clone().keep_pruned(
            Duration::from_secs(gateway.limiter_prune_secs),
            metrics.limiter_callers.clone(),
            background.clone(),
        ));
        let room_settings = &settings.waiting_room;
        let worker_lag = Arc::new(std::sync::atomic::AtomicI64::new(-1));
        if room_settings.auto_max_worker_lag > 0 {
            tokio::spawn(waiting_room::watch_worker_lag(
                deps.endpoint.clone(),
                settings.kafka.clone(),
                worker_lag.clone(),
                Duration::from_secs(2),
                background.clone(),
            ));
        }
        let pressure = waiting_room::Pressure {
            admission: admission.clone(),
            max_in_flight: (gateway.max_in_flight as f64 * room_settings.auto_in_flight_share)
                as usize,
            max_loop_lag: Duration::from_millis(gateway.max_loop_lag_ms / 2),
            worker_lag,
            max_worker_lag: room_settings.auto_max_worker_lag,
            last: Arc::default(),
        };
        let rooms = Arc::new(waiting_room::Rooms::new(
            deps.ledger.clone(),
            room_settings,
            pressure,
            metrics.clone(),
            background.clone(),
        ));
        let state = web::Data::new(AppState {
            rooms,
            sold_out: sold_out::SoldOutFlags::new(
                Duration::from_millis(gateway.sold_out_recheck_ms),
                gateway.sold_out_max_orders,
            ),
            acknowledger,
            admission,
            reads,
            limits,
            proof_of_work: proof_of_work::ProofOfWork::from_settings(settings),
            readiness,
            payments: settings.payments.clone(),
            ledger: deps.ledger,
            store: deps.store,
            producer: deps.producer,
            orders_topic: settings.kafka.orders_topic.clone(),
            keyring: settings.messages.keyring()?,
            produce_timeout: Duration::from_millis(u64::from(settings.kafka.delivery_timeout_ms)),
            metrics,
        });
        if let Some(keys) = key_source {
            tokio::spawn(keys.keep_fresh(
                Duration::from_secs(settings.auth.jwks_refresh_secs),
                Duration::from_secs(settings.auth.jwks_min_refetch_secs),
                state.metrics.key_reads.clone(),
                background.clone(),
            ));
        }
        Ok(Self {
            listener,
            port,
            admin_listener,
            admin,
            state,
            verifier,
            workers: settings.http.workers,
            grace: Duration::from_secs(settings.shutdown.grace_secs),
            header_timeout: Duration::from_millis(settings.http.header_timeout_ms),
            body_timeout: Duration::from_millis(settings.http.body_timeout_ms),
            acknowledger: acknowledger_task,
            background: background.drop_guard(),
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the admin API.
    pub fn admin_port(&self) -> u16 {
        self.admin.port
    }

    /// The shared state (tests read its metrics).
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until `shutdown` fires, then stops accepting, lets in-flight requests finish
    /// (up to the grace period) and returns.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let acknowledger = self.acknowledger;
        let background = self.background.disarm();
        let server = Self::into_server(
            self.state,
            self.verifier,
            [self.listener, self.admin_listener],
            self.admin,
            Listening {
                workers: self.workers,
                grace: self.grace,
                header_timeout: self.header_timeout,
                body_timeout: self.body_timeout,
            },
        )?;
        let handle = server.handle();
        let stopping = background.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            tracing::info!("gateway draining in-flight requests");
            // The waiting rooms' clocks stop and answer their held polls, which would otherwise
            // keep the drain waiting for their hold.
            stopping.cancel();
            handle.stop(true).await;
        });
        let served = server.await;
        background.cancel();
        // No request is served any more: mark the last acknowledgements.
        acknowledger.finish().await;
        served?;
        tracing::info!("gateway stopped");
        Ok(())
    }

    /// The actix server (built outside any `async` block: the app factory is not `Send`).
    fn into_server(
        state: web::Data<AppState>,
        verifier: web::Data<auth::Verifier>,
        [public, admin_listener]: [TcpListener; 2],
        admin: AdminAccess,
        listening: Listening,
    ) -> anyhow::Result<actix_web::dev::Server> {
        let openapi = openapi::document();
        let body_timeout = listening.body_timeout;
        let mut server = HttpServer::new(move || {
            // Runs on each HTTP worker's thread: watch that worker's event loop.
            actix_web::rt::spawn(overload::watch_this_loop());
            let metrics = state.metrics.clone();
            App::new()
                .app_data(state.clone())
                .app_data(verifier.clone())
                // The cheapest limit first: the client address's allowance; then the body,
                // given a deadline, so that a client trickling it is answered 408.
                .wrap_fn({
                    let state = state.clone();
                    move |mut req, srv| {
                        let local_port = req.app_config().local_addr().port();
                        let public = local_port != admin.port;
                        if state.limits.counts_addresses()
                            && limited_by_address(admin, local_port, req.match_info().as_str())
                        {
                            let refused = req.peer_addr().is_some_and(|peer| {
                                let client = state.limits.client_of(peer.ip(), req.headers());
                                !state.limits.allow_address(client)
                            });
                            if refused {
                                let error = state.rate_limited(limits::Limit::Address);
                                let refused = req.into_response(
                                    actix_web::ResponseError::error_response(&error),
                                );
                                return Either::Right(futures::future::ok(refused));
                            }
                        }
                        // A body of unknown length could be drained at any pace once a handler
                        // refuses without reading it: the public port takes lengths only (every
                        // body of the API is a few KiB at most).
                        if public && req.headers().contains_key(header::TRANSFER_ENCODING) {
                            let refused =
                                req.into_response(actix_web::ResponseError::error_response(
                                    &error::ApiError::LengthRequired,
                                ));
                            return Either::Right(futures::future::ok(refused));
                        }
                        if routes::has_body(req.headers()) {
                            let payload = req.take_payload();
                            req.set_payload(routes::with_deadline(payload, body_timeout));
                        }
                        Either::Left(srv.call(req))
                    }
                })
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
                    routes::resource("/v1/sales/{sku_id}/orders")
                        .wrap_fn({
                            let state = state.clone();
                            move |req, srv| {
                                // Shed before anything costly (the token is not verified yet):
                                // a look at the count, no slot taken. The handler takes its
                                // slot once the body is in, so a slow body holds none. A current
                                // ticket of this sale (one HMAC; its buyer is checked by the
                                // handler, from the claims kept here) looks for room under its
                                // holders' bound.
                                let now_ms = chrono::Utc::now().timestamp_millis();
                                let ticket = req
                                    .headers()
                                    .get(routes::orders::ADMISSION_TICKET)
                                    .and_then(|v| v.to_str().ok())
                                    .zip(req.match_info().get("sku_id"))
                                    .and_then(|(ticket, sku)| {
                                        state.rooms.tokens.current_ticket(ticket, sku, now_ms)
                                    });
                                let ticket_holder = ticket.is_some();
                                if let Some(claims) = ticket {
                                    req.extensions_mut().insert(claims);
                                }
                                match state.admission.would_shed(ticket_holder) {
                                    None => Either::Left(srv.call(req)),
                                    Some(why) => {
                                        state.metrics.shed.with_label_values(&[why.label()]).inc();
                                        Either::Right(overload::refuse(req))
                                    }
                                }
                            }
                        })
                        .route(web::post().to(routes::orders::buy)),
                )
                .service(
                    routes::resource("/v1/sales/{sku_id}/challenge")
                        .route(web::get().to(routes::challenge::challenge)),
                )
                .service(
                    routes::resource("/v1/sales/{sku_id}/queue")
                        .route(web::post().to(routes::queue::join))
                        .route(web::get().to(routes::queue::poll)),
                )
                .service(
                    routes::resource("/v1/payments")
                        .route(web::post().to(routes::payments::notify)),
                )
                .service(
                    web::scope("/v1/admin")
                        .wrap_fn(admin_only(admin))
                        .service(
                            routes::resource("/refunds")
                                .route(web::get().to(routes::admin::refunds)),
                        )
                        .service(
                            routes::resource("/sales/{sku_id}")
                                .route(web::put().to(routes::admin::put_sale))
                                .route(web::get().to(routes::admin::get_sale)),
                        ),
                )
                .service(
                    routes::resource("/v1/orders/{order_id}")
                        .route(web::get().to(routes::orders::get_order)),
                )
                .service(
                    utoipa_swagger_ui::SwaggerUi::new("/docs/{_:.*}")
                        .url("/openapi.json", openapi.clone()),
                )
                .route("/healthz", web::get().to(routes::health::healthz))
                // Readiness and metrics are the operators' (the kubelet's, Prometheus's): on the
                // admin port. Last, since this scope takes every path the others did not.
                .service(
                    web::scope("")
                        .wrap_fn(admin_only(admin))
                        .route("/readyz", web::get().to(routes::health::readyz))
                        .route("/metrics", web::get().to(routes::health::metrics)),
                )
                .default_service(web::to(routes::not_found))
        })
        .disable_signals()
        .client_request_timeout(listening.header_timeout)
        .shutdown_timeout(listening.grace.as_secs());
        if listening.workers > 0 {
            server = server.workers(listening.workers);
        }
        Ok(server.listen(public)?.listen(admin_listener)?.run())
    }
}
