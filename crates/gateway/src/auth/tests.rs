//! The tests of token verification: HS256 tokens and their memory, an identity provider's keys
//! from a JWKS file or URL (made up here with ES256 key pairs), a single public key, and the
//! keys of a JWKS document that are skipped.

use super::keys::parse_jwks;
use super::*;
use actix_web::web;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

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
fn a_token_without_iat_or_older_than_the_largest_age_is_refused_whatever_its_exp() {
    let mut auth = settings::Settings::defaults().auth;
    auth.jwt_secret = String::from_utf8(SECRET.to_vec()).unwrap().into();
    auth.leeway_secs = 0;
    auth.max_token_age_secs = 3_600;
    let verifier = Verifier::from_settings(&auth).expect("HS256");
    let now = chrono::Utc::now().timestamp();
    let token = |claims: serde_json::Value| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .expect("signs")
    };
    let year = 365 * 86_400;
    let fresh = token(serde_json::json!({"sub": "alice", "exp": now + year, "iat": now}));
    assert!(verifier.verify_token(&fresh, now).is_ok());
    // The same token an hour and a second later: too old, from memory or afresh.
    assert!(verifier.verify_token(&fresh, now + 3_601).is_err());
    assert!(Verifier::from_settings(&auth)
        .unwrap()
        .verify_token(&fresh, now + 3_601)
        .is_err());
    let old = token(serde_json::json!({"sub": "bob", "exp": now + year, "iat": now - 3_601}));
    assert!(verifier.verify_token(&old, now).is_err());
    let undated = token(serde_json::json!({"sub": "carol", "exp": now + year}));
    assert!(verifier.verify_token(&undated, now).is_err());
    let future = token(serde_json::json!({"sub": "dave", "exp": now + year, "iat": now + 600}));
    assert!(verifier.verify_token(&future, now).is_err());
}

#[test]
fn keys_a_gateway_cannot_verify_with_are_skipped_and_only_a_document_without_any_is_refused() {
    let signing = Provider::new("sig-1").key();
    let others = [
        // Keycloak publishes an encryption key beside its signing key.
        serde_json::json!({"kty": "RSA", "use": "enc", "alg": "RSA-OAEP", "kid": "enc-1", "n": "AQAB", "e": "AQAB"}),
        serde_json::json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "x": signing["x"], "y": signing["y"]}),
        serde_json::json!({"kty": "oct", "alg": "HS256", "kid": "secret", "k": "c2VjcmV0"}),
        serde_json::json!({"kty": "unknown-type", "kid": "odd"}),
    ];
    let mut keys = others.to_vec();
    keys.push(signing);
    let parsed = parse_jwks(&jwks(&keys)).expect("the signing key serves");
    assert_eq!(parsed.keys().collect::<Vec<_>>(), vec!["sig-1"]);

    let Err(refused) = parse_jwks(&jwks(&others)) else {
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
    let claims = serde_json::json!({"sub": "alice", "exp": now + 60, "iat": now});
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

/// A JWKS document of `keys`.
fn jwks(keys: &[serde_json::Value]) -> String {
    serde_json::json!({ "keys": keys }).to_string()
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

    /// The one key of its JWKS document.
    fn key(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(&self.jwks).expect("the JWKS file is read");
        let document: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        document["keys"][0].clone()
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
    let claims = |iss: &str, aud: &str, roles: serde_json::Value| serde_json::json!({"sub": "alice", "exp": now + 60, "iat": now, "iss": iss, "aud": aud, "roles": roles});
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
async fn a_jwks_url_is_fetched_refetched_for_a_new_kid_at_a_bounded_rate_and_outlives_an_outage() {
    let first = Provider::new("key-1");
    let server = JwksServer::start(std::fs::read_to_string(&first.jwks).expect("read"));
    let mut auth = settings_for(&first);
    auth.jwks_file = PathBuf::new();
    auth.jwks_url = server.url.clone();
    let verifier = Arc::new(Verifier::from_settings(&auth).expect("a URL verifier"));
    let keys = verifier.key_source().expect("a provider's keys");
    let claims = |sub: &str| {
        // Issued a minute ago: the test checks them at its start, and minutes pass.
        let now = chrono::Utc::now().timestamp();
        serde_json::json!({"sub": sub, "exp": now + 60, "iat": now - 60,
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

#[test]
fn a_jwks_key_on_a_curve_the_gateway_does_not_verify_is_skipped_not_taken_as_es256() {
    let signing = Provider::new("p256").key();
    // No `alg`: the curve alone says which ECDSA algorithm its tokens use.
    let mut without_alg = signing.clone();
    without_alg
        .as_object_mut()
        .expect("a key is an object")
        .remove("alg");
    without_alg["kid"] = "p256-no-alg".into();
    let mut p521 = without_alg.clone();
    p521["crv"] = "P-521".into();
    p521["kid"] = "p521".into();
    let parsed =
        parse_jwks(&jwks(&[signing, without_alg, p521.clone()])).expect("the P-256 keys serve");
    let mut kids: Vec<&String> = parsed.keys().collect();
    kids.sort();
    assert_eq!(kids, ["p256", "p256-no-alg"]);
    assert_eq!(parsed["p256-no-alg"].1, Algorithm::ES256);

    let Err(refused) = parse_jwks(&jwks(&[p521])) else {
        panic!("a P-521 key without `alg` was taken");
    };
    assert!(
        refused.contains("p521: no `alg`, and curve P-521 is not one this gateway verifies"),
        "{refused}"
    );
}
