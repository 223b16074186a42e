//! The one place where errors become HTTP answers. Every answer is a JSON problem document with
//! a stable machine `code`; a 5xx tells the client nothing internal (the log has the details).

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse, ResponseError};
use serde::Serialize;
use std::sync::LazyLock;

/// Everything the API can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A path or body value is invalid (400).
    #[error("{message}")]
    Invalid {
        /// Stable code, e.g. `invalid_quantity`.
        code: &'static str,
        /// What is wrong, for humans.
        message: String,
    },
    /// No or bad token (401).
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// A payment notice without a valid signature (401).
    #[error("{0}")]
    InvalidSignature(domain::payment::SignatureError),
    /// The order is still queued: no payment can apply to it yet (409, retry).
    #[error("the order is still being written; retry the notice shortly")]
    OrderPending,
    /// The money came but pays nothing; it is recorded as a refund due (409).
    #[error("{}", refund_message(*.0))]
    RefundDue(domain::RefundReason),
    /// This payment id was notified before with another order, amount or currency (422).
    #[error("this payment_id was notified before with a different order, amount or currency")]
    PaymentConflict,
    /// The amount or currency is not what the order costs; nothing was recorded (422).
    #[error("{0}")]
    AmountMismatch(String),
    /// The order's sale names no price and does not say it is free; nothing was recorded (422).
    #[error("the sale names no price and does not say it is free (it was saved before a sale had to), so no payment can pay its orders: put it again with price_minor and currency, or \"free\": true; nothing was recorded")]
    SaleUnpriced,
    /// Token valid but not allowed (403).
    #[error("this token may not do that")]
    Forbidden,
    /// The sale is not open now (403).
    #[error("the sale is not open now")]
    SaleNotActive,
    /// The sale has a waiting room and the buy carries no valid admission ticket (403).
    #[error("this sale admits buyers through its waiting room: join it (POST /v1/sales/{{sku_id}}/queue) and buy with the admission ticket it gives (header Admission-Ticket)")]
    AdmissionRequired,
    /// The buy's admission ticket has expired (403).
    #[error("the admission ticket has expired: the turn it gave is over")]
    AdmissionExpired,
    /// The waiting room opens later (403).
    #[error("the waiting room opens at {0}")]
    QueueNotOpen(chrono::DateTime<chrono::Utc>),
    /// The sale has no waiting room (409).
    #[error("this sale has no waiting room: buy directly")]
    NoWaitingRoom,
    /// The place token is of a line Redis lost (409).
    #[error("the waiting room was reset and this place is gone; join again")]
    PlaceLost,
    /// No such sale (404).
    #[error("there is no sale for this sku")]
    SaleNotFound,
    /// No such order for this buyer (404).
    #[error("there is no such order")]
    OrderNotFound,
    /// No such route (404).
    #[error("no such endpoint")]
    RouteNotFound,
    /// Wrong method for the route (405).
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    /// Sold out (409).
    #[error("sold out")]
    SoldOut,
    /// Per-user limit reached (409).
    #[error("this order would exceed the per-user limit")]
    LimitExceeded,
    /// The idempotency key was used before for a different request (422).
    #[error("{0}")]
    KeyReused(String),
    /// The first request with this idempotency key is still being enqueued (409).
    #[error("a request with this Idempotency-Key is still in progress; retry shortly")]
    RequestInProgress,
    /// The new stock is below what is already reserved or sold (409).
    #[error("{0}")]
    StockConflict(String),
    /// The sale exists with another number of stock buckets, which is fixed (409).
    #[error("the sale has {0} stock buckets, and that number cannot change once the sale exists")]
    BucketsFixed(u8),
    /// The database has the sale but Redis has lost it; `reconcile` must rebuild it before it
    /// can be changed (409).
    #[error(
        "Redis has lost this sale; rebuild it with `seckill-ctl reconcile` (make reconcile) first"
    )]
    SaleNeedsReconcile,
    /// Body too large (413).
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// A proof of work is asked and the request carries none (403).
    #[error("solve a challenge (GET /v1/sales/{{sku_id}}/challenge) and send the solution in the Proof-Of-Work header")]
    ProofOfWorkRequired,
    /// The proof of work does not pass (403).
    #[error("{0}")]
    ProofOfWorkInvalid(domain::pow::PowError),
    /// A body without a `Content-Length` on the public port (411).
    #[error("send the body with a Content-Length: the public port takes no chunked bodies")]
    LengthRequired,
    /// The body was not all sent within `http.body_timeout_ms` (408).
    #[error("the request body was not all sent in time")]
    RequestTimeout,
    /// Too many requests from this buyer (429).
    #[error("too many requests; slow down")]
    RateLimited,
    /// The gateway is serving as many buy requests as it may; nothing was reserved (503).
    #[error("too many buyers at once; please retry in a second")]
    Overloaded,
    /// The broker did not acknowledge the order in time; nothing stays reserved (503).
    #[error("orders cannot be queued right now; please retry")]
    BrokerUnavailable,
    /// Redis cannot be reached (503).
    #[error("stock cannot be checked right now; please retry")]
    StockUnavailable,
    /// The database cannot be reached (503).
    #[error("the database cannot be reached right now; please retry")]
    DatabaseUnavailable,
    /// The sale exists but Redis does not hold it (lost, not yet rebuilt) (503).
    #[error("the sale is being prepared; please retry shortly")]
    SaleNotReady,
    /// A bug (500).
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// A 400 with `code`.
    pub fn invalid(code: &'static str, message: impl ToString) -> Self {
        ApiError::Invalid {
            code,
            message: message.to_string(),
        }
    }

    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Invalid { code, .. } => code,
            ApiError::Unauthorized => "unauthorized",
            ApiError::InvalidSignature(_) => "invalid_signature",
            ApiError::OrderPending => "order_pending",
            ApiError::RefundDue(reason) => reason.as_str(),
            ApiError::PaymentConflict => "payment_conflict",
            ApiError::AmountMismatch(_) => "amount_mismatch",
            ApiError::SaleUnpriced => "sale_unpriced",
            ApiError::Forbidden => "forbidden",
            ApiError::SaleNotActive => "sale_not_active",
            ApiError::AdmissionRequired => "admission_required",
            ApiError::AdmissionExpired => "admission_expired",
            ApiError::QueueNotOpen(_) => "queue_not_open",
            ApiError::NoWaitingRoom => "no_waiting_room",
            ApiError::PlaceLost => "place_lost",
            ApiError::SaleNotFound => "sale_not_found",
            ApiError::OrderNotFound => "order_not_found",
            ApiError::RouteNotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::SoldOut => "sold_out",
            ApiError::LimitExceeded => "limit_exceeded",
            ApiError::RequestInProgress => "request_in_progress",
            ApiError::KeyReused(_) => "idempotency_key_reused",
            ApiError::StockConflict(_) => "stock_conflict",
            ApiError::BucketsFixed(_) => "buckets_fixed",
            ApiError::SaleNeedsReconcile => "sale_needs_reconcile",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::LengthRequired => "length_required",
            ApiError::ProofOfWorkRequired => "proof_of_work_required",
            ApiError::ProofOfWorkInvalid(_) => "proof_of_work_invalid",
            ApiError::RateLimited => "rate_limited",
            ApiError::Overloaded => "overloaded",
            ApiError::BrokerUnavailable => "broker_unavailable",
            ApiError::StockUnavailable => "stock_unavailable",
            ApiError::DatabaseUnavailable => "database_unavailable",
            ApiError::SaleNotReady => "sale_not_ready",
            ApiError::Internal => "internal",
        }
    }
}

fn refund_message(reason: domain::RefundReason) -> &'static str {
    match reason {
        domain::RefundReason::OrderExpired => {
            "the order's payment window has closed and its units went back on sale; the payment is recorded as a refund due"
        }
        domain::RefundReason::OrderAlreadyPaid => {
            "the order is already paid by another payment; this payment is recorded as a refund due"
        }
        domain::RefundReason::OrderFailed => {
            "the order failed and holds no unit; the payment is recorded as a refund due"
        }
    }
}

/// Every error answer (`application/problem+json`, RFC 9457).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem<'a> {
    /// `urn:seckill:error:<code>`.
    #[schema(example = "urn:seckill:error:sold_out")]
    r#type: String,
    /// What went wrong, for people.
    #[schema(example = "sold out")]
    title: String,
    /// The HTTP status.
    #[schema(example = 409)]
    status: u16,
    /// The stable machine code: what a client branches on. Each answer of each route lists the
    /// codes it can carry.
    #[schema(example = "sold_out")]
    code: &'a str,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Invalid { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized | ApiError::InvalidSignature(_) => StatusCode::UNAUTHORIZED,
            ApiError::PaymentConflict
            | ApiError::AmountMismatch(_)
            | ApiError::SaleUnpriced
            | ApiError::KeyReused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Forbidden
            | ApiError::SaleNotActive
            | ApiError::AdmissionRequired
            | ApiError::AdmissionExpired
            | ApiError::ProofOfWorkRequired
            | ApiError::ProofOfWorkInvalid(_)
            | ApiError::QueueNotOpen(_) => StatusCode::FORBIDDEN,
            ApiError::SaleNotFound | ApiError::OrderNotFound | ApiError::RouteNotFound => {
                StatusCode::NOT_FOUND
            }
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::SoldOut
            | ApiError::LimitExceeded
            | ApiError::RequestInProgress
            | ApiError::StockConflict(_)
            | ApiError::BucketsFixed(_)
            | ApiError::SaleNeedsReconcile
            | ApiError::NoWaitingRoom
            | ApiError::PlaceLost
            | ApiError::OrderPending
            | ApiError::RefundDue(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::LengthRequired => StatusCode::LENGTH_REQUIRED,
            ApiError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Overloaded
            | ApiError::BrokerUnavailable
            | ApiError::StockUnavailable
            | ApiError::DatabaseUnavailable
            | ApiError::SaleNotReady => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut response = HttpResponse::build(status);
        response.insert_header((header::CONTENT_TYPE, "application/problem+json"));
        match self {
            ApiError::RateLimited
            | ApiError::RequestInProgress
            | ApiError::Overloaded
            | ApiError::OrderPending => {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            ApiError::Unauthorized => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            _ => {}
        }
        response.body(self.problem())
    }
}

impl ApiError {
    /// The problem document. The answers that come by the thousand in a sale (sold out, shed)
    /// are serialized once.
    fn problem(&self) -> web::Bytes {
        static SOLD_OUT: LazyLock<web::Bytes> = LazyLock::new(|| ApiError::SoldOut.serialize());
        static OVERLOADED: LazyLock<web::Bytes> =
            LazyLock::new(|| ApiError::Overloaded.serialize());
        match self {
            ApiError::SoldOut => SOLD_OUT.clone(),
            ApiError::Overloaded => OVERLOADED.clone(),
            _ => self.serialize(),
        }
    }

    fn serialize(&self) -> web::Bytes {
        let problem = Problem {
            r#type: format!("urn:seckill:error:{}", self.code()),
            title: self.to_string(),
            status: self.status_code().as_u16(),
            code: self.code(),
        };
        serde_json::to_vec(&problem)
            .expect("a problem document always serializes")
            .into()
    }
}

impl From<stock::StockError> for ApiError {
    fn from(error: stock::StockError) -> Self {
        Self::from(&error)
    }
}

impl From<&stock::StockError> for ApiError {
    fn from(error: &stock::StockError) -> Self {
        match error {
            // The error of the call that carried this order among others: as if it were its own.
            stock::StockError::InGroup(error) => Self::from(&**error),
            stock::StockError::Corrupt(_) => {
                tracing::error!(%error, "a reservation in redis cannot be read");
                ApiError::Internal
            }
            // Not an outage: other buyers of the bucket took the units this request moved in.
            stock::StockError::Contended(_) => {
                tracing::warn!(%error, "answering 503 to a request that lost every borrowing round");
                ApiError::StockUnavailable
            }
            stock::StockError::Redis(_)
            | stock::StockError::Config(_)
            | stock::StockError::Reply { .. }
            | stock::StockError::PartlyLost { .. } => {
                tracing::error!(%error, "redis call failed");
                ApiError::StockUnavailable
            }
        }
    }
}

impl From<store::StoreError> for ApiError {
    fn from(error: store::StoreError) -> Self {
        match error {
            store::StoreError::BelowSold { .. } => ApiError::StockConflict(error.to_string()),
            store::StoreError::Db(error) => {
                tracing::error!(%error, "database call failed");
                ApiError::DatabaseUnavailable
            }
            store::StoreError::Corrupt { .. } => {
                tracing::error!(%error, "a stored order cannot be read");
                ApiError::Internal
            }
        }
    }
}
