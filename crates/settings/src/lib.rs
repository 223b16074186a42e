//! Typed settings of every seckill service, loaded once at start-up with the `config` crate:
//! the commented default file compiled into the binary, an optional per-environment file, then
//! `SECKILL__SECTION__KEY` environment variables (a `.env` file is honoured). [`Settings::validate`]
//! fails with a message that names the key at fault. Secrets are [`SecretString`]s, so they cannot
//! end up in a log line by accident.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

pub use secrecy;

/// The default file, compiled in so that binaries need no files to start.
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A file or variable could not be read or has the wrong type.
    #[error("cannot load settings: {0}")]
    Load(#[from] config::ConfigError),
    /// A value is out of its range.
    #[error("invalid setting `{key}`: {problem}")]
    Invalid {
        /// The dotted key, e.g. `kafka.partitions`.
        key: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// The error of a setting `key` whose value is wrong: `problem` says how.
fn invalid(key: &'static str, problem: impl Into<String>) -> Result<(), SettingsError> {
    Err(SettingsError::Invalid {
        key,
        problem: problem.into(),
    })
}

/// The environments (`SECKILL_ENV`) where the development secrets of `config/default.toml` are
/// accepted: a developer's machine (`local`, the default) and the test suites (`test`). Any
/// other name (`production`, `staging`, `dev`...) is a deployment, where they are refused.
pub const DEVELOPMENT_ENVIRONMENTS: [&str; 2] = ["local", "test"];

/// The shortest secret a deployment may use, in bytes.
pub const MIN_DEPLOYED_SECRET_BYTES: usize = 32;

/// All settings.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// The environment's name, from `SECKILL_ENV` (default `local`); not a key of the files.
    #[serde(skip)]
    pub environment: String,
    /// HTTP listeners.
    pub http: HttpSettings,
    /// Graceful shutdown.
    pub shutdown: ShutdownSettings,
    /// Logging.
    pub log: LogSettings,
    /// Redis stock ledger.
    pub redis: RedisSettings,
    /// Kafka.
    pub kafka: KafkaSettings,
    /// SQL database.
    pub database: DatabaseSettings,
    /// Token verification.
    pub auth: AuthSettings,
    /// Gateway behaviour.
    pub gateway: GatewaySettings,
    /// Order worker behaviour.
    pub worker: WorkerSettings,
    /// Dead-letter replayer behaviour.
    pub replayer: ReplayerSettings,
    /// The reservation sweeper (runs in the order worker).
    pub sweeper: SweeperSettings,
    /// The payment webhook (gateway).
    pub payments: PaymentSettings,
    /// The expirer of unpaid orders (runs in the order worker).
    pub expiry: ExpirySettings,
}

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    /// Listen address.
    pub host: String,
    /// Gateway port (0 = any free port).
    pub port: u16,
    /// actix-web workers (0 = one per core).
    pub workers: usize,
    /// Ops port of the worker and replayer (0 = any free port).
    pub ops_port: u16,
    /// Port of the gateway's admin API (0 = any free port).
    pub admin_port: u16,
    /// Whether the public port serves the admin API too.
    pub admin_on_public: bool,
}

/// `[shutdown]`
#[derive(Debug, Clone, Deserialize)]
pub struct ShutdownSettings {
    /// Seconds allowed between SIGTERM and exit.
    pub grace_secs: u64,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    /// Output format.
    pub format: LogFormat,
    /// EnvFilter directives.
    pub filter: String,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, for terminals.
    Pretty,
    /// One JSON object per line, for collectors.
    Json,
}

/// `[redis]`
#[derive(Debug, Clone, Deserialize)]
pub struct RedisSettings {
    /// One Redis, or a Redis Cluster.
    #[serde(default)]
    pub mode: RedisMode,
    /// Connection URL (secret: may hold a password); in cluster mode, the comma-separated URLs
    /// of some of the cluster's nodes.
    pub url: SecretString,
    /// Key prefix.
    pub key_prefix: String,
    /// Most commands in flight on the one multiplexed connection; callers past it wait for a
    /// slot (a bounded Redis queue).
    pub max_in_flight: usize,
    /// Seconds to wait for a connection or reply.
    pub timeout_secs: u64,
    /// TLS of a `rediss://` URL.
    #[serde(default)]
    pub tls: TlsFiles,
}

/// Whether the ledger is one Redis or a Redis Cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// One Redis server (with replicas and Sentinel or a managed failover behind one URL).
    #[default]
    Standalone,
    /// A Redis Cluster: keys spread over its primaries by hash slot.
    Cluster,
}

impl RedisSettings {
    /// The node URLs of `url`: one in standalone mode, the comma-separated seeds of a cluster.
    pub fn node_urls(&self) -> Vec<String> {
        self.url
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// PEM files of a TLS client: the CA that signed the server's certificate (empty = the system's
/// CAs) and, for mutual TLS, the client's certificate and key (both or neither).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TlsFiles {
    /// CA certificates (PEM); empty = the system's.
    #[serde(default)]
    pub ca_file: PathBuf,
    /// Client certificate (PEM) for mutual TLS; empty = none.
    #[serde(default)]
    pub certificate_file: PathBuf,
    /// The client certificate's private key (PEM).
    #[serde(default)]
    pub key_file: PathBuf,
}

impl TlsFiles {
    /// Whether any file is set.
    pub fn is_set(&self) -> bool {
        [&self.ca_file, &self.certificate_file, &self.key_file]
            .iter()
            .any(|path| !path.as_os_str().is_empty())
    }

    /// Checks that the client certificate and key come together and that every file set can
    /// be read; `section` is the dotted prefix of the keys (`redis.tls`), named in the error.
    fn validate(&self, section: &'static str) -> Result<(), SettingsError> {
        let files = [
            ("ca_file", &self.ca_file),
            ("certificate_file", &self.certificate_file),
            ("key_file", &self.key_file),
        ];
        if self.certificate_file.as_os_str().is_empty() != self.key_file.as_os_str().is_empty() {
            return invalid(
                section,
                "certificate_file and key_file go together (mutual TLS): set both or neither",
            );
        }
        for (name, path) in files {
            if path.as_os_str().is_empty() {
                continue;
            }
            let readable =
                std::fs::File::open(path).and_then(|file| match file.metadata()?.is_file() {
                    true => Ok(()),
                    false => Err(std::io::Error::other("not a file")),
                });
            if let Err(error) = readable {
                return invalid(section, format!("{name} {}: {error}", path.display()));
            }
        }
        Ok(())
    }
}

/// How the Kafka clients reach the brokers (librdkafka's `security.protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaSecurityProtocol {
    /// No TLS, no authentication (a private network, the embedded broker).
    #[default]
    Plaintext,
    /// TLS; with a client certificate, mutual TLS.
    Ssl,
    /// SASL authentication without TLS.
    SaslPlaintext,
    /// SASL authentication over TLS (Confluent Cloud, Amazon MSK with SCRAM, Aiven...).
    SaslSsl,
}

impl KafkaSecurityProtocol {
    /// The value librdkafka takes.
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    /// Whether the connection is TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    /// Whether the client authenticates with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// The SASL mechanisms the clients support (built into librdkafka; Kerberos is not built).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    /// User name and password in the clear (only over TLS).
    #[serde(rename = "PLAIN")]
    Plain,
    /// Salted challenge-response, SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// Salted challenge-response, SHA-512.
    #[default]
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// The value librdkafka takes.
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// `[kafka.security]`: TLS and SASL to the brokers. Ignored by the embedded broker.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct KafkaSecurity {
    /// `security.protocol`.
    #[serde(default)]
    pub protocol: KafkaSecurityProtocol,
    /// `sasl.mechanism`, with a `sasl_*` protocol.
    #[serde(default)]
    pub sasl_mechanism: SaslMechanism,
    /// SASL user name.
    #[serde(default)]
    pub sasl_username: String,
    /// SASL password (secret).
    #[serde(default = "empty_secret")]
    pub sasl_password: SecretString,
    /// TLS files, with an `ssl` protocol.
    #[serde(default)]
    pub tls: TlsFiles,
}

fn empty_secret() -> SecretString {
    SecretString::from(String::new())
}

/// `[kafka]`
#[derive(Debug, Clone, Deserialize)]
pub struct KafkaSettings {
    /// Bootstrap servers; empty = embedded mock cluster.
    pub bootstrap_servers: String,
    /// Orders topic.
    pub orders_topic: String,
    /// Dead-letter topic.
    pub dlq_topic: String,
    /// Partitions when provisioning.
    pub partitions: i32,
    /// Replication factor when provisioning.
    pub replication_factor: i32,
    /// `min.insync.replicas` when provisioning.
    pub min_insync_replicas: i32,
    /// Worker consumer group.
    pub worker_group: String,
    /// Replayer consumer group.
    pub replayer_group: String,
    /// Producer `linger.ms`.
    pub linger_ms: u32,
    /// Producer `delivery.timeout.ms`.
    pub delivery_timeout_ms: u32,
    /// TLS and SASL to the brokers.
    #[serde(default)]
    pub security: KafkaSecurity,
    /// Extra librdkafka properties for every client.
    #[serde(default)]
    pub client: BTreeMap<String, String>,
}

impl KafkaSettings {
    /// Whether no broker is configured, so the embedded mock cluster is meant.
    pub fn is_embedded(&self) -> bool {
        self.bootstrap_servers.trim().is_empty()
    }
}

/// `[database]`
#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// Database URL (secret); empty = SQLite at `sqlite_path`.
    pub url: SecretString,
    /// SQLite file for the embedded default.
    pub sqlite_path: PathBuf,
    /// Pool size.
    pub max_connections: u32,
    /// Seconds to wait for a connection.
    pub connect_timeout_secs: u64,
    /// Run migrations at start-up.
    pub migrate_on_start: bool,
}

impl DatabaseSettings {
    /// The URL to connect to: the configured one, or the embedded SQLite file.
    pub fn effective_url(&self) -> String {
        let url = self.url.expose_secret().trim();
        if url.is_empty() {
            format!("sqlite://{}?mode=rwc", self.sqlite_path.display())
        } else {
            url.to_owned()
        }
    }

    /// Whether the embedded SQLite default is meant.
    pub fn is_embedded(&self) -> bool {
        self.url.expose_secret().trim().is_empty()
    }
}

/// `[auth]`
#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// HS256 secret.
    pub jwt_secret: SecretString,
    /// Clock skew tolerance in seconds.
    pub leeway_secs: u64,
    /// A JWKS document of the identity provider's public keys (empty: HS256 with the secret).
    pub jwks_file: PathBuf,
    /// The identity provider's JWKS URL, fetched instead of a file (empty: none).
    #[serde(default)]
    pub jwks_url: String,
    /// One public key (PEM) of the identity provider, instead of a JWKS document (empty: none).
    #[serde(default)]
    pub public_key_file: PathBuf,
    /// The algorithm tokens signed with `public_key_file`'s key use.
    pub public_key_algorithm: String,
    /// Seconds between two reads of the JWKS document (file or URL).
    pub jwks_refresh_secs: u64,
    /// Fewest seconds between two reads when tokens name a key the document does not have.
    pub jwks_min_refetch_secs: u64,
    /// Required `iss` (empty: not checked).
    pub issuer: String,
    /// Required `aud` (empty: not checked).
    pub audience: String,
    /// The claim naming the caller's role (a string, or a list of strings).
    pub role_claim: String,
    /// The role that opens the admin API.
    pub admin_role: String,
}

impl AuthSettings {
    /// Whether tokens are an identity provider's, verified with its published keys
    /// (`jwks_url`, `jwks_file` or `public_key_file`), rather than HS256 with `jwt_secret`.
    pub fn uses_identity_provider(&self) -> bool {
        self.identity_provider_key_sources() > 0
    }

    /// How many of the identity provider's key sources are set (`jwks_url`, `jwks_file`,
    /// `public_key_file`): at most one may be.
    fn identity_provider_key_sources(&self) -> usize {
        [
            !self.jwks_url.is_empty(),
            !self.jwks_file.as_os_str().is_empty(),
            !self.public_key_file.as_os_str().is_empty(),
        ]
        .into_iter()
        .filter(|set| *set)
        .count()
    }
}

/// `[gateway]`
#[derive(Debug, Clone, Deserialize)]
pub struct GatewaySettings {
    /// Buy requests per second per user (0 = unlimited).
    pub per_user_rate_per_sec: u32,
    /// Burst allowance.
    pub per_user_burst: u32,
    /// Most buy requests served at once by one gateway process; past it the gateway answers
    /// 503 `overloaded` with `Retry-After` at once, before verifying the token.
    pub max_in_flight: usize,
    /// How late an HTTP worker's event loop may run before the buy requests it reads are shed
    /// (the gateway short of CPU), in ms; 0 turns this off.
    pub max_loop_lag_ms: u64,
    /// How long a gateway answers `sold_out` from memory before it asks Redis again (the bound
    /// on how long units that came back can go unoffered by one replica), in ms.
    pub sold_out_recheck_ms: u64,
    /// Most orders a sold-out sale may have for the gateway to remember it (it keeps one
    /// 8-byte fingerprint per order so that a retry of an accepted order still reaches Redis).
    pub sold_out_max_orders: usize,
    /// How long the gateway gathers broker acknowledgements before marking them in Redis in
    /// one call per SKU, in ms.
    pub ack_flush_ms: u64,
}

/// `[worker]`
#[derive(Debug, Clone, Deserialize)]
pub struct WorkerSettings {
    /// Messages per transaction.
    pub batch_max: usize,
    /// Milliseconds to let a batch fill.
    pub batch_wait_ms: u64,
    /// In-place attempts for transient failures.
    pub max_attempts: u32,
    /// First retry delay in ms.
    pub retry_backoff_ms: u64,
    /// Retry delay cap in ms.
    pub retry_backoff_max_ms: u64,
    /// How long the worker gathers written orders before taking them out of the Redis outbox
    /// in one call per SKU, in ms.
    pub finish_flush_ms: u64,
}

/// `[replayer]`
#[derive(Debug, Clone, Deserialize)]
pub struct ReplayerSettings {
    /// Replays before compensating.
    pub max_replays: u32,
    /// Seconds before a retryable letter is republished.
    pub replay_delay_secs: u64,
    /// Most letters per batch.
    pub batch_max: usize,
    /// Milliseconds to let a batch fill.
    pub batch_wait_ms: u64,
    /// First delay before settling a letter again after a transient failure, in ms.
    pub retry_backoff_ms: u64,
    /// Cap of that delay in ms.
    pub retry_backoff_max_ms: u64,
}

/// `[sweeper]`
#[derive(Debug, Clone, Deserialize)]
pub struct SweeperSettings {
    /// Seconds between two sweeps.
    pub interval_secs: u64,
    /// Seconds a reservation the broker never acknowledged may wait to be written before its
    /// order is published again.
    pub stale_after_secs: u64,
    /// Seconds a reservation whose message the broker acknowledged may wait to be written before
    /// its order is published again (its message is in the queue unless the broker lost it).
    pub acknowledged_stale_after_secs: u64,
    /// Most reservations of one sale taken per script call.
    pub batch_max: usize,
    /// Seconds the per-order keys of a sale are kept after it ends (once nothing is pending).
    pub retain_after_end_secs: u64,
}

/// `[payments]`
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentSettings {
    /// The secret the payment provider signs its notices with (HMAC-SHA256).
    pub webhook_secret: SecretString,
    /// Seconds a signature's timestamp may be away from now.
    pub signature_tolerance_secs: u64,
    /// Payment window of a sale whose definition names none, in seconds.
    pub default_window_secs: u32,
}

/// `[expiry]`
#[derive(Debug, Clone, Deserialize)]
pub struct ExpirySettings {
    /// Milliseconds between two rounds of the expirer.
    pub interval_ms: u64,
    /// Most orders expired per database transaction.
    pub batch_max: usize,
}

impl SweeperSettings {
    /// How much longer an acknowledged reservation waits than one the broker never had.
    pub fn queued_grace(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.acknowledged_stale_after_secs
                .saturating_sub(self.stale_after_secs),
        )
    }
}

impl Settings {
    /// Loads settings the standard way: defaults, `config/<SECKILL_ENV>.toml`, `.env`, environment.
    pub fn load() -> Result<Self, SettingsError> {
        let _ = dotenvy::dotenv();
        let dir = std::env::var("SECKILL_CONFIG_DIR").unwrap_or_else(|_| "config".into());
        let env = std::env::var("SECKILL_ENV").unwrap_or_else(|_| "local".into());
        Self::load_from(
            &env,
            Some(PathBuf::from(dir).join(format!("{env}.toml"))),
            config::Environment::with_prefix("SECKILL")
                .prefix_separator("__")
                .separator("__"),
        )
    }

    /// Loads the compiled-in defaults only, for tests and the dev stack to adjust in code.
    pub fn defaults() -> Self {
        Self::load_from(
            "local",
            None,
            config::Environment::with_prefix("SECKILL_NEVER_SET"),
        )
        .expect("the compiled-in default settings are valid")
    }

    fn load_from(
        name: &str,
        overlay: Option<PathBuf>,
        environment: config::Environment,
    ) -> Result<Self, SettingsError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(path) = overlay {
            builder = builder.add_source(config::File::from(path).required(false));
        }
        let mut settings: Settings = builder.add_source(environment).build()?.try_deserialize()?;
        settings.environment = name.to_owned();
        settings.validate()?;
        Ok(settings)
    }

    /// Checks ranges that types cannot express.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.kafka.partitions < 1 {
            return invalid("kafka.partitions", "must be at least 1");
        }
        if self.kafka.replication_factor < 1 {
            return invalid("kafka.replication_factor", "must be at least 1");
        }
        if !(1..=self.kafka.replication_factor).contains(&self.kafka.min_insync_replicas) {
            return invalid(
                "kafka.min_insync_replicas",
                "must be between 1 and kafka.replication_factor",
            );
        }
        if self.kafka.orders_topic.is_empty() || self.kafka.dlq_topic.is_empty() {
            return invalid("kafka.orders_topic", "topic names must not be empty");
        }
        if self.kafka.orders_topic == self.kafka.dlq_topic {
            return invalid("kafka.dlq_topic", "must differ from kafka.orders_topic");
        }
        if self.kafka.delivery_timeout_ms < 1000 {
            return invalid("kafka.delivery_timeout_ms", "must be at least 1000");
        }
        if self.redis.key_prefix.is_empty() || self.redis.key_prefix.contains(['{', '}', ' ']) {
            return invalid(
                "redis.key_prefix",
                "must be non-empty without braces or spaces",
            );
        }
        if self.redis.max_in_flight == 0 {
            return invalid("redis.max_in_flight", "must be at least 1");
        }
        if self.gateway.max_in_flight == 0 {
            return invalid("gateway.max_in_flight", "must be at least 1");
        }
        if !(1..=60_000).contains(&self.gateway.sold_out_recheck_ms) {
            return invalid("gateway.sold_out_recheck_ms", "must be between 1 and 60000");
        }
        if !(1..=1_000).contains(&self.worker.finish_flush_ms) {
            return invalid("worker.finish_flush_ms", "must be between 1 and 1000");
        }
        if !(1..=1_000).contains(&self.gateway.ack_flush_ms) {
            return invalid("gateway.ack_flush_ms", "must be between 1 and 1000");
        }
        if self.auth.jwt_secret.expose_secret().len() < 16 {
            return invalid("auth.jwt_secret", "must be at least 16 bytes");
        }
        if self.worker.batch_max == 0 {
            return invalid("worker.batch_max", "must be at least 1");
        }
        if self.worker.max_attempts == 0 {
            return invalid("worker.max_attempts", "must be at least 1");
        }
        if self.replayer.batch_max == 0 {
            return invalid("replayer.batch_max", "must be at least 1");
        }
        if self.worker.retry_backoff_ms > self.worker.retry_backoff_max_ms {
            return invalid(
                "worker.retry_backoff_ms",
                "must not exceed worker.retry_backoff_max_ms",
            );
        }
        if self.replayer.retry_backoff_ms > self.replayer.retry_backoff_max_ms {
            return invalid(
                "replayer.retry_backoff_ms",
                "must not exceed replayer.retry_backoff_max_ms",
            );
        }
        if self.sweeper.interval_secs == 0 {
            return invalid("sweeper.interval_secs", "must be at least 1");
        }
        if self.sweeper.batch_max == 0 {
            return invalid("sweeper.batch_max", "must be at least 1");
        }
        if self.sweeper.stale_after_secs.saturating_mul(1000)
            <= u64::from(self.kafka.delivery_timeout_ms)
        {
            return invalid(
                "sweeper.stale_after_secs",
                "must be longer than kafka.delivery_timeout_ms: a gateway may still be producing",
            );
        }
        if self.sweeper.acknowledged_stale_after_secs < self.sweeper.stale_after_secs {
            return invalid(
                "sweeper.acknowledged_stale_after_secs",
                "must not be shorter than sweeper.stale_after_secs",
            );
        }
        if self.payments.webhook_secret.expose_secret().len() < 16 {
            return invalid("payments.webhook_secret", "must be at least 16 bytes");
        }
        if !(1..=3_600).contains(&self.payments.signature_tolerance_secs) {
            return invalid(
                "payments.signature_tolerance_secs",
                "must be between 1 and 3600",
            );
        }
        if !(1..=domain::PaymentTerms::MAX_WINDOW_SECS).contains(&self.payments.default_window_secs)
        {
            return invalid(
                "payments.default_window_secs",
                format!(
                    "must be between 1 and {}",
                    domain::PaymentTerms::MAX_WINDOW_SECS
                ),
            );
        }
        if !(10..=60_000).contains(&self.expiry.interval_ms) {
            return invalid("expiry.interval_ms", "must be between 10 and 60000");
        }
        if self.expiry.batch_max == 0 {
            return invalid("expiry.batch_max", "must be at least 1");
        }
        if self.database.max_connections == 0 {
            return invalid("database.max_connections", "must be at least 1");
        }
        if self.auth.identity_provider_key_sources() > 1 {
            return invalid(
                "auth.jwks_url",
                "auth.jwks_url, auth.jwks_file and auth.public_key_file: set one source of keys",
            );
        }
        let jwks_url = self.auth.jwks_url.as_str();
        if !jwks_url.is_empty()
            && !jwks_url.starts_with("https://")
            && !jwks_url.starts_with("http://")
        {
            return invalid("auth.jwks_url", "must be an https:// URL");
        }
        if !(10..=86_400).contains(&self.auth.jwks_refresh_secs) {
            return invalid("auth.jwks_refresh_secs", "must be between 10 and 86400");
        }
        if self.auth.jwks_min_refetch_secs == 0 {
            return invalid(
                "auth.jwks_min_refetch_secs",
                "must be at least 1: tokens naming unknown keys cost nothing to send",
            );
        }
        if self.auth.jwks_min_refetch_secs > self.auth.jwks_refresh_secs {
            return invalid(
                "auth.jwks_min_refetch_secs",
                "must not exceed auth.jwks_refresh_secs",
            );
        }
        self.validate_transport_security()
    }

    /// The TLS and SASL settings of the backends: complete, consistent with the URLs, and every
    /// file readable, so that a mistake stops the service at start-up, naming the key, instead
    /// of failing every connection later.
    fn validate_transport_security(&self) -> Result<(), SettingsError> {
        let security = &self.kafka.security;
        if security.protocol.uses_sasl() {
            if security.sasl_username.is_empty() {
                return invalid(
                    "kafka.security.sasl_username",
                    "is required with a sasl_* kafka.security.protocol",
                );
            }
            if security.sasl_password.expose_secret().is_empty() {
                return invalid(
                    "kafka.security.sasl_password",
                    "is required with a sasl_* kafka.security.protocol",
                );
            }
        }
        let sasl_credentials = !security.sasl_username.is_empty()
            || !security.sasl_password.expose_secret().is_empty();
        if sasl_credentials && !security.protocol.uses_sasl() {
            return invalid(
                "kafka.security.sasl_username",
                "SASL credentials are set, but kafka.security.protocol is not sasl_ssl or sasl_plaintext: they would not be used",
            );
        }
        for property in [
            "security.protocol",
            "sasl.mechanism",
            "sasl.mechanisms",
            "sasl.username",
            "sasl.password",
        ] {
            if self.kafka.client.contains_key(property) {
                return invalid(
                    "kafka.client",
                    format!("sets {property}: use the kafka.security keys, which are checked"),
                );
            }
        }
        if security.tls.is_set() && !security.protocol.uses_tls() {
            return invalid(
                "kafka.security.tls",
                "is set, but kafka.security.protocol is not ssl or sasl_ssl: the files would not be used",
            );
        }
        if security.protocol.uses_sasl()
            && !security.protocol.uses_tls()
            && security.sasl_mechanism == SaslMechanism::Plain
            && !self.is_development()
        {
            return invalid(
                "kafka.security.protocol",
                "sasl_plaintext with the PLAIN mechanism sends the password in the clear: use sasl_ssl",
            );
        }
        security.tls.validate("kafka.security.tls")?;
        let nodes = self.redis.node_urls();
        if nodes.is_empty() {
            return invalid("redis.url", "is empty");
        }
        if self.redis.mode == RedisMode::Standalone && nodes.len() > 1 {
            return invalid(
                "redis.url",
                "holds several URLs, which only redis.mode = \"cluster\" reads",
            );
        }
        let redis_tls = nodes[0].starts_with("rediss://");
        if nodes
            .iter()
            .any(|url| url.starts_with("rediss://") != redis_tls)
        {
            return invalid(
                "redis.url",
                "mixes redis:// and rediss:// nodes: a cluster is TLS on every node or on none",
            );
        }
        if self.redis.tls.is_set() && !redis_tls {
            return invalid(
                "redis.tls",
                "is set, but redis.url is not a rediss:// URL: the files would not be used",
            );
        }
        self.redis.tls.validate("redis.tls")
    }

    /// Whether this is a developer's machine or a test run, where the development secrets are
    /// accepted.
    pub fn is_development(&self) -> bool {
        DEVELOPMENT_ENVIRONMENTS.contains(&self.environment.as_str())
    }

    /// What the gateway, the one service that verifies tokens and payment notices, checks at
    /// start-up. Outside the development environments a secret it uses must be the
    /// deployment's own: not the default printed in `config/default.toml` (anyone who reads the
    /// repository could sign an admin token or a payment with it), and at least
    /// [`MIN_DEPLOYED_SECRET_BYTES`] long. With an identity provider's keys (`auth.jwks_file`)
    /// the HS256 secret is not used, and `auth.issuer` and `auth.audience` are required
    /// instead: without them a token the provider issued for any other application would do.
    pub fn require_deployed_secrets(&self) -> Result<(), SettingsError> {
        if self.is_development() {
            return Ok(());
        }
        let identity_provider = self.auth.uses_identity_provider();
        if self.auth.jwks_url.starts_with("http://") {
            return Err(SettingsError::Invalid {
                key: "auth.jwks_url",
                problem: format!(
                    "must be https:// when SECKILL_ENV is {:?} (a deployment): keys fetched in the clear can be swapped on the way",
                    self.environment
                ),
            });
        }
        if identity_provider {
            for (key, value) in [
                ("auth.issuer", &self.auth.issuer),
                ("auth.audience", &self.auth.audience),
            ] {
                if value.is_empty() {
                    return Err(SettingsError::Invalid {
                        key,
                        problem: format!(
                            "is required with an identity provider's keys (auth.jwks_url, auth.jwks_file or auth.public_key_file) when SECKILL_ENV is {:?} (a deployment): without it a token the identity provider issued for another application is accepted",
                            self.environment
                        ),
                    });
                }
            }
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
            return Err(SettingsError::Invalid {
                key,
                problem: format!(
                    "{problem}, and SECKILL_ENV is {:?} (a deployment): set a secret of your own, at least 32 random bytes, in {variable} (the development secrets are accepted only when SECKILL_ENV is local or test)",
                    self.environment
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_in_defaults_load_and_mean_embedded_mode() {
        let settings = Settings::defaults();
        assert!(settings.kafka.is_embedded());
        assert!(settings.database.is_embedded());
        assert!(settings.database.effective_url().starts_with("sqlite://"));
        assert_eq!(settings.kafka.orders_topic, domain::ORDERS_TOPIC);
        assert_eq!(settings.kafka.dlq_topic, domain::DLQ_TOPIC);
    }

    #[test]
    fn environment_variables_win_and_bad_values_name_their_key() {
        let env = config::Environment::default()
            .prefix("T")
            .prefix_separator("__")
            .separator("__")
            .source(Some(
                [
                    (
                        "T__KAFKA__BOOTSTRAP_SERVERS".to_owned(),
                        "k1:9092".to_owned(),
                    ),
                    ("T__KAFKA__PARTITIONS".to_owned(), "0".to_owned()),
                ]
                .into(),
            ));
        let err = Settings::load_from("local", None, env).unwrap_err();
        assert!(err.to_string().contains("kafka.partitions"), "{err}");
    }

    #[test]
    fn a_deployment_refuses_the_development_secrets_and_short_ones_naming_the_key() {
        let none = || config::Environment::with_prefix("SECKILL_NEVER_SET");
        let check = |name: &str, environment| {
            Settings::load_from(name, None, environment)
                .expect("the settings load: only the gateway checks its secrets")
                .require_deployed_secrets()
        };
        let err = check("production", none()).unwrap_err();
        assert!(err.to_string().contains("auth.jwt_secret"), "{err}");
        assert!(err.to_string().contains("development default"), "{err}");
        for environment in DEVELOPMENT_ENVIRONMENTS {
            assert!(check(environment, none()).is_ok());
        }
        let with = |vars: &[(&str, &str)]| {
            config::Environment::default()
                .prefix("T")
                .prefix_separator("__")
                .separator("__")
                .source(Some(
                    vars.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ))
        };
        let own = "a-secret-of-this-deployment-32-bytes-long";
        let err = check("production", with(&[("T__AUTH__JWT_SECRET", own)])).unwrap_err();
        assert!(err.to_string().contains("payments.webhook_secret"), "{err}");
        let err = check(
            "staging",
            with(&[
                ("T__AUTH__JWT_SECRET", "only-twenty-bytes-ok"),
                ("T__PAYMENTS__WEBHOOK_SECRET", own),
            ]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("shorter than 32 bytes"), "{err}");
        assert!(check(
            "production",
            with(&[
                ("T__AUTH__JWT_SECRET", own),
                ("T__PAYMENTS__WEBHOOK_SECRET", own),
            ]),
        )
        .is_ok());
        // With an identity provider the HS256 secret is unused, and iss and aud are required.
        let err = check(
            "production",
            with(&[
                ("T__AUTH__JWKS_FILE", "/etc/seckill/jwks.json"),
                ("T__PAYMENTS__WEBHOOK_SECRET", own),
            ]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("auth.issuer"), "{err}");
        assert!(check(
            "production",
            with(&[
                ("T__AUTH__JWKS_FILE", "/etc/seckill/jwks.json"),
                ("T__AUTH__ISSUER", "https://id.example.com/"),
                ("T__AUTH__AUDIENCE", "seckill"),
                ("T__PAYMENTS__WEBHOOK_SECRET", own),
            ]),
        )
        .is_ok());
    }

    /// The settings loaded with the variables `vars` (`T__SECTION__KEY`), or why not.
    fn load_with(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let env = config::Environment::default()
            .prefix("T")
            .prefix_separator("__")
            .separator("__")
            .source(Some(
                vars.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ));
        Settings::load_from("production", None, env)
    }

    #[test]
    fn kafka_security_comes_from_its_keys_and_incomplete_or_unused_settings_name_the_key() {
        let file = std::env::temp_dir().join(format!("seckill-ca-{}.pem", std::process::id()));
        std::fs::write(&file, "not read here").unwrap();
        let ca = file.to_str().unwrap();
        let loaded = load_with(&[
            ("T__KAFKA__SECURITY__PROTOCOL", "sasl_ssl"),
            ("T__KAFKA__SECURITY__SASL_MECHANISM", "SCRAM-SHA-256"),
            ("T__KAFKA__SECURITY__SASL_USERNAME", "seckill"),
            ("T__KAFKA__SECURITY__SASL_PASSWORD", "s3cret"),
            ("T__KAFKA__SECURITY__TLS__CA_FILE", ca),
        ])
        .unwrap();
        let security = &loaded.kafka.security;
        assert_eq!(security.protocol, KafkaSecurityProtocol::SaslSsl);
        assert_eq!(security.sasl_mechanism, SaslMechanism::ScramSha256);
        assert_eq!(security.tls.ca_file, file);
        assert!(!format!("{loaded:?}").contains("s3cret"));

        let cases: [(&[(&str, &str)], &str); 5] = [
            (
                &[("T__KAFKA__SECURITY__PROTOCOL", "sasl_ssl")],
                "kafka.security.sasl_username",
            ),
            (
                &[
                    ("T__KAFKA__SECURITY__PROTOCOL", "sasl_ssl"),
                    ("T__KAFKA__SECURITY__SASL_USERNAME", "seckill"),
                ],
                "kafka.security.sasl_password",
            ),
            (
                &[("T__KAFKA__SECURITY__TLS__CA_FILE", ca)],
                "kafka.security.tls",
            ),
            (
                &[
                    ("T__KAFKA__SECURITY__PROTOCOL", "sasl_plaintext"),
                    ("T__KAFKA__SECURITY__SASL_MECHANISM", "PLAIN"),
                    ("T__KAFKA__SECURITY__SASL_USERNAME", "seckill"),
                    ("T__KAFKA__SECURITY__SASL_PASSWORD", "s3cret"),
                ],
                "kafka.security.protocol",
            ),
            (
                &[
                    ("T__KAFKA__SECURITY__PROTOCOL", "ssl"),
                    ("T__KAFKA__SECURITY__TLS__CA_FILE", "/nonexistent/ca.pem"),
                ],
                "kafka.security.tls",
            ),
        ];
        for (vars, key) in cases {
            let error = load_with(vars).unwrap_err().to_string();
            assert!(error.contains(&format!("`{key}`")), "{vars:?}: {error}");
        }
        let unknown = load_with(&[("T__KAFKA__SECURITY__SASL_MECHANISM", "GSSAPI")]);
        assert!(unknown.unwrap_err().to_string().contains("GSSAPI"));
        std::fs::remove_file(file).unwrap();
    }

    #[test]
    fn a_jwks_url_is_https_in_a_deployment_needs_issuer_and_audience_and_excludes_a_file() {
        let secret = "a-deployment-secret-of-at-least-32-bytes!";
        let base = [
            ("T__AUTH__JWKS_URL", "https://id.example.com/jwks.json"),
            ("T__PAYMENTS__WEBHOOK_SECRET", secret),
        ];
        let missing = load_with(&base).unwrap().require_deployed_secrets();
        assert!(missing.unwrap_err().to_string().contains("`auth.issuer`"));
        let complete = [
            base[0],
            base[1],
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
        let both = load_with(&[base[0], ("T__AUTH__JWKS_FILE", "/etc/jwks.json")]);
        assert!(both.unwrap_err().to_string().contains("`auth.jwks_url`"));
    }

    #[test]
    fn settings_that_would_be_ignored_or_bypass_the_checks_are_refused() {
        let refused = |change: &dyn Fn(&mut Settings)| {
            let mut settings = Settings::defaults();
            change(&mut settings);
            settings.validate().unwrap_err().to_string()
        };
        let error = refused(&|s| s.kafka.security.sasl_username = "seckill".into());
        assert!(error.contains("`kafka.security.sasl_username`"), "{error}");
        let error = refused(&|s| {
            s.kafka
                .client
                .insert("security.protocol".into(), "sasl_ssl".into());
        });
        assert!(error.contains("`kafka.client`"), "{error}");
        let error = refused(&|s| s.auth.jwks_min_refetch_secs = 0);
        assert!(error.contains("`auth.jwks_min_refetch_secs`"), "{error}");
        let error = refused(&|s| {
            s.redis.url = SecretString::from("rediss://cache:6380".to_owned());
            s.redis.tls.ca_file = std::env::temp_dir();
        });
        assert!(error.contains("not a file"), "{error}");
        let error = refused(&|s| {
            s.redis.url = SecretString::from("redis://a:1,redis://b:2".to_owned());
        });
        assert!(error.contains("redis.mode"), "{error}");
        let error = refused(&|s| {
            s.redis.mode = RedisMode::Cluster;
            s.redis.url = SecretString::from("redis://a:1,rediss://b:2".to_owned());
        });
        assert!(error.contains("mixes"), "{error}");
    }

    #[test]
    fn redis_tls_files_need_a_rediss_url_and_come_in_pairs() {
        let file = std::env::temp_dir().join(format!("seckill-cert-{}.pem", std::process::id()));
        std::fs::write(&file, "not read here").unwrap();
        let path = file.to_str().unwrap();
        let loaded = load_with(&[
            ("T__REDIS__URL", "rediss://seckill:pw@cache:6380"),
            ("T__REDIS__TLS__CA_FILE", path),
            ("T__REDIS__TLS__CERTIFICATE_FILE", path),
            ("T__REDIS__TLS__KEY_FILE", path),
        ])
        .unwrap();
        assert_eq!(loaded.redis.tls.key_file, file);

        let plaintext = load_with(&[("T__REDIS__TLS__CA_FILE", path)]).unwrap_err();
        assert!(plaintext
            .to_string()
            .contains("redis.url is not a rediss:// URL"));
        let alone = load_with(&[
            ("T__REDIS__URL", "rediss://cache:6380"),
            ("T__REDIS__TLS__CERTIFICATE_FILE", path),
        ])
        .unwrap_err();
        assert!(alone.to_string().contains("set both or neither"), "{alone}");
        std::fs::remove_file(file).unwrap();
    }

    #[test]
    fn secrets_are_not_printed_by_debug() {
        let settings = Settings::defaults();
        let printed = format!("{settings:?}");
        assert!(!printed.contains("local-development-secret"), "{printed}");
        assert!(!printed.contains("local-webhook-secret"), "{printed}");
    }
}
