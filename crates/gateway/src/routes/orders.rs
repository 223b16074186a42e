//! The buyer endpoints.

use super::{parse_json, read_body};
use crate::auth::Buyer;
use crate::error::ApiError;
use crate::service::{place_order, Placed};
use crate::AppState;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use domain::{IdempotencyKey, OrderId, OrderStatus, Quantity, ReasonCode, SkuId};
use serde::{Deserialize, Serialize};
use stock::ReservationState;
use telemetry::TraceContext;

/// The largest buy request body read.
pub const MAX_BODY: usize = 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BuyBody {
    quantity: Option<i64>,
}

/// `POST /v1/sales/{sku_id}/orders`
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
    let body = read_body(payload, MAX_BODY).await?;
    let quantity = if body.iter().all(u8::is_ascii_whitespace) {
        Quantity::ONE
    } else {
        match parse_json::<BuyBody>(&body)?.quantity {
            None => Quantity::ONE,
            Some(q) => Quantity::new(q).map_err(|e| ApiError::invalid("invalid_quantity", e))?,
        }
    };
    if !state.allow(&buyer.0) {
        return Err(ApiError::RateLimited);
    }
    // The request middleware always puts one there; a new trace is the harmless fallback.
    let trace = req.extensions().get::<TraceContext>().cloned();
    let trace = trace.unwrap_or_else(TraceContext::start);
    let placed: Placed = place_order(&state, buyer.0, sku, key, quantity, &trace).await?;
    Ok(HttpResponse::Accepted().json(placed))
}

#[derive(Serialize)]
struct OrderView {
    order_id: String,
    sku_id: String,
    status: OrderStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    quantity: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<ReasonCode>,
    /// The end of the payment window (orders written to the database).
    #[serde(skip_serializing_if = "Option::is_none")]
    pay_by: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    paid_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// `GET /v1/orders/{order_id}`: the caller's own order. Another buyer's order is answered
/// exactly like a missing one.
pub async fn get_order(
    state: web::Data<AppState>,
    path: web::Path<String>,
    buyer: Buyer,
) -> Result<HttpResponse, ApiError> {
    let id =
        OrderId::parse(path.into_inner()).map_err(|e| ApiError::invalid("invalid_order_id", e))?;
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
                _ => (OrderStatus::Pending, None),
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
