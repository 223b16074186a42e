//! The outside systems a consumer service talks to, connected the same way for every service.

use anyhow::Context;
use backends::Backends;
use rdkafka::consumer::StreamConsumer;
use settings::Settings;

/// Redis, the database and a producer ([`Backends`]), and a consumer (not yet subscribed) of one
/// group, which the runtime takes.
pub struct Connections {
    /// Redis, the database and an idempotent producer (dead letters, republished orders).
    pub backends: Backends,
    pub(crate) consumer: StreamConsumer,
}

impl Connections {
    /// Connects to everything the settings name, the consumer in `group`; `bootstrap`
    /// overrides the settings' Kafka servers (an embedded broker).
    pub async fn connect(
        settings: &Settings,
        group: &str,
        bootstrap: Option<&str>,
    ) -> anyhow::Result<Self> {
        let endpoint = kafka::Endpoint::from_settings(&settings.kafka, bootstrap);
        Ok(Self {
            backends: Backends::connect(settings, bootstrap).await?,
            consumer: kafka::consumer(&endpoint, group).context("kafka consumer")?,
        })
    }
}
