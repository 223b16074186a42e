//! Reading keys: the signing keys of an identity provider's JWKS document, by `kid`, and the one
//! PEM public key of `auth.public_key_file`. A key this gateway cannot verify with is skipped
//! with its reason, never guessed at: a wrong guess would refuse every token its provider signs,
//! or worse, verify them with an algorithm the provider never meant.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use std::collections::HashMap;

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

/// An identity provider's keys, by `kid`, each with its one algorithm.
pub(super) type KeySet = HashMap<String, (DecodingKey, Algorithm)>;

/// The keys of a JWKS document: every signing key with a `kid` and an algorithm this gateway
/// verifies (RS256/384/512, PS256/384/512, ES256/384, EdDSA), by `kid`; or what is wrong with
/// it. Other keys are skipped, not refused: providers publish encryption keys (Keycloak's
/// RSA-OAEP) and keys of other algorithms beside their signing keys, and may add one at any
/// time. A document with no usable key is refused, naming why each was skipped.
pub(super) fn parse_jwks(text: &str) -> Result<KeySet, String> {
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
    let jwk: Jwk =
        serde_json::from_value(value).map_err(|e| format!("not a key this gateway reads: {e}"))?;
    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
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
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(ec) => curve_algorithm(&kid, &ec.curve)?,
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

/// The ECDSA algorithm of the EC key `kid` on `curve` that names none; or, for a curve this
/// gateway has no algorithm for (P-521: jsonwebtoken has no ES512; Ed25519 belongs to OKP
/// keys), why the key is skipped, logged as a warning: the provider may sign with it, and every
/// token it signs would be refused.
fn curve_algorithm(kid: &str, curve: &EllipticCurve) -> Result<Algorithm, String> {
    let unsupported = match curve {
        EllipticCurve::P256 => return Ok(Algorithm::ES256),
        EllipticCurve::P384 => return Ok(Algorithm::ES384),
        EllipticCurve::P521 => "P-521".to_owned(),
        EllipticCurve::Ed25519 => "Ed25519".to_owned(),
        // The enum is non-exhaustive: a curve added to jsonwebtoken is one not verified here.
        other => format!("{other:?}"),
    };
    tracing::warn!(%kid, curve = %unsupported, "a JWKS key on a curve this gateway does not verify is skipped");
    Err(format!(
        "{kid}: no `alg`, and curve {unsupported} is not one this gateway verifies (P-256, P-384)"
    ))
}

/// The key of `auth.public_key_file` (PEM: an RSA, EC or Ed25519 public key) for
/// `auth.public_key_algorithm`.
pub(super) fn load_public_key(
    auth: &settings::AuthSettings,
) -> Result<(DecodingKey, Algorithm), KeysError> {
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
