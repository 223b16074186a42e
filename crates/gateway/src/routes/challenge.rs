//! `GET /v1/sales/{sku_id}/challenge`: a proof-of-work challenge for the caller (see the
//! `proof_of_work` module).

use super::problems::{problems, Unauthorized};
use crate::auth::Buyer;
use crate::error::ApiError;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use domain::pow::{Challenge, Purpose};
use domain::{IdempotencyKey, SkuId};
use serde::Deserialize;

problems! {
    /// The error answers of a challenge besides the shared ones.
    ChallengeProblems {
        400 => "`invalid_sku`, `invalid_idempotency_key`, `invalid_query`",
    }
}

/// The query of a challenge.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChallengeQuery {
    /// For a buy: the `Idempotency-Key` the buy will carry (the solution pays for that order
    /// only). Without it: a challenge for a join.
    #[param(pattern = "^[!-~]{1,64}$", example = "buy-1")]
    key: Option<String>,
}

/// `GET /v1/sales/{sku_id}/challenge`
#[utoipa::path(
    get,
    path = "/v1/sales/{sku_id}/challenge",
    tag = "buyers",
    summary = "A proof-of-work challenge to join the sale's waiting room, or to buy without a ticket",
    description = "ALTCHA's SHA-256 scheme: find `number` in `0..=maxnumber` with \
`hex(SHA-256(salt ++ number)) == challenge`, then send base64 of the JSON \
`{algorithm, challenge, number, salt, signature}` in the `Proof-Of-Work` header of the join \
(or, with `key`, of the buy carrying that `Idempotency-Key`). The challenge is bound to the caller, the \
sale and the key, and expires after `proof_of_work.expires_secs`; it is harder while the gateway is \
under load. With `proof_of_work.max_number` 0 no proof is asked, and the challenge is trivial.",
    params(super::SkuPath, ChallengeQuery),
    responses(
        (status = 200, description = "The challenge", body = Challenge),
        ChallengeProblems, Unauthorized,
    ),
    security(("buyer" = []))
)]
pub async fn challenge(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    buyer: Buyer,
) -> Result<HttpResponse, ApiError> {
    let sku = SkuId::parse(path.into_inner()).map_err(|e| ApiError::invalid("invalid_sku", e))?;
    let query = web::Query::<ChallengeQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::invalid("invalid_query", e))?;
    let key = match &query.key {
        Some(key) => Some(
            IdempotencyKey::parse(key.as_str())
                .map_err(|e| ApiError::invalid("invalid_idempotency_key", e))?,
        ),
        None => None,
    };
    let purpose = Purpose {
        user: buyer.0.as_str(),
        sku: sku.as_str(),
        key: key.as_ref().map(IdempotencyKey::as_str),
    };
    let now = chrono::Utc::now().timestamp();
    let under_load = state.admission.busy();
    let challenge = state.proof_of_work.challenge(purpose, under_load, now);
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(challenge))
}
