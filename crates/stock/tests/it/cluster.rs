//! The ledger on a Redis Cluster of the test's own (six `redis-server` processes: three
//! primaries, three replicas): sales spread over the primaries, and a primary killed mid-sale.

use super::{reserve, sku};
use settings::secrecy::SecretString;
use settings::{RedisMode, Settings};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stock::{ReleaseMode, ReleaseOutcome, ReserveOutcome, StockLedger};
use testkit::open_spec;
use testkit::redis_cluster::TestCluster;

fn ledger(cluster: &TestCluster) -> StockLedger {
    let mut settings = Settings::defaults().redis;
    settings.mode = RedisMode::Cluster;
    settings.url = SecretString::from(cluster.url());
    settings.key_prefix = testkit::unique("c");
    StockLedger::new(&settings).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sales_spread_over_the_primaries_each_sell_exactly_their_stock() {
    let cluster = TestCluster::start();
    let ledger = ledger(&cluster);
    const SALES: usize = 30;
    const STOCK: i64 = 5;
    const BUYERS: usize = 12;
    let skus: Vec<_> = (0..SALES).map(|_| sku()).collect();
    let mut primaries = std::collections::BTreeSet::new();
    for sku in &skus {
        ledger.warm(sku, &open_spec(STOCK, 1)).await.unwrap();
        primaries.insert(cluster.primary_of(&ledger.keys(sku).stock));
    }
    assert_eq!(primaries.len(), 3, "the sales live on every primary");

    let attempts = skus.iter().flat_map(|sku| {
        (0..BUYERS).map(|i| {
            let (ledger, sku) = (ledger.clone(), sku.clone());
            tokio::spawn(async move { reserve(&ledger, &sku, &format!("u{i}"), "k", 1).await })
        })
    });
    let outcomes = futures::future::join_all(attempts).await;
    let accepted: Vec<_> = outcomes
        .into_iter()
        .filter_map(|o| match o.unwrap() {
            ReserveOutcome::Accepted(order) => Some(order),
            _ => None,
        })
        .collect();
    assert_eq!(accepted.len(), SALES * STOCK as usize);
    for sku in &skus {
        let snapshot = ledger.snapshot(sku).await.unwrap().unwrap();
        assert_eq!((snapshot.remaining, snapshot.reserved), (0, STOCK));
    }
    // A release (a script on the order's sale) goes to the right primary too.
    let order = &accepted[0];
    assert_eq!(
        ledger
            .release(order, ReleaseMode::ProduceFailed)
            .await
            .unwrap(),
        ReleaseOutcome::Released
    );
    let snapshot = ledger.snapshot(&order.sku()).await.unwrap().unwrap();
    assert_eq!((snapshot.remaining, snapshot.released), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_mid_sale_is_replaced_and_the_same_ledger_goes_on_selling() {
    let mut cluster = TestCluster::start();
    let ledger = ledger(&cluster);
    let sku = sku();
    const STOCK: i64 = 1_000_000;
    ledger.warm(&sku, &open_spec(STOCK, 1)).await.unwrap();
    let primary = cluster.primary_of(&ledger.keys(&sku).stock);
    // The kill below is not meant to lose the sale itself (a loaded machine can delay
    // replication by more than the selling before it).
    cluster.wait_replicated();

    // Buyers reserve one unit each, as fast as one task goes, and count what they were told.
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let buyers = {
        let (ledger, sku, stop) = (ledger.clone(), sku.clone(), stop.clone());
        let (accepted, errors) = (accepted.clone(), errors.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            let mut last_error: Option<Instant> = None;
            let mut outage = Duration::ZERO;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let mut order = testkit::order(&sku, &format!("u{i}"), "k", 1);
                match ledger
                    .reserve(&mut order, None, false)
                    .await
                    .map(|(outcome, _)| outcome)
                {
                    Ok(ReserveOutcome::Accepted(_)) => {
                        accepted.fetch_add(1, Ordering::SeqCst);
                        if let Some(first) = last_error.take() {
                            outage = outage.max(first.elapsed());
                        }
                    }
                    Ok(other) => panic!("unexpected {other:?}"),
                    Err(_) => {
                        errors.fetch_add(1, Ordering::SeqCst);
                        last_error.get_or_insert_with(Instant::now);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            outage
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_kill = accepted.load(Ordering::SeqCst);
    assert!(before_kill > 0);
    cluster.kill(primary);
    let killed_at = Instant::now();

    // The replica is promoted, and the same ledger sells again without a restart.
    let resumed = loop {
        let now = accepted.load(Ordering::SeqCst);
        if now > before_kill + 100 && cluster.primaries().len() == 3 {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(20),
            "no sale 20 s after the primary died"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let outage = buyers.await.unwrap();
    let promoted = cluster.primary_of(&ledger.keys(&sku).stock);
    assert_ne!(promoted, primary);

    // What asynchronous replication cost: reservations answered `Accepted` that the promoted
    // replica never saw (its counters are behind the answers given). A call whose reply the kill
    // cut off was answered with an error and may stand all the same: the cluster holds at most
    // the accepted calls and those.
    let told = accepted.load(Ordering::SeqCst) as i64;
    let failed = errors.load(Ordering::SeqCst) as i64;
    let snapshot = ledger.snapshot(&sku).await.unwrap().unwrap();
    let lost = told - snapshot.reserved;
    assert_eq!(snapshot.remaining + snapshot.reserved, STOCK);
    assert!(
        snapshot.reserved <= told + failed,
        "the cluster holds {} reservations: more than the {told} accepted and {failed} failed calls",
        snapshot.reserved
    );
    eprintln!(
        "failover: {told} reservations answered, {} on the promoted replica, {lost} lost; \
         {} errors; sales resumed {resumed:?} after the kill (longest outage seen by a buyer \
         {outage:?})",
        snapshot.reserved,
        errors.load(Ordering::SeqCst)
    );

    // The old primary comes back as a replica; the cluster heals.
    cluster.restart(primary);
    cluster.wait_until_healthy();
    let rejoined = Instant::now();
    while !cluster.is_replica(primary) {
        assert!(
            rejoined.elapsed() < Duration::from_secs(20),
            "the old primary did not rejoin as a replica"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(matches!(
        reserve(&ledger, &sku, "after", "k", 1).await,
        ReserveOutcome::Accepted(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_started_while_its_cluster_is_down_fails_fast_and_sells_once_it_is_back() {
    let mut cluster = TestCluster::start();
    let ports = cluster.ports();
    for port in &ports {
        cluster.kill(*port);
    }
    // The service starts anyway; each call fails within redis.timeout_secs (2 s), one after
    // another, not queued behind each other.
    let ledger = ledger(&cluster);
    for _ in 0..3 {
        let started = Instant::now();
        assert!(ledger.ping().await.is_err());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a call took {:?}",
            started.elapsed()
        );
    }
    // The nodes come back (with their cluster configuration, without data): the same ledger
    // connects and sells, no restart.
    for port in &ports {
        cluster.restart(*port);
    }
    cluster.wait_until_healthy();
    let sku = sku();
    let came_back = Instant::now();
    while ledger.warm(&sku, &open_spec(3, 1)).await.is_err() {
        assert!(
            came_back.elapsed() < Duration::from_secs(30),
            "the ledger did not reconnect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ledger.ping().await.unwrap();
    assert!(matches!(
        reserve(&ledger, &sku, "u1", "k", 1).await,
        ReserveOutcome::Accepted(_)
    ));
}
