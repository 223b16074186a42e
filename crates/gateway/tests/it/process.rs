//! The gateway as a separate process, stopped the way Kubernetes stops it: SIGTERM.

use super::{sku, start_worker};
use kafka::rdkafka::Message;
use std::time::{Duration, Instant};
use testkit::process::ServiceProcess;
use testkit::TestContext;

/// The broker answers every request this late while the stop happens, so the buy request
/// SIGTERM finds is still waiting for its acknowledgement.
const BROKER_RTT: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_accepting_finishes_the_request_in_flight_and_exits_cleanly() {
    let mut ctx = TestContext::new().await.unwrap();
    ctx.settings.kafka.delivery_timeout_ms = 20_000;
    ctx.settings.shutdown.grace_secs = 20;
    let sku = sku();
    ctx.open_sale(&sku, 10, 5).await;
    let mut gateway =
        ServiceProcess::start(env!("CARGO_BIN_EXE_seckill-gateway"), &[], &ctx.settings);
    let url = format!("http://127.0.0.1:{}", gateway.ops_port);
    let client = reqwest::Client::new();
    let token = gateway::auth::sign(&ctx.secret(), "ann", None, 600);
    let buy = |key: &'static str| {
        client
            .post(format!("{url}/v1/sales/{sku}/orders"))
            .bearer_auth(&token)
            .header("Idempotency-Key", key)
            .send()
    };
    // Warm the producer's connection, so the slow broker hits the produce only.
    assert_eq!(buy("warm").await.unwrap().status().as_u16(), 202);

    ctx.broker
        .mock()
        .broker_round_trip_time(1, BROKER_RTT)
        .unwrap();
    let in_flight = tokio::spawn(buy("in-flight"));
    // Its units are reserved: the handler has passed Redis and waits for the broker's ack.
    testkit::eventually(Duration::from_secs(5), "the reservation", || async {
        let snapshot = ctx.ledger().snapshot(&sku).await.unwrap().unwrap();
        (snapshot.remaining == 8).then_some(())
    })
    .await;
    assert!(
        !in_flight.is_finished(),
        "the request is waiting for the broker"
    );
    let stopped_at = Instant::now();
    gateway.signal("-TERM");

    // New connections are refused (not left hanging) soon, while the request in flight waits.
    let port = gateway.ops_port;
    let refused = tokio::task::spawn_blocking(move || loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                return stopped_at.elapsed();
            }
            _ => {
                assert!(
                    stopped_at.elapsed() < Duration::from_secs(3),
                    "still accepting connections 3 s after SIGTERM"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    });
    let refused_after = refused.await.unwrap();
    assert!(
        !in_flight.is_finished(),
        "the request ended before new connections were refused ({refused_after:?})"
    );

    // The request in flight is answered in full, then the process exits 0 within the grace.
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let order_id = response.json::<serde_json::Value>().await.unwrap()["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let status = gateway.wait_exit(Duration::from_secs(ctx.settings.shutdown.grace_secs));
    assert!(status.success(), "{status}");
    ctx.broker
        .mock()
        .broker_round_trip_time(1, Duration::ZERO)
        .unwrap();

    // The drained order is in Kafka, and Redis holds exactly the two accepted units.
    let probe = testkit::probe(&ctx.endpoint(), &ctx.settings.kafka.orders_topic);
    let mut queued = Vec::new();
    while queued.len() < 2 {
        let message = testkit::next_message(
            &probe,
            Duration::from_secs(15),
            "both orders reached the topic",
        )
        .await;
        let order = domain::OrderRequested::decode(message.payload().unwrap()).unwrap();
        queued.push(order.order_id.to_string());
    }
    assert!(queued.contains(&order_id), "{queued:?}");
    let snapshot = ctx.ledger().snapshot(&sku).await.unwrap().unwrap();
    assert_eq!((snapshot.remaining, snapshot.released), (8, 0));
}

/// Units reserved in Redis that are neither released nor confirmed in the database.
async fn in_flight_units(ctx: &TestContext, sku: &domain::SkuId) -> (i64, stock::LedgerSnapshot) {
    let snapshot = ctx.ledger().snapshot(sku).await.unwrap().unwrap();
    let stats = ctx.store().await.sale_stats(sku).await.unwrap().unwrap();
    (
        snapshot.reserved - snapshot.released - stats.held_units(),
        snapshot,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_with_hundreds_of_requests_in_flight_strands_no_unit() {
    const STOCK: i64 = 1000;
    const SERVED: usize = 20;
    const IN_FLIGHT: usize = 300;
    let ctx = TestContext::new().await.unwrap();
    let sku = sku();
    ctx.open_sale(&sku, STOCK, 1).await;
    let mut gateway_settings = ctx.settings.clone();
    // Its buyers wait for the broker's acknowledgement until the kill.
    gateway_settings.kafka.delivery_timeout_ms = 20_000;
    let mut gateway = ServiceProcess::start(
        env!("CARGO_BIN_EXE_seckill-gateway"),
        &[],
        &gateway_settings,
    );
    let url = format!("http://127.0.0.1:{}", gateway.ops_port);
    let client = reqwest::Client::new();
    let secret = ctx.secret();
    let buy = |user: String| {
        let token = gateway::auth::sign(&secret, &user, None, 600);
        client
            .post(format!("{url}/v1/sales/{sku}/orders"))
            .bearer_auth(token)
            .header("Idempotency-Key", "k")
            .send()
    };

    // A first crowd is served: queued and answered 202.
    let served = futures::future::join_all((0..SERVED).map(|i| buy(format!("early-{i}")))).await;
    assert!(served
        .iter()
        .all(|r| r.as_ref().is_ok_and(|r| r.status().as_u16() == 202)));
    // The broker stops answering; the next crowd is reserved and waits for its acknowledgement.
    ctx.broker.mock().broker_down(1).unwrap();
    let crowd: Vec<_> = (0..IN_FLIGHT)
        .map(|i| tokio::spawn(buy(format!("late-{i}"))))
        .collect();
    testkit::eventually(
        Duration::from_secs(20),
        "the crowd's reservations",
        || async {
            let snapshot = ctx.ledger().snapshot(&sku).await.unwrap().unwrap();
            (snapshot.reserved == (SERVED + IN_FLIGHT) as i64).then_some(())
        },
    )
    .await;
    gateway.signal("-KILL");
    gateway.wait_exit(Duration::from_secs(10));
    ctx.broker.mock().broker_up(1).unwrap();
    for request in crowd {
        let answer = request.await.unwrap();
        assert!(answer.is_err(), "no answer after the kill: {answer:?}");
    }

    // Before: a worker writes what the broker has; the rest stays reserved, as it did for ever
    // before the outbox (its sweeper is kept out of the way here).
    let mut settings = ctx.settings.clone();
    settings.sweeper.interval_secs = 1;
    settings.sweeper.stale_after_secs = 3600;
    let worker = start_worker(&settings).await;
    let served = |stats: &store::SaleStats| stats.awaiting_payment.orders == SERVED as i64;
    let within = Duration::from_secs(30);
    ctx.sale_stats_when(&sku, within, "the served orders", served)
        .await;
    let (stranded, _) = in_flight_units(&ctx, &sku).await;
    assert_eq!(stranded, IN_FLIGHT as i64, "what the kill stranded");
    worker.stop().await;

    // After: the sweeper publishes the stranded orders again and the worker writes them.
    settings.sweeper.stale_after_secs = 3;
    let started = std::time::Instant::now();
    let worker = start_worker(&settings).await;
    let (in_flight, snapshot) =
        testkit::eventually(Duration::from_secs(30), "no unit in flight", || async {
            let (in_flight, snapshot) = in_flight_units(&ctx, &sku).await;
            (in_flight == 0 && snapshot.unfinished == 0).then_some((in_flight, snapshot))
        })
        .await;
    let settled_in = started.elapsed();
    worker.stop().await;
    let stats = ctx.store().await.sale_stats(&sku).await.unwrap().unwrap();
    eprintln!(
        "kill test: {} units reserved, {stranded} stranded by the kill, {} rows, in flight {in_flight} \
         {settled_in:?} after a worker with the sweeper started",
        snapshot.reserved, stats.awaiting_payment.orders
    );
    assert_eq!(stats.awaiting_payment.orders, (SERVED + IN_FLIGHT) as i64);
    assert_eq!(snapshot.remaining + stats.held_units(), STOCK);
    assert_eq!(stats.stock, snapshot.remaining);

    // Retries with the same keys get the orders the rows hold.
    let gw = super::Running::on(ctx).await;
    let rows = gw.ctx.store().await.orders_of(&sku).await.unwrap();
    for row in rows {
        let (status, answer) = gw
            .buy(
                sku.as_str(),
                &row.user_id,
                &row.idempotency_key,
                serde_json::json!({}),
            )
            .await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["order_id"], row.order_id.as_str(), "{answer}");
        assert_eq!(answer["status"], "awaiting_payment", "{answer}");
    }
}
