//! Topic provisioning: the project creates its topics with the partitions, replication factor
//! and `min.insync.replicas` of the settings, instead of trusting broker auto-creation.

use crate::{EmbeddedKafka, Endpoint, KafkaError};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use settings::KafkaSettings;
use std::time::Duration;

/// The topics of the project.
pub fn project_topics(settings: &KafkaSettings) -> [&str; 2] {
    [&settings.orders_topic, &settings.dlq_topic]
}

/// Creates the orders and dead-letter topics if they do not exist. With an embedded broker the
/// mock's own topic API is used (it does not implement CreateTopics) with replication 1.
pub async fn provision(
    settings: &KafkaSettings,
    endpoint: &Endpoint,
    embedded: Option<&EmbeddedKafka>,
) -> Result<(), KafkaError> {
    if let Some(broker) = embedded {
        for topic in project_topics(settings) {
            broker.create_topic(
                topic,
                settings.partitions,
                settings.replication_factor.min(1),
            )?;
        }
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = endpoint.base_config().create()?;
    let min_isr = settings.min_insync_replicas.to_string();
    let new_topics: Vec<NewTopic<'_>> = project_topics(settings)
        .into_iter()
        .map(|name| {
            NewTopic::new(
                name,
                settings.partitions,
                TopicReplication::Fixed(settings.replication_factor),
            )
            .set("min.insync.replicas", &min_isr)
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(&new_topics, &options).await? {
        match result {
            Ok(topic) => tracing::info!(%topic, "topic created"),
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::info!(%topic, "topic already exists")
            }
            Err((topic, code)) => {
                return Err(KafkaError::Provision {
                    topic,
                    problem: code.to_string(),
                })
            }
        }
    }
    Ok(())
}
