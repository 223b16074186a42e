//! `seckill-sim load` against a real gateway: what it counts is what the gateway answered.

use flash_sim::load::{self, Plan, Target, Until};
use testkit::TestContext;

fn plan(address: String, target: Target) -> Plan {
    Plan {
        address,
        target,
        connections: 8,
        rate: None,
        until: Until::Requests(200),
        run_id: testkit::unique("load"),
        progress: false,
        sources: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generator_counts_every_answer_by_outcome_and_paces_an_open_loop() {
    let ctx = TestContext::new().await.unwrap();
    let stack = super::local_stack(&ctx).await;
    let secret = ctx.secret();
    let sku = domain::SkuId::parse(testkit::unique("load-sku")).unwrap();
    let admin = gateway::auth::sign(&secret, "ops", Some("admin"), 600);
    flash_sim::put_sale(&stack.admin_url(), &admin, &sku, 30, 1000, 1)
        .await
        .unwrap();
    let tokens = (0..50)
        .map(|u| load::bearer(&gateway::auth::sign(&secret, &format!("b{u}"), None, 600)))
        .collect::<anyhow::Result<Vec<_>>>()
        .unwrap();
    let address = format!("127.0.0.1:{}", stack.gateway_port);

    // Closed loop: 200 buys of a sale of 30 units.
    let report = load::run(plan(
        address.clone(),
        Target::Buy {
            skus: vec![sku.to_string()],
            tokens,
            quantity: 1,
        },
    ))
    .await
    .unwrap();
    let count = |outcome: &str| report.outcomes.get(outcome).map_or(0, |p| p.count);
    assert_eq!(report.requests, 200);
    assert_eq!(count("accepted"), 30, "{}", report.render());
    assert_eq!(count("sold_out"), 170, "{}", report.render());
    assert_eq!(report.skus, vec![sku.to_string()]);
    let snapshot = stock::StockLedger::new(&stack.settings.redis)
        .unwrap()
        .snapshot(&sku)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((snapshot.remaining, snapshot.reserved), (0, 30));

    // Open loop: 100 requests due at 400 per second take a quarter of a second, not less.
    let mut paced = plan(
        address,
        Target::Get {
            path: "/healthz".into(),
            headers: Vec::new(),
        },
    );
    paced.rate = Some(400.0);
    paced.until = Until::Requests(100);
    let report = load::run(paced).await.unwrap();
    assert_eq!(report.outcomes.get("ok").map(|p| p.count), Some(100));
    assert!(
        report.elapsed_secs >= 0.24 && report.elapsed_secs < 5.0,
        "{} s",
        report.elapsed_secs
    );
    assert_eq!(report.offered_rate, Some(400.0));
    stack.stop().await.unwrap();
}
