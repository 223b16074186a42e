//! Who is calling: JWTs whose `sub` is the buyer and whose role claim (`auth.role_claim`, default
//! `role`) naming `auth.admin_role` (default `admin`) opens the admin routes. Extractors, so a
//! handler that takes a [`Buyer`] or an [`Admin`] cannot run for an anonymous caller.
//!
//! The keys: HS256 with `auth.jwt_secret` (local runs, the simulator), or the RS256/ES256 keys of
//! an identity provider from a JWKS document (`auth.jwks_file`), chosen by each token's `kid`.
//! `auth.issuer` and `auth.audience`, when set, must match `iss` and `aud`.

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
    /// The other claims: the role claim among them.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// The keys tokens are verified with.
enum Keys {
    /// HS256 with the shared secret.
    Secret(DecodingKey),
    /// An identity provider's keys, by `kid`, each with its one algorithm.
    Jwks(HashMap<String, (DecodingKey, Algorithm)>),
}

/// Why the token keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The JWKS file cannot be read or parsed.
    #[error("auth.jwks_file {path}: {problem}")]
    Jwks {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
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
    verified: RwLock<HashMap<u64, Arc<Verified>>>,
}

/// A verified token's buyer and claims.
pub struct Verified {
    token: Box<str>,
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
    /// A verifier of HS256 tokens signed with `secret`, with `leeway_secs` of clock skew.
    pub fn new(secret: &[u8], leeway_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = leeway_secs;
        validation.set_required_spec_claims(&["exp", "sub"]);
        // Expiry is checked by `verify_token` against its `now`, for remembered tokens too.
        validation.validate_exp = false;
        validation.validate_aud = false;
        Self {
            keys: Keys::Secret(DecodingKey::from_secret(secret)),
            validation,
            role_claim: "role".into(),
            admin_role: "admin".into(),
            verified: RwLock::default(),
        }
    }

    /// The verifier the settings describe: the JWKS document of `auth.jwks_file` when it is set
    /// (read once, at start-up), else HS256 with `auth.jwt_secret`; `auth.issuer` and
    /// `auth.audience` required when set; the role read from `auth.role_claim`.
    pub fn from_settings(auth: &settings::AuthSettings) -> Result<Self, KeysError> {
        use settings::secrecy::ExposeSecret;
        let mut verifier = Self::new(auth.jwt_secret.expose_secret().as_bytes(), auth.leeway_secs);
        if !auth.jwks_file.as_os_str().is_empty() {
            verifier.keys = Keys::Jwks(load_jwks(&auth.jwks_file)?);
        }
        let mut required = vec!["exp", "sub"];
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

    /// The key and algorithm for `token`: the secret's, or the JWKS key its `kid` names (a
    /// token whose `kid` is unknown, or whose `alg` is not its key's, is refused).
    fn key_for(&self, token: &str) -> Result<(&DecodingKey, Algorithm), ApiError> {
        match &self.keys {
            Keys::Secret(key) => Ok((key, Algorithm::HS256)),
            Keys::Jwks(keys) => {
                let header =
                    jsonwebtoken::decode_header(token).map_err(|_| ApiError::Unauthorized)?;
                let kid = header.kid.ok_or(ApiError::Unauthorized)?;
                let Some((key, algorithm)) = keys.get(&kid) else {
                    tracing::info!(%kid, "a token names a key the JWKS document does not have");
                    return Err(ApiError::Unauthorized);
                };
                if header.alg != *algorithm {
                    return Err(ApiError::Unauthorized);
                }
                Ok((key, *algorithm))
            }
        }
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
        let (key, algorithm) = self.key_for(token)?;
        let mut validation = self.validation.clone();
        validation.algorithms = vec![algorithm];
        let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|_| ApiError::Unauthorized)?
            .claims;
        if !unexpired(&claims) {
            return Err(ApiError::Unauthorized);
        }
        let user = UserId::parse(claims.sub.as_str()).map_err(|_| ApiError::Unauthorized)?;
        let known = Arc::new(Verified {
            token: token.into(),
            user,
            admin: self.is_admin(&claims),
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

/// Reads a JWKS document: every key with a `kid` and an algorithm this gateway verifies
/// (RS256/384/512, PS256/384/512, ES256/384, EdDSA), by `kid`.
fn load_jwks(
    path: &std::path::Path,
) -> Result<HashMap<String, (DecodingKey, Algorithm)>, KeysError> {
    let problem = |problem: String| KeysError::Jwks {
        path: path.display().to_string(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|e| problem(e.to_string()))?;
    let set: jsonwebtoken::jwk::JwkSet =
        serde_json::from_str(&text).map_err(|e| problem(format!("not a JWKS document: {e}")))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let kid = jwk
            .common
            .key_id
            .clone()
            .ok_or_else(|| problem("a key has no `kid`".into()))?;
        let algorithm = match jwk.common.key_algorithm {
            Some(algorithm) => algorithm.to_string().parse::<Algorithm>().map_err(|_| {
                problem(format!(
                    "key {kid}: algorithm {algorithm} is not for signatures"
                ))
            })?,
            None => match &jwk.algorithm {
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                    jsonwebtoken::jwk::EllipticCurve::P384 => Algorithm::ES384,
                    _ => Algorithm::ES256,
                },
                _ => return Err(problem(format!("key {kid}: name its `alg`"))),
            },
        };
        if matches!(
            algorithm,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(problem(format!(
                "key {kid}: a shared secret has no place in a JWKS document"
            )));
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| problem(format!("key {kid}: {e}")))?;
        keys.insert(kid, (key, algorithm));
    }
    if keys.is_empty() {
        return Err(problem("it holds no key".into()));
    }
    Ok(keys)
}

/// Signs a token (the simulator, tests and `make` helpers mint theirs with this).
pub fn sign(secret: &[u8], sub: &str, role: Option<&str>, ttl_secs: u64) -> String {
    let mut other = serde_json::Map::new();
    if let Some(role) = role {
        other.insert("role".into(), role.into());
    }
    let claims = Claims {
        sub: sub.to_owned(),
        exp: chrono::Utc::now().timestamp() as u64 + ttl_secs,
        other,
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
                    if verified.admin {
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

    /// An identity provider made up for the test: an ES256 key pair, its JWKS document in a
    /// file, and tokens it signs.
    struct Provider {
        signing: EncodingKey,
        jwks: std::path::PathBuf,
    }

    impl Provider {
        fn new(kid: &str) -> Self {
            use base64::Engine;
            use p256::pkcs8::EncodePrivateKey;
            let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
            let der = key.to_pkcs8_der().expect("a PKCS#8 DER");
            let point = key.verifying_key().to_encoded_point(false);
            let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
            let jwks = serde_json::json!({"keys": [{
                "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                "x": b64(point.x().expect("x")), "y": b64(point.y().expect("y")),
            }]});
            let path = std::env::temp_dir().join(format!(
                "seckill-jwks-{}-{kid}.json",
                uuid::Uuid::now_v7().simple()
            ));
            std::fs::write(&path, jwks.to_string()).expect("the JWKS file is written");
            Self {
                signing: EncodingKey::from_ec_der(der.as_bytes()),
                jwks: path,
            }
        }

        fn token(&self, kid: &str, claims: serde_json::Value) -> String {
            let mut header = Header::new(Algorithm::ES256);
            header.kid = Some(kid.to_owned());
            jsonwebtoken::encode(&header, &claims, &self.signing).expect("ES256 signs")
        }
    }

    fn settings_for(provider: &Provider) -> settings::AuthSettings {
        let mut auth = settings::Settings::defaults().auth;
        auth.jwks_file = provider.jwks.clone();
        auth.issuer = "https://id.example.com/".into();
        auth.audience = "seckill".into();
        auth.role_claim = "roles".into();
        auth.admin_role = "shop-admin".into();
        auth
    }

    #[test]
    fn identity_provider_tokens_are_verified_by_kid_issuer_and_audience_and_map_roles() {
        let provider = Provider::new("key-1");
        let verifier = Verifier::from_settings(&settings_for(&provider)).expect("keys load");
        let now = chrono::Utc::now().timestamp();
        let claims = |iss: &str, aud: &str, roles: serde_json::Value| serde_json::json!({"sub": "alice", "exp": now + 60, "iss": iss, "aud": aud, "roles": roles});
        let good = provider.token(
            "key-1",
            claims(
                "https://id.example.com/",
                "seckill",
                serde_json::json!(["buyer"]),
            ),
        );
        let verified = verifier.verify_token(&good, now).expect("a good token");
        assert_eq!(verified.user.as_str(), "alice");
        assert!(!verified.admin);
        let admin = provider.token(
            "key-1",
            claims(
                "https://id.example.com/",
                "seckill",
                serde_json::json!(["buyer", "shop-admin"]),
            ),
        );
        assert!(verifier.verify_token(&admin, now).expect("an admin").admin);
        let refused = [
            (
                "another issuer",
                provider.token(
                    "key-1",
                    claims(
                        "https://evil.example.com/",
                        "seckill",
                        serde_json::json!([]),
                    ),
                ),
            ),
            (
                "another audience",
                provider.token(
                    "key-1",
                    claims("https://id.example.com/", "other", serde_json::json!([])),
                ),
            ),
            (
                "an unknown kid",
                provider.token(
                    "key-2",
                    claims("https://id.example.com/", "seckill", serde_json::json!([])),
                ),
            ),
            (
                "another provider's key",
                Provider::new("key-1").token(
                    "key-1",
                    claims("https://id.example.com/", "seckill", serde_json::json!([])),
                ),
            ),
            (
                "the shared secret",
                sign(
                    b"local-development-secret-change-me",
                    "alice",
                    Some("shop-admin"),
                    60,
                ),
            ),
            ("an HS256 token naming the key, with the right claims", {
                let mut header = Header::new(Algorithm::HS256);
                header.kid = Some("key-1".into());
                jsonwebtoken::encode(
                    &header,
                    &claims(
                        "https://id.example.com/",
                        "seckill",
                        serde_json::json!(["shop-admin"]),
                    ),
                    &EncodingKey::from_secret(b"local-development-secret-change-me"),
                )
                .expect("HS256 signs")
            }),
        ];
        for (what, token) in refused {
            assert!(
                verifier.verify_token(&token, now).is_err(),
                "{what} is refused"
            );
        }
    }

    #[test]
    fn a_jwks_file_that_cannot_serve_is_a_start_up_error_naming_the_key() {
        let provider = Provider::new("key-1");
        let mut auth = settings_for(&provider);
        auth.jwks_file = "/nonexistent/jwks.json".into();
        let err = Verifier::from_settings(&auth).err().expect("refused");
        assert!(err.to_string().contains("auth.jwks_file"), "{err}");
        std::fs::write(&provider.jwks, r#"{"keys": []}"#).expect("written");
        let err = Verifier::from_settings(&settings_for(&provider))
            .err()
            .expect("refused");
        assert!(err.to_string().contains("no key"), "{err}");
    }
}
