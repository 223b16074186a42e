//! Load shedding: a buy request the gateway cannot serve in time is refused at once (503
//! `overloaded`, `Retry-After: 1`), before its token is verified and before anything is
//! reserved, so that the requests it does serve are answered quickly. The first look
//! ([`Admission::would_shed`]) takes no slot; the handler takes one once the request's body is
//! in, so a client that sends its body slowly holds a connection, never a slot.
//!
//! Two signals, either of which sheds:
//! - **Buy requests in flight** past `gateway.max_in_flight`: work piling up behind a slow
//!   Redis or broker.
//! - **The HTTP worker's event loop running late** by more than `gateway.max_loop_lag_ms`: the
//!   gateway short of CPU. Requests then wait in their sockets before any handler sees them, so
//!   no count of requests in flight notices it; how late the loop's own timer fires does. Each
//!   HTTP worker thread runs [`watch_this_loop`], and a request is judged by the lag of the
//!   thread serving it.

use crate::error::ApiError;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{HttpMessage, ResponseError};
use futures::StreamExt;
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The refusal of a shed buy request: 503 `overloaded` with `Retry-After`. Its small body is
/// read first: a connection with unread bytes would be closed, and the buyer's retry would pay
/// for a new one.
pub async fn refuse(mut req: ServiceRequest) -> Result<ServiceResponse, actix_web::Error> {
    let mut body = req.take_payload();
    let mut read = 0;
    while let Some(Ok(chunk)) = body.next().await {
        read += chunk.len();
        if read > crate::routes::orders::MAX_BODY {
            break;
        }
    }
    Ok(req.into_response(ApiError::Overloaded.error_response()))
}

/// How often an event loop's timer is checked.
const TICK: Duration = Duration::from_millis(5);

thread_local! {
    /// How late this thread's event loop ran lately, in µs (decaying maximum).
    static LOOP_LAG_US: Cell<u64> = const { Cell::new(0) };
}

/// The latest any watched loop fired its timer since [`take_worst_loop_lag`] last read it, in µs.
static WORST_LOOP_LAG_US: AtomicU64 = AtomicU64::new(0);

/// How late the latest of the watched event loops ran since the last call (the waiting room's
/// clock reads it once per tick as a sign of pressure).
pub fn take_worst_loop_lag() -> Duration {
    Duration::from_micros(WORST_LOOP_LAG_US.swap(0, Ordering::AcqRel))
}

/// Notes, every [`TICK`], how late this thread's event loop fired its timer. Spawn it on each
/// HTTP worker's (single-threaded) runtime; it ends with the runtime.
pub async fn watch_this_loop() {
    loop {
        let started = Instant::now();
        tokio::time::sleep(TICK).await;
        let late = started.elapsed().saturating_sub(TICK);
        let late_us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
        WORST_LOOP_LAG_US.fetch_max(late_us, Ordering::AcqRel);
        // A late tick counts at once; the memory of it fades by a quarter every tick.
        LOOP_LAG_US.with(|lag| lag.set(late_us.max(lag.get() - lag.get() / 4)));
    }
}

/// How late the event loop of the calling thread ran lately.
pub fn loop_lag() -> Duration {
    Duration::from_micros(LOOP_LAG_US.with(Cell::get))
}

/// Why a request was shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// `gateway.max_in_flight` requests were being served.
    InFlight,
    /// The serving thread's event loop ran later than `gateway.max_loop_lag_ms`.
    LoopLag,
}

impl Shed {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Shed::InFlight => "in_flight",
            Shed::LoopLag => "loop_lag",
        }
    }
}

/// Admission of buy requests (clones share the count).
#[derive(Clone)]
pub struct Admission {
    now: Arc<AtomicUsize>,
    max_in_flight: usize,
    max_loop_lag: Duration,
}

/// One admitted request; its slot is freed on drop.
pub struct Slot(Arc<AtomicUsize>);

impl Admission {
    /// At most `max_in_flight` at once, none while the loop is later than `max_loop_lag`
    /// (zero: that signal is off).
    pub fn new(max_in_flight: usize, max_loop_lag: Duration) -> Self {
        Self {
            now: Arc::default(),
            max_in_flight,
            max_loop_lag,
        }
    }

    /// A slot, or why there is none.
    pub fn admit(&self) -> Result<Slot, Shed> {
        if !self.max_loop_lag.is_zero() && loop_lag() > self.max_loop_lag {
            return Err(Shed::LoopLag);
        }
        let before = self.now.fetch_add(1, Ordering::AcqRel);
        if before >= self.max_in_flight {
            self.now.fetch_sub(1, Ordering::AcqRel);
            return Err(Shed::InFlight);
        }
        Ok(Slot(self.now.clone()))
    }

    /// A slot for a buyer a waiting room admitted (a valid ticket): the room already paces
    /// these buyers, so they are shed only past twice `max_in_flight`, and never for loop lag.
    pub fn admit_ticket_holder(&self) -> Result<Slot, Shed> {
        let before = self.now.fetch_add(1, Ordering::AcqRel);
        if before >= self.max_in_flight.saturating_mul(2) {
            self.now.fetch_sub(1, Ordering::AcqRel);
            return Err(Shed::InFlight);
        }
        Ok(Slot(self.now.clone()))
    }

    /// Why a request would be shed now, without taking a slot: the first look, before the
    /// token and the body are read. `ticket_holder`: the request carries a ticket (not checked
    /// yet), so it is held to [`admit_ticket_holder`](Self::admit_ticket_holder)'s bound.
    pub fn would_shed(&self, ticket_holder: bool) -> Option<Shed> {
        if ticket_holder {
            return (self.current() >= self.max_in_flight.saturating_mul(2))
                .then_some(Shed::InFlight);
        }
        if !self.max_loop_lag.is_zero() && loop_lag() > self.max_loop_lag {
            return Some(Shed::LoopLag);
        }
        (self.current() >= self.max_in_flight).then_some(Shed::InFlight)
    }

    /// Whether the gateway is under load: half its slots taken, or the calling thread's event
    /// loop late by half the bound (the proof of work asks more then).
    pub fn busy(&self) -> bool {
        let lagging = !self.max_loop_lag.is_zero() && loop_lag() > self.max_loop_lag / 2;
        lagging || self.current() >= self.max_in_flight / 2
    }

    /// Requests being served now.
    pub fn current(&self) -> usize {
        self.now.load(Ordering::Acquire)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_loop_kept_busy_is_seen_late_and_sheds_until_it_catches_up() {
        let admission = Admission::new(10, Duration::from_millis(20));
        // A current-thread runtime: the watcher runs on this thread, as on an HTTP worker.
        let watch = tokio::spawn(watch_this_loop());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(loop_lag() < Duration::from_millis(20), "{:?}", loop_lag());
        assert!(admission.admit().is_ok());
        // Something holds the thread for 60 ms: the watcher's timer fires that late.
        std::thread::sleep(Duration::from_millis(60));
        tokio::time::sleep(Duration::from_millis(1)).await;
        tokio::task::yield_now().await;
        let mut waited = 0;
        while loop_lag() < Duration::from_millis(40) && waited < 50 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            waited += 1;
        }
        assert!(loop_lag() >= Duration::from_millis(40), "{:?}", loop_lag());
        assert!(matches!(admission.admit(), Err(Shed::LoopLag)));
        // The loop runs on time again; the memory of the late tick fades within ~20 ticks.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(admission.admit().is_ok(), "{:?}", loop_lag());
        watch.abort();
    }

    #[test]
    fn past_max_in_flight_a_request_is_shed_and_a_freed_slot_admits_again() {
        let admission = Admission::new(2, Duration::ZERO);
        let first = admission.admit().ok();
        let second = admission.admit().ok();
        assert!(first.is_some() && second.is_some());
        assert!(matches!(admission.admit(), Err(Shed::InFlight)));
        assert_eq!(admission.would_shed(false), Some(Shed::InFlight));
        assert_eq!(admission.would_shed(true), None);
        assert_eq!(admission.current(), 2);
        drop(first);
        assert!(admission.admit().is_ok());
        drop(second);
        assert_eq!(admission.current(), 0);
    }
}
