//! Who is calling: JWTs whose `sub` is the buyer and whose role claim (`auth.role_claim`, default
//! `role`) naming `auth.admin_role` (default `admin`) opens the admin routes. Extractors, so a
//! handler that takes a [`Buyer`] or an [`Admin`] cannot run for an anonymous caller.
//!
//! The keys: HS256 with `auth.jwt_secret` (local runs, the simulator), or the RS256/ES256 keys of
//! an identity provider from its JWKS document (`auth.jwks_file` or `auth.jwks_url`), chosen by
//! each token's `kid` and read again every `auth.jwks_refresh_secs`, and soon after a token names
//! a key the document lacks ([`KeySource::keep_fresh`]). `auth.issuer` and `auth.audience`,
//! when set, must match `iss` and `aud` (a deployment must set them). Every token carries `iat`,
//! and none works longer than `auth.max_token_age_secs` after it.
//!
//! The parts: `keys` reads keys from a JWKS document or a PEM file, `key_source` keeps an
//! identity provider's keys fresh, `verifier` checks tokens and remembers the good ones,
//! `extract` turns a request into a [`Buyer`] or an [`Admin`].

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

mod extract;
mod key_source;
mod keys;
mod memory;
mod verifier;

#[cfg(test)]
mod tests;

pub use extract::{Admin, Buyer};
pub use key_source::KeySource;
pub use keys::KeysError;
pub use memory::TokenMemory;
pub use verifier::{Verified, Verifier};

/// The claims the gateway reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry (seconds since epoch).
    pub exp: u64,
    /// When it was issued (seconds since epoch): required, and with `auth.max_token_age_secs`
    /// it bounds how long a token works whatever its `exp` says.
    pub iat: u64,
    /// The other claims: the role claim among them.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// Signs a token (the simulator, tests and `make` helpers mint theirs with this).
pub fn sign(secret: &[u8], sub: &str, role: Option<&str>, ttl_secs: u64) -> String {
    let mut other = serde_json::Map::new();
    if let Some(role) = role {
        other.insert("role".into(), role.into());
    }
    let now = chrono::Utc::now().timestamp() as u64;
    let claims = Claims {
        sub: sub.to_owned(),
        exp: now + ttl_secs,
        iat: now,
        other,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 signing does not fail")
}
