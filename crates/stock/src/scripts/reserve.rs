//! `reserve.lua`: takes the units of a group of orders of one bucket, each answered on its own,
//! and keeps each accepted order's message in the outbox, in one atomic step; and
//! [`StockLedger::reserve`], which moves the order to its buyer's bucket, sends it in a group
//! (see the `group` module) and, in a bucketed sale, borrows from the other buckets before it
//! answers `sold_out`.

use super::{prelude, Args, LuaScript};
use crate::buckets::{Borrowed, BORROW_ROUNDS};
use crate::keys::{home_bucket, Key};
use crate::{OutboxEntry, StockError, StockLedger};
use domain::{OrderId, OrderRequested, ReservationState};
use std::time::Duration;

/// What a reservation attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// Stock was taken for this new order.
    Accepted(OrderId),
    /// The same user and key already have this order; `state` is its reservation state.
    Duplicate {
        /// The existing order.
        order_id: OrderId,
        /// Where that order's reservation is.
        state: ReservationState,
    },
    /// The same user and key already have an order for another quantity: the client reused
    /// the key for a different request. Nothing was reserved.
    KeyReused {
        /// The order the key belongs to.
        order_id: OrderId,
        /// Its quantity.
        quantity: i64,
    },
    /// Not enough stock left.
    SoldOut(SoldOut),
    /// The buyer would hold more than the per-user limit.
    LimitExceeded,
    /// Redis knows no such sale (never created, or Redis lost its data).
    NotFound,
    /// Before the start or after the end of the sale.
    NotActive,
    /// The sale has a waiting room and the buyer brought no valid admission ticket.
    AdmissionRequired,
}

/// What Redis saw when it answered `sold_out`: enough for a gateway to answer the same from
/// memory, and to notice when it no longer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoldOut {
    /// Units left (fewer than were asked for).
    pub remaining: i64,
    /// Units ever reserved in the sale: it moves whenever an order is accepted, so an unchanged
    /// count means no new order since.
    pub reserved: i64,
    /// When the sale ends (ms since the epoch); after it the answer is `not_active`.
    pub ends_at_ms: i64,
}

/// One order of a group: the order, its message, and whether the buyer holds a valid admission
/// ticket of the sale's waiting room.
pub(crate) struct Member {
    pub(crate) order: OrderRequested,
    pub(crate) entry: OutboxEntry,
    pub(crate) admitted: bool,
}

/// One call of `reserve.lua`: a group of orders of the bucket `keys` belong to.
pub(crate) struct Reserve<'a> {
    pub(crate) members: &'a [Member],
    /// The number of buckets the caller believes the sale has.
    pub(crate) buckets: u8,
}

/// What one order of a call was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    Outcome(ReserveOutcome),
    /// The sale has this many buckets, not what the caller believed (the whole group's answer).
    Buckets(u8),
}

impl LuaScript for Reserve<'_> {
    const NAME: &'static str = "reserve";
    const PRELUDES: &'static [&'static str] = &[prelude::RECORD];
    const BODY: &'static str = include_str!("reserve.lua");
    const KEYS: &'static [Key] = &Key::ORDER;
    const ARGS: &'static [&'static str] = &["buckets"];
    /// Seven per order: user, idempotency, order_id, quantity, now, entry, admitted.
    const VARIADIC: bool = true;
    /// One reply per order (or the group's one `buckets` reply).
    type Raw = Vec<Vec<String>>;
    type Reply = Vec<Reply>;

    fn args(&self, args: &mut Args<'_, '_>) {
        args.arg("buckets", self.buckets);
        for member in self.members {
            let order = &member.order;
            args.rest(order.user_id.as_str())
                .rest(order.idempotency_key.as_str())
                .rest(order.order_id.as_str())
                .rest(order.quantity.get())
                .rest(order.requested_at.timestamp_millis())
                .rest(member.entry.encode())
                .rest(u8::from(member.admitted));
        }
    }

    fn decode(replies: &Vec<Vec<String>>) -> Option<Vec<Reply>> {
        replies.iter().map(|reply| decode_one(reply)).collect()
    }
}

/// One order's reply.
fn decode_one(reply: &[String]) -> Option<Reply> {
    let word = |i: usize| reply.get(i).map(String::as_str);
    let order = || word(1).and_then(|id| OrderId::parse(id).ok());
    let number = |i: usize| word(i).and_then(|n| n.parse::<i64>().ok());
    let outcome = match word(0)? {
        "accepted" => ReserveOutcome::Accepted(order()?),
        "duplicate" => ReserveOutcome::Duplicate {
            order_id: order()?,
            state: word(2)?.parse().ok()?,
        },
        "sold_out" => ReserveOutcome::SoldOut(SoldOut {
            remaining: number(1)?,
            reserved: number(2)?,
            ends_at_ms: number(3)?,
        }),
        "key_reused" => ReserveOutcome::KeyReused {
            order_id: order()?,
            quantity: number(2)?,
        },
        "limit_exceeded" => ReserveOutcome::LimitExceeded,
        "not_found" => ReserveOutcome::NotFound,
        "not_active" => ReserveOutcome::NotActive,
        "admission_required" => ReserveOutcome::AdmissionRequired,
        "buckets" => {
            let buckets = word(1)?.parse::<u8>().ok().filter(|&n| n >= 1)?;
            return Some(Reply::Buckets(buckets));
        }
        _ => return None,
    };
    Some(Reply::Outcome(outcome))
}

/// Moves `order` to its buyer's bucket in a sale of `buckets`: the bucket, and whether its id
/// changed.
fn move_home(order: &mut OrderRequested, buckets: u8) -> (u8, bool) {
    let home = home_bucket(&order.user_id, buckets);
    let moved = order.order_id.bucket() != home;
    if moved {
        order.order_id = order.order_id.with_bucket(home);
    }
    (home, moved)
}

/// [`move_home`] for a sale found to have another number of buckets than believed, with the
/// order's message made again when its id changed.
fn rebucket(order: &mut OrderRequested, entry: &mut OutboxEntry, buckets: u8) -> u8 {
    let (home, moved) = move_home(order, buckets);
    if moved {
        entry.payload = order.encode();
    }
    home
}

impl StockLedger {
    /// Tries to reserve the units of `order` (its id is the candidate: the order's id if it is
    /// new) at its `requested_at`, and keeps its message in the outbox until the order is written
    /// or released. The order's id is moved to its buyer's stock bucket first (a sale of one bucket
    /// leaves it as it is), so the returned outbox entry (the message to produce, with
    /// `traceparent`) is made here. In a bucketed sale a buyer whose bucket ran out borrows from
    /// the others before being answered `sold_out` (see the `buckets` module). `admitted` says
    /// whether the caller checked the buyer's admission ticket: a sale with a waiting room
    /// answers [`ReserveOutcome::AdmissionRequired`] without one.
    pub async fn reserve(
        &self,
        order: &mut OrderRequested,
        traceparent: Option<String>,
        admitted: bool,
    ) -> Result<(ReserveOutcome, OutboxEntry), StockError> {
        let sku = order.sku_id.clone();
        let mut buckets = self.believed_buckets(&sku);
        let mut home = move_home(order, buckets).0;
        let mut entry = OutboxEntry::new(order, traceparent);
        let (mut relearned, mut rounds, mut waited) = (false, 0, false);
        loop {
            let reply = self
                .reserve_in_group(&sku, home, buckets, order, &entry, admitted)
                .await?;
            let outcome = match reply {
                Reply::Buckets(actual) if !relearned => {
                    self.learn_buckets(&sku, actual);
                    (buckets, relearned) = (actual, true);
                    home = rebucket(order, &mut entry, buckets);
                    continue;
                }
                Reply::Buckets(actual) => {
                    return Err(StockError::Reply {
                        script: Reserve::NAME,
                        reply: format!("buckets {actual}, a second time"),
                    })
                }
                Reply::Outcome(outcome) => outcome,
            };
            if outcome == ReserveOutcome::NotFound && buckets > 1 && !relearned {
                // The sale may have been made again with fewer buckets than this process saw.
                let actual = self.bucket_count(&sku).await?;
                relearned = true;
                if actual != buckets {
                    buckets = actual;
                    home = rebucket(order, &mut entry, buckets);
                    continue;
                }
            }
            let ReserveOutcome::SoldOut(seen) = outcome else {
                return Ok((outcome, entry));
            };
            if buckets == 1 {
                return Ok((outcome, entry));
            }
            let quantity = i64::from(order.quantity.get());
            match self.borrow(&sku, home, buckets, quantity, seen).await? {
                Borrowed::Nothing(seen) => return Ok((ReserveOutcome::SoldOut(seen), entry)),
                // Give a transfer under way a moment to land, once; then the units it moves
                // belong to its borrower, and this request is answered `sold_out`.
                Borrowed::InTransit(_) if !waited => {
                    waited = true;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Borrowed::InTransit(seen) => return Ok((ReserveOutcome::SoldOut(seen), entry)),
                Borrowed::Moved if rounds + 1 < BORROW_ROUNDS => rounds += 1,
                Borrowed::Moved => return Err(StockError::Contended(sku)),
            }
        }
    }
}
