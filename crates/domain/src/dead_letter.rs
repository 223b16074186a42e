//! What travels with a dead letter. The value of a dead letter is the original message's bytes,
//! untouched; everything about why it failed is carried in Kafka headers, defined here.

use crate::ReasonCode;
use chrono::{DateTime, Utc};

/// Header names of a dead letter.
pub mod header {
    /// The [`ReasonCode`](crate::ReasonCode).
    pub const REASON: &str = "seckill-reason";
    /// Human-readable error text.
    pub const ERROR: &str = "seckill-error";
    /// Processing rounds so far: 1 for the first delivery, plus one per replay.
    pub const ATTEMPTS: &str = "seckill-attempts";
    /// Topic the message was first consumed from.
    pub const ORIGINAL_TOPIC: &str = "seckill-original-topic";
    /// Partition it was consumed from.
    pub const ORIGINAL_PARTITION: &str = "seckill-original-partition";
    /// Offset it was consumed from.
    pub const ORIGINAL_OFFSET: &str = "seckill-original-offset";
    /// When it was dead-lettered (RFC 3339).
    pub const FAILED_AT: &str = "seckill-failed-at";
    /// On an order republished by the replayer: how many replays it has had.
    pub const REPLAYS: &str = "seckill-replays";
}

/// The metadata of a dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Why it failed.
    pub reason: ReasonCode,
    /// What went wrong, for operators. Never shown to buyers.
    pub error: String,
    /// Processing attempts so far.
    pub attempts: u32,
    /// Source topic.
    pub original_topic: String,
    /// Source partition.
    pub original_partition: i32,
    /// Source offset.
    pub original_offset: i64,
    /// When it was dead-lettered.
    pub failed_at: DateTime<Utc>,
}

/// A dead letter whose headers cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dead letter header {header}: {problem}")]
pub struct DeadLetterError {
    /// The header at fault.
    pub header: &'static str,
    /// What is wrong with it.
    pub problem: &'static str,
}

/// Error text is cut to this many bytes so a header never grows without bound.
const MAX_ERROR_LEN: usize = 512;

impl DeadLetter {
    /// The headers to attach, as name/value pairs.
    pub fn to_headers(&self) -> Vec<(&'static str, String)> {
        let mut error = self.error.clone();
        if error.len() > MAX_ERROR_LEN {
            let mut cut = MAX_ERROR_LEN;
            while !error.is_char_boundary(cut) {
                cut -= 1;
            }
            error.truncate(cut);
        }
        vec![
            (header::REASON, self.reason.as_str().to_owned()),
            (header::ERROR, error),
            (header::ATTEMPTS, self.attempts.to_string()),
            (header::ORIGINAL_TOPIC, self.original_topic.clone()),
            (
                header::ORIGINAL_PARTITION,
                self.original_partition.to_string(),
            ),
            (header::ORIGINAL_OFFSET, self.original_offset.to_string()),
            (header::FAILED_AT, self.failed_at.to_rfc3339()),
        ]
    }

    /// Reads the metadata back from headers; `get` looks a header up by name.
    pub fn from_headers<'a>(
        get: impl Fn(&str) -> Option<&'a [u8]>,
    ) -> Result<Self, DeadLetterError> {
        fn text<'a>(
            get: &impl Fn(&str) -> Option<&'a [u8]>,
            name: &'static str,
        ) -> Result<&'a str, DeadLetterError> {
            let bytes = get(name).ok_or(DeadLetterError {
                header: name,
                problem: "missing",
            })?;
            std::str::from_utf8(bytes).map_err(|_| DeadLetterError {
                header: name,
                problem: "not UTF-8",
            })
        }
        fn number<'a, T: std::str::FromStr>(
            get: &impl Fn(&str) -> Option<&'a [u8]>,
            name: &'static str,
        ) -> Result<T, DeadLetterError> {
            text(get, name)?.parse().map_err(|_| DeadLetterError {
                header: name,
                problem: "not a number",
            })
        }
        Ok(Self {
            reason: text(&get, header::REASON)?
                .parse::<ReasonCode>()
                .map_err(|_| DeadLetterError {
                    header: header::REASON,
                    problem: "unknown reason",
                })?,
            error: text(&get, header::ERROR)?.to_owned(),
            attempts: number(&get, header::ATTEMPTS)?,
            original_topic: text(&get, header::ORIGINAL_TOPIC)?.to_owned(),
            original_partition: number(&get, header::ORIGINAL_PARTITION)?,
            original_offset: number(&get, header::ORIGINAL_OFFSET)?,
            failed_at: DateTime::parse_from_rfc3339(text(&get, header::FAILED_AT)?)
                .map_err(|_| DeadLetterError {
                    header: header::FAILED_AT,
                    problem: "not RFC 3339",
                })?
                .with_timezone(&Utc),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_survives_its_headers() {
        let letter = DeadLetter {
            reason: ReasonCode::DbOutOfStock,
            error: "é".repeat(400),
            attempts: 3,
            original_topic: "seckill.orders".into(),
            original_partition: 2,
            original_offset: 41,
            failed_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        };
        let headers = letter.to_headers();
        let back = DeadLetter::from_headers(|name| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_bytes())
        })
        .unwrap();
        assert!(back.error.len() <= MAX_ERROR_LEN);
        assert_eq!(back.reason, letter.reason);
        assert_eq!(back.original_offset, 41);
        assert_eq!(back.failed_at, letter.failed_at);
    }
}
