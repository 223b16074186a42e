//! The embedded broker: librdkafka's mock cluster, which speaks the real Kafka wire protocol on
//! loopback ports. It serves one-machine runs (the demo) and tests; production names real
//! bootstrap servers instead.
//!
//! The cluster is owned by a producer handle created with `test.mock.num.brokers`, not by
//! `MockCluster::new`: the handle is `Send + Sync`, so the broker can live in shared state, and
//! a `MockCluster` view for fault injection is borrowed from it when needed.

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, DefaultProducerContext, Producer};
use rdkafka::ClientConfig;

/// An in-process Kafka cluster that lives as long as this value.
pub struct EmbeddedKafka {
    owner: BaseProducer<DefaultProducerContext>,
    bootstrap: String,
}

impl std::fmt::Debug for EmbeddedKafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedKafka")
            .field("bootstrap", &self.bootstrap)
            .finish()
    }
}

impl EmbeddedKafka {
    /// Starts a cluster of `brokers` brokers. Its first consumer-group join is immediate (the
    /// mock's default initial rebalance delay of ~3 s is switched off).
    pub fn start(brokers: i32) -> Result<Self, crate::KafkaError> {
        let owner: BaseProducer<DefaultProducerContext> = ClientConfig::new()
            .set("test.mock.num.brokers", brokers.to_string())
            .set("log_level", "3")
            .create()?;
        let bootstrap = {
            let mock =
                owner
                    .client()
                    .mock_cluster()
                    .ok_or_else(|| crate::KafkaError::Provision {
                        topic: String::new(),
                        problem: "librdkafka did not create a mock cluster".into(),
                    })?;
            mock.bootstrap_servers()
        };
        disable_initial_rebalance_delay(&owner);
        Ok(Self { owner, bootstrap })
    }

    /// The `bootstrap.servers` string other clients (and other processes) connect with.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// A view of the cluster for creating topics and injecting faults.
    pub fn mock(&self) -> MockCluster<'_, DefaultProducerContext> {
        self.owner
            .client()
            .mock_cluster()
            .expect("the owner handle always has its mock cluster")
    }

    /// Creates a topic (the mock does not support the admin API's CreateTopics).
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication: i32,
    ) -> Result<(), crate::KafkaError> {
        self.mock()
            .create_topic(name, partitions, replication)
            .map_err(|e| crate::KafkaError::Provision {
                topic: name.to_owned(),
                problem: e.to_string(),
            })
    }
}

#[allow(unsafe_code)]
fn disable_initial_rebalance_delay(owner: &BaseProducer<DefaultProducerContext>) {
    let client: &rdkafka::client::Client<DefaultProducerContext> = owner.client();
    // SAFETY: the handle is alive for the duration of the call and owns the mock cluster, which
    // `rd_kafka_handle_mock_cluster` returns (non-null, checked) without transferring ownership.
    unsafe {
        let cluster = rdkafka::bindings::rd_kafka_handle_mock_cluster(client.native_ptr());
        if !cluster.is_null() {
            rdkafka::bindings::rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, 0);
        }
    }
}

/// The broker a service talks to when it starts on its own: the configured one, or (no
/// bootstrap servers configured) an embedded cluster in this process, with the project's topics.
pub struct LocalBroker(Option<EmbeddedKafka>);

impl LocalBroker {
    /// Starts an embedded cluster if the settings name no bootstrap servers, and provisions the
    /// topics on it. With configured servers this does nothing.
    pub async fn for_settings(
        settings: &settings::KafkaSettings,
    ) -> Result<Self, crate::KafkaError> {
        if !settings.is_embedded() {
            return Ok(Self(None));
        }
        let broker = EmbeddedKafka::start(1)?;
        let endpoint = crate::Endpoint::from_settings(settings, Some(broker.bootstrap_servers()));
        crate::topics::provision(settings, &endpoint, Some(&broker)).await?;
        tracing::warn!(
            bootstrap = broker.bootstrap_servers(),
            "no kafka.bootstrap_servers configured: using an embedded broker that lives and dies \
             with this process (point other processes at it with SECKILL__KAFKA__BOOTSTRAP_SERVERS)"
        );
        Ok(Self(Some(broker)))
    }

    /// The embedded cluster's bootstrap servers, if one was started.
    pub fn bootstrap(&self) -> Option<&str> {
        self.0.as_ref().map(EmbeddedKafka::bootstrap_servers)
    }
}
