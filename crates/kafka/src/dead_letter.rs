//! Publishing dead letters: the original key and bytes, the reason and the trace context in
//! headers, acknowledged by the broker before the caller commits the original offset.

use crate::KafkaError;
use domain::DeadLetter;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use telemetry::TraceContext;

/// Writes dead letters to one topic.
#[derive(Clone)]
pub struct DeadLetterPublisher {
    producer: FutureProducer,
    topic: String,
}

impl DeadLetterPublisher {
    /// A publisher writing to `topic` through `producer`.
    pub fn new(producer: FutureProducer, topic: impl Into<String>) -> Self {
        Self {
            producer,
            topic: topic.into(),
        }
    }

    /// The dead-letter topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Publishes one letter and waits for the broker's acknowledgement. `trace` is the
    /// publisher's own context, so the letter stays in the order's trace.
    pub async fn publish(
        &self,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        letter: &DeadLetter,
        trace: &TraceContext,
    ) -> Result<(), KafkaError> {
        let mut headers = crate::trace::with_trace(OwnedHeaders::new(), trace);
        for (name, value) in letter.to_headers() {
            headers = headers.insert(Header {
                key: name,
                value: Some(value.as_bytes()),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.topic).headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        self.producer
            .send(record, Timeout::Never)
            .await
            .map(|_| ())
            .map_err(|(source, _)| KafkaError::Produce {
                topic: self.topic.clone(),
                source,
            })
    }
}
