//! `admit.lua`: the waiting room's clock, which admits places at the room's rate and reports the
//! line; and [`StockLedger::tick_room`].

use super::{prelude, Args, LuaScript};
use crate::keys::Key;
use crate::{StockError, StockLedger};
use domain::{Admission, SkuId};

/// The bounds of an `auto` admission rate, in places per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutoRate {
    /// Where it starts.
    pub start: f64,
    /// Lowest.
    pub min: f64,
    /// Highest.
    pub max: f64,
    /// How much it grows per second while nothing is under pressure.
    pub step_per_sec: f64,
}

/// One tick of a room, as a gateway calls it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tick<'a> {
    /// Now, in ms since the epoch.
    pub now_ms: i64,
    /// Whether the calling gateway is near its limits (cuts an `auto` rate).
    pub pressure: bool,
    /// The shuffle's seed should the room open at this tick.
    pub seed: u64,
    /// The line's identity should this tick be the room's first call.
    pub epoch: &'a str,
    /// The bounds of an `auto` rate.
    pub auto: AutoRate,
}

/// A waiting room as the last tick left it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomState {
    /// The line's identity.
    pub epoch: String,
    /// Places given.
    pub joined: u64,
    /// Places admitted (with its fraction: the next place is admitted when it reaches it).
    pub served: f64,
    /// Joins before the opening (the ones a `random_at_open` room shuffles).
    pub pre_queue: u64,
    /// The shuffle's seed (0 before the opening).
    pub seed: u64,
    /// The admission rate now, in places per second.
    pub rate: f64,
    /// When the room opened (ms since the epoch), `None` before the opening.
    pub opened_ms: Option<i64>,
    /// Units the sale has left, over all its buckets.
    pub left: i64,
    /// The sale's start (ms since the epoch).
    pub starts_ms: i64,
    /// The sale's end (ms since the epoch).
    pub ends_ms: i64,
    /// The room's definition.
    pub admission: Admission,
}

/// What a tick found.
#[derive(Debug, Clone, PartialEq)]
pub enum TickOutcome {
    /// The room.
    Room(RoomState),
    /// Redis knows no such sale.
    NotFound,
    /// The sale has no waiting room.
    NoRoom,
}

/// One call of `admit.lua`.
pub(super) struct Admit<'a> {
    tick: &'a Tick<'a>,
    others_left: i64,
}

impl LuaScript for Admit<'_> {
    const NAME: &'static str = "admit";
    const PRELUDES: &'static [&'static str] = &[prelude::ROOM];
    const BODY: &'static str = include_str!("admit.lua");
    const KEYS: &'static [Key] = &[Key::Sale, Key::Stock, Key::Room];
    const ARGS: &'static [&'static str] = &[
        "now",
        "pressure",
        "others_left",
        "seed",
        "epoch",
        "auto_start",
        "auto_min",
        "auto_max",
        "auto_step",
    ];
    type Raw = Vec<String>;
    type Reply = TickOutcome;

    fn args(&self, args: &mut Args<'_, '_>) {
        let tick = self.tick;
        args.arg("now", tick.now_ms)
            .arg("pressure", u8::from(tick.pressure))
            .arg("others_left", self.others_left)
            .arg("seed", tick.seed)
            .arg("epoch", tick.epoch)
            .arg("auto_start", tick.auto.start)
            .arg("auto_min", tick.auto.min)
            .arg("auto_max", tick.auto.max)
            .arg("auto_step", tick.auto.step_per_sec);
    }

    fn decode(reply: &Vec<String>) -> Option<TickOutcome> {
        let word = |i: usize| reply.get(i).map(String::as_str);
        let number = |i: usize| word(i).and_then(|n| n.parse::<i64>().ok());
        let float = |i: usize| word(i).and_then(|n| n.parse::<f64>().ok());
        match word(0)? {
            "room" => Some(TickOutcome::Room(RoomState {
                epoch: word(1)?.to_owned(),
                joined: word(2)?.parse().ok()?,
                served: float(3)?,
                pre_queue: word(4)?.parse().ok()?,
                seed: word(5)?.parse().ok()?,
                rate: float(6)?,
                opened_ms: number(7).filter(|&ms| ms > 0),
                left: number(8)?,
                starts_ms: number(9)?,
                ends_ms: number(10)?,
                admission: Admission::decode(word(11)?)?,
            })),
            "not_found" => Some(TickOutcome::NotFound),
            "no_room" => Some(TickOutcome::NoRoom),
            _ => None,
        }
    }
}

impl StockLedger {
    /// Runs the clock of the waiting room of `sku`'s sale (see `admit.lua`) and answers the
    /// room. In a bucketed sale the units left in the other buckets are read first.
    pub async fn tick_room(&self, sku: &SkuId, tick: &Tick<'_>) -> Result<TickOutcome, StockError> {
        let buckets = self.believed_buckets(sku);
        let mut others_left = 0;
        if buckets > 1 {
            let units = self.bucket_units(sku, buckets).await?;
            others_left = units.iter().skip(1).flatten().map(|(_, left)| left).sum();
        }
        let call = Admit { tick, others_left };
        self.run(&self.keys(sku), &call).await
    }
}
