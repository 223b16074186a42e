//! The outside systems a consumer service talks to, connected the same way for every service.

use anyhow::Context;
use rdkafka::consumer::StreamConsumer;
use rdkafka::producer::FutureProducer;
use settings::Settings;
use std::time::Duration;
use stock::StockLedger;
use store::Store;

/// Redis, the database, a producer and a consumer (not yet subscribed) of one group.
pub struct Connections {
    /// The Redis stock ledger.
    pub ledger: StockLedger,
    /// The database.
    pub store: Store,
    /// An idempotent producer (dead letters, republished orders).
    pub producer: FutureProducer,
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
            ledger: StockLedger::new(&settings.redis).context("redis pool")?,
            store: Store::connect(&settings.database)
                .await
                .context("database")?,
            producer: kafka::producer(&endpoint).context("kafka producer")?,
            consumer: kafka::consumer(&endpoint, group).context("kafka consumer")?,
        })
    }

    /// Ready while Redis, the database and the brokers (asked for `topic`) answer.
    pub(crate) fn readiness(&self, topic: &str) -> telemetry::ops::Readiness {
        telemetry::ops::Readiness::new()
            .check_with("redis", self.ledger.clone(), |ledger| async move {
                ledger.ping().await
            })
            .check_with("database", self.store.clone(), |store| async move {
                store.ping().await
            })
            .check_with(
                "kafka",
                (self.producer.clone(), topic.to_owned()),
                |(producer, topic)| async move {
                    kafka::health::brokers_answer(&producer, &topic, Duration::from_secs(2)).await
                },
            )
    }
}
