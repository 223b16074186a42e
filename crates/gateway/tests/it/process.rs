//! The gateway as a separate process, stopped the way Kubernetes stops it: SIGTERM.

use super::sku;
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
