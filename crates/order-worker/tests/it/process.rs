//! The worker as a separate process, stopped the two ways Kubernetes stops things: SIGTERM
//! (graceful: finish the batch, commit, leave the group, exit 0 within the grace period) and
//! SIGKILL (nothing cleaned up: the next worker must redo the uncommitted work exactly once).

use super::{assert_invariants, queued_orders};
use domain::SkuId;
use std::time::Duration;
use testkit::process::ServiceProcess;
use testkit::{eventually, TestContext};

/// The worker binary, as a process of its own, on the test's settings.
fn start_worker(ctx: &TestContext) -> ServiceProcess {
    ServiceProcess::start(
        env!("CARGO_BIN_EXE_seckill-order-worker"),
        &[],
        &ctx.settings,
    )
}

/// The shutdown grace period of the test's settings.
fn grace(ctx: &TestContext) -> Duration {
    Duration::from_secs(ctx.settings.shutdown.grace_secs)
}

/// Orders of `sku` written, awaiting payment.
async fn confirmed(ctx: &TestContext, sku: &SkuId) -> i64 {
    ctx.store()
        .await
        .sale_stats(sku)
        .await
        .unwrap()
        .map(|s| s.awaiting_payment.orders)
        .unwrap_or(0)
}

/// Waits until the worker has written its first row of `sku`.
async fn writing(ctx: &TestContext, sku: &SkuId) {
    eventually(
        Duration::from_secs(60),
        "the worker to start writing",
        || async { (confirmed(ctx, sku).await > 0).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_batch_commits_and_exits_cleanly_within_the_grace_period() {
    const N: i64 = 300;
    let (ctx, sku) = TestContext::with_sale(N, 1).await;
    queued_orders(&ctx, &sku, N as usize).await;
    let mut worker = start_worker(&ctx);
    writing(&ctx, &sku).await;
    // The process exits 1 by itself when its grace period is over, so exit 0 means "in time".
    let status = worker.terminate(grace(&ctx));
    assert!(status.success(), "exit status {status}");
    // Whatever it wrote, it committed: the lag is exactly what it did not write.
    let (written, lag) = (confirmed(&ctx, &sku).await, ctx.worker_lag().await);
    assert_eq!(written + lag, N, "written {written}, lag {lag}");
    // A new worker finishes the rest.
    let mut next = start_worker(&ctx);
    eventually(Duration::from_secs(60), "all orders written", || async {
        (confirmed(&ctx, &sku).await == N).then_some(())
    })
    .await;
    assert!(next.terminate(grace(&ctx)).success());
    let stats = ctx.sale_stats(&sku).await;
    assert_eq!((stats.held_units(), stats.stock), (N, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_batch_is_replaced_and_nothing_is_lost_or_doubled() {
    let mut ctx = TestContext::new().await.unwrap();
    ctx.settings.worker.batch_max = 50;
    let sku = testkit::sku();
    const N: i64 = 600;
    ctx.open_sale(&sku, N, 1).await;
    let orders = queued_orders(&ctx, &sku, N as usize).await;
    let mut doomed = start_worker(&ctx);
    writing(&ctx, &sku).await;
    doomed.signal("-KILL");
    doomed.wait_exit(Duration::from_secs(5));
    let at_kill = confirmed(&ctx, &sku).await;
    let mut successor = start_worker(&ctx);
    eventually(
        Duration::from_secs(90),
        "the successor to finish",
        || async { (confirmed(&ctx, &sku).await == N).then_some(()) },
    )
    .await;
    assert!(successor.terminate(grace(&ctx)).success());
    // Shown if an invariant fails.
    println!("killed after {at_kill} rows");
    assert_invariants(&ctx, &sku, N, &orders).await;
    assert_eq!(ctx.worker_lag().await, 0);
}

/// Scenario 2: two workers share the group (cooperative-sticky assignment); the first one is
/// SIGKILLed in the middle of a batch (held there by a row lock on one sale) right after the
/// second has joined, so the group rebalances twice around a crash. Every
/// partition's orders end up written exactly once: none skipped, none written twice, the stock
/// taken once per order on both sides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_crashing_while_a_second_joins_the_group_loses_and_doubles_nothing() {
    let mut ctx = TestContext::new().await.unwrap();
    ctx.settings.worker.batch_max = 25;
    const SKUS: usize = 6;
    const PER_SKU: i64 = 150;
    let mut sales = Vec::new();
    for _ in 0..SKUS {
        let sku = testkit::sku();
        ctx.open_sale(&sku, PER_SKU, 1).await;
        let orders = queued_orders(&ctx, &sku, PER_SKU as usize).await;
        sales.push((sku, orders));
    }
    let total = || async {
        let mut sum = 0;
        for (sku, _) in &sales {
            sum += confirmed(&ctx, sku).await;
        }
        sum
    };
    let mut first = start_worker(&ctx);
    // Writing one sale is writing: any of them may come first.
    eventually(
        Duration::from_secs(60),
        "the first worker writing",
        || async { (total().await > 0).then_some(()) },
    )
    .await;
    let mut second = start_worker(&ctx);
    // The second has joined (its ops port answers) and the group is rebalancing: crash the first.
    first.signal("-KILL");
    first.wait_exit(Duration::from_secs(5));
    let at_crash = total().await;
    // Done means written and committed: a partition the crashed worker wrote but did not commit
    // is redelivered to the survivor once the group hands it over.
    eventually(
        Duration::from_secs(120),
        "the survivor to finish and commit every partition",
        || async {
            (total().await == SKUS as i64 * PER_SKU && ctx.worker_lag().await == 0).then_some(())
        },
    )
    .await;
    assert!(second.terminate(grace(&ctx)).success());

    // Shown if an invariant fails.
    println!("crashed after {at_crash} rows");
    for (sku, orders) in &sales {
        assert_invariants(&ctx, sku, PER_SKU, orders).await;
    }
}
