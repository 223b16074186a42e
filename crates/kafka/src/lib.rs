//! Kafka for seckill. Every client is built here with the project's safe defaults (idempotent
//! producer with `acks=all`; consumers that never auto-commit and never skip a new group's
//! backlog), so a service cannot get them wrong. Also: the embedded broker for one-machine runs,
//! topic provisioning, the one way offsets are committed, dead-letter publishing, lag, and what
//! message headers carry: the trace context and the signature.

pub mod client;
pub mod commit;
pub mod consume;
pub mod dead_letter;
pub mod embedded;
pub mod group_lag;
pub mod health;
pub mod lag;
pub mod signature;
pub mod topics;
pub mod trace;

pub use client::{consumer, consumer_with_context, producer, Endpoint};
pub use commit::{commit_processed, PartitionOffsets};
pub use dead_letter::DeadLetterPublisher;
pub use embedded::{EmbeddedKafka, LocalBroker};
pub use rdkafka;

/// Errors of the Kafka adapter.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The client library reported an error.
    #[error(transparent)]
    Client(#[from] rdkafka::error::KafkaError),
    /// A produce was not acknowledged in time or was refused.
    #[error("produce to {topic} failed: {source}")]
    Produce {
        /// Target topic.
        topic: String,
        /// Why.
        source: rdkafka::error::KafkaError,
    },
    /// Topic provisioning failed.
    #[error("provisioning topic {topic}: {problem}")]
    Provision {
        /// The topic.
        topic: String,
        /// What went wrong.
        problem: String,
    },
    /// The broker answered a group's committed offset with something that is no position
    /// (`End`, `Stored`, ...): the lag cannot be told.
    #[error("the committed offset of {topic}/{partition} reads {offset}, which is no position")]
    UnexpectedOffset {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// What the broker answered.
        offset: String,
    },
}
