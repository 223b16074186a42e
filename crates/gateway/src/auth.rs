//! Who is calling: HS256 JWTs whose `sub` is the buyer and whose optional `role: "admin"` opens
//! the admin routes. Extractors, so a handler that takes a [`Buyer`] or an [`Admin`] cannot run
//! for an anonymous caller.

use crate::error::ApiError;
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use domain::UserId;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::{ready, Ready};
use std::hash::Hasher;
use std::sync::{Arc, PoisonError, RwLock};

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

/// Verifies tokens, and remembers the ones it verified until they expire: a buyer sends the
/// same token with every click, and checking its signature and claims again is most of what a
/// sold-out answer costs. A token is taken from memory only when it is byte for byte the one
/// verified, and only before its `exp` (plus the leeway), so the answer is the one verifying
/// would give.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    verified: RwLock<HashMap<u64, Arc<Verified>>>,
}

/// A verified token's buyer and claims.
pub struct Verified {
    token: Box<str>,
    /// The buyer (`sub`).
    pub user: UserId,
    /// The claims.
    pub claims: Claims,
}

/// Most tokens remembered; past it the memory starts over (a flash sale's buyers fit many times).
const REMEMBERED_TOKENS: usize = 100_000;

impl Verifier {
    /// A verifier for `secret` with `leeway_secs` of clock skew.
    pub fn new(secret: &[u8], leeway_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = leeway_secs;
        validation.set_required_spec_claims(&["exp", "sub"]);
        // Expiry is checked by `verify_token` against its `now`, for remembered tokens too.
        validation.validate_exp = false;
        Self {
            key: DecodingKey::from_secret(secret),
            validation,
            verified: RwLock::default(),
        }
    }

    fn verify(&self, req: &HttpRequest) -> Result<Arc<Verified>, ApiError> {
        let token = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthorized)?
            .trim();
        self.verify_token(token, chrono::Utc::now().timestamp())
    }

    /// Verifies `token` at `now` (seconds since the epoch).
    pub fn verify_token(&self, token: &str, now: i64) -> Result<Arc<Verified>, ApiError> {
        // The signature alone tells tokens apart; a remembered one is compared whole below.
        let signature = token.rsplit('.').next().unwrap_or(token);
        let mut hasher = std::hash::DefaultHasher::new();
        hasher.write(signature.as_bytes());
        let fingerprint = hasher.finish();
        let remembered = self
            .verified
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&fingerprint)
            .cloned();
        // As jsonwebtoken would: expired once `exp` is more than the leeway in the past.
        let unexpired = |claims: &Claims| {
            now <= i64::try_from(claims.exp.saturating_add(self.validation.leeway))
                .unwrap_or(i64::MAX)
        };
        if let Some(known) = remembered {
            if *known.token == *token {
                return match unexpired(&known.claims) {
                    true => Ok(known),
                    false => Err(ApiError::Unauthorized),
                };
            }
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|_| ApiError::Unauthorized)?
            .claims;
        if !unexpired(&claims) {
            return Err(ApiError::Unauthorized);
        }
        let user = UserId::parse(claims.sub.as_str()).map_err(|_| ApiError::Unauthorized)?;
        let known = Arc::new(Verified {
            token: token.into(),
            user,
            claims,
        });
        let mut verified = self
            .verified
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if verified.len() >= REMEMBERED_TOKENS {
            verified.clear();
        }
        verified.insert(fingerprint, known.clone());
        Ok(known)
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
                .map(|verified| Buyer(verified.user.clone())),
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
                .and_then(|verified| {
                    if verified.claims.role.as_deref() == Some("admin") {
                        Ok(Admin(verified.user.clone()))
                    } else {
                        Err(ApiError::Forbidden)
                    }
                }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a-test-secret-of-enough-bytes";

    #[test]
    fn a_remembered_token_is_accepted_only_while_valid_and_only_byte_for_byte() {
        let verifier = Verifier::new(SECRET, 0);
        let token = sign(SECRET, "alice", None, 60);
        let now = chrono::Utc::now().timestamp();
        let user = verifier
            .verify_token(&token, now)
            .expect("valid")
            .user
            .clone();
        assert_eq!(user.as_str(), "alice");
        // From memory, the same answer.
        assert_eq!(
            verifier.verify_token(&token, now).expect("valid").user,
            user
        );
        // Past its expiry, memory does not help it; nor does verifying it afresh.
        assert!(verifier.verify_token(&token, now + 61).is_err());
        assert!(Verifier::new(SECRET, 0)
            .verify_token(&token, now + 61)
            .is_err());
        // Within the leeway it is still good.
        assert!(Verifier::new(SECRET, 5)
            .verify_token(&token, now + 63)
            .is_ok());
        // A token that differs in its signature is checked, and refused.
        let mut forged = token.clone();
        let last = forged.pop().expect("not empty");
        forged.push(if last == 'A' { 'B' } else { 'A' });
        assert!(verifier.verify_token(&forged, now).is_err());
        // Another secret's token is refused although a valid one is remembered.
        let other = sign(b"another-secret-of-enough-bytes", "alice", None, 60);
        assert!(verifier.verify_token(&other, now).is_err());
    }
}
