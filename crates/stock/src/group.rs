//! Group reservation: the reservations of concurrent buyers of one bucket of one SKU, sent in
//! one call of `reserve.lua` instead of one call each.
//!
//! One Redis core runs one script at a time, and a call's fixed cost (the command, the script's
//! setup, the sale's hash read, the reply) is most of what a reservation costs. Each bucket has
//! a lane: a buyer who finds it idle is sent at once, alone, and waits for nobody; buyers who
//! arrive while a call is in flight wait in the lane, and the next call takes them all (at most
//! [`GROUP_MAX`]). The script judges the members one after the other in one atomic step, so each
//! gets exactly its own answer and every per-buyer rule (the idempotency key, the per-user
//! limit, sold out in the middle of a group) is as exact as with one call each.
//!
//! The calls of a lane are made by a task of their own, so a buyer who goes away (a dropped
//! request) stops no one else's call. A call that fails answers every member with the error
//! (nothing of it applied past the order a record error stopped at, see `reserve.lua`); a
//! gateway killed mid-call leaves reservations whose messages the sweeper publishes, as it
//! always did.

use crate::scripts::reserve::{Member, Reply, Reserve};
use crate::{OutboxEntry, ReserveOutcome, StockError, StockLedger};
use domain::{OrderRequested, SkuId};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::oneshot;

/// The most orders one call takes.
pub const GROUP_MAX: usize = 128;

/// What a member is answered.
type Answer = Result<Reply, StockError>;

/// The buyers waiting for a bucket's next call, and whether a call is being made.
#[derive(Default)]
struct Lane {
    busy: bool,
    waiting: VecDeque<(Member, oneshot::Sender<Answer>)>,
}

/// A lane: the SKU, the bucket, and the number of buckets its members believe the sale has
/// (members of one call share it, as the script answers `buckets` for the whole group).
type LaneKey = (SkuId, u8, u8);

/// The lanes of one ledger (its clones share them), and what their calls carried.
#[derive(Default)]
pub(crate) struct Lanes {
    lanes: Mutex<HashMap<LaneKey, Arc<Mutex<Lane>>>>,
    /// Calls of `reserve.lua` made.
    calls: AtomicU64,
    /// Orders those calls carried.
    orders: AtomicU64,
}

impl Lanes {
    fn lane(&self, key: LaneKey) -> Arc<Mutex<Lane>> {
        let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        lanes.entry(key).or_default().clone()
    }
}

impl StockLedger {
    /// The calls of `reserve.lua` this ledger made, and the orders they carried: their ratio is
    /// the mean group's size.
    pub fn reserve_calls(&self) -> (u64, u64) {
        let calls = self.groups.calls.load(Ordering::Relaxed);
        (calls, self.groups.orders.load(Ordering::Relaxed))
    }

    /// Reserves `orders` (each with whether its buyer holds an admission ticket) of a sale of
    /// one bucket in one call of `reserve.lua`, each answered on its own, in order: what a lane
    /// does with the buyers who wait for it, made by hand (tests, tools). Each order's message is
    /// kept in the outbox without a trace context.
    pub async fn reserve_together(
        &self,
        orders: &[(OrderRequested, bool)],
    ) -> Result<Vec<ReserveOutcome>, StockError> {
        let Some((first, _)) = orders.first() else {
            return Ok(Vec::new());
        };
        let members: Vec<Member> = orders
            .iter()
            .map(|(order, admitted)| Member {
                entry: OutboxEntry::new(order, None),
                order: order.clone(),
                admitted: *admitted,
            })
            .collect();
        let call = Reserve {
            members: &members,
            buckets: 1,
        };
        let keys = self.bucket_keys(&first.sku_id, 0);
        self.run(&keys, &call)
            .await?
            .into_iter()
            .map(|reply| match reply {
                Reply::Outcome(outcome) => Ok(outcome),
                Reply::Buckets(n) => Err(StockError::Reply {
                    script: "reserve",
                    reply: format!("buckets {n}: reserve_together takes sales of one bucket"),
                }),
            })
            .collect()
    }

    /// `reserve.lua`'s answer to `order` (with its message `entry`) in bucket `home` of a sale
    /// of `buckets`, sent in the next call of the bucket's lane.
    pub(crate) async fn reserve_in_group(
        &self,
        sku: &SkuId,
        home: u8,
        buckets: u8,
        order: &OrderRequested,
        entry: &OutboxEntry,
        admitted: bool,
    ) -> Answer {
        let lane = self.groups.lane((sku.clone(), home, buckets));
        let (reply, answer) = oneshot::channel();
        let member = Member {
            order: order.clone(),
            entry: entry.clone(),
            admitted,
        };
        let start = {
            let mut waiting = lane.lock().unwrap_or_else(PoisonError::into_inner);
            waiting.waiting.push_back((member, reply));
            !std::mem::replace(&mut waiting.busy, true)
        };
        if start {
            let (ledger, sku) = (self.clone(), sku.clone());
            tokio::spawn(async move { ledger.drive(lane, &sku, home, buckets).await });
        }
        answer.await.unwrap_or_else(|_| {
            Err(StockError::Reply {
                script: "reserve",
                reply: "the group's call was dropped".into(),
            })
        })
    }

    /// Makes the lane's calls until nobody waits.
    async fn drive(&self, lane: Arc<Mutex<Lane>>, sku: &SkuId, home: u8, buckets: u8) {
        let keys = self.bucket_keys(sku, home);
        loop {
            let group: Vec<_> = {
                let mut waiting = lane.lock().unwrap_or_else(PoisonError::into_inner);
                if waiting.waiting.is_empty() {
                    waiting.busy = false;
                    return;
                }
                let n = waiting.waiting.len().min(GROUP_MAX);
                waiting.waiting.drain(..n).collect()
            };
            let (members, replies): (Vec<Member>, Vec<_>) = group.into_iter().unzip();
            let call = Reserve {
                members: &members,
                buckets,
            };
            self.groups.calls.fetch_add(1, Ordering::Relaxed);
            let orders = members.len() as u64;
            self.groups.orders.fetch_add(orders, Ordering::Relaxed);
            match self.run(&keys, &call).await {
                Ok(answers) => {
                    // The sale's `buckets` answer is the whole group's; else one per member.
                    let whole = match answers.as_slice() {
                        [Reply::Buckets(n)] => Some(Reply::Buckets(*n)),
                        _ if answers.len() == replies.len() => None,
                        _ => {
                            let wrong =
                                format!("{} replies to {} orders", answers.len(), replies.len());
                            for reply in replies {
                                let _ = reply.send(Err(StockError::Reply {
                                    script: "reserve",
                                    reply: wrong.clone(),
                                }));
                            }
                            continue;
                        }
                    };
                    match whole {
                        Some(whole) => {
                            for reply in replies {
                                let _ = reply.send(Ok(whole.clone()));
                            }
                        }
                        None => {
                            for (reply, answer) in replies.into_iter().zip(answers) {
                                let _ = reply.send(Ok(answer));
                            }
                        }
                    }
                }
                // A group of one gets its own error as it is.
                Err(error) if replies.len() == 1 => {
                    if let Some(reply) = replies.into_iter().next() {
                        let _ = reply.send(Err(error));
                    }
                }
                Err(error) => {
                    let error = Arc::new(error);
                    for reply in replies {
                        let _ = reply.send(Err(StockError::InGroup(error.clone())));
                    }
                }
            }
        }
    }
}
