//! The waiting room's buyer endpoints: join, and poll (see the `waiting_room` module).

use super::problems::{problems, SaleNotFound, Unauthorized};
use crate::auth::Buyer;
use crate::error::ApiError;
use crate::waiting_room::standing::Standing;
use crate::waiting_room::tokens::PlaceClaims;
use crate::waiting_room::{Room, RoomError};
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, TimeZone, Utc};
use domain::SkuId;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use stock::{JoinOutcome, TicketOutcome};

problems! {
    /// The error answers of a join besides the shared ones.
    JoinProblems {
        400 => "`invalid_sku`",
        403 => "`queue_not_open`: before the pre-queue window; `sale_not_active`: the sale has ended; `proof_of_work_required`, `proof_of_work_invalid`: the gateway asks a proof of work (`GET /v1/sales/{sku_id}/challenge`) and the request carries none that passes",
        409 => "`no_waiting_room`: the sale has none, buy directly",
        429 => "`rate_limited`",
        503 => "`stock_unavailable`, `database_unavailable`, `sale_not_ready`: retry",
    }
    /// The error answers of a poll besides the shared ones.
    PollProblems {
        404 => "`sale_not_found`",
        400 => "`invalid_sku`, `invalid_place_token`, `invalid_query`",
        409 => "`no_waiting_room`; `place_lost`: the room was reset (Redis lost it), join again",
        503 => "`stock_unavailable`, `database_unavailable`, `sale_not_ready`: retry",
    }
}

/// The header a poll carries its place token in.
pub const PLACE_TOKEN: &str = "Place-Token";

/// Where a buyer stands in a waiting room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QueueStatus {
    /// In the line: see `position` and `estimated_wait_secs`, poll again after `poll_after_ms`.
    Waiting,
    /// Admitted: buy with `ticket` (header `Admission-Ticket`) before `ticket_expires_at`.
    Admitted,
    /// The sale has no unit left. Units may come back (an unpaid order's window closes): the
    /// room then admits again, and a poll says so.
    SoldOut,
    /// The sale has ended.
    Closed,
    /// The buyer's turn came and went: the ticket expired, or the place was never claimed while
    /// the line moved a ticket's lifetime past it.
    Expired,
}

/// A buyer's standing in a waiting room.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueueView {
    /// Where the buyer stands.
    pub status: QueueStatus,
    /// The place token (joins only): the header `Place-Token` of every poll.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub place_token: Option<String>,
    /// Waiting: the place in the line, 1 being admitted next. Absent before the opening of a
    /// `random_at_open` room, whose places are drawn at the opening.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    /// Waiting: buyers admitted before this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub people_ahead: Option<u64>,
    /// Waiting: the estimated wait, in seconds, at the room's admission rate now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_wait_secs: Option<f64>,
    /// Waiting: the sale's opening, while it is ahead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<DateTime<Utc>>,
    /// Admitted: the admission ticket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// Admitted: when the ticket expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket_expires_at: Option<DateTime<Utc>>,
    /// When to poll again (waiting and admitted), in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_after_ms: Option<u64>,
}

impl QueueView {
    fn status(status: QueueStatus) -> Self {
        Self {
            status,
            place_token: None,
            position: None,
            people_ahead: None,
            estimated_wait_secs: None,
            opens_at: None,
            ticket: None,
            ticket_expires_at: None,
            poll_after_ms: None,
        }
    }
}

/// The query of a poll.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PollQuery {
    /// Hold the poll open until the answer changes (admitted, sold out, the end), up to
    /// `waiting_room.poll_hold_ms` (20 s by default); a move in the line is not a change.
    wait: Option<bool>,
}

/// The header of a poll, as the OpenAPI document describes it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct PlaceHeaders {
    /// The place token the join answered.
    #[param(rename = "Place-Token")]
    place_token: String,
}

/// `POST /v1/sales/{sku_id}/queue`
#[utoipa::path(
    post,
    path = "/v1/sales/{sku_id}/queue",
    tag = "buyers",
    summary = "Join a sale's waiting room",
    description = "Takes a place in the sale's waiting room: one per buyer and sale (joining again answers the \
same place). Answers the place token, which every poll carries, and the buyer's standing. Joins open \
`pre_queue_secs` before the sale; in a `random_at_open` room everyone who joined before the opening gets a \
random place at the opening.",
    params(super::SkuPath, super::ProofHeaders),
    responses(
        (status = 200, description = "The place and where it stands", body = QueueView),
        JoinProblems, Unauthorized, SaleNotFound,
    ),
    security(("buyer" = []))
)]
pub async fn join(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    buyer: Buyer,
) -> Result<HttpResponse, ApiError> {
    let sku = SkuId::parse(path.into_inner()).map_err(|e| ApiError::invalid("invalid_sku", e))?;
    if !state.limits.allow_buy(&buyer.0) {
        return Err(state.rate_limited(crate::limits::Limit::Buy));
    }
    let purpose = domain::pow::Purpose {
        user: buyer.0.as_str(),
        sku: sku.as_str(),
        key: None,
    };
    let proof = req.headers().get(domain::pow::HEADER);
    state
        .proof_of_work
        .check(proof, purpose, Utc::now().timestamp())?;
    let room = open(&state, &sku).await?;
    let now_ms = Utc::now().timestamp_millis();
    let epoch = room.view().epoch.clone();
    let outcome = state
        .ledger
        .join_room(&sku, &buyer.0, now_ms, &epoch)
        .await?;
    let joins = &state.metrics.room_joins;
    let place = match outcome {
        JoinOutcome::Place(place) => place,
        JoinOutcome::TooEarly(opens_ms) => {
            joins.with_label_values(&["too_early"]).inc();
            return Err(ApiError::QueueNotOpen(at(opens_ms)));
        }
        JoinOutcome::Ended => {
            joins.with_label_values(&["ended"]).inc();
            return Err(ApiError::SaleNotActive);
        }
        JoinOutcome::NoRoom => {
            joins.with_label_values(&["no_room"]).inc();
            return Err(ApiError::NoWaitingRoom);
        }
        JoinOutcome::NotFound => return Err(not_in_redis(&state, &sku).await),
    };
    let outcome = if place.again { "again" } else { "joined" };
    joins.with_label_values(&[outcome]).inc();
    let mut claims = PlaceClaims {
        typ: String::new(),
        sub: buyer.0.to_string(),
        sku: sku.to_string(),
        seq: place.seq,
        joined_ms: place.joined_ms,
        epoch: place.epoch,
        est_ms: 0,
    };
    let (standing, _) = room.standing(&claims, now_ms, false);
    if let Standing::Waiting { wait, .. } = standing {
        claims.est_ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
    }
    let token = state.rooms.tokens.place_token(claims.clone());
    let mut view = answer(&state, &sku, &room, &claims, standing, now_ms).await?;
    view.place_token = Some(token);
    Ok(HttpResponse::Ok().json(view))
}

/// `GET /v1/sales/{sku_id}/queue`
#[utoipa::path(
    get,
    path = "/v1/sales/{sku_id}/queue",
    tag = "buyers",
    summary = "Where the caller stands in a sale's waiting room",
    description = "The place token is the poll's credential (no bearer token: a poll reveals a standing, and the \
ticket it may answer buys only with its buyer's own token). \
Answered from the gateway's view of the room, refreshed every `waiting_room.tick_ms` (100 ms), \
without a Redis call for a waiting buyer. `waiting` says when to poll again; with `wait=true` the poll is held \
until the answer changes. `admitted` carries the admission ticket, the same expiry on every poll. When the sale \
sells out, every waiting buyer's next poll (and every held one) says `sold_out`. A buyer's polls are paced at one \
per `waiting_room.poll_min_ms` (1 s; a burst of three): a sooner one, on any connection, is held until its turn \
or a change of its answer, as with `wait=true`.",
    params(super::SkuPath, PlaceHeaders, PollQuery),
    responses(
        (status = 200, description = "Where the buyer stands", body = QueueView),
        PollProblems,
    )
)]
pub async fn poll(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let sku = SkuId::parse(path.into_inner()).map_err(|e| ApiError::invalid("invalid_sku", e))?;
    let wait_asked = match req.query_string() {
        "" => false,
        query => web::Query::<PollQuery>::from_query(query)
            .map_err(|e| ApiError::invalid("invalid_query", e))?
            .wait
            .unwrap_or(false),
    };
    let claims = req
        .headers()
        .get(PLACE_TOKEN)
        .and_then(|token| token.to_str().ok())
        .and_then(|token| state.rooms.tokens.place(token, sku.as_str()))
        .ok_or_else(|| {
            ApiError::invalid(
                "invalid_place_token",
                "the Place-Token header must carry the place token a join of this sale answered",
            )
        })?;
    let room = open(&state, &sku).await?;
    // A poll before its turn is held until then, as if it asked to wait.
    let early_by = state.rooms.early_by(&sku, &claims.sub);
    let asked = Duration::from_millis(state.rooms.settings().poll_hold_ms);
    let hold = match early_by.is_zero() {
        true => asked,
        false if wait_asked => asked.max(early_by),
        false => early_by,
    };
    let wait = (wait_asked || !early_by.is_zero()) && !hold.is_zero();
    let (mut standing, woken) = room.standing(&claims, Utc::now().timestamp_millis(), wait);
    if let Some(woken) = woken {
        let _ = tokio::time::timeout(hold, woken).await;
        standing = room
            .standing(&claims, Utc::now().timestamp_millis(), false)
            .0;
    } else if !early_by.is_zero() && matches!(standing, Standing::Admitted { .. }) {
        // An admitted buyer's poll asks Redis for the ticket: paced like the others.
        tokio::time::sleep(early_by).await;
    }
    let now_ms = Utc::now().timestamp_millis();
    let view = answer(&state, &sku, &room, &claims, standing, now_ms).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// The room of `sku`, or the error a buyer gets when there is none.
async fn open(state: &AppState, sku: &SkuId) -> Result<Arc<Room>, ApiError> {
    match state.rooms.room(sku).await {
        Ok(room) => Ok(room),
        Err(RoomError::NoRoom) => Err(ApiError::NoWaitingRoom),
        Err(RoomError::NotFound) => Err(not_in_redis(state, sku).await),
        Err(RoomError::Stock(error)) => Err(error.into()),
    }
}

/// A sale Redis does not have: not ready when the database has it, missing otherwise.
async fn not_in_redis(state: &AppState, sku: &SkuId) -> ApiError {
    match state.store.sale(sku).await {
        Ok(Some(_)) => ApiError::SaleNotReady,
        Ok(None) => ApiError::SaleNotFound,
        Err(error) => error.into(),
    }
}

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// The answer of `standing`: a ticket claimed for an admitted place.
async fn answer(
    state: &AppState,
    sku: &SkuId,
    room: &Room,
    claims: &PlaceClaims,
    standing: Standing,
    now_ms: i64,
) -> Result<QueueView, ApiError> {
    let settings = state.rooms.settings();
    let polls = &state.metrics.room_polls;
    let view = match standing {
        Standing::Waiting { position, wait } => {
            let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
            let starts_ms = room.view().starts_ms;
            QueueView {
                position,
                people_ahead: position.map(|p| p.saturating_sub(1)),
                estimated_wait_secs: Some(wait.as_secs_f64()),
                opens_at: (now_ms < starts_ms).then(|| at(starts_ms)),
                poll_after_ms: Some(
                    (wait_ms / 4).clamp(settings.poll_min_ms, settings.poll_max_ms),
                ),
                ..QueueView::status(QueueStatus::Waiting)
            }
        }
        Standing::Admitted { place, late } => {
            let ticket_ms = i64::from(room.view().admission.ticket_secs) * 1000;
            let user = domain::UserId::parse(claims.sub.clone())
                .map_err(|e| ApiError::invalid("invalid_place_token", e))?;
            let claimed = state
                .ledger
                .claim_ticket(sku, &user, place, now_ms, ticket_ms, late)
                .await?;
            match claimed {
                TicketOutcome::Issued(expires_ms) => {
                    let tickets = &state.metrics.room_tickets;
                    tickets.with_label_values(&["issued"]).inc();
                    let waited = (now_ms - claims.joined_ms).max(0) as f64 / 1000.0;
                    state.metrics.room_wait.observe(waited);
                    let error = (now_ms - claims.joined_ms - claims.est_ms).abs() as f64 / 1000.0;
                    state.metrics.room_estimate_error.observe(error);
                    admitted(state, claims, place, expires_ms, now_ms)
                }
                TicketOutcome::Again(expires_ms) => {
                    admitted(state, claims, place, expires_ms, now_ms)
                }
                TicketOutcome::Lapsed => {
                    state
                        .metrics
                        .room_tickets
                        .with_label_values(&["lapsed"])
                        .inc();
                    QueueView::status(QueueStatus::Expired)
                }
                // The view ran ahead of Redis, which it should not: the buyer is next.
                TicketOutcome::Waiting => QueueView {
                    position: Some(1),
                    people_ahead: Some(0),
                    estimated_wait_secs: Some(0.0),
                    poll_after_ms: Some(settings.poll_min_ms),
                    ..QueueView::status(QueueStatus::Waiting)
                },
            }
        }
        Standing::SoldOut => QueueView::status(QueueStatus::SoldOut),
        Standing::Closed => QueueView::status(QueueStatus::Closed),
        Standing::Lost => {
            polls.with_label_values(&["lost"]).inc();
            return Err(ApiError::PlaceLost);
        }
    };
    let label: &str = match view.status {
        QueueStatus::Waiting => "waiting",
        QueueStatus::Admitted => "admitted",
        QueueStatus::SoldOut => "sold_out",
        QueueStatus::Closed => "closed",
        QueueStatus::Expired => "expired",
    };
    polls.with_label_values(&[label]).inc();
    Ok(view)
}

/// An admitted buyer's answer: the ticket until `expires_ms`, or `expired` past it.
fn admitted(
    state: &AppState,
    claims: &PlaceClaims,
    place: u64,
    expires_ms: i64,
    now_ms: i64,
) -> QueueView {
    if now_ms >= expires_ms {
        return QueueView::status(QueueStatus::Expired);
    }
    let ticket = state
        .rooms
        .tokens
        .ticket(&claims.sub, &claims.sku, place, expires_ms);
    let left = u64::try_from(expires_ms - now_ms).unwrap_or(0);
    QueueView {
        ticket: Some(ticket),
        ticket_expires_at: Some(at(expires_ms)),
        poll_after_ms: Some(left),
        ..QueueView::status(QueueStatus::Admitted)
    }
}
