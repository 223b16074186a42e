//! The connections every seckill service opens (the Redis stock ledger, the database, an
//! idempotent Kafka producer, and where the brokers are for the consumers a service opens),
//! opened the same way by the gateway and the consumers, and the one readiness check over them
//! that every service's `/readyz` answers with. Before any of them is opened, a deployment
//! checks that each one verifies its peer ([`require_verified_transport`]).

use anyhow::Context;
use rdkafka::producer::FutureProducer;
use settings::Settings;
use std::time::Duration;
use stock::StockLedger;
use store::Store;

/// How long the brokers may take to answer the readiness check's metadata request.
const BROKER_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Refuses, in a deployment, settings under which a connection to a backend would not verify
/// its peer ([`Settings::require_verified_transport`]), and logs a warning for each backend that
/// `deployment.allow_unverified_transport` lets through anyway: at every start, so that the
/// opt-out cannot be forgotten in a log from months ago. [`Connections::connect`] runs it; a
/// command that connects on its own runs it before it does.
pub fn require_verified_transport(settings: &Settings) -> anyhow::Result<()> {
    let accepted = settings
        .require_verified_transport()
        .context("checking that every backend's peer is verified")?;
    for unverified in accepted {
        tracing::warn!(
            backend = %unverified.backend,
            key = unverified.key,
            problem = %unverified.problem,
            environment = %settings.environment,
            "backend peer NOT verified (deployment.allow_unverified_transport): whoever is on the network path can read and change this traffic"
        );
    }
    Ok(())
}

/// Redis, the database and a producer, connected, and the brokers' endpoint.
#[derive(Clone)]
pub struct Connections {
    /// The Redis stock ledger.
    pub ledger: StockLedger,
    /// The database.
    pub store: Store,
    /// An idempotent producer.
    pub producer: FutureProducer,
    /// Where the brokers are (the settings' servers, or the embedded broker's), for the
    /// consumers a service opens in its own group.
    pub endpoint: kafka::Endpoint,
}

impl Connections {
    /// Connects to everything the settings name; `bootstrap` overrides the settings' Kafka
    /// servers (an embedded broker). In a deployment it first refuses a backend whose peer would
    /// not be verified ([`require_verified_transport`]). Redis is connected now if it answers
    /// within a second, and on first use otherwise, so this succeeds while Redis is down; the
    /// database is connected (and migrated, if the settings say so) now.
    pub async fn connect(settings: &Settings, bootstrap: Option<&str>) -> anyhow::Result<Self> {
        require_verified_transport(settings)?;
        let endpoint = kafka::Endpoint::from_settings(&settings.kafka, bootstrap);
        let ledger = StockLedger::new(&settings.redis)
            .context("redis connection")?
            .with_queued_grace(settings.sweeper.queued_grace());
        // Connect now, from this runtime: the connection's task runs on the runtime of its
        // first use, and an HTTP worker's runtime stops before the service's last Redis calls.
        match tokio::time::timeout(Duration::from_secs(1), ledger.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "redis does not answer yet; connecting on first use");
            }
            Err(_) => tracing::warn!("redis does not answer yet; connecting on first use"),
        }
        Ok(Self {
            ledger,
            store: Store::connect(&settings.database)
                .await
                .context("database")?,
            producer: kafka::producer(&endpoint).context("kafka producer")?,
            endpoint,
        })
    }

    /// Ready while Redis, the database and the brokers (asked for the metadata of `topic`)
    /// answer; the failing ones are named `redis`, `database` and `kafka`.
    pub fn readiness(&self, topic: &str) -> telemetry::ops::Readiness {
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
                    kafka::health::brokers_answer(&producer, &topic, BROKER_CHECK_TIMEOUT).await
                },
            )
    }
}
