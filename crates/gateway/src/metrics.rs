//! The gateway's metrics, registered in an explicit registry that `/metrics` renders.

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry};
use telemetry::metrics::{
    counter, counter_by, counter_vec, exponential_buckets, gauge, histogram, histogram_vec,
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
    /// Buy and order-status requests refused at once (`overloaded`), by reason (`in_flight`,
    /// `loop_lag`).
    pub shed: IntCounterVec,
    /// Buy requests answered `sold_out` from the local flag, without Redis.
    pub sold_out_local: IntCounter,
    /// `seckill_gateway_rate_limited_total{limit}`: requests refused 429 by a cheap limit
    /// (`address`, `buy`, `read`).
    pub rate_limited: IntCounterVec,
    /// `seckill_gateway_limiter_callers`: the callers the rate limiters remember.
    pub limiter_callers: IntGauge,
    /// `seckill_reserve_calls_total`: calls of the reserve script (one per group of buyers).
    pub reserve_calls: IntCounter,
    /// `seckill_reserve_orders_total`: the orders those calls carried.
    pub reserve_orders: IntCounter,
    /// `seckill_payments_total{outcome}`: payment notices by how they were answered.
    pub payments: IntCounterVec,
    /// `seckill_refunds_due_total`: payments recorded as needing a refund.
    pub refunds_due: IntCounter,
    /// `seckill_identity_provider_key_reads_total{outcome}`: reads of the identity provider's
    /// JWKS document (`changed`, `unchanged`, `failed`).
    pub key_reads: IntCounterVec,
    /// `seckill_room_joins_total{outcome}`: joins of a waiting room.
    pub room_joins: IntCounterVec,
    /// `seckill_room_polls_total{status}`: polls of a waiting room, by the status answered.
    pub room_polls: IntCounterVec,
    /// `seckill_room_tickets_total{event}`: admission tickets `issued`, `used` (a buy accepted
    /// with one), `expired` (a buy with one past its expiry), `lapsed` (an admitted place
    /// claimed after the line moved a ticket's lifetime past it).
    pub room_tickets: IntCounterVec,
    /// `seckill_room_waiting`: buyers in the lines of the rooms this gateway runs.
    pub room_waiting: IntGauge,
    /// `seckill_room_admission_rate`: the admission rate of those rooms, summed (per second).
    pub room_rate: IntGauge,
    /// `seckill_room_wait_seconds`: from the join to the ticket, per admitted buyer.
    pub room_wait: Histogram,
    /// `seckill_room_wait_estimate_error_seconds`: how far the wait estimated at the join was
    /// from the wait the buyer had.
    pub room_estimate_error: Histogram,
}

/// Join outcomes, pre-registered.
pub const ROOM_JOIN_OUTCOMES: [&str; 5] = ["joined", "again", "too_early", "ended", "no_room"];
/// Poll statuses, pre-registered.
pub const ROOM_POLL_STATUSES: [&str; 6] = [
    "waiting", "admitted", "sold_out", "closed", "expired", "lost",
];
/// Ticket events, pre-registered.
pub const ROOM_TICKET_EVENTS: [&str; 4] = ["issued", "used", "expired", "lapsed"];

/// Outcomes of a read of the identity provider's keys, pre-registered.
pub const KEY_READ_OUTCOMES: [&str; 3] = ["changed", "unchanged", "failed"];

/// Payment notice outcomes, pre-registered: `paid`, the refund reasons, `replayed` (the same
/// notice again), and the refusals.
pub const PAYMENT_OUTCOMES: [&str; 11] = [
    "paid",
    "order_expired",
    "order_already_paid",
    "order_failed",
    "replayed",
    "order_pending",
    "order_not_found",
    "amount_mismatch",
    "sale_unpriced",
    "payment_conflict",
    "invalid_signature",
];

/// Reservation outcomes, pre-registered so every series exists from the start.
pub const RESERVATION_OUTCOMES: [&str; 8] = [
    "accepted",
    "sold_out",
    "limit_exceeded",
    "duplicate",
    "key_reused",
    "not_found",
    "not_active",
    "admission_required",
];

impl GatewayMetrics {
    /// Creates and registers the metrics in `registry`.
    pub fn new(registry: Registry) -> Self {
        let r = &registry;
        let latency = exponential_buckets(0.0005, 2.0, 14);
        Self {
            requests: counter_vec(
                r,
                "seckill_http_requests_total",
                "HTTP requests answered.",
                &["route", "method", "status"],
            ),
            request_duration: histogram_vec(
                r,
                "seckill_http_request_duration_seconds",
                "Time to answer an HTTP request.",
                &["route", "method"],
                latency.clone(),
            ),
            reservations: counter_by(
                r,
                "seckill_reservations_total",
                "Reservation attempts in Redis by outcome.",
                "outcome",
                RESERVATION_OUTCOMES,
            ),
            produce_duration: histogram_vec(
                r,
                "seckill_produce_duration_seconds",
                "Time from produce to broker acknowledgement (or failure).",
                &["result"],
                latency,
            ),
            produce_failures: counter(
                r,
                "seckill_produce_failures_total",
                "Order messages the broker did not acknowledge.",
            ),
            releases: counter_vec(
                r,
                "seckill_reservation_releases_total",
                "Reservations released after a failed produce, by outcome.",
                &["outcome"],
            ),
            shed: counter_by(
                r,
                "seckill_gateway_shed_total",
                "Requests refused with 503 overloaded, by reason: in_flight (gateway.max_in_flight buys served already), loop_lag (the HTTP worker ran later than gateway.max_loop_lag_ms), reads (order-status reads: gateway.max_reads_in_flight served for 100 ms).",
                "reason",
                ["in_flight", "loop_lag", "reads"],
            ),
            sold_out_local: counter(
                r,
                "seckill_gateway_sold_out_local_total",
                "Buy requests answered sold_out from the gateway's memory, without a Redis call.",
            ),
            rate_limited: counter_by(
                r,
                "seckill_gateway_rate_limited_total",
                "Requests refused with 429 rate_limited, by the limit: address (gateway.per_address_rate_per_sec), buy (gateway.per_user_rate_per_sec) or read (gateway.per_user_read_rate_per_sec).",
                "limit",
                <crate::limits::Limit as strum::VariantNames>::VARIANTS,
            ),
            reserve_calls: counter(
                r,
                "seckill_reserve_calls_total",
                "Calls of the reserve script; each carries a group of buyers of one bucket (orders / calls: the mean group).",
            ),
            reserve_orders: counter(
                r,
                "seckill_reserve_orders_total",
                "Orders the calls of the reserve script carried.",
            ),
            limiter_callers: gauge(
                r,
                "seckill_gateway_limiter_callers",
                "Callers (addresses and buyers) the rate limiters remember after their last pruning.",
            ),
            payments: counter_by(
                r,
                "seckill_payments_total",
                "Payment notices by outcome: paid, a refund due (order_expired, order_already_paid, order_failed), replayed, or refused.",
                "outcome",
                PAYMENT_OUTCOMES,
            ),
            refunds_due: counter(
                r,
                "seckill_refunds_due_total",
                "Payments recorded as needing a refund (late, a second payment, a failed order).",
            ),
            key_reads: counter_by(
                r,
                "seckill_identity_provider_key_reads_total",
                "Reads of the identity provider's JWKS document, by outcome: changed, unchanged, failed.",
                "outcome",
                KEY_READ_OUTCOMES,
            ),
            room_joins: counter_by(
                r,
                "seckill_room_joins_total",
                "Joins of a waiting room by outcome: joined, again (the same place), too_early, ended, no_room.",
                "outcome",
                ROOM_JOIN_OUTCOMES,
            ),
            room_polls: counter_by(
                r,
                "seckill_room_polls_total",
                "Polls of a waiting room by the status answered.",
                "status",
                ROOM_POLL_STATUSES,
            ),
            room_tickets: counter_by(
                r,
                "seckill_room_tickets_total",
                "Admission tickets: issued, used (a buy accepted with one), expired (a buy with one past its expiry), lapsed (an admitted place claimed too late).",
                "event",
                ROOM_TICKET_EVENTS,
            ),
            room_waiting: gauge(
                r,
                "seckill_room_waiting",
                "Buyers waiting in the lines of the rooms this gateway runs (every gateway of a room reports the same line: take the max).",
            ),
            room_rate: gauge(
                r,
                "seckill_room_admission_rate",
                "Admission rate of the rooms this gateway runs, buyers per second, summed over rooms.",
            ),
            room_wait: histogram(
                r,
                "seckill_room_wait_seconds",
                "Wait of an admitted buyer, from the join to the first ticket.",
                exponential_buckets(0.25, 2.0, 14),
            ),
            room_estimate_error: histogram(
                r,
                "seckill_room_wait_estimate_error_seconds",
                "How far the wait estimated at the join was from the wait the buyer had (absolute).",
                exponential_buckets(0.25, 2.0, 14),
            ),
            registry,
        }
    }
}
