//! The whole pipeline, as `make demo` runs it, but on PostgreSQL: a flash sale end to end with
//! every invariant checked on real numbers.

use flash_sim::Scenario;
use std::time::Duration;
use testkit::TestContext;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flash_sale_sells_exactly_its_stock_and_loses_nothing() {
    let ctx = TestContext::new().await.unwrap();
    let mut settings = ctx.settings.clone();
    settings.kafka.bootstrap_servers.clear(); // the stack starts its own embedded broker
    settings.gateway.per_user_rate_per_sec = 0;
    let scenario = Scenario {
        stock: 60,
        per_user_limit: 2,
        users: 400,
        requests: 900,
        concurrency: 32,
        seed: 7,
        drain_timeout: Duration::from_secs(60),
        progress: false,
    };
    let verdict = flash_sim::demo(settings, &scenario).await.unwrap();
    println!("{}", verdict.render());
    assert_eq!(verdict.requests, 900);
    assert_eq!(
        verdict.confirmed_units, 60,
        "the whole stock sells, no more"
    );
    assert_eq!(verdict.oversold, 0);
    assert_eq!(verdict.duplicates, 0);
    assert_eq!(verdict.lost, 0);
    assert_eq!(verdict.conservation_gap, 0);
    assert_eq!(verdict.bad_input_violations, 0);
    assert_eq!((verdict.orders_lag, verdict.dlq_lag), (0, 0));
    assert!(
        verdict.accepted_orders >= 30,
        "{} orders accepted",
        verdict.accepted_orders
    );
    assert!(
        verdict.idempotent_replays > 0,
        "the crowd's retries were answered with their order"
    );
    let sold_out = verdict.rejected.get("409 sold_out").copied().unwrap_or(0);
    assert!(sold_out > 0, "{:?}", verdict.rejected);
    assert!(verdict.holds());
}
