//! HTTP handlers: parse the request into domain types, call the service, shape the answer.

pub mod admin;
pub mod challenge;
pub mod health;
pub mod orders;
pub mod payments;
pub mod problems;
pub mod queue;

use crate::error::ApiError;
use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderMap};
use actix_web::{web, HttpResponse};
use futures::StreamExt;
use std::time::Duration;

/// The `{sku_id}` of a path, as the OpenAPI document describes it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct SkuPath {
    /// The SKU on sale.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "phone-x")]
    sku_id: String,
}

/// The `{order_id}` of a path, as the OpenAPI document describes it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct OrderPath {
    /// `<sku_id>.<32 hex digits>`.
    #[param(
        pattern = "^[A-Za-z0-9_-]{1,64}\\.[0-9a-f]{32}$",
        example = "phone-x.019abf3c5e7d7c3a9d2e4b1f0a6c8e21"
    )]
    order_id: String,
}

/// The trace header every route takes, as the OpenAPI document describes it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct TraceHeaders {
    /// W3C Trace Context: the gateway continues this trace (and names it in `traceresponse`).
    traceparent: Option<String>,
}

/// The headers of a join, as the OpenAPI document describes them.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct ProofHeaders {
    /// W3C Trace Context: the gateway continues this trace.
    traceparent: Option<String>,
    /// When the gateway asks a proof of work (`proof_of_work.max_number`): base64 of the JSON
    /// `{algorithm, challenge, number, salt, signature}` solving a challenge of
    /// `GET /v1/sales/{sku_id}/challenge`.
    #[param(rename = "Proof-Of-Work")]
    proof_of_work: Option<String>,
}

/// The headers of a buy request, as the OpenAPI document describes them.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct BuyHeaders {
    /// The same key from the same buyer for the same request is the same order.
    #[param(
        rename = "Idempotency-Key",
        pattern = "^[!-~]{1,64}$",
        example = "buy-1"
    )]
    idempotency_key: String,
    /// W3C Trace Context: the gateway continues this trace.
    traceparent: Option<String>,
    /// A sale with a waiting room: the admission ticket its poll answered.
    #[param(rename = "Admission-Ticket")]
    admission_ticket: Option<String>,
    /// Without an admission ticket, when the gateway asks a proof of work: the solution of a
    /// challenge of `GET /v1/sales/{sku_id}/challenge?key=<this Idempotency-Key>`.
    #[param(rename = "Proof-Of-Work")]
    proof_of_work: Option<String>,
}

/// A resource at `path`: the methods it is given routes for, and `405 method_not_allowed` for
/// the others.
pub fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

/// Reads a request body of at most `limit` bytes (by its deadline: [`with_deadline`]).
pub async fn read_body(mut payload: web::Payload, limit: usize) -> Result<web::BytesMut, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match e {
            PayloadError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                ApiError::RequestTimeout
            }
            e => ApiError::invalid("invalid_body", e),
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Whether a request announces a body (a length above zero, or chunks).
pub fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0")
}

/// `payload`, failing with a timed-out I/O error (answered 408 `request_timeout` by
/// [`read_body`]) when it is not all in `within` from now: a client sending its body a byte at a
/// time holds its connection that long at most.
pub fn with_deadline(payload: Payload, within: Duration) -> Payload {
    let deadline = tokio::time::Instant::now() + within;
    let timed = futures::stream::unfold(Some(payload), move |payload| async move {
        let mut payload = payload?;
        match tokio::time::timeout_at(deadline, payload.next()).await {
            Ok(Some(chunk)) => Some((chunk, Some(payload))),
            Ok(None) => None,
            Err(_) => {
                let late = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the request body was not all sent in time",
                );
                Some((Err(PayloadError::Io(late)), None))
            }
        }
    });
    Payload::Stream {
        payload: Box::pin(timed),
    }
}

/// Parses a JSON object body into `T`, answering 400 `invalid_body` with serde's explanation.
/// Every body of the API is an object; serde would also read a struct from an array of its
/// fields' values (`[null]` as `{"quantity": null}`), which the contract does not allow.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::invalid(
            "invalid_body",
            "the body must be a JSON object",
        ));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::invalid("invalid_body", e))
}

/// The default service: unknown routes answer a JSON 404.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound)
}

/// Known routes with a wrong method answer a JSON 405.
pub async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}
