//! The whole pipeline with its stock ledger on a Redis Cluster of the test's own (three
//! primaries, three replicas), chosen by configuration only.

use super::test_sale;
use flash_sim::crowd::{self, CrowdResult};
use flash_sim::verdict::{Evidence, Verdict};
use flash_sim::Scenario;
use settings::secrecy::{ExposeSecret, SecretString};
use settings::{RedisMode, Settings};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use testkit::redis_cluster::TestCluster;
use testkit::TestContext;

/// The test's settings with the ledger on `cluster`, for a stack of its own.
fn on_cluster(ctx: &TestContext, cluster: &TestCluster) -> Settings {
    let mut settings = super::stack_settings(ctx);
    settings.redis.mode = RedisMode::Cluster;
    settings.redis.url = SecretString::from(cluster.url());
    settings
}

/// A stack of the test's own with its ledger on `cluster`, and its settings.
async fn stack_on(
    ctx: &TestContext,
    cluster: &TestCluster,
) -> (Settings, flash_sim::stack::LocalStack) {
    let settings = on_cluster(ctx, cluster);
    let stack = flash_sim::stack::LocalStack::start(settings.clone())
        .await
        .unwrap();
    (settings, stack)
}

/// Waits until every order the `crowds` were told was accepted for `sku` is a row (written or
/// failed), then judges the sale: the accepted order ids and the verdict.
async fn settle_and_judge(
    store: &store::Store,
    ledger: &stock::StockLedger,
    sku: &domain::SkuId,
    crowds: &[&CrowdResult],
    per_user_limit: i64,
) -> (HashSet<String>, Verdict) {
    let accepted: HashSet<String> = crowds
        .iter()
        .flat_map(|crowd| &crowd.answers)
        .filter(|a| a.status == 202)
        .filter_map(|a| a.order_id.clone())
        .collect();
    testkit::eventually(Duration::from_secs(90), "every 202 to be a row", || async {
        let rows = store.orders_of(sku).await.unwrap();
        let settled: HashSet<&str> = rows
            .iter()
            .filter(|r| r.order_status().unwrap() != domain::OrderStatus::Pending)
            .map(|r| r.order_id.as_str())
            .collect();
        accepted
            .iter()
            .all(|id| settled.contains(id.as_str()))
            .then_some(())
    })
    .await;
    let verdict = flash_sim::verdict::judge(Evidence {
        crowds,
        payments: Default::default(),
        sku,
        per_user_limit,
        store,
        ledger,
        orders_lag: 0,
        dlq_lag: 0,
        drain_secs: 0.0,
    })
    .await
    .unwrap();
    (accepted, verdict)
}

/// Puts a fresh sale (`prefix` and a unique suffix) of `stock` units on sale on `stack`, open for
/// an hour with 15 minutes to pay: its SKU, a ledger on the cluster, and the port of the primary
/// that serves it.
async fn sale_on(
    stack: &flash_sim::stack::LocalStack,
    cluster: &TestCluster,
    settings: &Settings,
    prefix: &str,
    stock: i64,
    per_user_limit: i64,
) -> (domain::SkuId, stock::StockLedger, u16) {
    let sku = domain::SkuId::parse(testkit::unique(prefix)).unwrap();
    let scenario = Scenario {
        stock,
        per_user_limit,
        payment_window_secs: 900,
        ..Scenario::default()
    };
    let secret = settings.auth.jwt_secret.expose_secret().as_bytes().to_vec();
    flash_sim::create_sale(&stack.admin_url(), &secret, &sku, &scenario)
        .await
        .unwrap();
    let ledger = stock::StockLedger::new(&settings.redis).unwrap();
    let primary = cluster.primary_of(&ledger.keys(&sku).stock);
    (sku, ledger, primary)
}

/// Runs the demo with `scenario` on `settings` and checks its verdict with real numbers: every
/// unit held (paid or awaiting payment), expired units sold again, every late payment refused,
/// and every invariant.
async fn demo_holds(settings: Settings, scenario: &Scenario) {
    let verdict = flash_sim::demo(settings, scenario).await.unwrap();
    println!("{}", verdict.render());
    let render = verdict.render();
    assert_eq!(
        verdict.paid.units + verdict.awaiting_payment.units,
        scenario.stock,
        "{render}"
    );
    assert!(verdict.expired.units > 0, "{render}");
    assert_eq!(verdict.resold_units, verdict.expired.units, "{render}");
    assert_eq!(
        verdict.payments.late_refused, scenario.late_payers,
        "{render}"
    );
    assert_eq!(verdict.oversold, 0, "{render}");
    assert_eq!(verdict.paid_twice, 0, "{render}");
    assert_eq!(verdict.duplicates, 0, "{render}");
    assert_eq!(verdict.lost, 0, "{render}");
    assert_eq!(verdict.conservation_gap, 0, "{render}");
    assert_eq!(verdict.bad_input_violations, 0, "{render}");
    assert!(verdict.holds(), "{render}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flash_sale_on_a_redis_cluster_sells_exactly_its_stock_and_loses_nothing() {
    let cluster = TestCluster::start();
    let ctx = TestContext::new().await.unwrap();
    let settings = on_cluster(&ctx, &cluster);
    let scenario = Scenario {
        late_payers: 5,
        latecomers: 60,
        ..test_sale(40, 200, 500, 11)
    };
    demo_holds(settings, &scenario).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_sku_in_twelve_buckets_spreads_over_the_primaries_and_keeps_every_invariant() {
    let cluster = TestCluster::start();
    let ctx = TestContext::new().await.unwrap();
    let settings = on_cluster(&ctx, &cluster);
    let before: BTreeMap<u16, u64> = cluster
        .primaries()
        .into_iter()
        .map(|port| (port, cluster.script_calls(port)))
        .collect();
    let scenario = Scenario {
        late_payers: 5,
        latecomers: 80,
        buckets: 12,
        ..test_sale(60, 300, 700, 12)
    };
    demo_holds(settings, &scenario).await;

    // One SKU, and yet its scripts ran on more than one primary.
    let store = store::Store::connect(&ctx.settings.database).await.unwrap();
    let sales = store.sales().await.unwrap();
    assert_eq!(sales.len(), 1, "the demo's sale alone");
    let sku = domain::SkuId::parse(sales[0].sku_id.as_str()).unwrap();
    let ledger = stock::StockLedger::new(&on_cluster(&ctx, &cluster).redis).unwrap();
    let hosts: HashSet<u16> = (0..12)
        .map(|bucket| cluster.primary_of(&ledger.bucket_keys(&sku, bucket).stock))
        .collect();
    let calls: BTreeMap<u16, u64> = before
        .iter()
        .map(|(&port, &then)| (port, cluster.script_calls(port) - then))
        .collect();
    let total: u64 = calls.values().sum();
    println!("script calls per primary: {calls:?}; primaries with buckets: {hosts:?}");
    assert!(hosts.len() >= 2, "twelve buckets on one primary: {hosts:?}");
    assert!(total > 700, "{calls:?}");
    // Every primary that holds a bucket ran some of them, and no other did.
    let busy: HashSet<u16> = calls
        .iter()
        .filter(|(_, &count)| count > 0)
        .map(|(&port, _)| port)
        .collect();
    assert_eq!(busy, hosts, "{calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_mid_sale_leaves_no_oversell_no_duplicate_and_every_202_a_row() {
    let mut cluster = TestCluster::start();
    let ctx = TestContext::new().await.unwrap();
    let (settings, stack) = stack_on(&ctx, &cluster).await;
    let secret = ctx.secret();
    let (sku, ledger, primary) = sale_on(&stack, &cluster, &settings, "fo-", 2_000, 2).await;
    // The kill is not meant to lose the sale itself, only what the crowd writes around it.
    cluster.wait_replicated();

    // A crowd buys while the sale's primary is killed under it.
    let target = crowd::Target {
        base_url: stack.gateway_url(),
        sku: sku.to_string(),
        secret,
        concurrency: 16,
    };
    let buying =
        tokio::spawn(async move { crowd::run(&target, crowd::plan(1_500, 4_000, 5), false).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    cluster.kill(primary);
    let crowd = buying.await.unwrap();
    cluster.rejoin_after_failover(primary);

    let store = store::Store::connect(&settings.database).await.unwrap();
    let (accepted, verdict) = settle_and_judge(&store, &ledger, &sku, &[&crowd], 2).await;
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    for answer in &crowd.answers {
        let code = answer.code.clone().filter(|_| answer.status != 202);
        *answers
            .entry(format!("{} {}", answer.status, code.unwrap_or_default()))
            .or_default() += 1;
    }
    eprintln!(
        "failover mid-sale: {} requests, answers {answers:?}; {} accepted, {} rows ({} failed); \
         oversold {}, duplicates {}, lost {}, Redis-to-database conservation gap {}",
        crowd.answers.len(),
        accepted.len(),
        verdict.written_orders,
        verdict.failed_orders,
        verdict.oversold,
        verdict.duplicates,
        verdict.lost,
        verdict.conservation_gap
    );
    assert!(accepted.len() > 100, "the sale went on: {answers:?}");
    // The kill landed mid-crowd: some buyers were told to come back while the replica took over.
    assert!(
        answers.get("503 stock_unavailable").copied().unwrap_or(0) > 0,
        "{answers:?}"
    );
    assert_eq!(verdict.oversold, 0, "{}", verdict.render());
    assert_eq!(verdict.duplicates, 0, "{}", verdict.render());
    assert_eq!(verdict.lost, 0, "{}", verdict.render());
    assert_eq!(
        answers.keys().filter(|k| k.starts_with("500")).count(),
        0,
        "{answers:?}"
    );
    stack.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_that_loses_reservations_is_caught_by_the_database_and_a_rebuild_restores_conservation(
) {
    let mut cluster = TestCluster::start();
    let ctx = TestContext::new().await.unwrap();
    let (settings, stack) = stack_on(&ctx, &cluster).await;
    const STOCK: i64 = 100;
    let secret = ctx.secret();
    let (sku, ledger, primary) = sale_on(&stack, &cluster, &settings, "lossy-", STOCK, 1).await;
    let store = store::Store::connect(&settings.database).await.unwrap();
    let replica = cluster.replica_of(primary);
    cluster.wait_replicated();

    // The replica stops reading; 32 MiB fill the replication stream, so what the primary
    // writes from now on waits in its memory.
    cluster.freeze(replica);
    cluster.fill_replication_stream(primary, &format!("filler:{{{sku}}}"));
    let target = |users: usize, seed: u64, name: &str| {
        let target = crowd::Target {
            base_url: stack.gateway_url(),
            sku: sku.to_string(),
            secret: secret.clone(),
            concurrency: 8,
        };
        let plan = crowd::plan_named(name, users, users, seed);
        async move { crowd::run(&target, plan, false).await }
    };
    let first = target(60, 1, "first").await;
    let first_accepted = first.answers.iter().filter(|a| a.status == 202).count();
    assert_eq!(
        first_accepted, 60,
        "every buyer of the first crowd got a unit"
    );
    testkit::eventually(
        Duration::from_secs(30),
        "the first crowd's rows",
        || async {
            let stats = store.sale_stats(&sku).await.unwrap().unwrap();
            (stats.held_units() == 60).then_some(())
        },
    )
    .await;

    // The primary dies with those writes unsent; the replica, thawed, takes over without them.
    cluster.kill(primary);
    cluster.thaw(replica);
    cluster.rejoin_after_failover(primary);
    let after = testkit::eventually(
        Duration::from_secs(30),
        "the sale on the new primary",
        || {
            let ledger = &ledger;
            let sku = &sku;
            async move { ledger.snapshot(sku).await.ok().flatten() }
        },
    )
    .await;
    let lost = 60 - (after.reserved - after.released);
    eprintln!(
        "lossy failover: 60 units reserved and written before it; the promoted replica has {} \
         reserved, {} left: {lost} reservations lost, their units on sale again in Redis",
        after.reserved, after.remaining
    );
    assert!(lost > 0, "the failover lost no write: {after:?}");

    // A second crowd: Redis offers the lost units again, the database refuses what it lacks.
    let second = target(150, 2, "second").await;
    let (_, verdict) = settle_and_judge(&store, &ledger, &sku, &[&first, &second], 1).await;
    let stats = store.sale_stats(&sku).await.unwrap().unwrap();
    eprintln!(
        "second crowd: {} accepted, {} failed in the database, {} units held; \
         Redis-to-database conservation gap {}",
        second.answers.iter().filter(|a| a.status == 202).count(),
        stats.failed.orders,
        stats.held_units(),
        verdict.conservation_gap
    );
    assert_eq!(
        stats.held_units(),
        STOCK,
        "exactly the stock is held, never more"
    );
    assert!(
        stats.failed.orders > 0,
        "the database refused the units counted twice"
    );
    assert_eq!(verdict.oversold, 0, "{}", verdict.render());
    assert_eq!(verdict.duplicates, 0, "{}", verdict.render());
    assert_eq!(verdict.lost, 0, "{}", verdict.render());

    // The rebuild makes Redis agree with the database again.
    let endpoint = kafka::Endpoint::from_settings(
        &settings.kafka,
        stack
            .embedded_broker()
            .map(|broker| broker.bootstrap_servers()),
    );
    let options = gateway::reconcile::Options {
        skus: vec![sku.clone()],
        drain_timeout: Duration::from_secs(60),
        rebuild: true,
    };
    gateway::reconcile::reconcile(&ledger, &store, &endpoint, &settings.kafka, &options)
        .await
        .unwrap();
    let rebuilt = ledger.snapshot(&sku).await.unwrap().unwrap();
    let stats = store.sale_stats(&sku).await.unwrap().unwrap();
    assert_eq!((rebuilt.remaining, stats.stock), (0, 0));
    assert_eq!(rebuilt.reserved - rebuilt.released, STOCK);
    let (_, verdict) = settle_and_judge(&store, &ledger, &sku, &[&first, &second], 1).await;
    assert_eq!(verdict.conservation_gap, 0, "{}", verdict.render());
    assert!(verdict.holds(), "{}", verdict.render());
    stack.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sales_over_the_cluster_slots_each_sell_exactly_their_stock() {
    let cluster = TestCluster::start();
    let ctx = TestContext::new().await.unwrap();
    let (settings, stack) = stack_on(&ctx, &cluster).await;
    let ledger = stock::StockLedger::new(&settings.redis).unwrap();
    let scenario = Scenario {
        stock: 12,
        per_user_limit: 2,
        payment_window_secs: 900,
        ..Scenario::default()
    };
    let secret = ctx.secret();
    let mut skus = Vec::new();
    let mut primaries = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let sku = domain::SkuId::parse(testkit::unique("many-")).unwrap();
        flash_sim::create_sale(&stack.admin_url(), &secret, &sku, &scenario)
            .await
            .unwrap();
        primaries.insert(cluster.primary_of(&ledger.keys(&sku).stock));
        skus.push(sku);
    }
    assert_eq!(primaries.len(), 3, "the sales are on every primary");

    // Twenty crowds at once, one per sale, each larger than its stock.
    let crowds = futures::future::join_all(skus.iter().enumerate().map(|(i, sku)| {
        let target = crowd::Target {
            base_url: stack.gateway_url(),
            sku: sku.to_string(),
            secret: secret.clone(),
            concurrency: 2,
        };
        async move { crowd::run(&target, crowd::plan(30, 60, i as u64), false).await }
    }))
    .await;
    let store = store::Store::connect(&settings.database).await.unwrap();
    let mut sold = 0;
    for (sku, crowd) in skus.iter().zip(&crowds) {
        let (_, verdict) = settle_and_judge(&store, &ledger, sku, &[crowd], 2).await;
        assert_eq!(
            verdict.awaiting_payment.units,
            12,
            "{sku}: {}",
            verdict.render()
        );
        assert_eq!(verdict.oversold, 0, "{sku}: {}", verdict.render());
        assert_eq!(verdict.duplicates, 0, "{sku}: {}", verdict.render());
        assert_eq!(verdict.lost, 0, "{sku}: {}", verdict.render());
        assert_eq!(verdict.conservation_gap, 0, "{sku}: {}", verdict.render());
        sold += verdict.awaiting_payment.units;
    }
    assert_eq!(sold, 20 * 12);
    stack.stop().await.unwrap();
}
