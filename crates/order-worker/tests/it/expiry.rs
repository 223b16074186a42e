//! The expirer against the machine's PostgreSQL and Redis: unpaid orders expire and their units
//! go back exactly once, with several expirers, after a crash between the database and Redis,
//! and while payments race the deadline.

use chrono::Utc;
use domain::{OrderRequested, OrderStatus, PaymentOutcome, PaymentTerms, SkuId};
use order_worker::expirer::{Expirer, ExpiryReport};
use order_worker::metrics::WorkerMetrics;
use std::collections::HashMap;
use std::time::Duration;
use stock::{ReleaseMode, ReserveOutcome};
use store::Paid;
use testkit::{order, sku, written_orders, TestContext};

/// A fresh world and its store.
async fn world() -> (TestContext, store::Store) {
    let ctx = TestContext::new().await.unwrap();
    let store = ctx.store().await;
    (ctx, store)
}

/// How long the tests' orders of a second's payment window wait to be due.
const PAST_A_SECOND: Duration = Duration::from_millis(1_100);

/// A sale of `stock` units of `sku`, one per buyer, that gives `window_secs` to pay, and `n` of its
/// orders written (buyer `buyer-<i>`).
async fn written(
    ctx: &TestContext,
    store: &store::Store,
    sku: &SkuId,
    (stock, window_secs): (i64, i64),
    n: usize,
) -> Vec<OrderRequested> {
    let spec = testkit::open_spec(stock, 1)
        .with_payment(PaymentTerms::new(window_secs, Some(100), Some("EUR"), false).unwrap());
    ctx.open_sale_as(sku, spec).await;
    let orders: Vec<_> = (0..n)
        .map(|i| order(sku, &format!("buyer-{i}"), "k-1", 1))
        .collect();
    written_orders(&ctx.ledger(), store, &orders).await;
    orders
}

/// An expirer of the test's world, reporting to `metrics`.
fn expirer_reporting(ctx: &TestContext, store: &store::Store, metrics: WorkerMetrics) -> Expirer {
    Expirer::new(
        ctx.ledger(),
        store.clone(),
        ctx.settings.expiry.clone(),
        metrics,
    )
}

/// An expirer of the test's world, as another replica's would be.
fn expirer(ctx: &TestContext, store: &store::Store) -> Expirer {
    expirer_reporting(ctx, store, WorkerMetrics::new(telemetry::new_registry()))
}

/// The sale as both sides see it: (database stock, expired orders, Redis remaining, Redis
/// released units).
async fn books(ctx: &TestContext, store: &store::Store, sku: &SkuId) -> (i64, i64, i64, i64) {
    let stats = store.sale_stats(sku).await.unwrap().unwrap();
    let redis = ctx.ledger().snapshot(sku).await.unwrap().unwrap();
    (
        stats.stock,
        stats.expired.orders,
        redis.remaining,
        redis.released,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_expirers_at_once_return_each_unpaid_unit_once_and_the_buyers_may_buy_again() {
    let (ctx, store) = world().await;
    let sku = sku();
    let orders = written(&ctx, &store, &sku, (50, 2), 40).await;
    assert_eq!(books(&ctx, &store, &sku).await, (10, 0, 10, 0));
    let metrics = WorkerMetrics::new(telemetry::new_registry());
    let watching = expirer_reporting(&ctx, &store, metrics.clone());
    watching.round().await.unwrap();
    watching.read_gauges().await.unwrap();
    assert_eq!(
        (
            metrics.orders_awaiting_payment.get(),
            metrics.units_awaiting_payment.get()
        ),
        (40, 40),
        "the gauges (this test has its own database)"
    );
    assert_eq!(metrics.orders_expired.get(), 0, "nothing is due yet");
    tokio::time::sleep(Duration::from_millis(2_100)).await;

    let (a, b) = (expirer(&ctx, &store), expirer(&ctx, &store));
    let (first, second) = tokio::join!(a.expire(), b.expire());
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.expired + second.expired, 40, "{first:?} {second:?}");
    assert_eq!(first.units_returned + second.units_returned, 40);
    assert_eq!(books(&ctx, &store, &sku).await, (50, 40, 50, 40));
    for o in &orders {
        let row = store.order(&o.order_id).await.unwrap().unwrap();
        assert_eq!(row.order_status().unwrap(), OrderStatus::Expired);
        assert!(row.units_returned_at.is_some());
    }
    assert_eq!(a.expire().await.unwrap(), ExpiryReport::default());
    watching.read_gauges().await.unwrap();
    assert_eq!(metrics.units_awaiting_payment.get(), 0);
    assert_eq!(metrics.orders_awaiting_payment.get(), 0);
    assert_eq!(books(&ctx, &store, &sku).await, (50, 40, 50, 40));
    // The per-user limit is 1: a buyer whose order expired may buy again.
    let again = order(&sku, "buyer-0", "k-2", 1);
    assert!(matches!(
        testkit::reserve(&ctx.ledger(), &again).await,
        ReserveOutcome::Accepted(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expirer_stopped_between_the_database_and_redis_is_followed_up_once() {
    let (ctx, store) = world().await;
    let sku = sku();
    written(&ctx, &store, &sku, (10, 1), 10).await;
    tokio::time::sleep(PAST_A_SECOND).await;

    // Stopped right after its commit: the database has the units back, Redis does not.
    let expired = store.expire_due(Utc::now(), 500).await.unwrap();
    assert_eq!(expired.len(), 10);
    assert_eq!(books(&ctx, &store, &sku).await, (10, 10, 0, 0));
    // Stopped after Redis answered for three of them, before it recorded that.
    let ledger = ctx.ledger();
    for o in &expired[..3] {
        ledger
            .release(&o.order_id, ReleaseMode::Compensate)
            .await
            .unwrap();
    }
    assert_eq!(books(&ctx, &store, &sku).await, (10, 10, 3, 3));

    let report = expirer(&ctx, &store).expire().await.unwrap();
    assert_eq!(
        (report.expired, report.units_returned),
        (0, 7),
        "{report:?}"
    );
    assert_eq!(books(&ctx, &store, &sku).await, (10, 10, 10, 10));
    let report = expirer(&ctx, &store).expire().await.unwrap();
    assert_eq!(report, ExpiryReport::default());
    assert_eq!(books(&ctx, &store, &sku).await, (10, 10, 10, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_orders_paid_and_expired_at_the_deadline_end_one_way_each_and_conserve_stock() {
    const N: usize = 1000;
    let mut ctx = TestContext::new().await.unwrap();
    // A thousand payments within 600 ms share the pool's five connections with two expirers:
    // on a machine busy with the rest of the suite a payment may wait longer than the default
    // five seconds for one. The test is about where each order ends, not how fast.
    ctx.settings.database.connect_timeout_secs = 60;
    let store = ctx.store().await;
    let sku = sku();
    let orders = written(&ctx, &store, &sku, (N as i64, 2), N).await;
    let pay_by: HashMap<String, chrono::DateTime<Utc>> = store
        .orders_of(&sku)
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.order_id, row.pay_by.unwrap()))
        .collect();
    let deadline = pay_by.values().max().copied().unwrap();

    // Each order's payment comes between 300 ms before and 300 ms after its own deadline, two
    // expirers running rounds all the while.
    let payments = orders.iter().enumerate().map(|(i, o)| {
        let store = store.clone();
        let at = pay_by[o.order_id.as_str()] - chrono::Duration::milliseconds(300)
            + chrono::Duration::microseconds(600 * i as i64);
        async move {
            let wait = (at - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(wait).await;
            let notice = testkit::notice(&format!("pay-{i}"), &o.order_id, 100);
            let paid = store.pay(&notice, Utc::now()).await.unwrap();
            (o.order_id.clone(), paid)
        }
    });
    let expiring = |expirer: Expirer| async move {
        let until = deadline + chrono::Duration::milliseconds(400);
        let mut expired = 0;
        while Utc::now() < until {
            expired += expirer.expire().await.unwrap().expired;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        expired
    };
    let (answers, expired_a, expired_b) = tokio::join!(
        futures::future::join_all(payments),
        expiring(expirer(&ctx, &store)),
        expiring(expirer(&ctx, &store)),
    );
    let last = expirer(&ctx, &store).expire().await.unwrap();

    let mut by_answer: HashMap<PaymentOutcome, usize> = HashMap::new();
    for (order_id, paid) in &answers {
        let Paid::Recorded(outcome) = paid else {
            panic!("{order_id}: {paid:?}");
        };
        *by_answer.entry(*outcome).or_default() += 1;
        let row = store.order(order_id).await.unwrap().unwrap();
        let status = row.order_status().unwrap();
        match outcome {
            PaymentOutcome::Paid => assert_eq!(status, OrderStatus::Paid, "{order_id}"),
            PaymentOutcome::RefundDue(_) => assert_eq!(status, OrderStatus::Expired, "{order_id}"),
        }
    }
    let paid = by_answer.get(&PaymentOutcome::Paid).copied().unwrap_or(0);
    let expired = N - paid;
    assert!(
        paid > 0 && expired > 0,
        "the deadline fell inside the payments: {paid} paid, {expired} expired"
    );
    let stats = store.sale_stats(&sku).await.unwrap().unwrap();
    assert_eq!(
        (
            stats.paid.orders,
            stats.expired.orders,
            stats.awaiting_payment.orders
        ),
        (paid as i64, expired as i64, 0)
    );
    assert_eq!(
        stats.refunds_due, expired as i64,
        "every late payment is a refund due"
    );
    assert_eq!(stats.stock, expired as i64, "database stock conserved");
    let redis = ctx.ledger().snapshot(&sku).await.unwrap().unwrap();
    assert_eq!(
        (redis.remaining, redis.released),
        (expired as i64, expired as i64),
        "Redis stock conserved"
    );
    println!(
        "{paid} paid, {expired} expired (by the expirers: {}, by late payments: {})",
        expired_a + expired_b + last.expired,
        expired - (expired_a + expired_b + last.expired)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_reservation_holds_up_neither_its_batch_nor_the_next_rounds() {
    let (ctx, store) = world().await;
    let sku = sku();
    let orders = written(&ctx, &store, &sku, (5, 1), 4).await;
    testkit::overwrite_reservation(&ctx.ledger(), &orders[0].order_id, "not a record").await;
    tokio::time::sleep(PAST_A_SECOND).await;

    let report = expirer(&ctx, &store).expire().await.unwrap();
    assert_eq!(
        (report.expired, report.units_returned, report.unreadable),
        (4, 3, 1),
        "{report:?}"
    );
    assert_eq!(
        expirer(&ctx, &store).expire().await.unwrap(),
        ExpiryReport::default(),
        "nothing stays owed"
    );
    assert_eq!(books(&ctx, &store, &sku).await, (5, 4, 4, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_owed_to_a_sale_redis_lost_do_not_hold_up_the_other_sales() {
    let mut ctx = TestContext::new().await.unwrap();
    // A batch smaller than what is owed to the lost sale.
    ctx.settings.expiry.batch_max = 2;
    let store = ctx.store().await;
    let ledger = ctx.ledger();
    let name = testkit::unique("exp-");
    // Order ids sort by SKU: the lost sale's orders come first in the follow-up.
    let lost = SkuId::parse(format!("{name}-a")).unwrap();
    let kept = SkuId::parse(format!("{name}-b")).unwrap();
    written(&ctx, &store, &lost, (3, 1), 3).await;
    written(&ctx, &store, &kept, (1, 1), 1).await;
    tokio::time::sleep(PAST_A_SECOND).await;
    // Expired in the database; then Redis loses one sale before the releases.
    assert_eq!(store.expire_due(Utc::now(), 500).await.unwrap().len(), 4);
    ledger.forget(&lost).await.unwrap();

    let report = expirer(&ctx, &store).expire().await.unwrap();
    assert_eq!(
        (report.owed, report.units_returned),
        (3, 1),
        "the kept sale's unit came back past a full batch of owed ones: {report:?}"
    );
    assert_eq!(ledger.snapshot(&kept).await.unwrap().unwrap().remaining, 1);
    assert_eq!(store.unreturned_expiries(10, None).await.unwrap().len(), 3);
}
