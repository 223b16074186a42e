//! The operator endpoints: define a sale (database first-class, warmed into Redis) and look at
//! its figures from both sides.

use super::{parse_json, read_body};
use crate::auth::Admin;
use crate::error::ApiError;
use crate::AppState;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use domain::{PaymentTerms, SaleSpec, SkuId};
use serde::{Deserialize, Serialize};
use stock::WarmOutcome;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SaleBody {
    stock: i64,
    per_user_limit: i64,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    /// Seconds a buyer has to pay (default `payments.default_window_secs`).
    payment_window_secs: Option<i64>,
    /// Price of one unit in minor units; with `currency`, payments must match it.
    price_minor: Option<i64>,
    currency: Option<String>,
}

#[derive(Serialize)]
struct SaleView {
    sku_id: String,
    stock: i64,
    per_user_limit: u32,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    payment_window_secs: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    price_minor: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    currency: Option<String>,
    redis_remaining: i64,
}

/// `PUT /v1/admin/sales/{sku_id}`: creates or updates a sale. A new total stock is applied as a
/// delta in Redis first (refused if it would go below what is reserved), then in the database;
/// if the database refuses, Redis is put back.
pub async fn put_sale(
    state: web::Data<AppState>,
    path: web::Path<String>,
    admin: Admin,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let sku = SkuId::parse(path.into_inner()).map_err(|e| ApiError::invalid("invalid_sku", e))?;
    let body: SaleBody = parse_json(&read_body(payload, 4096).await?)?;
    let window = body
        .payment_window_secs
        .unwrap_or(i64::from(state.payments.default_window_secs));
    let terms = PaymentTerms::new(window, body.price_minor, body.currency.as_deref())
        .map_err(|e| ApiError::invalid("invalid_sale", e))?;
    let spec = SaleSpec::new(
        body.stock,
        body.per_user_limit,
        body.starts_at,
        body.ends_at,
    )
    .map_err(|e| ApiError::invalid("invalid_sale", e))?
    .with_payment(terms);
    let previous = state.store.sale(&sku).await?;
    // Warming a sale Redis has lost would hand out its sold units again.
    if previous.is_some() && state.ledger.snapshot(&sku).await?.is_none() {
        return Err(ApiError::SaleNeedsReconcile);
    }
    let remaining = match state.ledger.warm(&sku, &spec).await? {
        WarmOutcome::Created(left) | WarmOutcome::Updated(left) => left,
        WarmOutcome::BelowReserved(left) => {
            return Err(ApiError::StockConflict(format!(
                "only {left} units are unreserved; the stock cannot shrink by more"
            )))
        }
    };
    if let Err(error) = state.store.upsert_sale(&sku, &spec).await {
        let restore = match previous {
            Some(old) => SaleSpec::new(
                old.initial_stock,
                i64::from(old.per_user_limit),
                old.starts_at,
                old.ends_at,
            )
            .ok()
            .zip(old.payment_terms().ok())
            .map(|(spec, terms)| spec.with_payment(terms)),
            None => None,
        };
        let undo = match restore {
            Some(old) => state.ledger.warm(&sku, &old).await.map(|_| ()),
            None => state.ledger.forget(&sku).await,
        };
        if let Err(undo_error) = undo {
            tracing::error!(%sku, %undo_error, "could not undo the redis side of a sale update");
        }
        return Err(error.into());
    }
    tracing::info!(%sku, admin = %admin.0, stock = spec.stock, "sale saved");
    Ok(HttpResponse::Ok().json(SaleView {
        sku_id: sku.to_string(),
        stock: spec.stock,
        per_user_limit: spec.per_user_limit,
        starts_at: spec.window.starts_at,
        ends_at: spec.window.ends_at,
        payment_window_secs: spec.payment.window_secs,
        price_minor: spec.payment.price.map(|p| p.minor_per_unit),
        currency: spec.payment.price.map(|p| p.currency.to_string()),
        redis_remaining: remaining,
    }))
}

#[derive(Serialize)]
struct SaleStatsView {
    sku_id: String,
    database: store::SaleStats,
    redis: Option<stock::LedgerSnapshot>,
    /// Units reserved in Redis and neither held by an order in the database (awaiting payment
    /// or paid) nor released yet: orders still in the queue, failed orders whose compensation
    /// has not run, expired orders whose units the expirer has not given back to Redis yet.
    in_flight_units: Option<i64>,
}

/// `GET /v1/admin/sales/{sku_id}`: the sale as Redis and the database see it.
pub async fn get_sale(
    state: web::Data<AppState>,
    path: web::Path<String>,
    _admin: Admin,
) -> Result<HttpResponse, ApiError> {
    let sku = SkuId::parse(path.into_inner()).map_err(|e| ApiError::invalid("invalid_sku", e))?;
    let database = state
        .store
        .sale_stats(&sku)
        .await?
        .ok_or(ApiError::SaleNotFound)?;
    let redis = state.ledger.snapshot(&sku).await?;
    let in_flight_units = redis.map(|r| r.reserved - r.released - database.held_units());
    Ok(HttpResponse::Ok().json(SaleStatsView {
        sku_id: sku.to_string(),
        database,
        redis,
        in_flight_units,
    }))
}

/// The query of `GET /v1/admin/refunds`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundsQuery {
    /// Most refunds listed.
    limit: Option<u64>,
}

/// `GET /v1/admin/refunds[?limit=n]`: the payments that pay no order (late, a second payment,
/// a failed order) and must be refunded, oldest first (at most `limit`, default and most 1000).
pub async fn refunds(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    _admin: Admin,
) -> Result<HttpResponse, ApiError> {
    let query = web::Query::<RefundsQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::invalid("invalid_query", e))?;
    let limit = query.limit.unwrap_or(1000).clamp(1, 1000);
    let refunds = state.store.refunds_due(limit).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "refunds_due": refunds })))
}
