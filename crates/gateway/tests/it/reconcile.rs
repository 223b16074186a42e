//! Scenario 7 of the fault suite: Redis restarts empty in the middle of a sale. The gateway
//! refuses to sell (neither "sold out" nor "unlimited"), the queued orders still reach the
//! database, and `reconcile` rebuilds Redis from the database so that the sale ends with exactly
//! its stock sold: no oversell, per-user limits and idempotency keys intact.

use super::{assert_problem, selling, sku, start_worker, Running};
use serde_json::json;
use std::time::Duration;
use stock::RestoreOutcome;

/// `make reconcile SKU=<sku>`, in the test's world.
async fn reconcile_sale(
    gw: &Running,
    store: &store::Store,
    sku: &domain::SkuId,
) -> Vec<gateway::reconcile::SaleReport> {
    reconcile_with(gw, store, sku, false).await.unwrap()
}

/// `make reconcile SKU=<sku> [REBUILD=1]`, in the test's world.
async fn reconcile_with(
    gw: &Running,
    store: &store::Store,
    sku: &domain::SkuId,
    rebuild: bool,
) -> anyhow::Result<Vec<gateway::reconcile::SaleReport>> {
    let options = gateway::reconcile::Options {
        skus: vec![sku.clone()],
        drain_timeout: Duration::from_secs(60),
        rebuild,
    };
    gateway::reconcile::reconcile(
        &gw.ctx.ledger(),
        store,
        &gw.ctx.endpoint(),
        &gw.ctx.settings.kafka,
        &options,
    )
    .await
}

/// How many of `buyers` new buyers, one unit each, get a 202; the others are told it is sold out.
async fn late_buyers_accepted(gw: &Running, sku: &domain::SkuId, buyers: usize) -> i64 {
    let mut accepted = 0;
    for i in 0..buyers {
        let answer = gw
            .buy(sku.as_str(), &format!("late{i}"), "k", json!({}))
            .await;
        match answer.0 {
            202 => accepted += 1,
            _ => assert_problem(&answer, 409, "sold_out"),
        }
    }
    accepted
}

/// After a rebuild, the orders of [`buy_four_units`] are still known: a retry of each gets its
/// order back and takes nothing (idempotency keys), and alice, who holds 2 of 2, may not buy
/// more (per-user limits).
async fn keys_and_limits_survived(
    gw: &Running,
    sku: &domain::SkuId,
    orders: &[(&'static str, i64, String)],
) {
    for (user, quantity, order_id) in orders {
        let body = gw
            .accepted(sku, user, "k1", json!({ "quantity": quantity }))
            .await;
        assert_eq!(body["order_id"].as_str(), Some(order_id.as_str()));
    }
    assert_problem(
        &gw.buy(sku.as_str(), "alice", "k2", json!({})).await,
        409,
        "limit_exceeded",
    );
}

/// Waits up to 30 s until the database holds `units` of `sku`.
async fn units_held(gw: &Running, sku: &domain::SkuId, units: i64) -> store::SaleStats {
    let within = Duration::from_secs(30);
    let held = |stats: &store::SaleStats| stats.held_units() == units;
    gw.ctx
        .sale_stats_when(sku, within, "the units held", held)
        .await
}

/// Starts a worker and waits until the database holds `units` of `sku`: the store and the worker.
async fn written_by_a_worker(
    gw: &Running,
    sku: &domain::SkuId,
    units: i64,
) -> (store::Store, testkit::Spawned) {
    let worker = start_worker(&gw.ctx.settings).await;
    units_held(gw, sku, units).await;
    (gw.ctx.store().await, worker)
}

/// Alice buys 2 units, Bob and Carol 1 each, under the key `k1`: (user, quantity, order id).
async fn buy_four_units(gw: &Running, sku: &domain::SkuId) -> Vec<(&'static str, i64, String)> {
    let mut orders = Vec::new();
    for (user, quantity) in [("alice", 2), ("bob", 1), ("carol", 1)] {
        let body = gw
            .accepted(sku, user, "k1", json!({ "quantity": quantity }))
            .await;
        orders.push((
            user,
            quantity,
            body["order_id"].as_str().unwrap().to_owned(),
        ));
    }
    orders
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_lost_a_sale_reconcile_rebuilds_it_from_the_database_without_oversell() {
    const STOCK: i64 = 10;
    let (gw, sku) = selling(STOCK, 2).await;
    // Four units queued before the loss; no worker runs yet, so they are pending in Kafka.
    let first_orders = buy_four_units(&gw, &sku).await;
    // Redis restarts empty: every key of the sale is gone.
    gw.ctx.ledger().forget(&sku).await.unwrap();
    assert_problem(
        &gw.buy(sku.as_str(), "dave", "k1", json!({})).await,
        503,
        "sale_not_ready",
    );
    // Re-saving the sale through the admin API would hand out the four units again: refused.
    let now = chrono::Utc::now();
    let sale = json!({
        "stock": STOCK, "per_user_limit": 2, "free": true,
        "starts_at": now - chrono::Duration::minutes(1),
        "ends_at": now + chrono::Duration::hours(1),
    });
    assert_problem(&gw.put_sale(&sku, &sale).await, 409, "sale_needs_reconcile");
    assert!(gw.ctx.ledger().snapshot(&sku).await.unwrap().is_none());

    // The worker drains the queue; Redis knows none of these orders, the database decides.
    let worker = start_worker(&gw.ctx.settings).await;

    let store = gw.ctx.store().await;
    let reconcile = || reconcile_sale(&gw, &store, &sku);
    let reports = reconcile().await;
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].outcome, RestoreOutcome::Restored(STOCK - 4));
    assert_eq!(reports[0].orders, 3);
    let stats = gw.ctx.sale_stats(&sku).await;
    assert_eq!((stats.held_units(), stats.stock), (4, STOCK - 4));
    let snapshot = gw.ctx.snapshot(&sku).await;
    assert_eq!(snapshot.remaining, STOCK - 4);
    assert_eq!(snapshot.initial, STOCK);
    assert_eq!(snapshot.reserved - snapshot.released, 4);

    keys_and_limits_survived(&gw, &sku, &first_orders).await;
    // Running it again, on a Redis that has the sale, changes nothing.
    assert_eq!(
        reconcile().await[0].outcome,
        RestoreOutcome::AlreadyPresent(STOCK - 4)
    );

    // The rest sells, exactly.
    assert_eq!(late_buyers_accepted(&gw, &sku, 10).await, STOCK - 4);
    let stats = units_held(&gw, &sku, STOCK).await;
    // No oversell, no loss, conservation on both sides.
    assert_eq!(stats.awaiting_payment.orders, 3 + (STOCK - 4));
    assert_eq!(stats.stock, 0);
    assert_eq!(stats.failed.orders, 0);
    let snapshot = gw.ctx.snapshot(&sku).await;
    assert_eq!(snapshot.remaining, 0);
    assert_eq!(snapshot.reserved - snapshot.released, STOCK);
    let rows = store.orders_of(&sku).await.unwrap();
    let distinct: std::collections::HashSet<_> = rows.iter().map(|r| &r.order_id).collect();
    assert_eq!(distinct.len(), rows.len());
    worker.stop().await;
}

/// Redis loses a sale while some of its orders are past their payment window: the expirer gives
/// their units back to the database at once and waits for `reconcile` before it touches Redis,
/// so the rebuilt sale counts every unit once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_that_expire_while_redis_has_lost_their_sale_are_given_back_once_after_reconcile() {
    let gw = Running::start().await;
    let sku = sku();
    let store = gw.ctx.store().await;
    let spec = testkit::open_spec(5, 1)
        .with_payment(domain::PaymentTerms::new(1, None, None, true).unwrap());
    gw.ctx.open_sale_as(&sku, spec).await;
    let orders: Vec<_> = ["ann", "ben", "cat"]
        .iter()
        .map(|user| testkit::order(&sku, user, "k1", 1))
        .collect();
    testkit::written_orders(&gw.ctx.ledger(), &store, &orders).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    gw.ctx.ledger().forget(&sku).await.unwrap();

    let expirer = super::payments::expirer(&gw, &store);
    let report = expirer.expire().await.unwrap();
    assert_eq!(
        (report.expired, report.owed, report.units_returned),
        (3, 3, 0),
        "{report:?}"
    );
    assert!(
        gw.ctx.ledger().snapshot(&sku).await.unwrap().is_none(),
        "the release wrote nothing into the lost sale"
    );
    let report = expirer.expire().await.unwrap();
    assert_eq!(
        (report.expired, report.owed),
        (0, 3),
        "still owed, and the round ends"
    );

    let reports = reconcile_sale(&gw, &store, &sku).await;
    assert_eq!(reports[0].outcome, RestoreOutcome::Restored(5));
    let report = expirer.expire().await.unwrap();
    assert_eq!(
        (report.owed, report.units_returned),
        (0, 0),
        "reconcile wrote them released"
    );
    let redis = gw.ctx.snapshot(&sku).await;
    let stats = gw.ctx.sale_stats(&sku).await;
    assert_eq!(
        (redis.remaining, stats.stock, stats.held_units()),
        (5, 5, 0)
    );
    assert_eq!(redis.reserved - redis.released, 0, "conserved");
    for user in ["ann", "ben", "cat"] {
        let (status, body) = gw.buy(sku.as_str(), user, "k2", json!({})).await;
        assert_eq!(status, 202, "{user} may buy again: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_lost_acknowledged_reservations_a_rebuild_restores_conservation() {
    const STOCK: i64 = 10;
    let (gw, sku) = selling(STOCK, 2).await;
    buy_four_units(&gw, &sku).await;
    let (store, worker) = written_by_a_worker(&gw, &sku, 4).await;

    // The promoted replica never saw bob's and carol's reservations: Redis offers 8 units
    // where the database has 6.
    testkit::set_back_reservations(&gw.ctx.ledger(), &sku, 2).await;
    assert_eq!(gw.remaining(&sku).await, STOCK - 2);
    // Plain reconcile leaves a sale Redis has alone.
    let reports = reconcile_sale(&gw, &store, &sku).await;
    assert_eq!(
        reports[0].outcome,
        RestoreOutcome::AlreadyPresent(STOCK - 2)
    );
    // Rebuilt, Redis agrees with the database again: 6 left, 4 held.
    let reports = reconcile_with(&gw, &store, &sku, true).await.unwrap();
    assert_eq!(reports[0].outcome, RestoreOutcome::Restored(STOCK - 4));
    let snapshot = gw.ctx.snapshot(&sku).await;
    let stats = gw.ctx.sale_stats(&sku).await;
    assert_eq!((snapshot.remaining, stats.stock), (STOCK - 4, STOCK - 4));
    assert_eq!(snapshot.remaining + stats.held_units(), STOCK);
    // It sells its last 6 units, and not one more.
    assert_eq!(late_buyers_accepted(&gw, &sku, 10).await, 6);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucketed_sale_that_lost_one_bucket_is_rebuilt_whole_with_its_buyers_in_their_buckets() {
    let gw = Running::start().await;
    let sku = sku();
    const STOCK: i64 = 12;
    let spec = testkit::open_spec(STOCK, 2).with_buckets(3).unwrap();
    gw.ctx.open_sale_as(&sku, spec).await;
    let first_orders = buy_four_units(&gw, &sku).await;
    let (store, worker) = written_by_a_worker(&gw, &sku, 4).await;

    // One shard loses its data: alice's bucket is gone, the others stay.
    let alice = domain::OrderId::parse(first_orders[0].2.as_str()).unwrap();
    testkit::delete_keys(&gw.ctx.ledger().keys_of(&alice).all()).await;
    assert!(gw.ctx.ledger().snapshot(&sku).await.unwrap().is_none());
    let (status, body) = gw.buy(sku.as_str(), "alice", "k2", json!({})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("sale_not_ready")),
        "alice's bucket is gone: neither sold out nor unlimited"
    );
    // Plain reconcile does not restore over the buckets Redis still has.
    let error = reconcile_with(&gw, &store, &sku, false).await.unwrap_err();
    assert!(
        format!("{error:#}").contains("reconcile --rebuild"),
        "{error:#}"
    );

    // Rebuilt whole from the database: 8 left over three buckets, 4 held.
    let reports = reconcile_with(&gw, &store, &sku, true).await.unwrap();
    assert_eq!(reports[0].outcome, RestoreOutcome::Restored(STOCK - 4));
    let snapshot = gw.ctx.snapshot(&sku).await;
    assert_eq!(
        (snapshot.remaining, snapshot.buckets, snapshot.in_transit),
        (STOCK - 4, 3, 0)
    );
    keys_and_limits_survived(&gw, &sku, &first_orders).await;
    assert_eq!(late_buyers_accepted(&gw, &sku, 20).await, STOCK - 4);
    let stats = units_held(&gw, &sku, STOCK).await;
    assert_eq!((stats.stock, stats.failed.orders), (0, 0));
    worker.stop().await;
}
