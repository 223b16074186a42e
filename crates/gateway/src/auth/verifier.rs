//! Checking tokens: the signature with the secret or the provider's key the token's `kid`
//! names, then the claims the settings require; and remembering the tokens that passed, since a
//! buyer sends the same token with every click and checking it again is most of what a
//! sold-out answer costs.

use super::key_source::KeySource;
use super::keys::{load_public_key, KeysError};
use super::memory::TokenMemory;
use super::Claims;
use crate::error::ApiError;
use actix_web::HttpRequest;
use domain::UserId;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::sync::Arc;

/// The keys tokens are verified with.
enum Keys {
    /// HS256 with the shared secret.
    Secret(DecodingKey),
    /// An identity provider's.
    Provider(Arc<KeySource>),
    /// One public key (PEM) and the algorithm its tokens are signed with.
    PublicKey(DecodingKey, Algorithm),
}

/// Verifies tokens, and remembers the ones it verified until they expire: a buyer sends the
/// same token with every click, and checking its signature and claims again is most of what a
/// sold-out answer costs. A token is taken from memory only when it is byte for byte the one
/// verified, and only before its `exp` (plus the leeway), so the answer is the one verifying
/// would give.
pub struct Verifier {
    keys: Keys,
    validation: Validation,
    role_claim: String,
    admin_role: String,
    /// Oldest token accepted, counted from its `iat`, in seconds.
    max_age_secs: u64,
    verified: TokenMemory<Verified>,
}

/// A verified token's buyer and claims.
pub struct Verified {
    /// The generation of the provider's keys it was verified with (0 without a provider).
    generation: u64,
    /// The buyer (`sub`).
    pub user: UserId,
    /// The claims.
    pub claims: Claims,
    /// Whether the role claim names the admin role.
    pub admin: bool,
}

/// Most tokens remembered; past it the memory starts over (a flash sale's buyers fit many times).
const REMEMBERED_TOKENS: usize = 100_000;

impl Verifier {
    /// The oldest token [`Verifier::new`] accepts: a day after its `iat`.
    pub const DEFAULT_MAX_AGE_SECS: u64 = 86_400;

    /// A verifier of HS256 tokens signed with `secret`, with `leeway_secs` of clock skew.
    pub fn new(secret: &[u8], leeway_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = leeway_secs;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        // Expiry is checked by `verify_token` against its `now`, for remembered tokens too.
        validation.validate_exp = false;
        validation.validate_aud = false;
        Self {
            keys: Keys::Secret(DecodingKey::from_secret(secret)),
            validation,
            role_claim: "role".into(),
            admin_role: "admin".into(),
            max_age_secs: Self::DEFAULT_MAX_AGE_SECS,
            verified: TokenMemory::new(REMEMBERED_TOKENS),
        }
    }

    /// The verifier the settings describe: the identity provider's keys when `auth.jwks_file`
    /// (read now: a file that cannot serve is a start-up error) or `auth.jwks_url` (fetched by
    /// [`KeySource::keep_fresh`]) is set, else HS256 with `auth.jwt_secret`; `auth.issuer`
    /// and `auth.audience` required when set; the role read from `auth.role_claim`.
    pub fn from_settings(auth: &settings::AuthSettings) -> Result<Self, KeysError> {
        use settings::secrecy::ExposeSecret;
        let mut verifier = Self::new(auth.jwt_secret.expose_secret().as_bytes(), auth.leeway_secs);
        if !auth.jwks_file.as_os_str().is_empty() {
            let source = KeySource::file(auth.jwks_file.clone());
            source.load_file_now()?;
            verifier.keys = Keys::Provider(Arc::new(source));
        } else if !auth.jwks_url.is_empty() {
            verifier.keys = Keys::Provider(Arc::new(KeySource::url(auth.jwks_url.clone())?));
        } else if !auth.public_key_file.as_os_str().is_empty() {
            let (key, algorithm) = load_public_key(auth)?;
            verifier.keys = Keys::PublicKey(key, algorithm);
        }
        verifier.max_age_secs = auth.max_token_age_secs;
        let mut required = vec!["exp", "sub", "iat"];
        if !auth.issuer.is_empty() {
            verifier.validation.set_issuer(&[auth.issuer.as_str()]);
            required.push("iss");
        }
        if !auth.audience.is_empty() {
            verifier.validation.set_audience(&[auth.audience.as_str()]);
            verifier.validation.validate_aud = true;
            required.push("aud");
        }
        verifier.validation.set_required_spec_claims(&required);
        verifier.validation.validate_nbf = true;
        verifier.role_claim = auth.role_claim.clone();
        verifier.admin_role = auth.admin_role.clone();
        Ok(verifier)
    }

    /// The identity provider's key source, when tokens are the provider's.
    pub fn key_source(&self) -> Option<Arc<KeySource>> {
        match &self.keys {
            Keys::Secret(_) | Keys::PublicKey(..) => None,
            Keys::Provider(source) => Some(source.clone()),
        }
    }

    /// The generation of the provider's keys (read before the keys a token is checked with,
    /// so a token checked with keys since replaced is never taken from memory).
    fn key_generation(&self) -> u64 {
        match &self.keys {
            Keys::Provider(source) => source.generation(),
            Keys::Secret(_) | Keys::PublicKey(..) => 0,
        }
    }

    /// The claims of `token`, checked with the secret, or with the provider's key its `kid`
    /// names (a token whose `kid` is unknown, or whose `alg` is not its key's, is refused; an
    /// unknown `kid` makes the provider's document be read again soon).
    fn decode(&self, token: &str) -> Result<Claims, ApiError> {
        let mut validation = self.validation.clone();
        let decoded = match &self.keys {
            Keys::Secret(key) => {
                validation.algorithms = vec![Algorithm::HS256];
                jsonwebtoken::decode::<Claims>(token, key, &validation)
            }
            Keys::PublicKey(key, algorithm) => {
                validation.algorithms = vec![*algorithm];
                jsonwebtoken::decode::<Claims>(token, key, &validation)
            }
            Keys::Provider(source) => {
                let header =
                    jsonwebtoken::decode_header(token).map_err(|_| ApiError::Unauthorized)?;
                let kid = header.kid.ok_or(ApiError::Unauthorized)?;
                let keys = source.current();
                let Some((key, algorithm)) = keys.get(&kid) else {
                    // Anyone can send this: debug, and no more of the kid than a real one has.
                    let kid: String = kid.chars().take(64).collect();
                    tracing::debug!(%kid, "a token names a key the JWKS document does not have");
                    source.report_missing_key();
                    return Err(ApiError::Unauthorized);
                };
                if header.alg != *algorithm {
                    return Err(ApiError::Unauthorized);
                }
                validation.algorithms = vec![*algorithm];
                jsonwebtoken::decode::<Claims>(token, key, &validation)
            }
        };
        decoded
            .map(|data| data.claims)
            .map_err(|_| ApiError::Unauthorized)
    }

    /// Whether `claims` carry the admin role: the role claim is the admin role, or a list
    /// holding it.
    fn is_admin(&self, claims: &Claims) -> bool {
        match claims.other.get(&self.role_claim) {
            Some(serde_json::Value::String(role)) => *role == self.admin_role,
            Some(serde_json::Value::Array(roles)) => roles
                .iter()
                .any(|role| role.as_str() == Some(self.admin_role.as_str())),
            _ => false,
        }
    }

    /// Verifies the bearer token of `req`, now.
    pub(super) fn verify(&self, req: &HttpRequest) -> Result<Arc<Verified>, ApiError> {
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
        let remembered = self.verified.recall(token);
        // As jsonwebtoken would: expired once `exp` is more than the leeway in the past; and
        // too old once `iat` is more than the largest age and the leeway in the past, or not
        // issued yet (a future `iat` would stretch the age).
        let leeway = self.validation.leeway;
        let unexpired = |claims: &Claims| {
            let ends = claims
                .exp
                .min(claims.iat.saturating_add(self.max_age_secs))
                .saturating_add(leeway);
            let issued = claims.iat.saturating_sub(leeway);
            let now = u64::try_from(now).unwrap_or(0);
            issued <= now && now <= ends
        };
        let generation = self.key_generation();
        if let Some(known) = remembered {
            if known.generation == generation {
                return match unexpired(&known.claims) {
                    true => Ok(known),
                    false => Err(ApiError::Unauthorized),
                };
            }
        }
        let claims = self.decode(token)?;
        if !unexpired(&claims) {
            return Err(ApiError::Unauthorized);
        }
        let user = UserId::from_subject(&claims.sub).map_err(|_| ApiError::Unauthorized)?;
        let known = Arc::new(Verified {
            generation,
            user,
            admin: self.is_admin(&claims),
            claims,
        });
        self.verified.remember(token, known.clone());
        Ok(known)
    }
}
