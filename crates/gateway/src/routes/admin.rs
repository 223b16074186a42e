//! The operator endpoints: define a sale (database first-class, warmed into Redis) and look at
//! its figures from both sides.

use super::problems::{problems, AdminOnly, PayloadTooLarge, SaleNotFound, Unavailable};
use super::{parse_json, read_body};
use crate::auth::Admin;
use crate::error::ApiError;
use crate::AppState;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use domain::{Admission, AdmissionMode, AdmissionRate, PaymentTerms, SaleSpec, SkuId};
use serde::{Deserialize, Serialize};
use stock::WarmOutcome;

problems! {
    /// The error answers of `PUT /v1/admin/sales/{sku_id}` besides the shared ones.
    PutSaleProblems {
        400 => "`invalid_sku`, `invalid_body`, `invalid_sale` (the title names the field; a sale names `price_minor` with `currency`, or says `free: true`)",
        409 => "`stock_conflict`: below what is reserved or sold; `buckets_fixed`: the number of stock buckets cannot change; `sale_needs_reconcile`: Redis lost the sale",
    }
    /// The error answers of `GET /v1/admin/sales/{sku_id}` besides the shared ones.
    GetSaleProblems { 400 => "`invalid_sku`" }
    /// The error answers of `GET /v1/admin/refunds` besides the shared ones.
    RefundsProblems {
        400 => "`invalid_query`",
        503 => "`database_unavailable`",
    }
}

/// A sale's whole definition.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaleBody {
    /// Total units, 0 to 1,000,000,000 (a change applies the difference; never below what is
    /// reserved or sold).
    #[schema(minimum = 0, maximum = 1_000_000_000, example = 1000)]
    stock: i64,
    /// Most units per buyer, 1 to 1000.
    #[schema(minimum = 1, maximum = 1000, example = 2)]
    per_user_limit: i64,
    /// Opening time.
    starts_at: DateTime<Utc>,
    /// Closing time (exclusive), after `starts_at`.
    ends_at: DateTime<Utc>,
    /// Seconds a buyer has to pay, 1 to 604,800 (default `payments.default_window_secs`).
    #[schema(minimum = 1, maximum = 604_800, example = 900)]
    payment_window_secs: Option<i64>,
    /// Price of one unit in minor units, 1 to 10^13, with `currency`: a payment must be exactly
    /// quantity x this. Required unless `free` is true.
    #[schema(minimum = 1, maximum = 10_000_000_000_000_i64, example = 19999)]
    price_minor: Option<i64>,
    /// ISO 4217 code of the price (with `price_minor`).
    #[schema(example = "EUR", pattern = "^[A-Z]{3}$")]
    currency: Option<String>,
    /// True for a sale that costs nothing, with neither `price_minor` nor `currency`: a payment
    /// of one of its orders is of 0 (in any currency). Default false: the sale names its price.
    #[serde(default)]
    #[schema(default = false, example = false)]
    free: bool,
    /// Stock buckets in Redis, 1 to 64 (default 1, or the sale's number when it exists): more
    /// than one splits the units of a SKU whose buyers need more than one Redis core. Fixed once
    /// the sale exists.
    #[schema(minimum = 1, maximum = 64, example = 1)]
    buckets: Option<i64>,
    /// A waiting room in front of the sale (absent: none; buyers buy directly). Can be added,
    /// changed or removed while the sale runs.
    admission: Option<AdmissionBody>,
}

/// A sale's waiting room.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdmissionBody {
    /// `fifo`: places in the order buyers joined; `random_at_open`: those who joined during the
    /// pre-queue window get a random place at the opening, later arrivals join behind them.
    mode: AdmissionMode,
    /// Buyers admitted per second (1 to 1,000,000), or `"auto"`: as fast as the gateways and the
    /// worker sustain (bounds in `[waiting_room]` of the gateway's settings).
    #[serde(deserialize_with = "rate", serialize_with = "rate_out")]
    #[schema(schema_with = rate_schema)]
    rate_per_sec: AdmissionRate,
    /// How long an admission ticket lasts, 10 to 3600 seconds (default 120), from the admitted
    /// buyer's first poll that finds it.
    #[schema(minimum = 10, maximum = 3600, example = 120)]
    ticket_secs: Option<i64>,
    /// How long before `starts_at` buyers may join, 0 to 86,400 seconds (default 0).
    #[schema(minimum = 0, maximum = 86_400, example = 600)]
    pre_queue_secs: Option<i64>,
}

fn rate<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<AdmissionRate, D::Error> {
    AdmissionRate::deserialize(deserializer)
}

fn rate_out<S: serde::Serializer>(rate: &AdmissionRate, serializer: S) -> Result<S::Ok, S::Error> {
    rate.serialize(serializer)
}

/// `rate_per_sec` in the OpenAPI document: an integer or `"auto"`.
fn rate_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
    let one_of = OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1))
                .maximum(Some(AdmissionRate::MAX_PER_SEC)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["auto"])),
        )
        .build();
    Schema::OneOf(one_of)
}

impl AdmissionBody {
    fn admission(&self) -> Result<Admission, domain::AdmissionError> {
        Admission::new(
            self.mode,
            self.rate_per_sec,
            self.ticket_secs.unwrap_or(120),
            self.pre_queue_secs.unwrap_or(0),
        )
    }

    fn of(room: &Admission) -> Self {
        Self {
            mode: room.mode,
            rate_per_sec: room.rate_per_sec,
            ticket_secs: Some(i64::from(room.ticket_secs)),
            pre_queue_secs: Some(i64::from(room.pre_queue_secs)),
        }
    }
}

/// A sale as saved.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SaleView {
    /// The SKU.
    sku_id: String,
    /// Total units.
    stock: i64,
    /// Most units per buyer.
    per_user_limit: u32,
    /// Opening time.
    starts_at: DateTime<Utc>,
    /// Closing time.
    ends_at: DateTime<Utc>,
    /// Seconds a buyer has to pay.
    payment_window_secs: u32,
    /// Price of one unit in minor units (absent for a free sale).
    #[serde(skip_serializing_if = "Option::is_none")]
    price_minor: Option<i64>,
    /// Its currency (absent for a free sale).
    #[serde(skip_serializing_if = "Option::is_none")]
    currency: Option<String>,
    /// Whether the sale is free.
    free: bool,
    /// Stock buckets in Redis.
    buckets: u8,
    /// The waiting room (when the sale has one).
    #[serde(skip_serializing_if = "Option::is_none")]
    admission: Option<AdmissionBody>,
    /// Units Redis can still reserve.
    redis_remaining: i64,
}

/// `PUT /v1/admin/sales/{sku_id}`: creates or updates a sale. A new total stock is applied as a
/// delta in Redis first (refused if it would go below what is reserved), then in the database;
/// if the database refuses, Redis is put back.
#[utoipa::path(
    put,
    path = "/v1/admin/sales/{sku_id}",
    tag = "admin",
    summary = "Create or change a sale",
    params(super::SkuPath, super::TraceHeaders),
    request_body(content = SaleBody, content_type = "application/json", description = "At most 4 KiB"),
    responses(
        (status = 200, description = "Saved in the database and warmed into Redis", body = SaleView),
        PutSaleProblems, AdminOnly, PayloadTooLarge, Unavailable,
    ),
    security(("admin" = []))
)]
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
    let terms = PaymentTerms::new(
        window,
        body.price_minor,
        body.currency.as_deref(),
        body.free,
    )
    .map_err(|e| ApiError::invalid("invalid_sale", e))?;
    let spec = SaleSpec::new(
        body.stock,
        body.per_user_limit,
        body.starts_at,
        body.ends_at,
    )
    .and_then(|spec| spec.with_buckets(body.buckets.unwrap_or(1)))
    .map_err(|e| ApiError::invalid("invalid_sale", e))?
    .with_payment(terms)
    .with_admission(
        body.admission
            .as_ref()
            .map(AdmissionBody::admission)
            .transpose()
            .map_err(|e| ApiError::invalid("invalid_sale", e))?,
    );
    let previous = state.store.sale(&sku).await?;
    // A change keeps the number of buckets; asking for another is refused.
    let spec = match &previous {
        Some(sale)
            if body
                .buckets
                .is_some_and(|asked| asked != i64::from(sale.buckets)) =>
        {
            return Err(ApiError::BucketsFixed(sale.buckets as u8))
        }
        Some(sale) => SaleSpec {
            buckets: sale.buckets as u8,
            ..spec
        },
        None => spec,
    };
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
        WarmOutcome::BucketsFixed(buckets) => return Err(ApiError::BucketsFixed(buckets)),
    };
    if let Err(error) = state.store.upsert_sale(&sku, &spec).await {
        let undo = match previous.and_then(|old| old.spec().ok()) {
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
        price_minor: spec.payment.pricing.price().map(|p| p.minor_per_unit),
        currency: spec.payment.pricing.price().map(|p| p.currency.to_string()),
        free: spec.payment.pricing.is_free(),
        buckets: spec.buckets,
        admission: spec.admission.as_ref().map(AdmissionBody::of),
        redis_remaining: remaining,
    }))
}

/// A sale's price and figures as Redis and the database see them.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SaleStatsView {
    /// The SKU.
    sku_id: String,
    /// Price of one unit in minor units, as stored (absent for a free sale, and for a sale saved
    /// before a sale had to name its price or say it is free).
    #[serde(skip_serializing_if = "Option::is_none")]
    price_minor: Option<i64>,
    /// Its currency, as stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    currency: Option<String>,
    /// Whether the sale is free. Neither a price nor `free`: the sale was saved before a sale had
    /// to say which, and no payment pays its orders (`sale_unpriced`) until it is put again.
    free: bool,
    /// The database's figures.
    database: store::SaleStats,
    /// Redis's (absent when Redis has lost the sale).
    redis: Option<stock::LedgerSnapshot>,
    /// Units reserved in Redis and neither held by an order in the database (awaiting payment
    /// or paid) nor released yet: orders still in the queue, failed orders whose compensation
    /// has not run, expired orders whose units the expirer has not given back to Redis yet.
    in_flight_units: Option<i64>,
}

/// `GET /v1/admin/sales/{sku_id}`: the sale's price, and its figures as Redis and the database
/// see them.
#[utoipa::path(
    get,
    path = "/v1/admin/sales/{sku_id}",
    tag = "admin",
    summary = "A sale's price and figures",
    params(super::SkuPath, super::TraceHeaders),
    responses(
        (status = 200, description = "The price, and stock and orders by status from both sides", body = SaleStatsView),
        GetSaleProblems, AdminOnly, SaleNotFound, Unavailable,
    ),
    security(("admin" = []))
)]
pub async fn get_sale(
    state: web::Data<AppState>,
    path: web::Path<String>,
    _admin: Admin,
) -> Result<HttpResponse, ApiError> {
    let sku = SkuId::parse(path.into_inner()).map_err(|e| ApiError::invalid("invalid_sku", e))?;
    // The stored columns, not the terms they make: a row this build cannot read still shows.
    let sale = state
        .store
        .sale(&sku)
        .await?
        .ok_or(ApiError::SaleNotFound)?;
    let database = state
        .store
        .sale_stats(&sku)
        .await?
        .ok_or(ApiError::SaleNotFound)?;
    let redis = state.ledger.snapshot(&sku).await?;
    let in_flight_units = redis.map(|r| r.reserved - r.released - database.held_units());
    Ok(HttpResponse::Ok().json(SaleStatsView {
        sku_id: sku.to_string(),
        price_minor: sale.price_minor,
        currency: sale.currency,
        free: sale.free,
        database,
        redis,
        in_flight_units,
    }))
}

/// The query of `GET /v1/admin/refunds`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RefundsQuery {
    /// Most refunds listed, 1 to 1000 (default 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
}

/// The payments to refund.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RefundsView {
    /// Oldest first.
    refunds_due: Vec<store::RefundDue>,
}

/// `GET /v1/admin/refunds[?limit=n]`: the payments that pay no order (late, a second payment,
/// a failed order) and must be refunded, oldest first (at most `limit`, default and most 1000).
#[utoipa::path(
    get,
    path = "/v1/admin/refunds",
    tag = "admin",
    summary = "Payments to refund",
    params(RefundsQuery, super::TraceHeaders),
    responses(
        (status = 200, description = "Refunds due, oldest first", body = RefundsView),
        RefundsProblems, AdminOnly,
    ),
    security(("admin" = []))
)]
pub async fn refunds(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    _admin: Admin,
) -> Result<HttpResponse, ApiError> {
    let query = web::Query::<RefundsQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::invalid("invalid_query", e))?;
    let limit = query.limit.unwrap_or(1000);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid(
            "invalid_query",
            "limit must be between 1 and 1000",
        ));
    }
    let refunds = state.store.refunds_due(limit).await?;
    Ok(HttpResponse::Ok().json(RefundsView {
        refunds_due: refunds,
    }))
}
