//! Who is calling: JWTs whose `sub` is the buyer and whose role claim (`auth.role_claim`, default
//! `role`) naming `auth.admin_role` (default `admin`) opens the admin routes. Extractors, so a
//! handler that takes a [`Buyer`] or an [`Admin`] cannot run for an anonymous caller.
//!
//! The keys: HS256 with `auth.jwt_secret` (local runs, the simulator), or the RS256/ES256 keys of
//! an identity provider from its JWKS document (`auth.jwks_file` or `auth.jwks_url`), chosen by
//! each token's `kid` and read again every `auth.jwks_refresh_secs`, and soon after a token names
//! a key the document lacks ([`KeySource::keep_fresh`]). `auth.issuer` and `auth.audience`,
//! when set, must match `iss` and `aud`.

use crate::error::ApiError;
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use domain::UserId;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::{ready, Ready};
use std::hash::Hasher;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

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

/// An identity provider's keys, by `kid`, each with its one algorithm.
type KeySet = HashMap<String, (DecodingKey, Algorithm)>;

/// The keys tokens are verified with.
enum Keys {
    /// HS256 with the shared secret.
    Secret(DecodingKey),
    /// An identity provider's.
    Provider(Arc<KeySource>),
    /// One public key (PEM) and the algorithm its tokens are signed with.
    PublicKey(DecodingKey, Algorithm),
}

/// Why the token keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The JWKS document or public key cannot be read, fetched or parsed.
    #[error("{key} {origin}: {problem}")]
    Unusable {
        /// The setting naming the source: `auth.jwks_file`, `auth.jwks_url` or
        /// `auth.public_key_file`.
        key: &'static str,
        /// The file or URL.
        origin: String,
        /// What is wrong.
        problem: String,
    },
}

/// The largest JWKS document read (providers publish a few keys, a few KiB).
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Where an identity provider's keys come from, and the keys read from there last.
pub struct KeySource {
    origin: Origin,
    keys: RwLock<Arc<KeySet>>,
    /// The document the keys were read from, to tell a change from a read of the same keys.
    document: Mutex<String>,
    /// Told when a token names a key the set lacks.
    missing_key: tokio::sync::Notify,
    /// Bumped with every change of the keys: a token remembered under an older generation is
    /// verified again.
    generation: AtomicU64,
}

enum Origin {
    File(PathBuf),
    Url {
        url: String,
        client: reqwest::Client,
    },
}

impl KeySource {
    fn file(path: PathBuf) -> Self {
        Self::new(Origin::File(path))
    }

    fn url(url: String) -> Result<Self, KeysError> {
        // An https URL is never followed to http (a redirect could otherwise downgrade it).
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .https_only(url.starts_with("https://"))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| KeysError::Unusable {
                key: "auth.jwks_url",
                origin: url.clone(),
                problem: format!("no HTTP client: {e}"),
            })?;
        Ok(Self::new(Origin::Url { url, client }))
    }

    fn new(origin: Origin) -> Self {
        Self {
            origin,
            keys: RwLock::default(),
            document: Mutex::default(),
            missing_key: tokio::sync::Notify::new(),
            generation: AtomicU64::new(0),
        }
    }

    /// Whether it holds keys (it does once a read succeeded): the gateway's readiness.
    pub fn has_keys(&self) -> bool {
        !self.current().is_empty()
    }

    fn current(&self) -> Arc<KeySet> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn problem(&self, problem: String) -> KeysError {
        let (key, origin) = match &self.origin {
            Origin::File(path) => ("auth.jwks_file", path.display().to_string()),
            Origin::Url { url, .. } => ("auth.jwks_url", url.clone()),
        };
        KeysError::Unusable {
            key,
            origin,
            problem,
        }
    }

    /// Reads the document from the file now (start-up: a file that cannot serve stops it).
    fn load_file_now(&self) -> Result<(), KeysError> {
        let Origin::File(path) = &self.origin else {
            return Ok(());
        };
        self.replace(self.read_file(path)?).map(|_| ())
    }

    fn read_file(&self, path: &std::path::Path) -> Result<String, KeysError> {
        std::fs::read_to_string(path).map_err(|e| self.problem(e.to_string()))
    }

    /// Reads the document again; whether its keys changed.
    async fn reload(&self) -> Result<bool, KeysError> {
        let text = match &self.origin {
            Origin::File(path) => self.read_file(path)?,
            Origin::Url { url, client } => {
                let mut response = client
                    .get(url)
                    .header(reqwest::header::ACCEPT, "application/json")
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map_err(|e| self.problem(e.to_string()))?;
                let too_large = || self.problem("the document is larger than 1 MiB".into());
                if response
                    .content_length()
                    .is_some_and(|length| length > MAX_JWKS_BYTES as u64)
                {
                    return Err(too_large());
                }
                // Read chunk by chunk: a server that sends no length is stopped at the limit.
                let mut body = Vec::new();
                while let Some(chunk) = response
                    .chunk()
                    .await
                    .map_err(|e| self.problem(e.to_string()))?
                {
                    if body.len() + chunk.len() > MAX_JWKS_BYTES {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk);
                }
                String::from_utf8(body)
                    .map_err(|_| self.problem("the document is not UTF-8".into()))?
            }
        };
        self.replace(text)
    }

    /// Keeps the keys fresh until `stop`: reads the document every `every`, soon (not before
    /// `soonest`, at least a second, after the last read) when a token names a key it lacks,
    /// and every `soonest` until a first read succeeds. A failed read keeps the keys read last.
    /// When the keys change, a token verified with the old ones is verified again on its next
    /// use (the keys' generation). Each read is counted in `reads` by outcome.
    pub async fn keep_fresh(
        self: Arc<Self>,
        every: Duration,
        soonest: Duration,
        reads: prometheus::IntCounterVec,
        stop: CancellationToken,
    ) {
        // Unknown kids cost no signature: whatever the settings, never more than a read a second.
        let soonest = soonest.max(Duration::from_secs(1));
        let mut last_read = self.has_keys().then(Instant::now);
        loop {
            let due = match last_read {
                None => Instant::now(),
                Some(at) if self.has_keys() => at + every,
                Some(at) => at + soonest,
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep_until(due) => {}
                () = self.missing_key.notified() => {
                    let soonest_read = last_read.map_or_else(Instant::now, |at| at + soonest);
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep_until(soonest_read) => {}
                    }
                }
            }
            last_read = Some(Instant::now());
            let read = self.reload().await;
            // Tokens that named a missing key before this read are answered by it.
            let _ = futures::FutureExt::now_or_never(self.missing_key.notified());
            let outcome = match read {
                Ok(true) => {
                    let kids: Vec<String> = self.current().keys().cloned().collect();
                    tracing::info!(?kids, "identity provider keys read");
                    "changed"
                }
                Ok(false) => {
                    tracing::debug!("identity provider keys unchanged");
                    "unchanged"
                }
                Err(error) => {
                    tracing::warn!(%error, "identity provider keys not read; the last ones serve");
                    "failed"
                }
            };
            reads.with_label_values(&[outcome]).inc();
        }
    }

    /// Takes the keys of `text` unless it is the document already read; whether they changed.
    /// A document that cannot serve changes nothing.
    fn replace(&self, text: String) -> Result<bool, KeysError> {
        let mut document = self.document.lock().unwrap_or_else(PoisonError::into_inner);
        if *document == text {
            return Ok(false);
        }
        let keys = parse_jwks(&text).map_err(|problem| self.problem(problem))?;
        let mut current = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        *current = Arc::new(keys);
        self.generation.fetch_add(1, Ordering::AcqRel);
        drop(current);
        *document = text;
        Ok(true)
    }
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
            Keys::Provider(source) => source.generation.load(Ordering::Acquire),
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
                    source.missing_key.notify_one();
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
        let generation = self.key_generation();
        if let Some(known) = remembered {
            if *known.token == *token && known.generation == generation {
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
            token: token.into(),
            generation,
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

/// The keys of a JWKS document: every signing key with a `kid` and an algorithm this gateway
/// verifies (RS256/384/512, PS256/384/512, ES256/384, EdDSA), by `kid`; or what is wrong with
/// it. Other keys are skipped, not refused: providers publish encryption keys (Keycloak's
/// RSA-OAEP) and keys of other algorithms beside their signing keys, and may add one at any
/// time. A document with no usable key is refused, naming why each was skipped.
fn parse_jwks(text: &str) -> Result<KeySet, String> {
    #[derive(Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document =
        serde_json::from_str(text).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = HashMap::new();
    let mut skipped = Vec::new();
    for (index, value) in document.keys.into_iter().enumerate() {
        match signing_key(value) {
            Ok((kid, key, algorithm)) => {
                keys.insert(kid, (key, algorithm));
            }
            Err(why) => skipped.push(format!("key {index}: {why}")),
        }
    }
    if !skipped.is_empty() {
        tracing::debug!(?skipped, "JWKS keys not used");
    }
    if keys.is_empty() {
        return Err(match skipped.is_empty() {
            true => "it holds no key".into(),
            false => format!("it holds no usable signing key ({})", skipped.join("; ")),
        });
    }
    Ok(keys)
}

/// The `kid`, key and algorithm of one JWKS entry, or why it is no signing key of ours.
fn signing_key(value: serde_json::Value) -> Result<(String, DecodingKey, Algorithm), String> {
    let jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(value).map_err(|e| format!("not a key this gateway reads: {e}"))?;
    if jwk.common.public_key_use == Some(jsonwebtoken::jwk::PublicKeyUse::Encryption) {
        return Err("an encryption key (use: enc)".into());
    }
    let kid = jwk
        .common
        .key_id
        .clone()
        .ok_or_else(|| "no `kid`".to_owned())?;
    let algorithm = match jwk.common.key_algorithm {
        Some(algorithm) => algorithm
            .to_string()
            .parse::<Algorithm>()
            .map_err(|_| format!("{kid}: algorithm {algorithm} is not for signatures"))?,
        None => match &jwk.algorithm {
            jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
            jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                jsonwebtoken::jwk::EllipticCurve::P384 => Algorithm::ES384,
                _ => Algorithm::ES256,
            },
            _ => return Err(format!("{kid}: no `alg`")),
        },
    };
    if is_shared_secret(algorithm) {
        return Err(format!(
            "{kid}: a shared secret has no place in a JWKS document"
        ));
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("{kid}: {e}"))?;
    Ok((kid, key, algorithm))
}

/// The key of `auth.public_key_file` (PEM: an RSA, EC or Ed25519 public key) for
/// `auth.public_key_algorithm`.
fn load_public_key(auth: &settings::AuthSettings) -> Result<(DecodingKey, Algorithm), KeysError> {
    let path = &auth.public_key_file;
    let algorithm = auth
        .public_key_algorithm
        .parse::<Algorithm>()
        .ok()
        .filter(|a| !is_shared_secret(*a))
        .ok_or_else(|| KeysError::Unusable {
            key: "auth.public_key_algorithm",
            origin: auth.public_key_algorithm.clone(),
            problem: "is not one of RS256/384/512, PS256/384/512, ES256/384, EdDSA".into(),
        })?;
    let unusable = |problem: String| KeysError::Unusable {
        key: "auth.public_key_file",
        origin: path.display().to_string(),
        problem,
    };
    let pem = std::fs::read(path).map_err(|e| unusable(e.to_string()))?;
    let key = match algorithm {
        Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
        Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
        _ => DecodingKey::from_rsa_pem(&pem),
    }
    .map_err(|e| unusable(format!("not a PEM public key for {algorithm:?}: {e}")))?;
    Ok((key, algorithm))
}

/// Whether `algorithm` is an HMAC one: a shared secret, never an identity provider's key.
fn is_shared_secret(algorithm: Algorithm) -> bool {
    matches!(
        algorithm,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    )
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

    #[test]
    fn keys_a_gateway_cannot_verify_with_are_skipped_and_only_a_document_without_any_is_refused() {
        let provider = Provider::new("sig-1");
        let mut document: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&provider.jwks).expect("read"))
                .expect("JSON");
        let signing = document["keys"][0].clone();
        let others = serde_json::json!([
            // Keycloak publishes an encryption key beside its signing key.
            {"kty": "RSA", "use": "enc", "alg": "RSA-OAEP", "kid": "enc-1", "n": "AQAB", "e": "AQAB"},
            {"kty": "EC", "crv": "P-256", "alg": "ES256", "x": signing["x"], "y": signing["y"]},
            {"kty": "oct", "alg": "HS256", "kid": "secret", "k": "c2VjcmV0"},
            {"kty": "unknown-type", "kid": "odd"},
        ]);
        let mut keys = others.as_array().expect("array").clone();
        keys.push(signing);
        document["keys"] = serde_json::Value::Array(keys);
        let parsed = parse_jwks(&document.to_string()).expect("the signing key serves");
        assert_eq!(parsed.keys().collect::<Vec<_>>(), vec!["sig-1"]);

        document["keys"] = others;
        let Err(refused) = parse_jwks(&document.to_string()) else {
            panic!("a document without a signing key was taken");
        };
        assert!(refused.contains("no usable signing key"), "{refused}");
        assert!(refused.contains("use: enc"), "{refused}");
    }

    #[test]
    fn a_single_public_key_verifies_its_algorithms_tokens_only() {
        use p256::pkcs8::EncodePublicKey;
        let signing = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let pem = signing
            .verifying_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .expect("a PEM public key");
        let path = std::env::temp_dir().join(format!(
            "seckill-public-key-{}.pem",
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::write(&path, pem).expect("written");
        let mut auth = settings::Settings::defaults().auth;
        auth.public_key_file = path.clone();
        auth.public_key_algorithm = "ES256".into();
        let verifier = Verifier::from_settings(&auth).expect("the key loads");
        let now = chrono::Utc::now().timestamp();
        let claims = serde_json::json!({"sub": "alice", "exp": now + 60});
        let der = {
            use p256::pkcs8::EncodePrivateKey;
            signing.to_pkcs8_der().expect("DER")
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::ES256),
            &claims,
            &EncodingKey::from_ec_der(der.as_bytes()),
        )
        .expect("ES256 signs");
        assert_eq!(
            verifier
                .verify_token(&token, now)
                .expect("valid")
                .user
                .as_str(),
            "alice"
        );
        // An HS256 token with the development secret is not taken by a public-key verifier.
        assert!(verifier
            .verify_token(
                &sign(
                    b"local-development-secret-change-me",
                    "eve",
                    Some("admin"),
                    60
                ),
                now
            )
            .is_err());
        // A key file for another algorithm, or an algorithm that is a shared secret's, is a
        // start-up error naming the key.
        auth.public_key_algorithm = "RS256".into();
        let err = Verifier::from_settings(&auth).err().expect("refused");
        assert!(err.to_string().contains("auth.public_key_file"), "{err}");
        auth.public_key_algorithm = "HS256".into();
        let err = Verifier::from_settings(&auth).err().expect("refused");
        assert!(
            err.to_string().contains("auth.public_key_algorithm"),
            "{err}"
        );
        std::fs::remove_file(path).expect("removed");
    }

    #[test]
    fn a_subject_with_characters_user_ids_lack_is_a_buyer_under_its_written_form() {
        let verifier = Verifier::new(SECRET, 0);
        let now = chrono::Utc::now().timestamp();
        let auth0 = verifier
            .verify_token(&sign(SECRET, "auth0|5f7c", None, 60), now)
            .expect("an Auth0 subject is a buyer");
        assert_eq!(auth0.user.as_str(), "auth0%7C5f7c");
        let lookalike = verifier
            .verify_token(&sign(SECRET, "auth0%7C5f7c", None, 60), now)
            .expect("valid");
        assert_ne!(lookalike.user, auth0.user);
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

    /// A JWKS URL on loopback serving whatever document the test sets, counting its reads.
    struct JwksServer {
        url: String,
        document: Arc<Mutex<String>>,
        reads: Arc<std::sync::atomic::AtomicUsize>,
        server: actix_web::dev::ServerHandle,
    }

    impl JwksServer {
        fn start(document: String) -> Self {
            let document = Arc::new(Mutex::new(document));
            let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let (served, counted) = (document.clone(), reads.clone());
            let server = actix_web::HttpServer::new(move || {
                let (served, counted) = (served.clone(), counted.clone());
                actix_web::App::new().route(
                    "/jwks.json",
                    web::get().to(move || {
                        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let body = served.lock().expect("not poisoned").clone();
                        async move {
                            actix_web::HttpResponse::Ok()
                                .content_type("application/json")
                                .body(body)
                        }
                    }),
                )
            })
            .workers(1)
            .bind("127.0.0.1:0")
            .expect("a loopback port");
            let url = format!("http://{}/jwks.json", server.addrs()[0]);
            let server = server.run();
            let handle = server.handle();
            tokio::spawn(server);
            Self {
                url,
                document,
                reads,
                server: handle,
            }
        }

        fn serve(&self, provider: &Provider) {
            *self.document.lock().expect("not poisoned") =
                std::fs::read_to_string(&provider.jwks).expect("the document");
        }

        fn reads(&self) -> usize {
            self.reads.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    async fn eventually_accepted(verifier: &Verifier, token: &str) {
        for _ in 0..100 {
            if verifier
                .verify_token(token, chrono::Utc::now().timestamp())
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the token was not accepted within 5 s");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_jwks_url_is_fetched_refetched_for_a_new_kid_at_a_bounded_rate_and_outlives_an_outage(
    ) {
        let first = Provider::new("key-1");
        let server = JwksServer::start(std::fs::read_to_string(&first.jwks).expect("read"));
        let mut auth = settings_for(&first);
        auth.jwks_file = PathBuf::new();
        auth.jwks_url = server.url.clone();
        let verifier = Arc::new(Verifier::from_settings(&auth).expect("a URL verifier"));
        let keys = verifier.key_source().expect("a provider's keys");
        let claims = |sub: &str| {
            serde_json::json!({"sub": sub, "exp": chrono::Utc::now().timestamp() + 60,
                "iss": "https://id.example.com/", "aud": "seckill"})
        };
        let token = first.token("key-1", claims("alice"));
        let now = chrono::Utc::now().timestamp();
        // Nothing fetched yet: not ready, and no token passes.
        assert!(!keys.has_keys());
        assert!(verifier.verify_token(&token, now).is_err());

        let stop = CancellationToken::new();
        let soonest = Duration::from_secs(2);
        let reads = crate::metrics::GatewayMetrics::new(prometheus::Registry::new()).key_reads;
        tokio::spawn(keys.clone().keep_fresh(
            Duration::from_secs(3600),
            soonest,
            reads.clone(),
            stop.clone(),
        ));
        eventually_accepted(&verifier, &token).await;
        assert!(keys.has_keys());
        assert_eq!(server.reads(), 1);

        // The provider rotates to key-2: the first token naming it is refused and makes the
        // gateway read the document again, well before the hourly refresh.
        let second = Provider::new("key-2");
        server.serve(&second);
        let rotated = second.token("key-2", claims("bob"));
        tokio::time::sleep(soonest).await;
        assert!(verifier.verify_token(&rotated, now).is_err());
        eventually_accepted(&verifier, &rotated).await;
        let rotation_read = Instant::now();
        assert_eq!(server.reads(), 2);
        // Key-1 left the document: its token is refused, although it was verified before.
        assert!(verifier.verify_token(&token, now).is_err());

        // A flood of tokens naming unknown keys makes at most one read per `soonest` (one
        // when the flood fits in the time before the next read, as it does on an idle machine).
        let flood = Instant::now();
        let mut i = 0;
        while flood.elapsed() < Duration::from_secs(1) {
            let stranger = second.token(&format!("unknown-{i}"), claims("mallory"));
            assert!(verifier.verify_token(&stranger, now).is_err());
            i += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(i > 20, "{i} tokens in the flood");
        tokio::time::sleep(soonest + Duration::from_millis(500)).await;
        let extra = server.reads() - 2;
        let windows = rotation_read.elapsed().as_secs_f64() / soonest.as_secs_f64();
        assert!(
            extra >= 1 && extra as f64 <= windows.floor() + 1.0,
            "{extra} reads for {i} tokens in {:?}",
            rotation_read.elapsed()
        );

        // The provider is down: reads fail, and the keys read last go on serving.
        server.server.stop(false).await;
        let unknown = second.token("unknown-after-outage", claims("mallory"));
        assert!(verifier.verify_token(&unknown, now).is_err());
        tokio::time::sleep(soonest + Duration::from_millis(500)).await;
        let later = second.token("key-2", claims("carol"));
        assert!(verifier.verify_token(&later, now).is_ok());
        assert!(keys.has_keys());
        let count = |outcome: &str| reads.with_label_values(&[outcome]).get();
        assert_eq!(count("changed"), 2, "key-1, then key-2");
        assert!(count("unchanged") >= 1, "the flood's read");
        assert!(count("failed") >= 1, "the outage");
        stop.cancel();
    }
}
