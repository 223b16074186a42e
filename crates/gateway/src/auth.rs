//! Who is calling: HS256 JWTs whose `sub` is the buyer and whose optional `role: "admin"` opens
//! the admin routes. Extractors, so a handler that takes a [`Buyer`] or an [`Admin`] cannot run
//! for an anonymous caller.

use crate::error::ApiError;
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use domain::UserId;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::future::{ready, Ready};

/// The claims the gateway reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry (seconds since epoch).
    pub exp: u64,
    /// `"admin"` for operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// Verifies tokens.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl Verifier {
    /// A verifier for `secret` with `leeway_secs` of clock skew.
    pub fn new(secret: &[u8], leeway_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = leeway_secs;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            key: DecodingKey::from_secret(secret),
            validation,
        }
    }

    fn verify(&self, req: &HttpRequest) -> Result<(UserId, Claims), ApiError> {
        let token = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthorized)?;
        let claims = jsonwebtoken::decode::<Claims>(token.trim(), &self.key, &self.validation)
            .map_err(|_| ApiError::Unauthorized)?
            .claims;
        let user = UserId::parse(claims.sub.as_str()).map_err(|_| ApiError::Unauthorized)?;
        Ok((user, claims))
    }
}

/// Signs a token (the simulator, tests and `make` helpers mint theirs with this).
pub fn sign(secret: &[u8], sub: &str, role: Option<&str>, ttl_secs: u64) -> String {
    let claims = Claims {
        sub: sub.to_owned(),
        exp: chrono::Utc::now().timestamp() as u64 + ttl_secs,
        role: role.map(str::to_owned),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 signing does not fail")
}

fn verifier(req: &HttpRequest) -> Result<&Verifier, ApiError> {
    req.app_data::<web::Data<Verifier>>()
        .map(|v| v.get_ref())
        .ok_or(ApiError::Internal)
}

/// An authenticated buyer.
#[derive(Debug, Clone)]
pub struct Buyer(pub UserId);

impl FromRequest for Buyer {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            verifier(req)
                .and_then(|v| v.verify(req))
                .map(|(user, _)| Buyer(user)),
        )
    }
}

/// An authenticated operator (`role: "admin"`).
#[derive(Debug, Clone)]
pub struct Admin(pub UserId);

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            verifier(req)
                .and_then(|v| v.verify(req))
                .and_then(|(user, claims)| {
                    if claims.role.as_deref() == Some("admin") {
                        Ok(Admin(user))
                    } else {
                        Err(ApiError::Forbidden)
                    }
                }),
        )
    }
}
