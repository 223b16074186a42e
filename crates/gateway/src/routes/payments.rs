//! The payment provider's webhook: `POST /v1/payments`.
//!
//! The notice is authenticated by its signature (no bearer token: the provider is not a buyer),
//! then applied in one database transaction (`Store::pay`), which decides a payment racing the
//! order's expiry under the order's row lock. The answer depends on the order only, and is
//! stored with the payment, so the provider's retries of a notice get the same answer:
//! - `200 {"order_id", "status": "paid", "payment_id"}`: paid in time;
//! - `409 order_expired | order_already_paid | order_failed`: the money pays nothing and is
//!   recorded as a refund due (`GET /v1/admin/refunds`); no unit moves;
//! - `409 order_pending` (with `Retry-After`): the order is still queued; retry;
//! - `404 order_not_found`, `422 amount_mismatch` (not quantity x the sale's price in its
//!   currency, or not 0 for a free sale), `422 sale_unpriced` (the sale was stored before a sale
//!   had to name its price or say it is free: no payment pays its orders until it is put again),
//!   `422 payment_conflict` (the id was used for another notice), `401 invalid_signature`; none
//!   of these records anything.

use super::problems::{problems, PayloadTooLarge, Unavailable};
use super::{parse_json, read_body};
use crate::error::ApiError;
use crate::metrics::PAYMENT_OUTCOMES;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use domain::payment::{self, MAX_NOTICE_BYTES, SIGNATURE_HEADER};
use domain::{OrderId, PaymentId, PaymentNotice, PaymentOutcome, ReservationState};
use serde::Serialize;
use settings::secrecy::ExposeSecret;
use store::Paid;

problems! {
    /// The error answers of a payment notice besides the shared ones.
    NotifyProblems {
        400 => "`invalid_body`",
        401 => "`invalid_signature`: missing, malformed, outside the tolerance, or not matching the body; nothing recorded",
        404 => "`order_not_found`; nothing recorded",
        409 => "`order_expired`, `order_already_paid`, `order_failed`: recorded as a refund due, no unit moves; `order_pending`: still queued, retry after `Retry-After`",
        422 => "`payment_conflict`: the id was used with another order, amount or currency; `amount_mismatch`: not quantity x the sale's price in its currency, or not 0 for a free sale; `sale_unpriced`: the sale names no price and is not free (stored before sales had to), put it again with one; nothing recorded",
    }
}

/// A paid order.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PaidView<'a> {
    /// The order.
    #[schema(value_type = String)]
    order_id: &'a OrderId,
    /// `paid`.
    status: domain::OrderStatus,
    /// The payment that paid it.
    #[schema(value_type = String)]
    payment_id: &'a PaymentId,
}

/// `POST /v1/payments`
#[utoipa::path(
    post,
    path = "/v1/payments",
    tag = "payments",
    summary = "Payment provider's webhook: an order was paid",
    description = "Signed, not authenticated by a token: `Seckill-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\">` \
with `payments.webhook_secret`; several `v1` entries may stand side by side while a secret rotates. Idempotent on \
`payment_id`: the same notice again gets the same answer and changes nothing.",
    params(
        ("Seckill-Signature" = String, Header, description = "`t=<unix seconds>,v1=<hex HMAC-SHA256>`"),
        super::TraceHeaders,
    ),
    request_body(content = PaymentNotice, content_type = "application/json", description = "At most 2 KiB"),
    responses(
        (status = 200, description = "Paid in time", body = PaidView),
        NotifyProblems, PayloadTooLarge, Unavailable,
    ),
    security(("webhook_signature" = []))
)]
pub async fn notify(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let applied = apply(&state, &req, payload).await;
    let label = match &applied {
        Ok((_, _, true)) => "replayed",
        Ok((_, PaymentOutcome::Paid, false)) => "paid",
        Ok((_, PaymentOutcome::RefundDue(reason), false)) => reason.as_str(),
        Err(error) => error.code(),
    };
    if PAYMENT_OUTCOMES.contains(&label) {
        state.metrics.payments.with_label_values(&[label]).inc();
    }
    match applied? {
        (notice, PaymentOutcome::Paid, _) => Ok(HttpResponse::Ok().json(PaidView {
            order_id: &notice.order_id,
            status: domain::OrderStatus::Paid,
            payment_id: &notice.payment_id,
        })),
        (_, PaymentOutcome::RefundDue(reason), _) => Err(ApiError::RefundDue(reason)),
    }
}

/// Verifies and applies the notice: the notice, what it came to, and whether that repeats an
/// earlier notice's answer.
async fn apply(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<(PaymentNotice, PaymentOutcome, bool), ApiError> {
    let body = read_body(payload, MAX_NOTICE_BYTES).await?;
    let header = req
        .headers()
        .get(SIGNATURE_HEADER)
        .map(|value| value.to_str().unwrap_or_default());
    let now = chrono::Utc::now();
    payment::verify(
        header,
        &body,
        state.payments.webhook_secret.expose_secret().as_bytes(),
        now.timestamp(),
        state.payments.signature_tolerance_secs,
    )
    .map_err(ApiError::InvalidSignature)?;
    let notice: PaymentNotice = parse_json(&body)?;
    let (outcome, replayed) = match state.store.pay(&notice, now).await? {
        Paid::Recorded(outcome) => (outcome, false),
        Paid::Replayed(outcome) => (outcome, true),
        Paid::Conflict => return Err(ApiError::PaymentConflict),
        Paid::AmountMismatch {
            expected_minor,
            currency,
        } => return Err(amount_mismatch(expected_minor, currency)),
        Paid::SaleUnpriced => return Err(ApiError::SaleUnpriced),
        Paid::OrderNotFound => return Err(not_written(state, &notice.order_id).await?),
    };
    let span = tracing::info_span!(
        "payment",
        order_id = %notice.order_id,
        payment_id = %notice.payment_id,
    );
    span.in_scope(|| match outcome {
        PaymentOutcome::Paid => tracing::info!(replayed, "order paid"),
        PaymentOutcome::RefundDue(reason) if !replayed => {
            state.metrics.refunds_due.inc();
            tracing::info!(%reason, "a payment pays no order; recorded as a refund due");
        }
        PaymentOutcome::RefundDue(_) => {}
    });
    Ok((notice, outcome, replayed))
}

/// The answer for a notice that does not pay what its order costs: `expected_minor` in
/// `currency`, or 0 in any currency for an order of a free sale.
fn amount_mismatch(expected_minor: i64, currency: Option<domain::Currency>) -> ApiError {
    ApiError::AmountMismatch(match currency {
        Some(currency) => format!(
            "the order costs {expected_minor} in minor units of {currency}; nothing was recorded"
        ),
        None => FREE_SALE_PAYMENT.to_owned(),
    })
}

/// The title of `amount_mismatch` for an order of a free sale.
const FREE_SALE_PAYMENT: &str =
    "the sale is free: its orders are paid with amount_minor 0; nothing was recorded";

/// The answer for an order the database does not have: still queued (its reservation stands),
/// or unknown.
async fn not_written(state: &AppState, order_id: &OrderId) -> Result<ApiError, ApiError> {
    let seen = state
        .ledger
        .reservation(order_id)
        .await?
        .map(|reservation| reservation.state);
    Ok(match seen {
        Some(
            ReservationState::Reserved | ReservationState::Acknowledged | ReservationState::Claimed,
        ) => ApiError::OrderPending,
        Some(ReservationState::Released) | None => ApiError::OrderNotFound,
    })
}
