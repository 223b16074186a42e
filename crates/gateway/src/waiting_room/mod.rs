//! The waiting room: fair admission to a sale whose crowd is larger than the gateways can serve.
//!
//! A buyer joins (one Redis call, `join.lua`) and gets a signed place token; each poll is then
//! answered from this gateway's view of the room, with no Redis call: the view is refreshed
//! every `waiting_room.tick_ms` by the room's clock (`admit.lua`), which every gateway of the
//! room runs and which admits places at the room's rate whoever calls it. A poll may be held
//! open (`wait=true`) until its answer changes. An admitted buyer's first poll fixes their
//! ticket's expiry in Redis (`ticket.lua`) and answers a signed admission ticket, which the buy
//! endpoint checks before the reserve script (which refuses a buyer of a room's sale without
//! one).
//!
//! The state is in Redis under the sale's hash tag (bucket 0): several gateways share one line,
//! and a gateway that dies loses no place. A room nobody polls on a gateway stops ticking there
//! after `waiting_room.idle_secs`.
//!
//! The parts: `tokens` signs and checks place tokens and tickets, `standing` computes a place's
//! standing from a view, and this module keeps the views and their clocks.

pub mod standing;
pub mod tokens;

use crate::metrics::GatewayMetrics;
use crate::overload;
use domain::SkuId;
use settings::WaitingRoomSettings;
use standing::{place_of, Standing};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;
use stock::{AutoRate, RoomState, StockError, StockLedger, Tick, TickOutcome};
use tokens::{PlaceClaims, Tokens};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// Why a room cannot be answered from.
#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    /// Redis knows no such sale.
    #[error("no such sale in Redis")]
    NotFound,
    /// The sale has no waiting room.
    #[error("the sale has no waiting room")]
    NoRoom,
    /// Redis failed.
    #[error(transparent)]
    Stock(#[from] StockError),
}

/// What tells an `auto` rate that the back end is near its limits.
#[derive(Clone)]
pub struct Pressure {
    /// This gateway's buy requests in flight.
    pub admission: overload::Admission,
    /// Past this many in flight.
    pub max_in_flight: usize,
    /// An event loop later than this.
    pub max_loop_lag: Duration,
    /// The order worker's lag (messages; -1 unknown), read by [`watch_worker_lag`].
    pub worker_lag: Arc<AtomicI64>,
    /// Past this lag (0: ignored).
    pub max_worker_lag: i64,
    /// The last reading, and when it was taken: every room's clock of the gateway shares one
    /// reading per tick (the loops' worst lateness is read and reset by it).
    pub last: Arc<Mutex<Option<(std::time::Instant, bool)>>>,
}

impl Pressure {
    /// Whether the gateway is near its limits now: one reading per `tick`, shared by the rooms.
    fn now(&self, shed_since: bool, tick: Duration) -> bool {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, pressure)) = *last {
            if at.elapsed() < tick {
                return pressure || shed_since;
            }
        }
        let pressure = self.read();
        *last = Some((std::time::Instant::now(), pressure));
        pressure || shed_since
    }

    /// Reads the signals (and resets the loops' worst lateness).
    fn read(&self) -> bool {
        let lag = overload::take_worst_loop_lag();
        let worker_lag = self.worker_lag.load(Ordering::Relaxed);
        self.admission.current() > self.max_in_flight
            || (!self.max_loop_lag.is_zero() && lag > self.max_loop_lag)
            || (self.max_worker_lag > 0 && worker_lag > self.max_worker_lag)
    }
}

/// The last two ticks of a room: a tick admits `rate x tick_ms` places at once, and letting
/// them all in at that instant would send their buys in one burst; the view lets them in
/// evenly over the next tick instead, between what the two ticks served (never past what Redis
/// served).
struct Ticks {
    before: Arc<RoomState>,
    last: Arc<RoomState>,
    /// When the last tick's answer came (ms since the epoch).
    at_ms: i64,
}

impl Ticks {
    /// What has been admitted by `now_ms`, spread over the tick after the last one.
    fn served_at(&self, now_ms: i64, tick_ms: i64) -> f64 {
        let (from, to) = (self.before.served, self.last.served);
        if to <= from || self.before.epoch != self.last.epoch {
            return to;
        }
        let elapsed = ((now_ms - self.at_ms) as f64 / tick_ms.max(1) as f64).clamp(0.0, 1.0);
        from + (to - from) * elapsed
    }

    /// When (ms since the epoch) the view lets `place` in, for a place the last tick served.
    fn admits_at(&self, place: u64, tick_ms: i64) -> i64 {
        let (from, to) = (self.before.served, self.last.served);
        if to <= from {
            return self.at_ms;
        }
        let share = ((place as f64 - from) / (to - from)).clamp(0.0, 1.0);
        self.at_ms + (share * tick_ms as f64).ceil() as i64
    }
}

/// One room as this gateway sees it.
pub struct Room {
    ticks: RwLock<Ticks>,
    tick_ms: i64,
    /// Held polls, by the place whose admission wakes them; `None` once the room's clock
    /// stopped on this gateway (a poll that still holds the room is answered at once).
    waiters: Mutex<Option<BTreeMap<u64, Vec<oneshot::Sender<()>>>>>,
    last_poll_ms: AtomicI64,
}

impl Room {
    fn new(state: RoomState, now_ms: i64, tick_ms: i64) -> Self {
        let state = Arc::new(state);
        Self {
            ticks: RwLock::new(Ticks {
                before: state.clone(),
                last: state,
                at_ms: now_ms,
            }),
            tick_ms,
            waiters: Mutex::new(Some(BTreeMap::new())),
            last_poll_ms: AtomicI64::new(now_ms),
        }
    }

    /// The room as the last tick left it, with what it admitted let in evenly since (see
    /// [`Ticks`]).
    pub fn view(&self) -> RoomState {
        let ticks = self.ticks.read().unwrap_or_else(PoisonError::into_inner);
        let mut view = (*ticks.last).clone();
        view.served = ticks.served_at(chrono::Utc::now().timestamp_millis(), self.tick_ms);
        view
    }

    /// `place`'s standing at `now_ms`, and, when `hold` and the place is waiting, a receiver
    /// that fires when its standing may have changed (registered under the same lock the
    /// clock wakes under, so no change is missed between the two).
    pub fn standing(
        &self,
        place: &PlaceClaims,
        now_ms: i64,
        hold: bool,
    ) -> (Standing, Option<oneshot::Receiver<()>>) {
        self.last_poll_ms.fetch_max(now_ms, Ordering::Relaxed);
        let mut guard = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        let view = self.view();
        let standing = standing::standing(&view, place, now_ms);
        let Some(waiters) = guard.as_mut().filter(|_| hold) else {
            return (standing, None);
        };
        if !matches!(standing, Standing::Waiting { .. }) {
            return (standing, None);
        }
        // Before the opening a place is woken by the opening itself (every waiter is).
        let wake_at = match view.opened_ms {
            Some(_) => place_of(&view, place.seq),
            None => u64::MAX,
        };
        let (tx, rx) = oneshot::channel();
        // A place the last tick served but the view has not let in yet: woken when it does.
        let due = {
            let ticks = self.ticks.read().unwrap_or_else(PoisonError::into_inner);
            (view.opened_ms.is_some() && (wake_at as f64) <= ticks.last.served)
                .then(|| ticks.admits_at(wake_at, self.tick_ms))
        };
        if let Some(due) = due {
            drop(guard);
            tokio::spawn(async move {
                let wait = due - chrono::Utc::now().timestamp_millis();
                if wait > 0 {
                    tokio::time::sleep(Duration::from_millis(wait as u64)).await;
                }
                let _ = tx.send(());
            });
            return (standing, Some(rx));
        }
        let held = waiters.entry(wake_at).or_default();
        // The polls of this place whose hold ended are gone: their senders go with them.
        held.retain(|tx| !tx.is_closed());
        held.push(tx);
        (standing, Some(rx))
    }

    /// Takes a new tick's room, and wakes the held polls it concerns: those whose place it
    /// admits, each when the view lets it in, or all of them at once when the room opened, sold
    /// out, got units back, ended or was lost.
    fn update(&self, new: RoomState, now_ms: i64) {
        let new = Arc::new(new);
        let (old, schedule) = {
            let mut ticks = self.ticks.write().unwrap_or_else(PoisonError::into_inner);
            let old = std::mem::replace(&mut ticks.last, new.clone());
            ticks.before = old.clone();
            ticks.at_ms = now_ms;
            let schedule = Ticks {
                before: old.clone(),
                last: new.clone(),
                at_ms: now_ms,
            };
            (old, schedule)
        };
        let everyone = old.epoch != new.epoch
            || old.opened_ms != new.opened_ms
            || (old.left > 0) != (new.left > 0)
            || (now_ms >= new.ends_ms)
            || new.served < old.served;
        let mut guard = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(waiters) = guard.as_mut() else {
            return;
        };
        let woken = if everyone {
            std::mem::take(waiters)
        } else {
            let served = new.served.max(0.0).floor() as u64;
            let later = waiters.split_off(&served.saturating_add(1));
            std::mem::replace(waiters, later)
        };
        drop(guard);
        if everyone || woken.is_empty() {
            for tx in woken.into_values().flatten() {
                let _ = tx.send(());
            }
            return;
        }
        // Each admitted place's held poll is answered when the view lets it in.
        let tick_ms = self.tick_ms;
        tokio::spawn(async move {
            for (place, txs) in woken {
                let due = schedule.admits_at(place, tick_ms);
                let wait = due - chrono::Utc::now().timestamp_millis();
                if wait > 0 {
                    tokio::time::sleep(Duration::from_millis(wait as u64)).await;
                }
                for tx in txs {
                    let _ = tx.send(());
                }
            }
        });
    }

    /// Redis answered `sold_out` to a buy: the room learns it now rather than at its next tick.
    pub fn sold_out(&self, now_ms: i64) {
        let last = self
            .ticks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .last
            .clone();
        if last.left > 0 {
            let mut sold = (*last).clone();
            sold.left = 0;
            self.update(sold, now_ms);
        }
    }
}

/// The rooms this gateway answers from.
pub struct Rooms {
    ledger: StockLedger,
    /// Each buyer's polls of a room, paced at one per `poll_min_ms` (a burst of three): a poll
    /// that comes sooner, on one connection or many, is held like a `wait=true` poll until its
    /// turn (or a change of its answer), so polling without pause costs the gateway little and
    /// wins nothing.
    pace: governor::DefaultKeyedRateLimiter<u64>,
    settings: WaitingRoomSettings,
    /// Signs and checks place tokens and tickets.
    pub tokens: Tokens,
    rooms: RwLock<HashMap<SkuId, Arc<Room>>>,
    pressure: Pressure,
    metrics: GatewayMetrics,
    runtime: tokio::runtime::Handle,
    stop: CancellationToken,
}

impl Rooms {
    /// Rooms of the sales of `ledger`; their clocks run on the calling Tokio runtime until
    /// `stop`.
    pub fn new(
        ledger: StockLedger,
        settings: &WaitingRoomSettings,
        pressure: Pressure,
        metrics: GatewayMetrics,
        stop: CancellationToken,
    ) -> Self {
        let period = Duration::from_millis(settings.poll_min_ms.max(1));
        let quota = governor::Quota::with_period(period)
            .expect("a poll interval of at least 1 ms")
            .allow_burst(std::num::NonZeroU32::new(3).expect("3 is not 0"));
        Self {
            ledger,
            pace: governor::RateLimiter::keyed(quota),
            tokens: Tokens::new(&settings.ticket_secret),
            settings: settings.clone(),
            rooms: RwLock::default(),
            pressure,
            metrics,
            runtime: tokio::runtime::Handle::current(),
            stop,
        }
    }

    /// How long `user` must wait before polling the room of `sku` again (zero: a poll now is
    /// in its turn, and counts); see [`Rooms`]'s pacing.
    pub fn early_by(&self, sku: &SkuId, user: &str) -> Duration {
        use governor::clock::Clock;
        use std::hash::{Hash, Hasher};
        // A fingerprint of the pair keys the pacing without copying it (two buyers sharing one
        // would share a pace: one in 2^64).
        let mut hasher = std::hash::DefaultHasher::new();
        (sku.as_str(), user).hash(&mut hasher);
        match self.pace.check_key(&hasher.finish()) {
            Ok(()) => Duration::ZERO,
            Err(not_until) => not_until.wait_time_from(self.pace.clock().now()),
        }
    }

    /// The settings the rooms run by.
    pub fn settings(&self) -> &WaitingRoomSettings {
        &self.settings
    }

    /// The room of `sku`'s sale: known already, or read now (one tick) and kept ticking.
    pub async fn room(self: &Arc<Self>, sku: &SkuId) -> Result<Arc<Room>, RoomError> {
        if let Some(room) = self.known(sku) {
            return Ok(room);
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        let state = self.tick(sku, now_ms, false).await?;
        let room = {
            let mut rooms = self.rooms.write().unwrap_or_else(PoisonError::into_inner);
            if let Some(room) = rooms.get(sku) {
                return Ok(room.clone());
            }
            let tick_ms = i64::try_from(self.settings.tick_ms).unwrap_or(i64::MAX);
            let room = Arc::new(Room::new(state, now_ms, tick_ms));
            rooms.insert(sku.clone(), room.clone());
            room
        };
        self.runtime
            .spawn(self.clone().keep_ticking(sku.clone(), room.clone()));
        Ok(room)
    }

    /// The room of `sku` if this gateway runs it.
    pub fn known(&self, sku: &SkuId) -> Option<Arc<Room>> {
        self.rooms
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(sku)
            .cloned()
    }

    /// One tick of the room of `sku`.
    async fn tick(&self, sku: &SkuId, now_ms: i64, pressure: bool) -> Result<RoomState, RoomError> {
        // Random candidates (uuid v4 draws from the OS): the line's identity should this tick
        // create the room, the shuffle's seed should it open it.
        let random = uuid::Uuid::new_v4().as_u128();
        let epoch = format!("{:016x}", random as u64);
        let s = &self.settings;
        let tick = Tick {
            now_ms,
            pressure,
            seed: (random >> 64) as u64 >> 1,
            epoch: &epoch,
            auto: AutoRate {
                start: s.auto_start_per_sec,
                min: s.auto_min_per_sec,
                max: s.auto_max_per_sec,
                step_per_sec: s.auto_step_per_sec,
            },
        };
        match self.ledger.tick_room(sku, &tick).await? {
            TickOutcome::Room(state) => Ok(state),
            TickOutcome::NotFound => Err(RoomError::NotFound),
            TickOutcome::NoRoom => Err(RoomError::NoRoom),
        }
    }

    /// Runs the clock of `room` until nobody polled it for `idle_secs`, the sale loses its room
    /// or the gateway stops.
    async fn keep_ticking(self: Arc<Self>, sku: SkuId, room: Arc<Room>) {
        let mut interval = tokio::time::interval(Duration::from_millis(self.settings.tick_ms));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let idle_ms = i64::try_from(self.settings.idle_secs * 1000).unwrap_or(i64::MAX);
        let mut shed_before = self.shed_count();
        let mut failing = false;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => break,
                _ = interval.tick() => {}
            }
            let now_ms = chrono::Utc::now().timestamp_millis();
            if now_ms - room.last_poll_ms.load(Ordering::Relaxed) > idle_ms {
                break;
            }
            let shed = self.shed_count();
            let tick = Duration::from_millis(self.settings.tick_ms);
            let pressure = self.pressure.now(shed > shed_before, tick);
            shed_before = shed;
            match self.tick(&sku, now_ms, pressure).await {
                Ok(state) => {
                    failing = false;
                    room.update(state, now_ms);
                }
                Err(RoomError::Stock(error)) => {
                    // The view stays as it was: polls keep their last answer until Redis is back.
                    if !failing {
                        tracing::warn!(%sku, %error, "waiting room tick failed; retrying");
                    }
                    failing = true;
                }
                Err(error) => {
                    tracing::info!(%sku, %error, "waiting room closed on this gateway");
                    break;
                }
            }
            self.report();
            if now_ms % 60_000 < self.settings.tick_ms as i64 {
                // About once a minute: forget the pacing of buyers who stopped polling.
                self.pace.retain_recent();
            }
        }
        let mut rooms = self.rooms.write().unwrap_or_else(PoisonError::into_inner);
        if rooms
            .get(&sku)
            .is_some_and(|known| Arc::ptr_eq(known, &room))
        {
            rooms.remove(&sku);
        }
        drop(rooms);
        // Held polls are answered with what is known, and no poll is held any more.
        let waiters = room
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_default();
        for tx in waiters.into_values().flatten() {
            let _ = tx.send(());
        }
        self.report();
    }

    fn shed_count(&self) -> u64 {
        ["in_flight", "loop_lag"]
            .iter()
            .map(|reason| self.metrics.shed.with_label_values(&[reason]).get())
            .sum()
    }

    /// Sets the gauges from the rooms this gateway runs.
    fn report(&self) {
        let rooms = self.rooms.read().unwrap_or_else(PoisonError::into_inner);
        let (mut waiting, mut rate) = (0u64, 0f64);
        for room in rooms.values() {
            let view = room.view();
            waiting += view
                .joined
                .saturating_sub(view.served.max(0.0).floor() as u64);
            rate += view.rate;
        }
        self.metrics
            .room_waiting
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        self.metrics.room_rate.set(rate.round() as i64);
    }
}

/// Reads the order worker's lag every `every` into `lag` (-1 when the broker cannot tell), for
/// the pressure of `auto` rates, until `stop`.
pub async fn watch_worker_lag(
    endpoint: kafka::Endpoint,
    settings: settings::KafkaSettings,
    lag: Arc<AtomicI64>,
    every: Duration,
    stop: CancellationToken,
) {
    let consumer = match kafka::consumer(&endpoint, &settings.worker_group) {
        Ok(consumer) => Arc::new(consumer),
        Err(error) => {
            tracing::warn!(%error, "cannot read the worker's lag: auto admission rates ignore it");
            return;
        }
    };
    loop {
        lag.store(
            kafka::lag::total_lag(consumer.clone(), &settings.orders_topic).await,
            Ordering::Relaxed,
        );
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
