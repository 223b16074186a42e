//! The buyer endpoints.

use super::problems::{problems, PayloadTooLarge, SaleNotFound, Unauthorized};
use super::{parse_json, read_body};
use crate::auth::Buyer;
use crate::error::ApiError;
use crate::limits::Limit;
use crate::service::{place_order, Order, Placed};
use crate::waiting_room::tokens::{TicketClaims, TicketRefusal, Tokens};
use crate::AppState;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use domain::{IdempotencyKey, OrderId, OrderStatus, Quantity, ReasonCode, ReservationState, SkuId};
use serde::{Deserialize, Serialize};
use telemetry::TraceContext;

problems! {
    /// The error answers of a buy besides the shared ones.
    BuyProblems {
        400 => "`invalid_sku`, `missing_idempotency_key`, `invalid_idempotency_key`, `invalid_body`, `invalid_quantity`",
        403 => "`sale_not_active`: before the start or after the end; `admission_required`: the sale has a waiting room and the buy carries no valid ticket of it; `admission_expired`: the ticket has expired; `proof_of_work_required`, `proof_of_work_invalid`: the gateway asks a proof of work of a buy without a ticket (`GET /v1/sales/{sku_id}/challenge?key=…`) and the request carries none that passes",
        409 => "`sold_out`, `limit_exceeded`, `request_in_progress` (retry after `Retry-After`)",
        422 => "`idempotency_key_reused`: the key names an order of another quantity; nothing reserved",
        429 => "`rate_limited`: past the buyer's (`gateway.per_user_rate_per_sec`) or the client address's (`gateway.per_address_rate_per_sec`) allowance; retry after `Retry-After`",
        503 => "`overloaded`, `broker_unavailable`, `stock_unavailable`, `database_unavailable`, `sale_not_ready`: nothing stays reserved; retry",
    }
    /// The error answers of `GET /v1/orders/{order_id}` besides the shared ones.
    GetOrderProblems {
        400 => "`invalid_order_id`",
        404 => "`order_not_found` (also for another buyer's order)",
        429 => "`rate_limited`: past the buyer's allowance of reads (`gateway.per_user_read_rate_per_sec`) or the client address's; retry after `Retry-After`",
        503 => "`overloaded`: `gateway.max_reads_in_flight` reads were being served for 100 ms; `stock_unavailable`, `database_unavailable`: retry",
    }
}

/// The header a buy carries its admission ticket in (sales with a waiting room).
pub const ADMISSION_TICKET: &str = "Admission-Ticket";

/// How long an order-status read waits for one of the `gateway.max_reads_in_flight` permits
/// before it is shed: long enough for a burst of polls, short against a flood.
const READ_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// The largest buy request body read.
pub const MAX_BODY: usize = 1024;

/// The body of a buy request; an empty body buys one unit.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BuyBody {
    /// Units, 1 to 100 (default 1).
    #[schema(minimum = 1, maximum = 100, example = 1)]
    quantity: Option<i64>,
}

/// `POST /v1/sales/{sku_id}/orders`
#[utoipa::path(
    post,
    path = "/v1/sales/{sku_id}/orders",
    tag = "buyers",
    summary = "Buy: reserve units and queue the order",
    description = "Reserves the units in Redis and queues the order; answers `202` once the broker has it. \
The same buyer with the same `Idempotency-Key` and the same quantity gets the same order back (`202`, with its \
current status), never a second one; the same key with another quantity is `422 idempotency_key_reused`. \
Keys are remembered while the sale runs and `sweeper.retain_after_end_secs` (24 h) after it ends.",
    params(super::SkuPath, super::BuyHeaders),
    request_body(content = Option<BuyBody>, content_type = "application/json", description = "May be empty: one unit. At most 1 KiB"),
    responses(
        (status = 202, description = "Reserved and queued (or the same order again, with its status now)", body = Placed,
            headers(("traceresponse" = String, description = "The request's trace and the gateway's span"))),
        BuyProblems, Unauthorized, SaleNotFound, PayloadTooLarge,
    ),
    security(("buyer" = []))
)]
pub async fn buy(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    buyer: Buyer,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let sku = SkuId::parse(path.into_inner()).map_err(|e| ApiError::invalid("invalid_sku", e))?;
    let key = req
        .headers()
        .get("Idempotency-Key")
        .ok_or_else(|| {
            ApiError::invalid(
                "missing_idempotency_key",
                "the Idempotency-Key header is required",
            )
        })?
        .to_str()
        .map_err(|_| ApiError::invalid("invalid_idempotency_key", "Idempotency-Key must be ASCII"))
        .and_then(|v| {
            IdempotencyKey::parse(v).map_err(|e| ApiError::invalid("invalid_idempotency_key", e))
        })?;
    if !state.limits.allow_buy(&buyer.0) {
        return Err(state.rate_limited(Limit::Buy));
    }
    let body = read_body(payload, MAX_BODY).await?;
    let quantity = if body.iter().all(u8::is_ascii_whitespace) {
        Quantity::ONE
    } else {
        match parse_json::<BuyBody>(&body)?.quantity {
            None => Quantity::ONE,
            Some(q) => Quantity::new(q).map_err(|e| ApiError::invalid("invalid_quantity", e))?,
        }
    };
    // A ticket that does not admit is as none: the sale decides (a sale without a room, or a
    // retry of an accepted order, needs none), and only then is an expired one named.
    let now_ms = chrono::Utc::now().timestamp_millis();
    // The load shedding's first look verified a current ticket of this sale already.
    let checked = req.extensions_mut().remove::<TicketClaims>();
    let ticket = req
        .headers()
        .get(ADMISSION_TICKET)
        .map(|ticket| match checked {
            Some(claims) => Tokens::admitted(claims, buyer.0.as_str(), sku.as_str(), now_ms),
            None => {
                let ticket = ticket.to_str().map_err(|_| TicketRefusal::Invalid)?;
                state
                    .rooms
                    .tokens
                    .admits(ticket, buyer.0.as_str(), sku.as_str(), now_ms)
            }
        });
    let admitted = matches!(ticket, Some(Ok(_)));
    // A buyer a waiting room admitted proved its work at the join.
    if !admitted {
        let purpose = domain::pow::Purpose {
            user: buyer.0.as_str(),
            sku: sku.as_str(),
            key: Some(key.as_str()),
        };
        let proof = req.headers().get(domain::pow::HEADER);
        state.proof_of_work.check(proof, purpose, now_ms / 1000)?;
    }
    // The slot, now that the body is in: a buyer a waiting room admitted is paced by the room
    // already, and is shed only past twice the bound.
    let slot = match admitted {
        true => state.admission.admit_ticket_holder(),
        false => state.admission.admit(),
    };
    let _slot = slot.map_err(|why| {
        state.metrics.shed.with_label_values(&[why.label()]).inc();
        ApiError::Overloaded
    })?;
    // The request middleware always puts one there; a new trace is the harmless fallback.
    let trace = req.extensions().get::<TraceContext>().cloned();
    let trace = trace.unwrap_or_else(TraceContext::start);
    let order = Order {
        user: buyer.0,
        sku,
        key,
        quantity,
        admitted,
    };
    let placed = match place_order(&state, order, &trace).await {
        Err(ApiError::AdmissionRequired) if matches!(ticket, Some(Err(TicketRefusal::Expired))) => {
            let tickets = &state.metrics.room_tickets;
            tickets.with_label_values(&["expired"]).inc();
            return Err(ApiError::AdmissionExpired);
        }
        placed => placed?,
    };
    Ok(HttpResponse::Accepted().json(placed))
}

/// An order as its buyer sees it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OrderView {
    /// The order.
    order_id: String,
    /// Its SKU.
    sku_id: String,
    /// Where it is.
    status: OrderStatus,
    /// Units (once written to the database).
    #[serde(skip_serializing_if = "Option::is_none")]
    quantity: Option<i32>,
    /// Why it failed or expired.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<ReasonCode>,
    /// The end of the payment window (orders written to the database).
    #[serde(skip_serializing_if = "Option::is_none")]
    pay_by: Option<chrono::DateTime<chrono::Utc>>,
    /// When it was paid.
    #[serde(skip_serializing_if = "Option::is_none")]
    paid_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// `GET /v1/orders/{order_id}`: the caller's own order. Another buyer's order is answered
/// exactly like a missing one.
#[utoipa::path(
    get,
    path = "/v1/orders/{order_id}",
    tag = "buyers",
    summary = "The caller's own order",
    params(super::OrderPath, super::TraceHeaders),
    responses(
        (status = 200, description = "The order: pending (queued), awaiting_payment (with pay_by), paid, expired or failed (with a reason)", body = OrderView),
        GetOrderProblems, Unauthorized,
    ),
    security(("buyer" = []))
)]
pub async fn get_order(
    state: web::Data<AppState>,
    path: web::Path<String>,
    buyer: Buyer,
) -> Result<HttpResponse, ApiError> {
    let id =
        OrderId::parse(path.into_inner()).map_err(|e| ApiError::invalid("invalid_order_id", e))?;
    if !state.limits.allow_read(&buyer.0) {
        return Err(state.rate_limited(Limit::Read));
    }
    let permit = tokio::time::timeout(READ_WAIT, state.reads.acquire()).await;
    let Ok(Ok(_permit)) = permit else {
        state.metrics.shed.with_label_values(&["reads"]).inc();
        return Err(ApiError::Overloaded);
    };
    if let Some(row) = state.store.order(&id).await? {
        if row.user_id != buyer.0.as_str() {
            return Err(ApiError::OrderNotFound);
        }
        return Ok(HttpResponse::Ok().json(OrderView {
            status: row.order_status()?,
            reason: row.failure_reason()?,
            order_id: row.order_id,
            sku_id: row.sku_id,
            quantity: Some(row.quantity),
            pay_by: row.pay_by,
            paid_at: row.paid_at,
        }));
    }
    match state.ledger.reservation(&id).await? {
        Some(reservation) if reservation.user == buyer.0 => {
            let (status, reason) = match reservation.state {
                ReservationState::Released => {
                    (OrderStatus::Failed, Some(ReasonCode::ReservationReleased))
                }
                ReservationState::Reserved
                | ReservationState::Acknowledged
                | ReservationState::Claimed => (OrderStatus::Pending, None),
            };
            Ok(HttpResponse::Ok().json(OrderView {
                order_id: id.to_string(),
                sku_id: id.sku().to_string(),
                status,
                quantity: None,
                reason,
                pay_by: None,
                paid_at: None,
            }))
        }
        _ => Err(ApiError::OrderNotFound),
    }
}
