//! The gateway's metrics, registered in an explicit registry that `/metrics` renders.

use prometheus::{
    exponential_buckets, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};

/// Every metric the gateway records.
#[derive(Clone)]
pub struct GatewayMetrics {
    /// The registry they live in.
    pub registry: Registry,
    /// `seckill_http_requests_total{route,method,status}`
    pub requests: IntCounterVec,
    /// `seckill_http_request_duration_seconds{route,method}`
    pub request_duration: HistogramVec,
    /// `seckill_reservations_total{outcome}`
    pub reservations: IntCounterVec,
    /// `seckill_produce_duration_seconds{result}`
    pub produce_duration: HistogramVec,
    /// `seckill_produce_failures_total`
    pub produce_failures: IntCounter,
    /// `seckill_reservation_releases_total{outcome}`
    pub releases: IntCounterVec,
    /// Buy requests refused at once (`overloaded`), by reason (`in_flight`, `loop_lag`).
    pub shed: IntCounterVec,
    /// Buy requests answered `sold_out` from the local flag, without Redis.
    pub sold_out_local: IntCounter,
    /// `seckill_payments_total{outcome}`: payment notices by how they were answered.
    pub payments: IntCounterVec,
    /// `seckill_refunds_due_total`: payments recorded as needing a refund.
    pub refunds_due: IntCounter,
    /// `seckill_identity_provider_key_reads_total{outcome}`: reads of the identity provider's
    /// JWKS document (`changed`, `unchanged`, `failed`).
    pub key_reads: IntCounterVec,
}

/// Outcomes of a read of the identity provider's keys, pre-registered.
pub const KEY_READ_OUTCOMES: [&str; 3] = ["changed", "unchanged", "failed"];

/// Payment notice outcomes, pre-registered: `paid`, the refund reasons, `replayed` (the same
/// notice again), and the refusals.
pub const PAYMENT_OUTCOMES: [&str; 10] = [
    "paid",
    "order_expired",
    "order_already_paid",
    "order_failed",
    "replayed",
    "order_pending",
    "order_not_found",
    "amount_mismatch",
    "payment_conflict",
    "invalid_signature",
];

/// Reservation outcomes, pre-registered so every series exists from the start.
pub const RESERVATION_OUTCOMES: [&str; 7] = [
    "accepted",
    "sold_out",
    "limit_exceeded",
    "duplicate",
    "key_reused",
    "not_found",
    "not_active",
];

impl GatewayMetrics {
    /// Creates and registers the metrics in `registry`.
    pub fn new(registry: Registry) -> Self {
        let latency = exponential_buckets(0.0005, 2.0, 14).expect("valid buckets");
        let requests = IntCounterVec::new(
            Opts::new("seckill_http_requests_total", "HTTP requests answered."),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "seckill_http_request_duration_seconds",
                "Time to answer an HTTP request.",
            )
            .buckets(latency.clone()),
            &["route", "method"],
        )
        .expect("valid metric");
        let reservations = IntCounterVec::new(
            Opts::new(
                "seckill_reservations_total",
                "Reservation attempts in Redis by outcome.",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let produce_duration = HistogramVec::new(
            HistogramOpts::new(
                "seckill_produce_duration_seconds",
                "Time from produce to broker acknowledgement (or failure).",
            )
            .buckets(latency),
            &["result"],
        )
        .expect("valid metric");
        let produce_failures = IntCounter::new(
            "seckill_produce_failures_total",
            "Order messages the broker did not acknowledge.",
        )
        .expect("valid metric");
        let releases = IntCounterVec::new(
            Opts::new(
                "seckill_reservation_releases_total",
                "Reservations released after a failed produce, by outcome.",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let shed = IntCounterVec::new(
            Opts::new(
                "seckill_gateway_shed_total",
                "Buy requests refused with 503 overloaded, by reason: in_flight (gateway.max_in_flight served already) or loop_lag (the HTTP worker ran later than gateway.max_loop_lag_ms).",
            ),
            &["reason"],
        )
        .expect("valid metric");
        for reason in ["in_flight", "loop_lag"] {
            shed.with_label_values(&[reason]);
        }
        let sold_out_local = IntCounter::new(
            "seckill_gateway_sold_out_local_total",
            "Buy requests answered sold_out from the gateway's memory, without a Redis call.",
        )
        .expect("valid metric");
        let payments = IntCounterVec::new(
            Opts::new(
                "seckill_payments_total",
                "Payment notices by outcome: paid, a refund due (order_expired, order_already_paid, order_failed), replayed, or refused.",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        for outcome in PAYMENT_OUTCOMES {
            payments.with_label_values(&[outcome]);
        }
        let refunds_due = IntCounter::new(
            "seckill_refunds_due_total",
            "Payments recorded as needing a refund (late, a second payment, a failed order).",
        )
        .expect("valid metric");
        for outcome in RESERVATION_OUTCOMES {
            reservations.with_label_values(&[outcome]);
        }
        let key_reads = IntCounterVec::new(
            Opts::new(
                "seckill_identity_provider_key_reads_total",
                "Reads of the identity provider's JWKS document, by outcome: changed, unchanged, failed.",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        for outcome in KEY_READ_OUTCOMES {
            key_reads.with_label_values(&[outcome]);
        }
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_duration.clone()),
            Box::new(reservations.clone()),
            Box::new(produce_duration.clone()),
            Box::new(produce_failures.clone()),
            Box::new(releases.clone()),
            Box::new(shed.clone()),
            Box::new(sold_out_local.clone()),
            Box::new(payments.clone()),
            Box::new(refunds_due.clone()),
            Box::new(key_reads.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric registered once");
        }
        Self {
            registry,
            requests,
            request_duration,
            reservations,
            produce_duration,
            produce_failures,
            shed,
            sold_out_local,
            releases,
            payments,
            refunds_due,
            key_reads,
        }
    }
}
