//! What a deployment must set that a developer's machine need not, and `[deployment]`, the one
//! section that lets a deployment accept less. Two checks, apart from [`Settings::validate`]
//! because they depend on where the service runs and who runs them:
//! - [`Settings::require_deployed_secrets`]: its own secrets, https for the identity provider's
//!   keys, and the issuer and audience its tokens are checked against. Only the gateway runs it
//!   (it is the one service that verifies tokens and payment notices).
//! - [`Settings::require_verified_transport`]: every connection to a backend verifies its peer
//!   (certificate and host name), so that nobody on the network path can read or change the
//!   orders, the stock or the credentials. Every service runs it before it connects
//!   (`connections::Connections::connect`); `deployment.allow_unverified_transport` accepts a
//!   named backend anyway, and the service then logs a warning at every start.

use crate::error::{invalid, SettingsError};
use crate::load::DEFAULT_TOML;
use crate::Settings;
use secrecy::ExposeSecret;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::fmt;

/// The environments (`SECKILL_ENV`) where the development secrets of `config/default.toml` are
/// accepted: a developer's machine (`local`, the default) and the test suites (`test`). Any
/// other name (`production`, `staging`, `dev`...) is a deployment, where they are refused.
pub const DEVELOPMENT_ENVIRONMENTS: [&str; 2] = ["local", "test"];

/// The shortest secret a deployment may use, in bytes.
pub const MIN_DEPLOYED_SECRET_BYTES: usize = 32;

/// The key of the opt-out, named in every refusal so that whoever meets one finds it.
const OPT_OUT_KEY: &str = "deployment.allow_unverified_transport";

/// `[deployment]`
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "test-util", derive(serde::Serialize))]
pub struct DeploymentSettings {
    /// The backends a deployment may reach without verifying their peer (empty: none). A list
    /// in a file, or comma-separated in `SECKILL__DEPLOYMENT__ALLOW_UNVERIFIED_TRANSPORT`.
    #[serde(default, deserialize_with = "backends")]
    #[cfg_attr(feature = "test-util", serde(serialize_with = "backends_text"))]
    pub allow_unverified_transport: BTreeSet<Backend>,
}

/// A backend the services reach over the network, as `deployment.allow_unverified_transport`
/// names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The SQL database (`database.url`).
    Database,
    /// The stock ledger (`redis.url`).
    Redis,
    /// The brokers (`kafka.security`, `kafka.client`).
    Kafka,
}

impl Backend {
    /// Its name in `deployment.allow_unverified_transport`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Database => "database",
            Self::Redis => "redis",
            Self::Kafka => "kafka",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A backend whose peer the settings leave unverified: the key at fault and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnverifiedTransport {
    /// The backend.
    pub backend: Backend,
    /// The dotted key at fault, e.g. `database.url`.
    pub key: &'static str,
    /// What leaves the peer unverified (never the value of a secret).
    pub problem: String,
}

impl UnverifiedTransport {
    pub(crate) fn new(backend: Backend, key: &'static str, problem: impl Into<String>) -> Self {
        Self {
            backend,
            key,
            problem: problem.into(),
        }
    }
}

impl fmt::Display for UnverifiedTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: `{}` {}", self.backend, self.key, self.problem)
    }
}

/// Reads the backends of the opt-out from a list (a file) or from comma-separated text (an
/// environment variable, which the loader never splits).
fn backends<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeSet<Backend>, D::Error> {
    use serde::de::value::StrDeserializer;
    use serde::de::{Error, IntoDeserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Listed {
        Names(Vec<String>),
        Text(String),
    }
    let names = match Listed::deserialize(deserializer)? {
        Listed::Names(names) => names,
        Listed::Text(text) => text.split(',').map(str::to_owned).collect(),
    };
    names
        .iter()
        .map(|name| name.trim())
        .filter(|name| !name.is_empty())
        .map(|name| {
            let text: StrDeserializer<'_, D::Error> = name.into_deserializer();
            Backend::deserialize(text)
                .map_err(|error| D::Error::custom(format!("{OPT_OUT_KEY}: {error}")))
        })
        .collect()
}

/// Writes the opt-out as the comma-separated text a variable carries (feature `test-util`).
#[cfg(feature = "test-util")]
fn backends_text<S: serde::Serializer>(
    backends: &BTreeSet<Backend>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let names: Vec<&str> = backends.iter().map(|backend| backend.name()).collect();
    serializer.serialize_str(&names.join(","))
}

impl Settings {
    /// Whether this is a developer's machine or a test run, where the development secrets are
    /// accepted.
    pub fn is_development(&self) -> bool {
        DEVELOPMENT_ENVIRONMENTS.contains(&self.environment.as_str())
    }

    /// What the gateway, the one service that verifies tokens and payment notices, checks at
    /// start-up. Outside the development environments a secret it uses must be the
    /// deployment's own: not the default printed in `config/default.toml` (anyone who reads the
    /// repository could sign an admin token or a payment with it), and at least
    /// [`MIN_DEPLOYED_SECRET_BYTES`] long (with an identity provider's keys the HS256 secret is
    /// not used). And `auth.issuer` and `auth.audience` are required: without them a token the
    /// provider, or another holder of the secret, issued for any other application would do.
    pub fn require_deployed_secrets(&self) -> Result<(), SettingsError> {
        if self.is_development() {
            return Ok(());
        }
        let identity_provider = self.auth.uses_identity_provider();
        if self.auth.jwks_url.starts_with("http://") {
            return invalid(
                "auth.jwks_url",
                format!(
                    "must be https:// when SECKILL_ENV is {:?} (a deployment): keys fetched in the clear can be swapped on the way",
                    self.environment
                ),
            );
        }
        let defaults = config::Config::builder()
            .add_source(config::File::from_str(
                DEFAULT_TOML,
                config::FileFormat::Toml,
            ))
            .build()?;
        let secrets = [
            (
                "auth.jwt_secret",
                "SECKILL__AUTH__JWT_SECRET",
                &self.auth.jwt_secret,
            ),
            (
                "payments.webhook_secret",
                "SECKILL__PAYMENTS__WEBHOOK_SECRET",
                &self.payments.webhook_secret,
            ),
            (
                "waiting_room.ticket_secret",
                "SECKILL__WAITING_ROOM__TICKET_SECRET",
                &self.waiting_room.ticket_secret,
            ),
        ];
        for (key, variable, secret) in secrets {
            if identity_provider && key == "auth.jwt_secret" {
                continue;
            }
            let secret = secret.expose_secret();
            let problem = if defaults.get_string(key).ok().as_deref() == Some(secret) {
                "is the development default printed in config/default.toml"
            } else if secret.len() < MIN_DEPLOYED_SECRET_BYTES {
                "is shorter than 32 bytes"
            } else {
                continue;
            };
            return invalid(
                key,
                format!(
                    "{problem}, and SECKILL_ENV is {:?} (a deployment): set a secret of your own, at least 32 random bytes, in {variable} (the development secrets are accepted only when SECKILL_ENV is local or test)",
                    self.environment
                ),
            );
        }
        // Every deployment names its tokens' issuer and audience: with the shared secret too,
        // since another application that holds it (a staging shop, a tool) mints tokens that
        // would otherwise pass here.
        for (key, value) in [
            ("auth.issuer", &self.auth.issuer),
            ("auth.audience", &self.auth.audience),
        ] {
            if value.is_empty() {
                return invalid(
                    key,
                    format!(
                        "is required when SECKILL_ENV is {:?} (a deployment): without it a token issued for another application that holds the same secret or identity provider is accepted",
                        self.environment
                    ),
                );
            }
        }
        Ok(())
    }

    /// What every service checks before it connects to anything. Outside the development
    /// environments each backend's peer must be verified, certificate and host name: PostgreSQL
    /// with `sslmode=verify-full`, Redis over `rediss://` without `#insecure`, Kafka over `ssl`
    /// or `sasl_ssl` with no `kafka.client` property that turns a check off. A backend named in
    /// `deployment.allow_unverified_transport` is accepted anyway and returned, so that the
    /// caller logs a warning for it at every start; any other is refused, naming its key. The
    /// embedded SQLite file and the embedded broker are no network connection and pass.
    pub fn require_verified_transport(&self) -> Result<Vec<UnverifiedTransport>, SettingsError> {
        if self.is_development() {
            return Ok(Vec::new());
        }
        let found = [
            self.database.unverified_transport(),
            self.redis.unverified_transport(),
            self.kafka.unverified_transport(),
        ];
        let mut accepted = Vec::new();
        for unverified in found.into_iter().flatten() {
            let backend = unverified.backend;
            if !self
                .deployment
                .allow_unverified_transport
                .contains(&backend)
            {
                return Err(SettingsError::Invalid {
                    key: unverified.key,
                    problem: format!(
                        "{}. SECKILL_ENV is {:?} (a deployment), where every backend's peer is verified; to run so anyway, knowing that whoever is on the network path can read and change this traffic, list \"{backend}\" in {OPT_OUT_KEY} (SECKILL__DEPLOYMENT__ALLOW_UNVERIFIED_TRANSPORT), and every start logs a warning",
                        unverified.problem, self.environment
                    ),
                });
            }
            accepted.push(unverified);
        }
        Ok(accepted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::tests::{load_as, load_with};
    use crate::{KafkaSecurityProtocol, RedisMode};
    use secrecy::SecretString;

    /// An environment, its variables, and what the error names (`None`: no error).
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<&'a str>);

    /// A change to a deployment whose every backend is verified, and what the refusal names
    /// (`None`: the service starts).
    type TransportCase = (fn(&mut Settings), Option<&'static str>);

    /// The variables of a deployment whose every backend is verified (the system's CAs).
    const VERIFIED: [(&str, &str); 4] = [
        (
            "T__DATABASE__URL",
            "postgres://seckill:pw@db:5432/seckill?sslmode=verify-full",
        ),
        ("T__REDIS__URL", "rediss://seckill:pw@cache:6380"),
        ("T__KAFKA__BOOTSTRAP_SERVERS", "kafka-1:9093"),
        ("T__KAFKA__SECURITY__PROTOCOL", "ssl"),
    ];

    fn database(settings: &mut Settings, url: &str) {
        settings.database.url = SecretString::from(url.to_owned());
    }

    fn redis(settings: &mut Settings, url: &str) {
        settings.redis.url = SecretString::from(url.to_owned());
    }

    fn client(settings: &mut Settings, property: &str, value: &str) {
        settings
            .kafka
            .client
            .insert(property.to_owned(), value.to_owned());
    }

    #[test]
    fn a_deployment_refuses_the_development_secrets_and_short_ones_naming_the_key() {
        let own = "a-secret-of-this-deployment-32-bytes-long";
        let provider = ("T__AUTH__JWKS_FILE", "/etc/seckill/jwks.json");
        let issuer = ("T__AUTH__ISSUER", "https://id.example.com/");
        let audience = ("T__AUTH__AUDIENCE", "seckill");
        let webhook = ("T__PAYMENTS__WEBHOOK_SECRET", own);
        let ticket = ("T__WAITING_ROOM__TICKET_SECRET", own);
        let cases: [Case; 8] = [
            (
                "production",
                &[],
                Some("`auth.jwt_secret`: is the development default"),
            ),
            (
                "production",
                &[("T__AUTH__JWT_SECRET", own)],
                Some("`payments.webhook_secret`"),
            ),
            (
                "staging",
                &[
                    ("T__AUTH__JWT_SECRET", "only-twenty-bytes-ok"),
                    webhook,
                    ticket,
                ],
                Some("`auth.jwt_secret`: is shorter than 32 bytes"),
            ),
            (
                "production",
                &[("T__AUTH__JWT_SECRET", own), webhook],
                Some("`waiting_room.ticket_secret`: is the development default"),
            ),
            // The shared secret's tokens must name their issuer and audience too.
            (
                "production",
                &[("T__AUTH__JWT_SECRET", own), webhook, ticket, issuer],
                Some("`auth.audience`: is required"),
            ),
            (
                "production",
                &[
                    ("T__AUTH__JWT_SECRET", own),
                    webhook,
                    ticket,
                    issuer,
                    audience,
                ],
                None,
            ),
            // With an identity provider the HS256 secret is unused, and iss and aud are required.
            (
                "production",
                &[provider, webhook, ticket],
                Some("`auth.issuer`"),
            ),
            (
                "production",
                &[provider, issuer, audience, webhook, ticket],
                None,
            ),
        ];
        let development = DEVELOPMENT_ENVIRONMENTS.map(|name| (name, &[][..], None));
        for (name, vars, expected) in cases.into_iter().chain(development) {
            let checked = load_as(name, vars)
                .expect("the settings load: only the gateway checks its secrets")
                .require_deployed_secrets();
            match (checked, expected) {
                (Ok(()), None) => {}
                (Err(error), Some(expected)) => {
                    assert!(
                        error.to_string().contains(expected),
                        "{name} {vars:?}: {error}"
                    );
                }
                (checked, _) => panic!("{name} {vars:?}: {checked:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn a_jwks_url_is_https_in_a_deployment_and_needs_issuer_and_audience() {
        let secret = "a-deployment-secret-of-at-least-32-bytes!";
        let base = [
            ("T__AUTH__JWKS_URL", "https://id.example.com/jwks.json"),
            ("T__PAYMENTS__WEBHOOK_SECRET", secret),
            ("T__WAITING_ROOM__TICKET_SECRET", secret),
        ];
        let missing = load_with(&base).unwrap().require_deployed_secrets();
        assert!(missing.unwrap_err().to_string().contains("`auth.issuer`"));
        let complete = [
            base[0],
            base[1],
            base[2],
            ("T__AUTH__ISSUER", "https://id.example.com/"),
            ("T__AUTH__AUDIENCE", "seckill"),
        ];
        load_with(&complete)
            .unwrap()
            .require_deployed_secrets()
            .unwrap();
        let mut clear = complete;
        clear[0] = ("T__AUTH__JWKS_URL", "http://id.example.com/jwks.json");
        let refused = load_with(&clear).unwrap().require_deployed_secrets();
        assert!(refused
            .unwrap_err()
            .to_string()
            .contains("must be https://"));
    }

    #[test]
    fn a_deployment_refuses_a_backend_whose_peer_it_would_not_verify_naming_the_key() {
        let verified = load_with(&VERIFIED).expect("a verified deployment loads");
        // A table, one case a line.
        #[rustfmt::skip]
        let cases: [TransportCase; 21] = [
            (|s| database(s, "postgres://u:p@db/seckill"), Some("`database.url`: has no sslmode")),
            (|s| database(s, "postgres://u:p@db/seckill?sslmode=require"), Some("`database.url`: has sslmode=require")),
            (|s| database(s, "postgresql://u:p@db/seckill?sslmode=verify-ca"), Some("`database.url`: has sslmode=verify-ca")),
            // Read as sqlx reads it: the last one wins, `ssl-mode` counts, the query is
            // percent-decoded, and `SSLMODE` is no sslmode.
            (|s| database(s, "postgres://u:p@db/seckill?sslmode=verify-full&ssl-mode=disable"), Some("has sslmode=disable")),
            (|s| database(s, "postgres://u:p@db/seckill?sslmode=verify-full&ssl%6Dode=prefer"), Some("has sslmode=prefer")),
            (|s| database(s, "postgres://u:p@db/seckill?SSLMODE=verify-full"), Some("`database.url`: has no sslmode")),
            (|s| database(s, "postgres://u:p@db/seckill?sslrootcert=/ca.pem&sslmode=VERIFY-FULL"), None),
            (|s| database(s, "sqlite://var/seckill.db?mode=rwc"), None),
            (|s| redis(s, "redis://cache:6379"), Some("`redis.url`: is not a rediss:// URL")),
            (|s| redis(s, "rediss://cache:6380/#insecure"), Some("`redis.url`: ends in #insecure")),
            (|s| {
                s.redis.mode = RedisMode::Cluster;
                redis(s, "rediss://a:6380,rediss://b:6380#INSECURE");
            }, Some("`redis.url`: ends in #insecure")),
            (|s| redis(s, "unix:///run/redis.sock"), None),
            (|s| s.kafka.security.protocol = KafkaSecurityProtocol::Plaintext, Some("`kafka.security.protocol`: is plaintext")),
            (|s| s.kafka.security.protocol = KafkaSecurityProtocol::SaslPlaintext, Some("`kafka.security.protocol`: is sasl_plaintext")),
            (|s| client(s, "enable.ssl.certificate.verification", "false"), Some("`kafka.client`: sets enable.ssl.certificate.verification = \"false\"")),
            (|s| client(s, "Enable.SSL.Certificate.Verification", "0"), Some("`kafka.client`: sets enable.ssl.certificate.verification")),
            (|s| client(s, "ssl.endpoint.identification.algorithm", "none"), Some("`kafka.client`: sets ssl.endpoint.identification.algorithm = \"none\"")),
            (|s| client(s, " ssl.endpoint.identification.algorithm", ""), Some("`kafka.client`: sets ssl.endpoint.identification.algorithm = \"\"")),
            (|s| {
                client(s, "enable.ssl.certificate.verification", "TRUE");
                client(s, "ssl.endpoint.identification.algorithm", "HTTPS");
            }, None),
            // The embedded broker runs in the process.
            (|s| {
                s.kafka.bootstrap_servers = String::new();
                s.kafka.security.protocol = KafkaSecurityProtocol::Plaintext;
            }, None),
            (|_| {}, None),
        ];
        for (change, expected) in cases {
            let mut settings = verified.clone();
            change(&mut settings);
            match (settings.require_verified_transport(), expected) {
                (Ok(accepted), None) => assert!(accepted.is_empty(), "{accepted:?}"),
                (Err(error), Some(expected)) => {
                    let error = error.to_string();
                    assert!(error.contains(expected), "{error}");
                    assert!(
                        error.contains("deployment.allow_unverified_transport"),
                        "{error}"
                    );
                    assert!(!error.contains("u:p@"), "the URL is a secret: {error}");
                }
                (checked, expected) => panic!("{checked:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn the_opt_out_lets_the_backends_it_names_through_and_reports_them_for_the_warning() {
        // The database is the embedded SQLite file: no connection.
        let plaintext = [
            ("T__REDIS__URL", "redis://cache:6379"),
            ("T__KAFKA__BOOTSTRAP_SERVERS", "kafka-1:9092"),
        ];
        let refused = load_with(&plaintext).unwrap().require_verified_transport();
        assert!(refused.unwrap_err().to_string().contains("`redis.url`"));
        let opt_out = "T__DEPLOYMENT__ALLOW_UNVERIFIED_TRANSPORT";
        let redis_only = [plaintext[0], plaintext[1], (opt_out, "redis")];
        let refused = load_with(&redis_only).unwrap().require_verified_transport();
        let refused = refused.unwrap_err().to_string();
        assert!(refused.contains("`kafka.security.protocol`"), "{refused}");
        assert!(refused.contains("list \"kafka\""), "{refused}");

        let both = [plaintext[0], plaintext[1], (opt_out, " kafka, redis ")];
        let accepted = load_with(&both)
            .unwrap()
            .require_verified_transport()
            .expect("both backends are named");
        let backends: Vec<Backend> = accepted.iter().map(|u| u.backend).collect();
        assert_eq!(backends, [Backend::Redis, Backend::Kafka]);
        let keys: Vec<&str> = accepted.iter().map(|unverified| unverified.key).collect();
        assert_eq!(keys, ["redis.url", "kafka.security.protocol"]);
        let warning = accepted[0].to_string();
        assert!(warning.starts_with("redis: `redis.url` "), "{warning}");

        for name in DEVELOPMENT_ENVIRONMENTS {
            let settings = load_as(name, &plaintext).unwrap();
            let accepted = settings.require_verified_transport().unwrap();
            assert!(accepted.is_empty(), "{name} checks nothing");
        }
    }

    #[test]
    fn the_opt_out_names_known_backends_only() {
        let opt_out = "T__DEPLOYMENT__ALLOW_UNVERIFIED_TRANSPORT";
        let error = load_with(&[(opt_out, "redis,mongodb")])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("deployment.allow_unverified_transport"),
            "{error}"
        );
        assert!(error.contains("mongodb"), "{error}");
    }
}
