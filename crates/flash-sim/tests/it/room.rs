//! `seckill-sim room` on a pipeline of the test's own: with load shedding alone greedy clients
//! take more than their share; behind a waiting room they take their share, admission follows
//! the join order, no admitted buyer is shed, the sold-out news reaches every waiting buyer
//! within a poll interval, and the sale's invariants hold.

use flash_sim::room::{run, RoomPlan};
use serde_json::json;
use std::time::Duration;
use testkit::TestContext;

fn plan(stack: &flash_sim::stack::LocalStack, secret: Vec<u8>) -> RoomPlan {
    RoomPlan {
        url: stack.gateway_url(),
        admin_url: stack.admin_url(),
        secret,
        stock: 250,
        polite: 250,
        greedy: 250,
        greedy_connections: 2,
        admission: Some(json!({"mode": "random_at_open", "rate_per_sec": 200, "ticket_secs": 60})),
        pre_queue: Duration::from_secs(3),
        stagger: Duration::ZERO,
        timeout: Duration::from_secs(90),
        poll_cost_secs: 0.0,
        poll_cost_buyers: 0,
        check_sale: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_waiting_room_greedy_clients_get_their_share_and_waiting_buyers_learn_of_the_sell_out(
) {
    let ctx = TestContext::new().await.unwrap();
    let mut settings = super::stack_settings(&ctx);
    // A gateway that serves few buys at once: this crowd is larger than it, and sheds.
    settings.gateway.max_in_flight = 64;
    let stack = flash_sim::stack::LocalStack::start(settings).await.unwrap();
    let plan = plan(&stack, ctx.secret());

    let shedding = run(RoomPlan {
        admission: None,
        pre_queue: Duration::ZERO,
        ..plan.clone()
    })
    .await
    .unwrap();
    let room = run(plan).await.unwrap();
    let report = format!("{}\n{}", shedding.render(), room.render());
    // Load shedding alone: the scarce units go to who retries fastest. Half the buyers are
    // greedy: a fair share of the units is half of them, and they take more.
    assert_eq!(shedding.units.0 + shedding.units.1, 250, "{report}");
    assert!(shedding.shed > 0, "nothing was shed: {report}");
    assert!(shedding.fairness > 1.2, "{report}");
    // Behind the room the draw decides. With 250 of 500 buyers served, the greedy share is
    // hypergeometric around 1.0 with a standard deviation of about 0.045: 1.1 is two of them.
    assert_eq!(room.units.0 + room.units.1, 250, "{report}");
    assert!(room.fairness <= 1.1, "{report}");
    assert_eq!(room.admitted_shed, 0, "{report}");
    // Every buyer not admitted was told sold out, within a poll interval of the last unit.
    assert_eq!(room.told_sold_out, 500 - room.admitted, "{report}");
    let news = room.sold_out_news_ms.unwrap();
    assert!(news <= room.poll_interval_ms.unwrap(), "{report}");
    let sale = room.sale.clone().unwrap();
    assert!(sale.holds(), "{report}");
    assert_eq!(
        (sale.held, sale.orders, sale.remaining),
        (250, 250, 0),
        "{report}"
    );
    stack.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_room_admits_buyers_in_the_order_they_joined() {
    let ctx = TestContext::new().await.unwrap();
    let stack = flash_sim::stack::LocalStack::start(super::stack_settings(&ctx))
        .await
        .unwrap();
    let report = run(RoomPlan {
        stock: 200,
        polite: 200,
        greedy: 0,
        admission: Some(json!({"mode": "fifo", "rate_per_sec": 50, "ticket_secs": 60})),
        pre_queue: Duration::ZERO,
        stagger: Duration::from_millis(5),
        ..plan(&stack, ctx.secret())
    })
    .await
    .unwrap();
    let correlation = report.rank_correlation.unwrap();
    assert!(correlation >= 0.99, "{}", report.render());
    assert_eq!(report.admitted, 200, "{}", report.render());
    // Joined over a second, admitted over four: the estimates given at the join are within a
    // second of the wait the buyers had (median).
    assert!(
        report.estimate_error_secs.unwrap() < 1.0,
        "{}",
        report.render()
    );
    assert!(report.sale.unwrap().holds());
    stack.stop().await.unwrap();
}
