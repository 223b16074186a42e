//! Typed settings of every seckill service, loaded once at start-up with the `config` crate:
//! the commented default file compiled into the binary, an optional per-environment file, then
//! `SECKILL__SECTION__KEY` environment variables (a `.env` file is honoured). [`Settings::validate`]
//! fails with a message that names the key at fault. Secrets are
//! [`SecretString`](secrecy::SecretString)s, so they cannot end up in a log line by accident.
//!
//! One module per section of `config/default.toml` holds its struct and the checks of its keys;
//! [`load`](Settings::load) layers the sources, and the checks that only a deployment needs are
//! in [`require_deployed_secrets`](Settings::require_deployed_secrets) (the gateway's),
//! [`require_deployed_message_keys`](Settings::require_deployed_message_keys) (the services that
//! sign or verify messages) and
//! [`require_verified_transport`](Settings::require_verified_transport) (every service, before
//! it connects to a backend).

use serde::Deserialize;

pub use secrecy;

mod auth;
mod database;
mod deployment;
mod error;
mod expiry;
#[cfg(feature = "test-util")]
mod export;
mod gateway;
mod http;
mod kafka;
mod load;
mod log;
mod messages;
mod payments;
mod proof_of_work;
mod redis;
mod replayer;
mod shutdown;
mod sweeper;
mod tls;
mod waiting_room;
mod worker;

pub use auth::AuthSettings;
pub use database::DatabaseSettings;
pub use deployment::{
    Backend, DeploymentSettings, UnverifiedTransport, DEVELOPMENT_ENVIRONMENTS,
    MIN_DEPLOYED_SECRET_BYTES,
};
pub use error::SettingsError;
pub use expiry::ExpirySettings;
#[cfg(feature = "test-util")]
pub use export::ExportError;
pub use gateway::GatewaySettings;
pub use http::HttpSettings;
pub use kafka::{KafkaSecurity, KafkaSecurityProtocol, KafkaSettings, SaslMechanism};
pub use load::DEFAULT_TOML;
pub use log::{LogFormat, LogSettings};
pub use messages::MessageSettings;
pub use payments::PaymentSettings;
pub use proof_of_work::ProofOfWorkSettings;
pub use redis::{RedisMode, RedisSettings};
pub use replayer::ReplayerSettings;
pub use shutdown::ShutdownSettings;
pub use sweeper::SweeperSettings;
pub use tls::TlsFiles;
pub use waiting_room::WaitingRoomSettings;
pub use worker::WorkerSettings;

/// All settings.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "test-util", derive(serde::Serialize))]
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
    /// The waiting rooms of the sales that have one (gateway).
    pub waiting_room: WaitingRoomSettings,
    /// The proof of work asked at the door (gateway).
    pub proof_of_work: ProofOfWorkSettings,
    /// The keys order messages and dead letters are signed with (gateway, worker, replayer).
    pub messages: MessageSettings,
    /// What a deployment accepts that it should not (the opt-outs, loudly named).
    #[serde(default)]
    pub deployment: DeploymentSettings,
}

impl Settings {
    /// Checks ranges that types cannot express, section by section; the error names the key.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.kafka.validate(self.is_development())?;
        self.redis.validate()?;
        self.http.validate()?;
        self.gateway.validate()?;
        self.worker.validate()?;
        self.replayer.validate()?;
        self.sweeper.validate(&self.kafka)?;
        self.payments.validate()?;
        self.expiry.validate()?;
        self.database.validate()?;
        self.waiting_room.validate()?;
        self.proof_of_work.validate()?;
        self.messages.validate()?;
        self.auth.validate()
    }
}

#[cfg(test)]
mod tests {
    use crate::load::tests::refused;
    use crate::Settings;
    use secrecy::SecretString;

    /// A change to the default settings, and the error it must meet.
    type Case = (fn(&mut Settings), &'static str);

    #[test]
    fn every_range_check_names_its_key_and_says_what_is_wrong() {
        let short = || SecretString::from("fifteen-bytes!!".to_owned());
        let cases: [Case; 36] = [
            (|s| s.kafka.partitions = 0, "`kafka.partitions`: must be at least 1"),
            (|s| s.kafka.replication_factor = 0, "`kafka.replication_factor`: must be at least 1"),
            (|s| s.kafka.min_insync_replicas = 2, "`kafka.min_insync_replicas`: must be between 1 and kafka.replication_factor"),
            (|s| s.kafka.dlq_topic = String::new(), "`kafka.orders_topic`: topic names must not be empty"),
            (|s| s.kafka.dlq_topic = s.kafka.orders_topic.clone(), "`kafka.dlq_topic`: must differ from kafka.orders_topic"),
            (|s| s.kafka.delivery_timeout_ms = 999, "`kafka.delivery_timeout_ms`: must be at least 1000"),
            (|s| s.redis.key_prefix = "a{b}".into(), "`redis.key_prefix`: must be non-empty without braces or spaces"),
            (|s| s.redis.max_in_flight = 0, "`redis.max_in_flight`: must be at least 1"),
            (|s| s.redis.url = SecretString::from(" , ".to_owned()), "`redis.url`: is empty"),
            (|s| s.gateway.max_in_flight = 0, "`gateway.max_in_flight`: must be at least 1"),
            (|s| s.gateway.sold_out_recheck_ms = 0, "`gateway.sold_out_recheck_ms`: must be between 1 and 60000"),
            (|s| s.gateway.ack_flush_ms = 1_001, "`gateway.ack_flush_ms`: must be between 1 and 1000"),
            (|s| s.gateway.limiter_prune_secs = 0, "`gateway.limiter_prune_secs`: must be between 1 and 3600"),
            (|s| s.http.header_timeout_ms = 99, "`http.header_timeout_ms`: must be between 100 and 60000"),
            (|s| s.http.body_timeout_ms = 60_001, "`http.body_timeout_ms`: must be between 100 and 60000"),
            (|s| s.http.trusted_proxies = "10.0.0.0/8, proxy.example.com".into(), "`http.trusted_proxies`: \"proxy.example.com\" is neither an IP address nor a CIDR block such as 10.0.0.0/8"),
            (|s| s.auth.max_token_age_secs = 59, "`auth.max_token_age_secs`: must be between 60 and 2592000"),
            (|s| s.gateway.max_reads_in_flight = 0, "`gateway.max_reads_in_flight`: must be at least 1"),
            (|s| s.worker.finish_flush_ms = 0, "`worker.finish_flush_ms`: must be between 1 and 1000"),
            (|s| s.worker.batch_max = 0, "`worker.batch_max`: must be at least 1"),
            (|s| s.worker.max_attempts = 0, "`worker.max_attempts`: must be at least 1"),
            (|s| s.worker.retry_backoff_ms = 6_000, "`worker.retry_backoff_ms`: must not exceed worker.retry_backoff_max_ms"),
            (|s| s.replayer.batch_max = 0, "`replayer.batch_max`: must be at least 1"),
            (|s| s.replayer.retry_backoff_ms = 6_000, "`replayer.retry_backoff_ms`: must not exceed replayer.retry_backoff_max_ms"),
            (|s| s.sweeper.interval_secs = 0, "`sweeper.interval_secs`: must be at least 1"),
            (|s| s.sweeper.batch_max = 0, "`sweeper.batch_max`: must be at least 1"),
            (|s| s.sweeper.stale_after_secs = 5, "`sweeper.stale_after_secs`: must be longer than kafka.delivery_timeout_ms: a gateway may still be producing"),
            (|s| s.sweeper.acknowledged_stale_after_secs = 29, "`sweeper.acknowledged_stale_after_secs`: must not be shorter than sweeper.stale_after_secs"),
            (|s| s.payments.signature_tolerance_secs = 3_601, "`payments.signature_tolerance_secs`: must be between 1 and 3600"),
            (|s| s.payments.default_window_secs = 0, "`payments.default_window_secs`: must be between 1 and 604800"),
            (|s| s.expiry.interval_ms = 9, "`expiry.interval_ms`: must be between 10 and 60000"),
            (|s| s.expiry.batch_max = 0, "`expiry.batch_max`: must be at least 1"),
            (|s| s.database.max_connections = 0, "`database.max_connections`: must be at least 1"),
            (|s| s.auth.jwks_url = "ftp://id.example.com/jwks.json".into(), "`auth.jwks_url`: must be an https:// URL"),
            (|s| s.auth.jwks_refresh_secs = 9, "`auth.jwks_refresh_secs`: must be between 10 and 86400"),
            (|s| s.auth.jwks_min_refetch_secs = 301, "`auth.jwks_min_refetch_secs`: must not exceed auth.jwks_refresh_secs"),
        ];
        for (change, expected) in cases {
            let error = refused(change);
            assert_eq!(error, format!("invalid setting {expected}"));
        }
        let error = refused(|s| s.auth.jwt_secret = short());
        assert_eq!(
            error,
            "invalid setting `auth.jwt_secret`: must be at least 16 bytes"
        );
        let error = refused(|s| s.payments.webhook_secret = short());
        assert_eq!(
            error,
            "invalid setting `payments.webhook_secret`: must be at least 16 bytes"
        );
    }
}
