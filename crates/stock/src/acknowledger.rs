//! Broker acknowledgements, gathered and marked in Redis in one call per SKU.
//!
//! The gateway answers 202 once the broker has an order's message; marking its reservation
//! acknowledged only tells the sweeper to wait longer before it publishes the order again (see
//! `lua/advance.lua`). A lost mark costs at most an early copy, which the worker writes once, so
//! the gateway does not spend a Redis round trip per order on it: it hands the id to the
//! [`Acknowledger`], which marks what gathered every flush interval.

use crate::StockLedger;
use domain::{OrderId, SkuId};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// The handle the request handlers send acknowledged orders to.
#[derive(Clone)]
pub struct Acknowledger {
    orders: mpsc::UnboundedSender<OrderId>,
    unmarked: Unmarked,
}

/// Orders handed over and not yet marked: the gateway that has them knows they are
/// acknowledged although Redis does not show it yet.
type Unmarked = Arc<Mutex<HashSet<OrderId>>>;

/// The marking task; [`AcknowledgerTask::finish`] marks what is left and ends it.
pub struct AcknowledgerTask {
    stop: oneshot::Sender<()>,
    handle: JoinHandle<()>,
}

impl Acknowledger {
    /// Starts the task that marks, every `flush_every`, the orders gathered since the last mark.
    pub fn start(ledger: StockLedger, flush_every: Duration) -> (Self, AcknowledgerTask) {
        let (orders, queue) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel();
        let unmarked = Unmarked::default();
        let handle = tokio::spawn(mark_gathered(
            ledger,
            queue,
            stopped,
            flush_every,
            unmarked.clone(),
        ));
        (Self { orders, unmarked }, AcknowledgerTask { stop, handle })
    }

    /// The broker has `order`'s message.
    pub fn acknowledged(&self, order: OrderId) {
        lock(&self.unmarked).insert(order.clone());
        // Fails only once the task has finished (the gateway has stopped serving): the mark is
        // advisory, so it is dropped.
        if self.orders.send(order.clone()).is_err() {
            lock(&self.unmarked).remove(&order);
        }
    }

    /// Whether `order` was handed to this acknowledger and is not marked yet: its reservation
    /// still reads `reserved` in Redis, but the broker has its message.
    pub fn is_unmarked(&self, order: &OrderId) -> bool {
        lock(&self.unmarked).contains(order)
    }
}

impl AcknowledgerTask {
    /// Marks what was gathered and ends the task (call it once no more requests are served).
    pub async fn finish(self) {
        let _ = self.stop.send(());
        if let Err(error) = self.handle.await {
            tracing::warn!(%error, "the acknowledger task failed");
        }
    }
}

async fn mark_gathered(
    ledger: StockLedger,
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
        mark(&ledger, &gathered).await;
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

async fn mark(ledger: &StockLedger, orders: &[OrderId]) {
    let mut by_sku: HashMap<SkuId, Vec<&OrderId>> = HashMap::new();
    for order in orders {
        by_sku.entry(order.sku()).or_default().push(order);
    }
    for (sku, orders) in by_sku {
        if let Err(error) = ledger.mark_all_acknowledged(&sku, &orders).await {
            // The orders are in the queue; the worker's claim supersedes the mark.
            tracing::warn!(%sku, orders = orders.len(), %error, "could not mark orders acknowledged");
        }
    }
}
