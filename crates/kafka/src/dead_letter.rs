//! Publishing dead letters: the original key and bytes, the reason, the trace context and the
//! publisher's signature in headers, acknowledged by the broker before the caller commits the
//! original offset. The signature covers the key, the bytes, the reason and the attempts, so the
//! replayer acts only on letters a worker wrote (see `domain::signing`).

use crate::KafkaError;
use domain::dead_letter::header;
use domain::{DeadLetter, Keyring, Signed};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use telemetry::TraceContext;

/// Writes dead letters to one topic, signed.
#[derive(Clone)]
pub struct DeadLetterPublisher {
    producer: FutureProducer,
    topic: String,
    keyring: Keyring,
}

impl DeadLetterPublisher {
    /// A publisher writing to `topic` through `producer`, signing with `keyring`'s signing key.
    pub fn new(producer: FutureProducer, topic: impl Into<String>, keyring: Keyring) -> Self {
        Self {
            producer,
            topic: topic.into(),
            keyring,
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
        let fields = letter.to_headers();
        for (name, value) in &fields {
            headers = headers.insert(Header {
                key: name,
                value: Some(value.as_bytes()),
            });
        }
        // Signed over the very header values written, as the replayer reads them back.
        let field = |name: &str| {
            fields
                .iter()
                .find(|(field, _)| *field == name)
                .map_or(&b""[..], |(_, value)| value.as_bytes())
        };
        let signed = Signed::DeadLetter {
            key: key.unwrap_or_default(),
            payload: payload.unwrap_or_default(),
            reason: field(header::REASON),
            attempts: field(header::ATTEMPTS),
        };
        headers = crate::signature::with_signature(headers, &self.keyring, &signed);
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
