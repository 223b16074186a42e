//! `join.lua`: a buyer takes a place in a sale's waiting room; and [`StockLedger::join_room`].

use super::{prelude, Args, LuaScript};
use crate::keys::Key;
use crate::{StockError, StockLedger};
use domain::{SkuId, UserId};

/// What joining a waiting room came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinOutcome {
    /// The buyer's place (new, or the one they had).
    Place(Place),
    /// Redis knows no such sale.
    NotFound,
    /// The sale has no waiting room: its buyers buy directly.
    NoRoom,
    /// The line opens at this time (ms since the epoch): the sale's start less its pre-queue
    /// window.
    TooEarly(i64),
    /// The sale has ended.
    Ended,
}

/// A place in a waiting room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The order of joining, from 1 (the place itself unless the room shuffles its pre-queue).
    pub seq: u64,
    /// When the buyer joined (ms since the epoch).
    pub joined_ms: i64,
    /// The line's identity: another one after Redis lost the room.
    pub epoch: String,
    /// Whether the buyer had joined before (the same place again).
    pub again: bool,
}

/// One call of `join.lua`.
pub(super) struct Join<'a> {
    user: &'a UserId,
    now_ms: i64,
    epoch: &'a str,
}

impl LuaScript for Join<'_> {
    const NAME: &'static str = "join";
    const PRELUDES: &'static [&'static str] = &[prelude::ROOM];
    const BODY: &'static str = include_str!("join.lua");
    const KEYS: &'static [Key] = &[Key::Sale, Key::Room, Key::Places];
    const ARGS: &'static [&'static str] = &["user", "now", "epoch"];
    type Raw = Vec<String>;
    type Reply = JoinOutcome;

    fn args(&self, args: &mut Args<'_, '_>) {
        args.arg("user", self.user.as_str())
            .arg("now", self.now_ms)
            .arg("epoch", self.epoch);
    }

    fn decode(reply: &Vec<String>) -> Option<JoinOutcome> {
        let word = |i: usize| reply.get(i).map(String::as_str);
        let place = |again| {
            Some(JoinOutcome::Place(Place {
                seq: word(1)?.parse().ok()?,
                joined_ms: word(2)?.parse().ok()?,
                epoch: word(3)?.to_owned(),
                again,
            }))
        };
        match word(0)? {
            "joined" => place(false),
            "again" => place(true),
            "not_found" => Some(JoinOutcome::NotFound),
            "no_room" => Some(JoinOutcome::NoRoom),
            "too_early" => Some(JoinOutcome::TooEarly(word(1)?.parse().ok()?)),
            "ended" => Some(JoinOutcome::Ended),
            _ => None,
        }
    }
}

impl StockLedger {
    /// `user` joins the waiting room of `sku`'s sale at `now_ms` (see `join.lua`). `epoch` is
    /// the line's identity should this join be the room's first call.
    pub async fn join_room(
        &self,
        sku: &SkuId,
        user: &UserId,
        now_ms: i64,
        epoch: &str,
    ) -> Result<JoinOutcome, StockError> {
        let call = Join {
            user,
            now_ms,
            epoch,
        };
        self.run(&self.keys(sku), &call).await
    }
}
