//! Where a place stands in a room, computed from the gateway's view of the room alone: what
//! answers a poll without a Redis call.

use super::tokens::PlaceClaims;
use domain::admission::{estimated_wait, shuffled_place};
use domain::AdmissionMode;
use std::time::Duration;
use stock::RoomState;

/// A place's standing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Standing {
    /// In the line.
    Waiting {
        /// The place (1 is admitted next); `None` before a `random_at_open` room opens, when
        /// places are not drawn yet.
        position: Option<u64>,
        /// The estimated wait.
        wait: Duration,
    },
    /// The room served the place: the buyer may claim a ticket. `late`: the line moved on by
    /// more than a ticket's lifetime since, so a place never claimed has lapsed.
    Admitted {
        /// The place.
        place: u64,
        /// Whether an unclaimed ticket of it has lapsed.
        late: bool,
    },
    /// The sale has no unit left.
    SoldOut,
    /// The sale has ended.
    Closed,
    /// The token is of a line Redis lost: join again.
    Lost,
}

/// The place a token's order of joining has in `room`.
pub fn place_of(room: &RoomState, seq: u64) -> u64 {
    match room.admission.mode {
        AdmissionMode::RandomAtOpen => shuffled_place(seq, room.pre_queue, room.seed),
        AdmissionMode::Fifo => seq,
    }
}

/// Where `place` stands in `room` at `now_ms`.
pub fn standing(room: &RoomState, place: &PlaceClaims, now_ms: i64) -> Standing {
    if place.epoch != room.epoch {
        return Standing::Lost;
    }
    if now_ms >= room.ends_ms {
        return Standing::Closed;
    }
    let served = room.served.max(0.0).floor() as u64;
    let Some(_opened) = room.opened_ms else {
        if room.left <= 0 {
            return Standing::SoldOut;
        }
        // Before the opening: a FIFO place is known; a shuffled one is drawn at the opening, so
        // the estimate takes the middle of the pre-queue.
        let (position, expected) = match room.admission.mode {
            AdmissionMode::Fifo => (Some(place.seq), place.seq),
            AdmissionMode::RandomAtOpen => (None, room.pre_queue.max(1).div_ceil(2)),
        };
        let until_open = Duration::from_millis(u64::try_from(room.starts_ms - now_ms).unwrap_or(0));
        return Standing::Waiting {
            position,
            wait: until_open + estimated_wait(expected, room.rate),
        };
    };
    let place_number = place_of(room, place.seq);
    if room.left <= 0 {
        return Standing::SoldOut;
    }
    if place_number <= served {
        let window = room.rate * f64::from(room.admission.ticket_secs);
        let late = (served - place_number) as f64 > window.max(1.0);
        return Standing::Admitted {
            place: place_number,
            late,
        };
    }
    let position = place_number - served;
    Standing::Waiting {
        position: Some(position),
        wait: estimated_wait(position, room.rate),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{Admission, AdmissionRate};

    fn room(mode: AdmissionMode, served: f64, opened: bool) -> RoomState {
        RoomState {
            epoch: "e".into(),
            joined: 100,
            served,
            pre_queue: 40,
            seed: 9,
            rate: 10.0,
            opened_ms: opened.then_some(1_000),
            left: 5,
            starts_ms: 1_000,
            ends_ms: 100_000,
            admission: Admission::new(mode, AdmissionRate::Fixed(10), 60, 600).unwrap(),
        }
    }

    fn place(seq: u64) -> PlaceClaims {
        PlaceClaims {
            typ: "place".into(),
            sub: "alice".into(),
            sku: "phone".into(),
            seq,
            joined_ms: 0,
            epoch: "e".into(),
            est_ms: 0,
        }
    }

    #[test]
    fn a_fifo_place_waits_its_turn_then_is_admitted_and_lapses_a_ticket_lifetime_later() {
        let line = room(AdmissionMode::Fifo, 30.5, true);
        assert_eq!(
            standing(&line, &place(50), 2_000),
            Standing::Waiting {
                position: Some(20),
                wait: Duration::from_secs(2)
            }
        );
        assert_eq!(
            standing(&line, &place(30), 2_000),
            Standing::Admitted {
                place: 30,
                late: false
            }
        );
        // The line moved 600 places (60 s at 10/s) past it: a place never claimed has lapsed.
        let later = room(AdmissionMode::Fifo, 631.0, true);
        assert_eq!(
            standing(&later, &place(30), 2_000),
            Standing::Admitted {
                place: 30,
                late: true
            }
        );
    }

    #[test]
    fn before_the_opening_a_shuffled_place_is_unknown_and_afterwards_it_is_drawn() {
        let before = room(AdmissionMode::RandomAtOpen, 0.0, false);
        let Standing::Waiting { position, wait } = standing(&before, &place(1), 0) else {
            panic!("not waiting");
        };
        assert_eq!(position, None);
        // A second to the opening, then the middle of 40 places at 10 per second.
        assert_eq!(wait, Duration::from_secs(3));
        let after = room(AdmissionMode::RandomAtOpen, 0.0, true);
        let drawn = place_of(&after, 1);
        assert!((1..=40).contains(&drawn));
        assert_eq!(place_of(&after, 41), 41);
    }

    #[test]
    fn sold_out_the_end_and_a_lost_line_end_the_wait() {
        let mut line = room(AdmissionMode::Fifo, 10.0, true);
        line.left = 0;
        assert_eq!(standing(&line, &place(50), 2_000), Standing::SoldOut);
        assert_eq!(standing(&line, &place(5), 2_000), Standing::SoldOut);
        line.left = 3;
        assert_eq!(standing(&line, &place(50), 100_000), Standing::Closed);
        let mut other = place(50);
        other.epoch = "lost".into();
        assert_eq!(standing(&line, &other, 2_000), Standing::Lost);
    }
}
