//! Work a service runs on a timer beside its consumer loop: the lag gauges of every consumer,
//! the order worker's reservation sweeper, expirer and gauges.

use futures::future::BoxFuture;
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

type Tick = Box<dyn FnMut() -> BoxFuture<'static, anyhow::Result<()>> + Send>;

/// A named task run every `period` until shutdown. A failed tick is logged and the next one
/// runs on time: a periodic task must be safe to repeat. When shutdown comes during a tick, the
/// tick is dropped at its next await point, so a tick must leave nothing half-done that the
/// next tick (here or on another replica) cannot finish.
pub struct Periodic {
    name: &'static str,
    period: Duration,
    tick: Tick,
}

impl Periodic {
    /// Runs `tick` first at start, then every `period`.
    pub fn new<F, Fut>(name: &'static str, period: Duration, mut tick: F) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Self {
            name,
            period,
            tick: Box::new(move || Box::pin(tick())),
        }
    }

    /// Runs `round` on a clone of `task` first at start, then every `period`: for a task that is
    /// a cheap handle (a sweeper, an expirer) with one async method per round.
    pub fn of<T, F, Fut>(name: &'static str, period: Duration, task: T, round: F) -> Self
    where
        T: Clone + Send + 'static,
        F: Fn(T) -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Self::new(name, period, move || round(task.clone()))
    }

    /// Ticks until `shutdown`.
    pub(crate) async fn run(mut self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                result = (self.tick)() => if let Err(error) = result {
                    tracing::warn!(task = self.name, error = %format!("{error:#}"), "periodic task failed");
                },
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.period) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_periodic_task_ticks_on_time_survives_a_failed_tick_and_stops_on_shutdown() {
        let ticks = Arc::new(AtomicU32::new(0));
        let counted = ticks.clone();
        let task = Periodic::new("test", Duration::from_secs(5), move || {
            let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                anyhow::ensure!(n != 2, "the second tick fails");
                Ok(())
            }
        });
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(task.run(shutdown.clone()));
        tokio::time::sleep(Duration::from_secs(12)).await;
        assert_eq!(
            ticks.load(Ordering::SeqCst),
            3,
            "ticks at 0 s, 5 s and 10 s"
        );
        shutdown.cancel();
        running.await.unwrap();
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(ticks.load(Ordering::SeqCst), 3, "no tick after shutdown");
    }
}
