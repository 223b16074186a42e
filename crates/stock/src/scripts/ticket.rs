//! `ticket.lua`: fixes when an admitted buyer's ticket expires; and
//! [`StockLedger::claim_ticket`].

use super::{Args, LuaScript};
use crate::keys::Key;
use crate::{StockError, StockLedger};
use domain::{SkuId, UserId};

/// When an admitted buyer's ticket expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketOutcome {
    /// Its expiry (ms since the epoch), fixed now: the buyer's first claim.
    Issued(i64),
    /// Its expiry, fixed at the buyer's first claim.
    Again(i64),
    /// The place was never claimed while the line moved a ticket's lifetime past it.
    Lapsed,
    /// The room has not served the place yet.
    Waiting,
}

/// One call of `ticket.lua`.
pub(super) struct Ticket<'a> {
    user: &'a UserId,
    place: u64,
    now_ms: i64,
    ticket_ms: i64,
    late: bool,
}

impl LuaScript for Ticket<'_> {
    const NAME: &'static str = "ticket";
    const PRELUDES: &'static [&'static str] = &[];
    const BODY: &'static str = include_str!("ticket.lua");
    const KEYS: &'static [Key] = &[Key::Room, Key::Tickets];
    const ARGS: &'static [&'static str] = &["user", "place", "now", "ticket_ms", "late"];
    type Raw = Vec<String>;
    type Reply = TicketOutcome;

    fn args(&self, args: &mut Args<'_, '_>) {
        args.arg("user", self.user.as_str())
            .arg("place", self.place)
            .arg("now", self.now_ms)
            .arg("ticket_ms", self.ticket_ms)
            .arg("late", u8::from(self.late));
    }

    fn decode(reply: &Vec<String>) -> Option<TicketOutcome> {
        let word = |i: usize| reply.get(i).map(String::as_str);
        match word(0)? {
            "issued" => Some(TicketOutcome::Issued(word(1)?.parse().ok()?)),
            "again" => Some(TicketOutcome::Again(word(1)?.parse().ok()?)),
            "lapsed" => Some(TicketOutcome::Lapsed),
            "waiting" => Some(TicketOutcome::Waiting),
            _ => None,
        }
    }
}

impl StockLedger {
    /// The expiry of the ticket of `user`, admitted at `place` in the waiting room of `sku`'s
    /// sale: `now_ms + ticket_ms` the first time, the same expiry every time after; none for a
    /// place never claimed that is `late` (the line moved a ticket's lifetime past it).
    pub async fn claim_ticket(
        &self,
        sku: &SkuId,
        user: &UserId,
        place: u64,
        now_ms: i64,
        ticket_ms: i64,
        late: bool,
    ) -> Result<TicketOutcome, StockError> {
        let call = Ticket {
            user,
            place,
            now_ms,
            ticket_ms,
            late,
        };
        self.run(&self.keys(sku), &call).await
    }
}
