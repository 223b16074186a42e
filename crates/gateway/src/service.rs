//! The buy flow, apart from HTTP: reserve in Redis, enqueue in Kafka, and give the reservation
//! back if the broker does not take the order.

use crate::error::ApiError;
use crate::sold_out::Ask;
use crate::AppState;
use domain::{
    IdempotencyKey, OrderId, OrderRequested, OrderStatus, Quantity, ReservationState, Signed,
    SkuId, UserId,
};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use std::time::Instant;
use stock::{ReleaseMode, ReleaseOutcome, ReserveOutcome};
use telemetry::TraceContext;

/// An order the buyer can follow.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Placed {
    /// The order.
    #[schema(value_type = String, example = "phone-x.019abf3c5e7d7c3a9d2e4b1f0a6c8e21")]
    pub order_id: OrderId,
    /// Where it is.
    pub status: OrderStatus,
}

/// A buy request, parsed.
#[derive(Debug, Clone)]
pub struct Order {
    /// The buyer.
    pub user: UserId,
    /// The sale.
    pub sku: SkuId,
    /// The buyer's key for this request.
    pub key: IdempotencyKey,
    /// Units.
    pub quantity: Quantity,
    /// Whether the buy carries a valid admission ticket of the sale's waiting room.
    pub admitted: bool,
}

/// Places an order: the whole contract of `POST /v1/sales/{sku_id}/orders`. The order message
/// carries `trace`, the request's context, to the worker.
pub async fn place_order(
    state: &AppState,
    order: Order,
    trace: &TraceContext,
) -> Result<Placed, ApiError> {
    let Order {
        user,
        sku,
        key,
        quantity,
        admitted,
    } = order;
    let now = chrono::Utc::now();
    let now_ms = now.timestamp_millis();
    let ask = Ask {
        sku: &sku,
        user: user.as_str(),
        key: key.as_str(),
        quantity: i64::from(quantity.get()),
        now_ms,
    };
    if state.sold_out.answers_sold_out(ask) {
        state.metrics.sold_out_local.inc();
        return Err(ApiError::SoldOut);
    }
    // The order as it will be queued if the reservation is new (the ledger moves its id to the
    // buyer's stock bucket when the sale has several): the reserve script keeps it in the
    // outbox, from which the sweeper publishes it again if this process dies before the broker
    // has it.
    let mut candidate = OrderRequested {
        v: domain::ORDER_SCHEMA_VERSION,
        order_id: OrderId::new(&sku, uuid::Uuid::now_v7().as_u128()),
        user_id: user,
        sku_id: sku,
        quantity,
        idempotency_key: key,
        requested_at: now,
    };
    let (outcome, entry) = state
        .ledger
        .reserve(&mut candidate, Some(trace.traceparent()), admitted)
        .await?;
    let label = match &outcome {
        ReserveOutcome::Accepted(_) => "accepted",
        ReserveOutcome::Duplicate { .. } => "duplicate",
        ReserveOutcome::KeyReused { .. } => "key_reused",
        ReserveOutcome::SoldOut(_) => "sold_out",
        ReserveOutcome::LimitExceeded => "limit_exceeded",
        ReserveOutcome::NotFound => "not_found",
        ReserveOutcome::NotActive => "not_active",
        ReserveOutcome::AdmissionRequired => "admission_required",
    };
    state.metrics.reservations.with_label_values(&[label]).inc();
    if let ReserveOutcome::Accepted(id) | ReserveOutcome::Duplicate { order_id: id, .. } = &outcome
    {
        tracing::Span::current().record("order_id", tracing::field::display(id));
    }
    match &outcome {
        ReserveOutcome::SoldOut(seen) => {
            let sku = &candidate.sku_id;
            state
                .sold_out
                .sold_out(&state.ledger, sku, *seen, now_ms)
                .await;
            // Nothing left at all (not merely fewer units than asked): the line learns it now.
            if seen.remaining <= 0 {
                if let Some(room) = state.rooms.known(sku) {
                    room.sold_out(now_ms);
                }
            }
        }
        // A known order is answered before the stock is looked at: it says nothing of it.
        ReserveOutcome::Duplicate { .. } | ReserveOutcome::KeyReused { .. } => {}
        ReserveOutcome::Accepted(_)
        | ReserveOutcome::LimitExceeded
        | ReserveOutcome::NotFound
        | ReserveOutcome::NotActive
        | ReserveOutcome::AdmissionRequired => state.sold_out.clear(&candidate.sku_id),
    }
    match outcome {
        ReserveOutcome::Accepted(_) => {
            let placed = enqueue(state, candidate, &entry.payload, trace).await;
            if admitted && placed.is_ok() {
                let tickets = &state.metrics.room_tickets;
                tickets.with_label_values(&["used"]).inc();
            }
            placed
        }
        ReserveOutcome::Duplicate { order_id, state: s } => {
            match settled(state, &order_id, s) {
                ReservationState::Reserved => Err(ApiError::RequestInProgress),
                ReservationState::Acknowledged
                | ReservationState::Claimed
                | ReservationState::Released => {
                    let status = match state.store.order(&order_id).await {
                        Ok(Some(row)) => row.order_status()?,
                        Ok(None) if s == ReservationState::Released => OrderStatus::Failed,
                        Ok(None) => OrderStatus::Pending,
                        // The reservation stands, so "pending" is true of it; the row's status is
                        // the buyer's to ask for again.
                        Err(error) => {
                            tracing::warn!(%error, "order status lookup failed; answering pending");
                            OrderStatus::Pending
                        }
                    };
                    Ok(Placed { order_id, status })
                }
            }
        }
        ReserveOutcome::KeyReused { order_id, quantity } => Err(ApiError::KeyReused(format!(
            "this Idempotency-Key already names order {order_id} for a quantity of {quantity}; use a new key for a different request"
        ))),
        ReserveOutcome::SoldOut(_) => Err(ApiError::SoldOut),
        ReserveOutcome::LimitExceeded => Err(ApiError::LimitExceeded),
        ReserveOutcome::NotActive => Err(ApiError::SaleNotActive),
        ReserveOutcome::AdmissionRequired => Err(ApiError::AdmissionRequired),
        ReserveOutcome::NotFound => match state.store.sale(&candidate.sku_id).await? {
            Some(_) => Err(ApiError::SaleNotReady),
            None => Err(ApiError::SaleNotFound),
        },
    }
}

/// The state of a known order's reservation, as a retry should see it. A reservation reads
/// `reserved` until the gateway that queued it marks it acknowledged, which it does in batches
/// up to `gateway.ack_flush_ms` after its 202. This gateway knows its own unmarked orders;
/// another replica answers 409 `request_in_progress` (with `Retry-After`) for that short while.
fn settled(state: &AppState, order_id: &OrderId, seen: ReservationState) -> ReservationState {
    if seen == ReservationState::Reserved && state.acknowledger.is_unmarked(order_id) {
        ReservationState::Acknowledged
    } else {
        seen
    }
}

/// Produces `order`, whose encoded message is `payload` (the bytes the outbox keeps).
async fn enqueue(
    state: &AppState,
    order: OrderRequested,
    payload: &[u8],
    trace: &TraceContext,
) -> Result<Placed, ApiError> {
    // Signed over the key and the very bytes produced: the worker writes no order it cannot
    // verify, so nobody else who can write to the topic can order for a buyer.
    let signed = Signed::Order {
        key: order.sku_id.as_str().as_bytes(),
        payload,
        replays: b"",
    };
    let headers = kafka::trace::with_trace(OwnedHeaders::new(), trace);
    let record = FutureRecord::to(&state.orders_topic)
        .key(order.sku_id.as_str())
        .payload(payload)
        .headers(kafka::signature::with_signature(
            headers,
            &state.keyring,
            &signed,
        ));
    let started = Instant::now();
    let sent = state
        .producer
        .send(record, Timeout::After(state.produce_timeout))
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    match sent {
        Ok(_) => {
            state
                .metrics
                .produce_duration
                .with_label_values(&["ok"])
                .observe(elapsed);
            tracing::debug!("order queued");
            state.acknowledger.mark(order.order_id.clone());
            Ok(Placed {
                order_id: order.order_id,
                status: OrderStatus::Pending,
            })
        }
        Err((error, _)) => {
            state
                .metrics
                .produce_duration
                .with_label_values(&["error"])
                .observe(elapsed);
            state.metrics.produce_failures.inc();
            tracing::error!(order_id = %order.order_id, %error, "produce failed; releasing");
            release_after_failed_produce(state, order.order_id).await
        }
    }
}

async fn release_after_failed_produce(
    state: &AppState,
    order_id: OrderId,
) -> Result<Placed, ApiError> {
    let outcome = state
        .ledger
        .release(&order_id, ReleaseMode::ProduceFailed)
        .await;
    let label = match &outcome {
        Ok(ReleaseOutcome::Released) => "released",
        Ok(ReleaseOutcome::AlreadyReleased) => "already_released",
        Ok(ReleaseOutcome::Missing | ReleaseOutcome::SaleMissing) => "missing",
        Ok(ReleaseOutcome::Claimed) => "claimed",
        Err(_) => "error",
    };
    state.metrics.releases.with_label_values(&[label]).inc();
    match outcome {
        // The worker already took it: the message did reach the queue.
        Ok(ReleaseOutcome::Claimed) => Ok(Placed {
            order_id,
            status: OrderStatus::Pending,
        }),
        Ok(_) => Err(ApiError::BrokerUnavailable),
        Err(error) => {
            tracing::error!(%order_id, %error, "release failed: reservation left for reconcile");
            Err(ApiError::BrokerUnavailable)
        }
    }
}
