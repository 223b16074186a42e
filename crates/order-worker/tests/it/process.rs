//! The worker as a separate process, stopped the two ways Kubernetes stops things: SIGTERM
//! (graceful: finish the batch, commit, leave the group, exit 0 within the grace period) and
//! SIGKILL (nothing cleaned up: the next worker must redo the uncommitted work exactly once).

use domain::{OrderRequested, SkuId};
use std::time::Duration;
use stock::ReserveOutcome;
use testkit::process::ServiceProcess;
use testkit::{eventually, order, TestContext};

fn start_worker(ctx: &TestContext) -> ServiceProcess {
    ServiceProcess::start(
        env!("CARGO_BIN_EXE_seckill-order-worker"),
        &[],
        &ctx.settings,
    )
}

fn grace(ctx: &TestContext) -> Duration {
    Duration::from_secs(ctx.settings.shutdown.grace_secs)
}

/// Reserves and queues `n` orders of one unit from distinct buyers.
async fn queue(ctx: &TestContext, sku: &SkuId, n: usize) -> Vec<OrderRequested> {
    let ledger = ctx.ledger();
    let producer = kafka::producer(&ctx.endpoint()).unwrap();
    let mut orders = Vec::with_capacity(n);
    let mut sends = Vec::with_capacity(n);
    for i in 0..n {
        let o = order(sku, &format!("buyer-{i}"), "k", 1);
        assert!(matches!(
            testkit::reserve(&ledger, &o).await,
            ReserveOutcome::Accepted(_)
        ));
        let payload = o.encode();
        let topic = ctx.settings.kafka.orders_topic.clone();
        let producer = producer.clone();
        let key = sku.to_string();
        sends.push(async move {
            producer
                .send(
                    kafka::rdkafka::producer::FutureRecord::to(&topic)
                        .key(&key)
                        .payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        });
        orders.push(o);
    }
    for result in futures::future::join_all(sends).await {
        result.unwrap();
    }
    orders
}

async fn confirmed(ctx: &TestContext, sku: &SkuId) -> i64 {
    ctx.store()
        .await
        .sale_stats(sku)
        .await
        .unwrap()
        .map(|s| s.awaiting_payment.orders)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_batch_commits_and_exits_cleanly_within_the_grace_period() {
    let ctx = TestContext::new().await.unwrap();
    let sku = SkuId::parse(testkit::unique("sku-")).unwrap();
    const N: i64 = 300;
    ctx.open_sale(&sku, N, 1).await;
    queue(&ctx, &sku, N as usize).await;
    let mut worker = start_worker(&ctx);
    eventually(
        Duration::from_secs(60),
        "the worker to start writing",
        || async { (confirmed(&ctx, &sku).await > 0).then_some(()) },
    )
    .await;
    // The process exits 1 by itself when its grace period is over, so exit 0 means "in time".
    let status = worker.terminate(grace(&ctx));
    assert!(status.success(), "exit status {status}");
    // Whatever it wrote, it committed: the lag is exactly what it did not write.
    let written = confirmed(&ctx, &sku).await;
    let lag = testkit::group_lag(
        &ctx.endpoint(),
        &ctx.settings.kafka.worker_group,
        &ctx.settings.kafka.orders_topic,
    )
    .await;
    assert_eq!(written + lag, N, "written {written}, lag {lag}");
    // A new worker finishes the rest.
    let mut next = start_worker(&ctx);
    eventually(Duration::from_secs(60), "all orders written", || async {
        (confirmed(&ctx, &sku).await == N).then_some(())
    })
    .await;
    assert!(next.terminate(grace(&ctx)).success());
    let stats = ctx.store().await.sale_stats(&sku).await.unwrap().unwrap();
    assert_eq!((stats.held_units(), stats.stock), (N, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_batch_is_replaced_and_nothing_is_lost_or_doubled() {
    let mut ctx = TestContext::new().await.unwrap();
    ctx.settings.worker.batch_max = 50;
    let sku = SkuId::parse(testkit::unique("sku-")).unwrap();
    const N: i64 = 600;
    ctx.open_sale(&sku, N, 1).await;
    let orders = queue(&ctx, &sku, N as usize).await;
    let mut doomed = start_worker(&ctx);
    eventually(
        Duration::from_secs(60),
        "the worker to be mid-way",
        || async { (confirmed(&ctx, &sku).await > 0).then_some(()) },
    )
    .await;
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
    let store = ctx.store().await;
    let stats = store.sale_stats(&sku).await.unwrap().unwrap();
    // No oversell, no duplicate, no loss, stock conserved on both sides.
    assert_eq!(
        stats.awaiting_payment.orders, N,
        "killed after {at_kill} rows"
    );
    assert_eq!(stats.held_units(), N);
    assert_eq!(stats.stock, 0);
    assert_eq!(stats.failed.orders, 0);
    let rows = store.orders_of(&sku).await.unwrap();
    let ids: std::collections::HashSet<_> = rows.iter().map(|r| r.order_id.as_str()).collect();
    assert!(
        orders.iter().all(|o| ids.contains(o.order_id.as_str())),
        "an order is missing"
    );
    let snapshot = ctx.ledger().snapshot(&sku).await.unwrap().unwrap();
    assert_eq!(snapshot.remaining + stats.held_units(), N);
    assert_eq!(snapshot.reserved - snapshot.released, stats.held_units());
    let lag = testkit::group_lag(
        &ctx.endpoint(),
        &ctx.settings.kafka.worker_group,
        &ctx.settings.kafka.orders_topic,
    )
    .await;
    assert_eq!(lag, 0);
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
    let skus: Vec<SkuId> = (0..SKUS)
        .map(|_| SkuId::parse(testkit::unique("sku-")).unwrap())
        .collect();
    let mut orders = Vec::new();
    for sku in &skus {
        ctx.open_sale(sku, PER_SKU, 1).await;
        orders.extend(queue(&ctx, sku, PER_SKU as usize).await);
    }
    let total = || async {
        let mut sum = 0;
        for sku in &skus {
            sum += confirmed(&ctx, sku).await;
        }
        sum
    };
    let mut first = start_worker(&ctx);
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
    let endpoint = ctx.endpoint();
    let lag = || {
        testkit::group_lag(
            &endpoint,
            &ctx.settings.kafka.worker_group,
            &ctx.settings.kafka.orders_topic,
        )
    };
    eventually(
        Duration::from_secs(120),
        "the survivor to finish and commit every partition",
        || async { (total().await == SKUS as i64 * PER_SKU && lag().await == 0).then_some(()) },
    )
    .await;
    assert!(second.terminate(grace(&ctx)).success());

    let store = ctx.store().await;
    let ledger = ctx.ledger();
    let mut written = std::collections::HashSet::new();
    for sku in &skus {
        let stats = store.sale_stats(sku).await.unwrap().unwrap();
        assert_eq!(
            (
                stats.awaiting_payment.orders,
                stats.held_units(),
                stats.stock,
                stats.failed.orders
            ),
            (PER_SKU, PER_SKU, 0, 0),
            "{sku} (crash after {at_crash} rows)"
        );
        let snapshot = ledger.snapshot(sku).await.unwrap().unwrap();
        assert_eq!(snapshot.remaining, 0);
        assert_eq!(snapshot.reserved - snapshot.released, stats.held_units());
        for row in store.orders_of(sku).await.unwrap() {
            assert!(written.insert(row.order_id), "an order was written twice");
        }
    }
    assert!(orders.iter().all(|o| written.contains(o.order_id.as_str())));
    assert_eq!(written.len(), orders.len());
}
