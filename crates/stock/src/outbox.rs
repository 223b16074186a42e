//! The outbox entry: an order message exactly as the gateway produces it, kept in Redis beside the
//! reservation until the order is written or released, so that a message the broker never got
//! (a gateway killed before its produce) or lost (retention, a broker that drops data) can be
//! published again. Stored as `<traceparent or ->` + newline + the message bytes (JSON, which
//! never holds a raw newline).

/// One order message waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The W3C `traceparent` the message carried, so a republished order stays in its trace.
    pub traceparent: Option<String>,
    /// The message value (an encoded `OrderRequested`).
    pub payload: Vec<u8>,
}

/// A stored entry that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable outbox entry of {0} bytes")]
pub struct CorruptEntry(pub usize);

impl OutboxEntry {
    /// The entry of `order`: its message as the gateway produces it, with `traceparent`.
    pub fn new(order: &domain::OrderRequested, traceparent: Option<String>) -> Self {
        Self {
            traceparent,
            payload: order.encode(),
        }
    }

    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        let trace = self.traceparent.as_deref().unwrap_or("-");
        let mut out = Vec::with_capacity(trace.len() + 1 + self.payload.len());
        out.extend_from_slice(trace.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(&self.payload);
        out
    }

    /// Parses the stored form.
    pub fn parse(stored: &[u8]) -> Result<Self, CorruptEntry> {
        let newline = stored
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(CorruptEntry(stored.len()))?;
        let trace =
            std::str::from_utf8(&stored[..newline]).map_err(|_| CorruptEntry(stored.len()))?;
        let payload = stored[newline + 1..].to_vec();
        if payload.is_empty() {
            return Err(CorruptEntry(stored.len()));
        }
        Ok(Self {
            traceparent: (trace != "-").then(|| trace.to_owned()),
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_survives_encode_and_parse_with_or_without_a_trace() {
        for traceparent in [
            None,
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned()),
        ] {
            let entry = OutboxEntry {
                traceparent,
                payload: br#"{"v":1,"note":"a\nb"}"#.to_vec(),
            };
            assert_eq!(OutboxEntry::parse(&entry.encode()).unwrap(), entry);
        }
        assert!(OutboxEntry::parse(b"no newline").is_err());
        assert!(OutboxEntry::parse(b"-\n").is_err());
    }
}
