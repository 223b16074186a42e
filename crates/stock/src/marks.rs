//! Marks that can wait a little, gathered and made in Redis in one call per SKU.
//!
//! Two marks on an order's reservation only guide the sweeper, so neither is worth a Redis round
//! trip per order:
//! - [`Mark::Acknowledged`]: the gateway answered 202 because the broker has the order's
//!   message; the sweeper waits longer before it publishes the order again (see
//!   `scripts/advance.lua`). Lost, it costs at most an early copy, which the worker writes once.
//! - [`Mark::Finished`]: the worker has written or dead-lettered the order; it leaves the
//!   outbox (`scripts/finish.lua`). Lost, the sweeper publishes the order again: a written order
//!   is found written and finished, a failed one is dead-lettered again and settled once.
//!
//! A mark whose call fails (Redis down) is kept for the next flush; marks are lost only when the
//! process stops, or past [`MAX_RETAINED`] kept ones.
//!
//! A service hands ids to [`Marks`], which makes what gathered every flush interval.

use crate::StockLedger;
use domain::{OrderId, SkuId};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Which mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// The broker has the order's message (the gateway).
    Acknowledged,
    /// The order is written or dead-lettered (the worker).
    Finished,
}

/// The handle orders are handed to.
#[derive(Clone)]
pub struct Marks {
    orders: mpsc::UnboundedSender<OrderId>,
    unmarked: Option<Unmarked>,
}

/// Acknowledged orders handed over and not yet marked: the gateway that has them knows what
/// Redis does not show yet. Only acknowledgements keep it (nothing asks about finished orders).
type Unmarked = Arc<Mutex<HashSet<OrderId>>>;

/// The marking task; [`MarksTask::finish`] makes what is left and ends it.
pub struct MarksTask {
    stop: oneshot::Sender<()>,
    handle: JoinHandle<()>,
}

impl Marks {
    /// Starts the task that makes `mark`, every `flush_every`, on the orders gathered since.
    pub fn start(ledger: StockLedger, mark: Mark, flush_every: Duration) -> (Self, MarksTask) {
        let (orders, queue) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel();
        let unmarked = (mark == Mark::Acknowledged).then(Unmarked::default);
        let handle = tokio::spawn(mark_gathered(
            ledger,
            mark,
            queue,
            stopped,
            flush_every,
            unmarked.clone(),
        ));
        (Self { orders, unmarked }, MarksTask { stop, handle })
    }

    /// Marks `order` within the flush interval.
    pub fn mark(&self, order: OrderId) {
        if let Some(unmarked) = &self.unmarked {
            lock(unmarked).insert(order.clone());
        }
        // Fails only once the task has finished (the service has stopped serving): the mark is
        // advisory, so it is dropped.
        if let Err(unsent) = self.orders.send(order) {
            if let Some(unmarked) = &self.unmarked {
                lock(unmarked).remove(&unsent.0);
            }
        }
    }

    /// Whether the acknowledgement of `order` was handed over here and is not marked yet: its
    /// reservation still reads `reserved` in Redis, but the broker has its message. Always
    /// false for finished marks.
    pub fn is_unmarked(&self, order: &OrderId) -> bool {
        self.unmarked
            .as_ref()
            .is_some_and(|unmarked| lock(unmarked).contains(order))
    }
}

impl MarksTask {
    /// Makes the marks gathered and ends the task (call it once no more orders are handed over).
    /// Gives up after [`FINISH_WITHIN`] (Redis down at shutdown): a service's grace is bounded.
    pub async fn finish(mut self) {
        let _ = self.stop.send(());
        match tokio::time::timeout(FINISH_WITHIN, &mut self.handle).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "the marking task failed"),
            Err(_) => {
                tracing::warn!("the last marks were not made within {FINISH_WITHIN:?}; giving up");
                self.handle.abort();
            }
        }
    }
}

/// How long [`MarksTask::finish`] waits for the last marks.
pub const FINISH_WITHIN: Duration = Duration::from_secs(5);

async fn mark_gathered(
    ledger: StockLedger,
    mark: Mark,
    mut queue: mpsc::UnboundedReceiver<OrderId>,
    mut stopped: oneshot::Receiver<()>,
    flush_every: Duration,
    unmarked: Option<Unmarked>,
) {
    // Orders to mark: the interval's, and those whose mark failed last time.
    let mut gathered: Vec<OrderId> = Vec::new();
    loop {
        let stopping = if gathered.is_empty() {
            tokio::select! {
                order = queue.recv() => match order {
                    Some(order) => {
                        gathered.push(order);
                        // Let the interval's orders arrive, then take them all.
                        tokio::select! {
                            _ = tokio::time::sleep(flush_every) => false,
                            _ = &mut stopped => true,
                        }
                    }
                    None => true,
                },
                _ = &mut stopped => true,
            }
        } else {
            tokio::select! {
                _ = tokio::time::sleep(flush_every) => false,
                _ = &mut stopped => true,
            }
        };
        while let Ok(order) = queue.try_recv() {
            gathered.push(order);
        }
        let mut failed = make(&ledger, mark, &gathered).await;
        if stopping && !failed.is_empty() {
            // One more try: the connection may have been on a runtime that has just stopped.
            let again: Vec<OrderId> = failed.drain().collect();
            failed = make(&ledger, mark, &again).await;
        }
        if failed.len() > MAX_RETAINED {
            tracing::warn!(
                orders = failed.len(),
                ?mark,
                "giving up marks that keep failing"
            );
            failed.clear();
        }
        if let Some(unmarked) = &unmarked {
            // Marked now, given up, or (when stopping) never to be marked by this process.
            let mut unmarked = lock(unmarked);
            for order in &gathered {
                if stopping || !failed.contains(order) {
                    unmarked.remove(order);
                }
            }
        }
        if stopping {
            return;
        }
        gathered = failed.into_iter().collect();
    }
}

/// Most orders kept for the next flush after their mark failed (Redis down): past it they are
/// given up, which only costs the sweeper some work (see the module's docs).
pub const MAX_RETAINED: usize = 100_000;

fn lock(unmarked: &Unmarked) -> std::sync::MutexGuard<'_, HashSet<OrderId>> {
    unmarked.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Makes `mark` on `orders`, one call per SKU; the orders whose call failed.
async fn make(ledger: &StockLedger, mark: Mark, orders: &[OrderId]) -> HashSet<OrderId> {
    let mut by_sku: HashMap<SkuId, Vec<&OrderId>> = HashMap::new();
    for order in orders {
        by_sku.entry(order.sku()).or_default().push(order);
    }
    let mut failed = HashSet::new();
    for (sku, orders) in by_sku {
        let made = match mark {
            Mark::Acknowledged => ledger.mark_all_acknowledged(&sku, &orders).await.map(drop),
            Mark::Finished => ledger.finish(&sku, &orders).await.map(drop),
        };
        if let Err(error) = made {
            // Kept for the next flush; both marks only guide the sweeper (see the module's docs).
            tracing::warn!(%sku, orders = orders.len(), ?mark, %error, "could not mark orders; will retry");
            failed.extend(orders.into_iter().cloned());
        }
    }
    failed
}
