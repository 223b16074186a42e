//! Marks that can wait a little, gathered and made in Redis in one call per SKU.
//!
//! Two marks on an order's reservation only guide the sweeper, so neither is worth a Redis round
//! trip per order:
//! - [`Mark::Acknowledged`]: the gateway answered 202 because the broker has the order's
//!   message; the sweeper waits longer before it publishes the order again (see
//!   `lua/advance.lua`). Lost, it costs at most an early copy, which the worker writes once.
//! - [`Mark::Finished`]: the worker has written or dead-lettered the order; it leaves the
//!   outbox (`lua/finish.lua`). Lost, the sweeper finds the row and finishes it itself.
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
    unmarked: Unmarked,
}

/// Orders handed over and not yet marked: the process that has them knows what Redis does not
/// show yet.
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
        let unmarked = Unmarked::default();
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
        lock(&self.unmarked).insert(order.clone());
        // Fails only once the task has finished (the gateway has stopped serving): the mark is
        // advisory, so it is dropped.
        if self.orders.send(order.clone()).is_err() {
            lock(&self.unmarked).remove(&order);
        }
    }

    /// Whether `order` was handed over here and is not marked yet (for acknowledgements: its
    /// reservation still reads `reserved` in Redis, but the broker has its message).
    pub fn is_unmarked(&self, order: &OrderId) -> bool {
        lock(&self.unmarked).contains(order)
    }
}

impl MarksTask {
    /// Makes the marks gathered and ends the task (call it once no more orders are handed over).
    pub async fn finish(self) {
        let _ = self.stop.send(());
        if let Err(error) = self.handle.await {
            tracing::warn!(%error, "the marking task failed");
        }
    }
}

async fn mark_gathered(
    ledger: StockLedger,
    mark: Mark,
    mut queue: mpsc::UnboundedReceiver<OrderId>,
    mut stopped: oneshot::Receiver<()>,
    flush_every: Duration,
    unmarked: Unmarked,
) {
    let mut gathered: Vec<OrderId> = Vec::new();
    loop {
        let stopping = tokio::select! {
            order = queue.recv() => match order {
                Some(order) => {
                    gathered.push(order);
                    // Let the interval's acknowledgements arrive, then take them all.
                    tokio::select! {
                        _ = tokio::time::sleep(flush_every) => false,
                        _ = &mut stopped => true,
                    }
                }
                None => true,
            },
            _ = &mut stopped => true,
        };
        while let Ok(order) = queue.try_recv() {
            gathered.push(order);
        }
        make(&ledger, mark, &gathered).await;
        {
            let mut unmarked = lock(&unmarked);
            for order in &gathered {
                unmarked.remove(order);
            }
        }
        gathered.clear();
        if stopping {
            return;
        }
    }
}

fn lock(unmarked: &Unmarked) -> std::sync::MutexGuard<'_, HashSet<OrderId>> {
    unmarked.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn make(ledger: &StockLedger, mark: Mark, orders: &[OrderId]) {
    let mut by_sku: HashMap<SkuId, Vec<&OrderId>> = HashMap::new();
    for order in orders {
        by_sku.entry(order.sku()).or_default().push(order);
    }
    for (sku, orders) in by_sku {
        let made = match mark {
            Mark::Acknowledged => ledger.mark_all_acknowledged(&sku, &orders).await.map(drop),
            Mark::Finished => ledger.finish(&sku, &orders).await.map(drop),
        };
        if let Err(error) = made {
            // Both marks only guide the sweeper (see the module's docs).
            tracing::warn!(%sku, orders = orders.len(), ?mark, %error, "could not mark orders");
        }
    }
}
