//! The waiting room of a sale: how a crowd larger than the gateways can serve is let in.
//!
//! A sale may put its buyers in a line (opt-in, per sale). A buyer joins and gets a place; the
//! room admits places in order at a rate (fixed, or `auto`: following what the back end
//! sustains); an admitted buyer gets a short-lived ticket that their buys must carry. Two ways of
//! numbering places ([`AdmissionMode`]): in the order buyers joined, or, for those who joined
//! during the pre-queue window before the opening, in a random order drawn at the opening
//! ([`shuffled_place`]), so that refreshing at 09:59:59.9 beats nobody.
//!
//! This module holds what every process must agree on: the definition and its checks, the
//! shuffle, and the arithmetic of positions and waits. The line itself lives in Redis.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How places are numbered.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AdmissionMode {
    /// First come, first served: places in the order buyers joined.
    Fifo,
    /// Everyone who joined during the pre-queue window gets a random place when the sale opens;
    /// later arrivals join behind them in order.
    RandomAtOpen,
}

/// How fast the room admits buyers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmissionRate {
    /// This many places per second.
    Fixed(u32),
    /// As fast as the back end sustains: the gateways raise the rate while they have headroom
    /// and cut it when their in-flight requests, their event loops or the worker's lag say the
    /// back end is near its limit (bounds in the gateway's settings).
    Auto,
}

impl AdmissionRate {
    /// Highest fixed rate.
    pub const MAX_PER_SEC: u32 = 1_000_000;
}

impl Serialize for AdmissionRate {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            AdmissionRate::Fixed(rate) => serializer.serialize_u32(*rate),
            AdmissionRate::Auto => serializer.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for AdmissionRate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Word(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Word(word) if word == "auto" => Ok(AdmissionRate::Auto),
            Raw::Number(n) if (1..=i64::from(Self::MAX_PER_SEC)).contains(&n) => {
                Ok(AdmissionRate::Fixed(n as u32))
            }
            _ => Err(serde::de::Error::custom(format!(
                "rate_per_sec must be a number of buyers per second from 1 to {} or \"auto\"",
                Self::MAX_PER_SEC
            ))),
        }
    }
}

/// Why a waiting room definition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    /// Ticket lifetime out of range.
    #[error("ticket_secs must be between {min} and {max}")]
    TicketSecs {
        /// Shortest.
        min: u32,
        /// Longest.
        max: u32,
    },
    /// Pre-queue window out of range.
    #[error("pre_queue_secs must be between 0 and {max}")]
    PreQueueSecs {
        /// Longest.
        max: u32,
    },
}

/// A sale's waiting room, as an admin sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admission {
    /// How places are numbered.
    pub mode: AdmissionMode,
    /// How fast places are admitted.
    pub rate_per_sec: AdmissionRate,
    /// How long an admission ticket is good for, from when its buyer first learns of it.
    pub ticket_secs: u32,
    /// How long before `starts_at` buyers may join (0: from the opening only).
    pub pre_queue_secs: u32,
}

impl Admission {
    /// Shortest ticket: time to fill in a buy.
    pub const MIN_TICKET_SECS: u32 = 10;
    /// Longest ticket.
    pub const MAX_TICKET_SECS: u32 = 3_600;
    /// Longest pre-queue window: a day.
    pub const MAX_PRE_QUEUE_SECS: u32 = 86_400;

    /// Validates a definition.
    pub fn new(
        mode: AdmissionMode,
        rate_per_sec: AdmissionRate,
        ticket_secs: i64,
        pre_queue_secs: i64,
    ) -> Result<Self, AdmissionError> {
        if !(i64::from(Self::MIN_TICKET_SECS)..=i64::from(Self::MAX_TICKET_SECS))
            .contains(&ticket_secs)
        {
            return Err(AdmissionError::TicketSecs {
                min: Self::MIN_TICKET_SECS,
                max: Self::MAX_TICKET_SECS,
            });
        }
        if !(0..=i64::from(Self::MAX_PRE_QUEUE_SECS)).contains(&pre_queue_secs) {
            return Err(AdmissionError::PreQueueSecs {
                max: Self::MAX_PRE_QUEUE_SECS,
            });
        }
        Ok(Self {
            mode,
            rate_per_sec,
            ticket_secs: ticket_secs as u32,
            pre_queue_secs: pre_queue_secs as u32,
        })
    }

    /// The form Redis keeps in the sale's hash and the scripts read:
    /// `<mode>|<rate or auto>|<ticket ms>|<pre-queue ms>`.
    pub fn encode(&self) -> String {
        let rate = match self.rate_per_sec {
            AdmissionRate::Fixed(rate) => rate.to_string(),
            AdmissionRate::Auto => "auto".to_owned(),
        };
        format!(
            "{}|{rate}|{}|{}",
            <&str>::from(self.mode),
            u64::from(self.ticket_secs) * 1000,
            u64::from(self.pre_queue_secs) * 1000
        )
    }

    /// Reads [`Admission::encode`]'s form back.
    pub fn decode(encoded: &str) -> Option<Self> {
        let mut parts = encoded.split('|');
        let mode = parts.next()?.parse().ok()?;
        let rate = match parts.next()? {
            "auto" => AdmissionRate::Auto,
            n => AdmissionRate::Fixed(n.parse().ok().filter(|&n| n >= 1)?),
        };
        let ticket_ms: i64 = parts.next()?.parse().ok()?;
        let pre_queue_ms: i64 = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Self::new(mode, rate, ticket_ms / 1000, pre_queue_ms / 1000).ok()
    }
}

/// The place of the buyer who joined `seq`-th (from 1) in a room whose first `pre_queue` joins
/// came before the opening and are shuffled with `seed`: a permutation of `1..=pre_queue` for
/// them, `seq` itself for everyone after. The same on every process for the same arguments, and
/// no place is given twice.
///
/// The permutation is a four-round Feistel network over the smallest even power of two that
/// holds `pre_queue`, walked until it lands inside (cycle walking): a bijection of `1..=pre_queue`
/// that needs no table, so each gateway answers a poll from the place token and the room's seed
/// alone.
pub fn shuffled_place(seq: u64, pre_queue: u64, seed: u64) -> u64 {
    if seq == 0 || seq > pre_queue || pre_queue < 2 {
        return seq;
    }
    let mut half_bits = 1;
    while 1u128 << (2 * half_bits) < u128::from(pre_queue) {
        half_bits += 1;
    }
    let mask = (1u64 << half_bits) - 1;
    let mut x = seq - 1;
    loop {
        let (mut left, mut right) = (x >> half_bits, x & mask);
        for round in 0..4u64 {
            let mixed = mix(right ^ seed.rotate_left(16 * round as u32) ^ round) & mask;
            (left, right) = (right, left ^ mixed);
        }
        x = (left << half_bits) | right;
        if x < pre_queue {
            return x + 1;
        }
    }
}

/// A 64-bit finalizer (splitmix64's): every input bit moves every output bit.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The wait of someone `ahead` places behind the last one admitted, at `rate` places per second.
pub fn estimated_wait(ahead: u64, rate: f64) -> Duration {
    if ahead == 0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(ahead as f64 / rate.max(0.01)).min(Duration::from_secs(86_400))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn the_shuffle_gives_every_pre_queue_place_once_and_leaves_later_arrivals_in_order() {
        for pre_queue in [2u64, 3, 7, 16, 17, 1000, 4097] {
            let places: HashSet<u64> = (1..=pre_queue)
                .map(|seq| shuffled_place(seq, pre_queue, 42))
                .collect();
            assert_eq!(places.len() as u64, pre_queue, "{pre_queue}");
            assert!(places.iter().all(|&p| (1..=pre_queue).contains(&p)));
            assert_eq!(shuffled_place(pre_queue + 1, pre_queue, 42), pre_queue + 1);
        }
        assert_eq!(shuffled_place(1, 1, 42), 1);
        assert_eq!(shuffled_place(5, 0, 42), 5);
    }

    #[test]
    fn the_shuffle_leaves_early_joiners_no_edge() {
        // Who joined first has no better place on average than who joined last, and another
        // seed draws another order.
        let n = 10_000u64;
        let first_half: u64 = (1..=n / 2).map(|seq| shuffled_place(seq, n, 7)).sum();
        let mean = first_half as f64 / (n / 2) as f64;
        let expected = (n + 1) as f64 / 2.0;
        assert!((mean - expected).abs() < expected * 0.03, "{mean}");
        let moved = (1..=n)
            .filter(|&seq| shuffled_place(seq, n, 7) != shuffled_place(seq, n, 8))
            .count();
        assert!(moved > 9_900, "{moved}");
        let kept = (1..=n)
            .filter(|&seq| shuffled_place(seq, n, 7) == seq)
            .count();
        assert!(kept < 10, "{kept}");
    }

    #[test]
    fn a_waiting_room_is_checked_and_kept_in_one_line_for_redis() {
        let room =
            Admission::new(AdmissionMode::RandomAtOpen, AdmissionRate::Auto, 120, 600).unwrap();
        assert_eq!(room.encode(), "random_at_open|auto|120000|600000");
        assert_eq!(Admission::decode(&room.encode()), Some(room));
        let fixed = Admission::new(AdmissionMode::Fifo, AdmissionRate::Fixed(250), 60, 0).unwrap();
        assert_eq!(Admission::decode(&fixed.encode()), Some(fixed));
        assert_eq!(Admission::decode("fifo|0|60000|0"), None);
        assert_eq!(Admission::decode("lifo|5|60000|0"), None);
        assert!(matches!(
            Admission::new(AdmissionMode::Fifo, AdmissionRate::Auto, 9, 0),
            Err(AdmissionError::TicketSecs { .. })
        ));
        assert!(matches!(
            Admission::new(AdmissionMode::Fifo, AdmissionRate::Auto, 60, 86_401),
            Err(AdmissionError::PreQueueSecs { .. })
        ));
        let json = serde_json::to_value(room).unwrap();
        assert_eq!(json["rate_per_sec"], "auto");
        assert_eq!(json["mode"], "random_at_open");
        let read: Admission = serde_json::from_value(serde_json::json!({
            "mode": "fifo", "rate_per_sec": 300, "ticket_secs": 60, "pre_queue_secs": 0
        }))
        .unwrap();
        assert_eq!(read.rate_per_sec, AdmissionRate::Fixed(300));
        for bad in [
            serde_json::json!(0),
            serde_json::json!("fast"),
            serde_json::json!(1.5),
        ] {
            let refused = serde_json::from_value::<AdmissionRate>(bad.clone());
            assert!(refused.is_err(), "{bad}");
        }
    }

    #[test]
    fn admission_modes_keep_their_names() {
        crate::enum_checks::assert_stable_strings::<AdmissionMode>(&["fifo", "random_at_open"]);
        crate::enum_checks::assert_serde_is_the_string::<AdmissionMode>();
    }

    #[test]
    fn the_wait_is_the_places_ahead_over_the_rate() {
        assert_eq!(estimated_wait(0, 100.0), Duration::ZERO);
        assert_eq!(estimated_wait(500, 100.0), Duration::from_secs(5));
        assert_eq!(estimated_wait(1, 0.0), Duration::from_secs(100));
    }
}
