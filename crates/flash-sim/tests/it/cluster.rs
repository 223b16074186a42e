//! The whole pipeline with its stock ledger on a Redis Cluster of the test's own (three
//! primaries, three replicas), chosen by configuration only.

use flash_sim::Scenario;
use settings::secrecy::SecretString;
use settings::RedisMode;
use std::time::Duration;
use testkit::redis_cluster::TestCluster;
use testkit::TestContext;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flash_sale_on_a_redis_cluster_sells_exactly_its_stock_and_loses_nothing() {
    let cluster = TestCluster::start();
    let ctx = TestContext::new().await.unwrap();
    let mut settings = ctx.settings.clone();
    settings.kafka.bootstrap_servers.clear(); // the stack starts its own embedded broker
    settings.gateway.per_user_rate_per_sec = 0;
    settings.redis.mode = RedisMode::Cluster;
    settings.redis.url = SecretString::from(cluster.url());
    let scenario = Scenario {
        stock: 40,
        per_user_limit: 2,
        users: 200,
        requests: 500,
        concurrency: 16,
        seed: 11,
        drain_timeout: Duration::from_secs(60),
        payment_window_secs: 5,
        pay_share: 0.5,
        late_payers: 5,
        latecomers: 60,
        ..Scenario::default()
    };
    let verdict = flash_sim::demo(settings, &scenario).await.unwrap();
    println!("{}", verdict.render());
    assert_eq!(
        verdict.paid.units + verdict.awaiting_payment.units,
        40,
        "{}",
        verdict.render()
    );
    assert!(verdict.expired.units > 0);
    assert_eq!(verdict.resold_units, verdict.expired.units);
    assert_eq!(verdict.payments.late_refused, 5);
    assert_eq!(verdict.oversold, 0);
    assert_eq!(verdict.paid_twice, 0);
    assert_eq!(verdict.duplicates, 0);
    assert_eq!(verdict.lost, 0);
    assert_eq!(verdict.conservation_gap, 0);
    assert_eq!(verdict.bad_input_violations, 0);
    assert!(verdict.holds());
}
