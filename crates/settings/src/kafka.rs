//! `[kafka]`, `[kafka.client]`, `[kafka.security]` and `[kafka.security.tls]`: the brokers, the
//! two topics and their provisioning, the consumer groups, and how the clients reach the
//! brokers. The checks refuse what librdkafka would take and then ignore or misuse: SASL
//! credentials without a SASL protocol, TLS files without TLS, security properties slipped into
//! `kafka.client` past the checked keys; and, for a deployment, what leaves the brokers
//! unverified (a protocol without TLS, a `kafka.client` property that turns a check off).

use crate::deployment::{Backend, UnverifiedTransport};
use crate::error::{at_least_one, invalid, SettingsError};
use crate::tls::TlsFiles;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::collections::BTreeMap;

/// How the Kafka clients reach the brokers (librdkafka's `security.protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "test-util", derive(serde::Serialize))]
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
#[cfg_attr(feature = "test-util", derive(serde::Serialize))]
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
#[cfg_attr(feature = "test-util", derive(serde::Serialize))]
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
    #[cfg_attr(feature = "test-util", serde(serialize_with = "crate::export::secret"))]
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
#[cfg_attr(feature = "test-util", derive(serde::Serialize))]
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

    /// The topics, their provisioning and the producer's timeout, then the security keys;
    /// `development` lets a developer's broker take a password in the clear.
    pub(crate) fn validate(&self, development: bool) -> Result<(), SettingsError> {
        at_least_one("kafka.partitions", self.partitions)?;
        at_least_one("kafka.replication_factor", self.replication_factor)?;
        if !(1..=self.replication_factor).contains(&self.min_insync_replicas) {
            return invalid(
                "kafka.min_insync_replicas",
                "must be between 1 and kafka.replication_factor",
            );
        }
        if self.orders_topic.is_empty() || self.dlq_topic.is_empty() {
            return invalid("kafka.orders_topic", "topic names must not be empty");
        }
        if self.orders_topic == self.dlq_topic {
            return invalid("kafka.dlq_topic", "must differ from kafka.orders_topic");
        }
        if self.delivery_timeout_ms < 1000 {
            return invalid("kafka.delivery_timeout_ms", "must be at least 1000");
        }
        for property in [
            "security.protocol",
            "sasl.mechanism",
            "sasl.mechanisms",
            "sasl.username",
            "sasl.password",
        ] {
            if self.client_values(property).next().is_some() {
                return invalid(
                    "kafka.client",
                    format!("sets {property}: use the kafka.security keys, which are checked"),
                );
            }
        }
        self.security.validate(development)
    }

    /// The values `kafka.client` gives `property`, its name compared without case or the
    /// spaces around it: a check must not miss a property that another spelling slips past.
    fn client_values<'a>(&'a self, property: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.client
            .iter()
            .filter(move |(name, _)| name.trim().eq_ignore_ascii_case(property))
            .map(|(_, value)| value.trim())
    }

    /// Why the clients would not verify the brokers, if they would not: a protocol without TLS,
    /// or a `kafka.client` property that turns off the check of the certificate or of the host
    /// name (the clients set both on; the properties of `kafka.client` come after them). The
    /// embedded broker runs inside the process and passes.
    pub(crate) fn unverified_transport(&self) -> Option<UnverifiedTransport> {
        if self.is_embedded() {
            return None;
        }
        let protocol = self.security.protocol;
        if !protocol.uses_tls() {
            return Some(UnverifiedTransport::new(
                Backend::Kafka,
                "kafka.security.protocol",
                format!(
                    "is {}, so the orders, and any SASL credentials, travel in the clear: use ssl or sasl_ssl (the brokers' certificates and host names are checked against kafka.security.tls.ca_file or the system's CAs)",
                    protocol.as_librdkafka()
                ),
            ));
        }
        // librdkafka reads a boolean as true from `true`, `t` or `1`, and anything else either
        // as false or as an error: only those three leave the check on.
        let mut verification = self.client_values("enable.ssl.certificate.verification");
        if let Some(value) = verification.find(|value| !is_true(value)) {
            return Some(UnverifiedTransport::new(
                Backend::Kafka,
                "kafka.client",
                format!(
                    "sets enable.ssl.certificate.verification = {value:?}, which turns off the check of the brokers' certificates: remove it, and give the brokers' CA in kafka.security.tls.ca_file"
                ),
            ));
        }
        let mut identification = self.client_values("ssl.endpoint.identification.algorithm");
        if let Some(value) = identification.find(|v| !v.eq_ignore_ascii_case("https")) {
            return Some(UnverifiedTransport::new(
                Backend::Kafka,
                "kafka.client",
                format!(
                    "sets ssl.endpoint.identification.algorithm = {value:?}, which turns off the check of the brokers' host names, so any certificate of their CA passes: remove it (the clients set https)"
                ),
            ));
        }
        None
    }
}

/// Whether librdkafka reads `value` as a true boolean.
fn is_true(value: &str) -> bool {
    ["true", "t", "1"]
        .iter()
        .any(|truth| value.eq_ignore_ascii_case(truth))
}

impl KafkaSecurity {
    /// SASL complete and used, TLS files used and readable, and no password in the clear
    /// outside `development`: a mistake stops the service at start-up, naming the key, instead
    /// of failing every connection later.
    fn validate(&self, development: bool) -> Result<(), SettingsError> {
        let sasl = self.protocol.uses_sasl();
        if sasl && self.sasl_username.is_empty() {
            return invalid(
                "kafka.security.sasl_username",
                "is required with a sasl_* kafka.security.protocol",
            );
        }
        if sasl && self.sasl_password.expose_secret().is_empty() {
            return invalid(
                "kafka.security.sasl_password",
                "is required with a sasl_* kafka.security.protocol",
            );
        }
        let credentials =
            !self.sasl_username.is_empty() || !self.sasl_password.expose_secret().is_empty();
        if credentials && !sasl {
            return invalid(
                "kafka.security.sasl_username",
                "SASL credentials are set, but kafka.security.protocol is not sasl_ssl or sasl_plaintext: they would not be used",
            );
        }
        if sasl
            && !self.protocol.uses_tls()
            && self.sasl_mechanism == SaslMechanism::Plain
            && !development
        {
            return invalid(
                "kafka.security.protocol",
                "sasl_plaintext with the PLAIN mechanism sends the password in the clear: use sasl_ssl",
            );
        }
        self.tls.validate(
            "kafka.security.tls",
            self.protocol.uses_tls(),
            "kafka.security.protocol is not ssl or sasl_ssl",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::tests::{load_with, readable_file, refused};

    #[test]
    fn kafka_security_comes_from_its_keys_and_incomplete_or_unused_settings_name_the_key() {
        let (file, ca) = readable_file("ca");
        let ca = ca.as_str();
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
    fn credentials_without_sasl_and_security_properties_in_kafka_client_are_refused() {
        let error = refused(|s| s.kafka.security.sasl_username = "seckill".into());
        assert!(error.contains("`kafka.security.sasl_username`"), "{error}");
        let error = refused(|s| {
            s.kafka
                .client
                .insert("security.protocol".into(), "sasl_ssl".into());
        });
        assert!(error.contains("`kafka.client`"), "{error}");
    }
}
