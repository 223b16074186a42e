//! Client builders with the project's defaults.

use rdkafka::consumer::{ConsumerContext, DefaultConsumerContext, StreamConsumer};
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;
use settings::secrecy::ExposeSecret;
use settings::{KafkaSecurity, KafkaSettings};

/// Where the brokers are and how to talk to them: the bootstrap string plus the extra client
/// properties of the settings. In embedded mode the bootstrap string is the mock cluster's.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `host:port,...`
    pub bootstrap_servers: String,
    /// Extra librdkafka properties (security, tuning).
    pub extra: Vec<(String, String)>,
    /// Producer `linger.ms`.
    pub linger_ms: u32,
    /// Producer `delivery.timeout.ms`.
    pub delivery_timeout_ms: u32,
    /// TLS and SASL (plaintext for the embedded broker).
    pub security: KafkaSecurity,
}

impl Endpoint {
    /// The endpoint the settings describe; `bootstrap` overrides the settings' servers (used
    /// when the embedded broker was started).
    pub fn from_settings(settings: &KafkaSettings, bootstrap: Option<&str>) -> Self {
        Self {
            bootstrap_servers: bootstrap
                .unwrap_or(&settings.bootstrap_servers)
                .trim()
                .to_owned(),
            extra: settings
                .client
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            linger_ms: settings.linger_ms,
            delivery_timeout_ms: settings.delivery_timeout_ms,
            // The embedded broker listens in plaintext.
            security: match bootstrap {
                Some(_) => KafkaSecurity::default(),
                None => settings.security.clone(),
            },
        }
    }

    /// A configuration with the bootstrap servers, the security settings and the extra
    /// properties.
    pub fn base_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        config.set("socket.keepalive.enable", "true");
        let security = &self.security;
        config.set("security.protocol", security.protocol.as_librdkafka());
        if security.protocol.uses_sasl() {
            config
                .set("sasl.mechanism", security.sasl_mechanism.as_librdkafka())
                .set("sasl.username", &security.sasl_username)
                .set("sasl.password", security.sasl_password.expose_secret());
        }
        if security.protocol.uses_tls() {
            // The broker's host name is checked against its certificate (librdkafka's default
            // since 2.0, set here so that no version can differ).
            config.set("ssl.endpoint.identification.algorithm", "https");
            for (property, path) in [
                ("ssl.ca.location", &security.tls.ca_file),
                ("ssl.certificate.location", &security.tls.certificate_file),
                ("ssl.key.location", &security.tls.key_file),
            ] {
                if !path.as_os_str().is_empty() {
                    config.set(property, path.to_string_lossy());
                }
            }
        }
        // After the security properties, so that tuning can change librdkafka's defaults. In a
        // deployment, an extra property that turns a check of the brokers off does not get this
        // far: the services refuse to start (`Settings::require_verified_transport`) unless
        // `deployment.allow_unverified_transport` names kafka.
        for (key, value) in &self.extra {
            config.set(key, value);
        }
        config
    }

    /// The producer configuration: idempotent, `acks=all`, bounded delivery time.
    pub fn producer_config(&self) -> ClientConfig {
        let mut config = self.base_config();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", self.linger_ms.to_string())
            .set("delivery.timeout.ms", self.delivery_timeout_ms.to_string())
            .set(
                "request.timeout.ms",
                (self.delivery_timeout_ms / 2).max(1000).to_string(),
            );
        // librdkafka times out a queued message only when the thread of its broker wakes, and
        // while that broker is down the thread sleeps until its next reconnect: up to
        // `reconnect.backoff.max.ms`, 10 s by default. Capped, the delivery timeout stays the
        // bound on how long a buyer waits for the 503 of an outage.
        if self.extra_value("reconnect.backoff.max.ms").is_none() {
            // librdkafka refuses a maximum below `reconnect.backoff.ms` (100 ms unless set).
            let floor = self
                .extra_value("reconnect.backoff.ms")
                .and_then(|value| value.parse::<u32>().ok())
                .unwrap_or(100);
            let cap = (self.delivery_timeout_ms / 4).clamp(100, 1000).max(floor);
            config.set("reconnect.backoff.max.ms", cap.to_string());
        }
        config
    }

    /// The value the extra properties give `property`, if any.
    fn extra_value(&self, property: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(key, _)| key == property)
            .map(|(_, value)| value.as_str())
    }

    /// The consumer configuration for `group`: manual commits only, a new group starts from the
    /// earliest offset, cooperative rebalancing.
    pub fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut config = self.base_config();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("max.poll.interval.ms", "300000");
        config
    }
}

/// An idempotent producer.
pub fn producer(endpoint: &Endpoint) -> Result<FutureProducer, crate::KafkaError> {
    Ok(endpoint.producer_config().create()?)
}

/// A consumer in `group`, not yet subscribed, with librdkafka's default handling of rebalances.
pub fn consumer(endpoint: &Endpoint, group: &str) -> Result<StreamConsumer, crate::KafkaError> {
    consumer_with_context(endpoint, group, DefaultConsumerContext)
}

/// A consumer in `group`, not yet subscribed, that owns `context`: librdkafka calls the
/// context's rebalance callbacks (`pre_rebalance`, `post_rebalance`) from within the consumer's
/// poll, so a consumer that must know which partitions it holds learns it there.
pub fn consumer_with_context<C>(
    endpoint: &Endpoint,
    group: &str,
    context: C,
) -> Result<StreamConsumer<C>, crate::KafkaError>
where
    C: ConsumerContext + 'static,
{
    Ok(endpoint
        .consumer_config(group)
        .create_with_context(context)?)
}
