//! The trace context of a buy request, followed through the whole pipeline on the JSON log the
//! services write in production: HTTP `traceparent` -> order message header -> worker's log span;
//! and an order the worker cannot place -> dead letter header -> replayer's log span.

use flash_sim::stack::LocalStack;
use flash_sim::Scenario;
use kafka::rdkafka::consumer::StreamConsumer;
use kafka::rdkafka::message::OwnedMessage;
use kafka::rdkafka::Message;
use serde_json::Value;
use settings::LogFormat;
use std::time::Duration;
use telemetry::trace::TRACEPARENT;
use telemetry::TraceContext;
use testkit::{CapturedLog, TestContext};

const PATIENCE: Duration = Duration::from_secs(30);
const BUYER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const BUYER_SPAN: &str = "00f067aa0ba902b7";
const STRAY_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

/// The first JSON line of `trace_id` with `message` in `logs`, waiting for it to be written.
async fn first(logs: &CapturedLog, trace_id: &str, message: &str) -> Value {
    testkit::eventually(PATIENCE, &format!("a log line {message:?}"), || {
        let found = lines(logs, trace_id, message);
        async move { found.into_iter().next() }
    })
    .await
}

/// The JSON lines of `logs` whose current span has `trace_id` and whose message is `message`.
fn lines(logs: &CapturedLog, trace_id: &str, message: &str) -> Vec<Value> {
    logs.text()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["span"]["trace_id"] == trace_id && line["message"] == message)
        .collect()
}

fn probe(stack: &LocalStack, topic: &str) -> StreamConsumer {
    testkit::probe(
        &kafka::Endpoint::from_settings(&stack.settings.kafka, None),
        topic,
    )
}

async fn next(consumer: &StreamConsumer) -> OwnedMessage {
    testkit::next_message(consumer, PATIENCE, "a message arrives").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buy_requests_trace_travels_in_kafka_headers_into_the_worker_and_replayer_logs() {
    let logs = CapturedLog::default();
    let mut log = settings::Settings::defaults().log;
    log.format = LogFormat::Json;
    log.filter = "warn,gateway=debug,order_worker=debug,dlq_replayer=info".into();
    let writer = logs.clone();
    telemetry::try_init_tracing(&log, move || writer.clone())
        .expect("no other test of this binary installs a global subscriber");

    let ctx = TestContext::new().await.unwrap();
    let mut settings = ctx.settings.clone();
    settings.kafka.bootstrap_servers.clear();
    let stack = LocalStack::start(settings).await.unwrap();
    let sku = domain::SkuId::parse(testkit::unique("sku-")).unwrap();
    let scenario = Scenario {
        stock: 5,
        per_user_limit: 1,
        users: 1,
        requests: 1,
        concurrency: 1,
        seed: 1,
        drain_timeout: PATIENCE,
        progress: false,
        ..Scenario::default()
    };
    flash_sim::create_sale(&stack.admin_url(), &ctx.secret(), &sku, &scenario)
        .await
        .unwrap();
    let orders = probe(&stack, &stack.settings.kafka.orders_topic);
    let letters = probe(&stack, &stack.settings.kafka.dlq_topic);

    // The buyer's client sends its trace context; the gateway continues it.
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/v1/sales/{sku}/orders", stack.gateway_url()))
        .bearer_auth(gateway::auth::sign(&ctx.secret(), "ann", None, 600))
        .header("Idempotency-Key", "trace-1")
        .header(TRACEPARENT, format!("00-{BUYER_TRACE}-{BUYER_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let traceresponse = response.headers()["traceresponse"]
        .to_str()
        .unwrap()
        .to_owned();
    let order_id = response.json::<Value>().await.unwrap()["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let gateway_hop = TraceContext::from_headers(|_| Some(traceresponse.as_str())).unwrap();
    assert_eq!(gateway_hop.trace_id(), BUYER_TRACE);
    assert_ne!(
        gateway_hop.span_id(),
        BUYER_SPAN,
        "the gateway is a hop of its own"
    );

    // The order message names the gateway's span as its parent.
    let message = next(&orders).await;
    assert_eq!(
        kafka::trace::carried(&message)
            .expect("a valid traceparent")
            .traceparent(),
        traceresponse
    );
    assert_eq!(
        domain::OrderRequested::decode(message.payload().unwrap())
            .unwrap()
            .order_id
            .as_str(),
        order_id
    );

    // Gateway and worker log the order under the buyer's trace id.
    let confirmed = first(&logs, BUYER_TRACE, "order written, awaiting payment").await;
    assert_eq!(confirmed["span"]["order_id"], order_id.as_str());
    assert_eq!(confirmed["target"], "order_worker");
    assert_ne!(confirmed["span"]["span_id"], gateway_hop.span_id().as_str());
    let queued = lines(&logs, BUYER_TRACE, "order queued");
    assert_eq!(queued.len(), 1, "one gateway line for the order");
    assert_eq!(queued[0]["span"]["order_id"], order_id.as_str());
    assert_eq!(queued[0]["span"]["span_id"], gateway_hop.span_id().as_str());

    // An order the worker cannot place (no such sale) keeps its trace through the dead-letter
    // topic into the replayer's compensation.
    let stray = testkit::order(
        &domain::SkuId::parse(testkit::unique("nosale-")).unwrap(),
        "bob",
        "k",
        1,
    );
    let key = stray.sku_id.as_str().as_bytes();
    let signature = testkit::order_signature(&stack.settings, key, &stray.encode());
    testkit::produce_with_headers(
        &kafka::Endpoint::from_settings(&stack.settings.kafka, None),
        &stack.settings.kafka.orders_topic,
        key,
        &stray.encode(),
        &[
            (TRACEPARENT, &format!("00-{STRAY_TRACE}-{BUYER_SPAN}-01")),
            (domain::signing::SIGNATURE_HEADER, signature.as_str()),
        ],
    )
    .await
    .unwrap();
    let letter = next(&letters).await;
    assert_eq!(
        kafka::consume::header(&letter, domain::dead_letter::header::REASON),
        Some(b"unknown_sku".as_slice())
    );
    let letter_hop = kafka::trace::carried(&letter).expect("a valid traceparent");
    assert_eq!(letter_hop.trace_id(), STRAY_TRACE);
    let compensated = first(&logs, STRAY_TRACE, "order compensated").await;
    assert_eq!(compensated["target"], "dlq_replayer");
    assert_eq!(compensated["span"]["order_id"], stray.order_id.as_str());
    let failed = lines(&logs, STRAY_TRACE, "order failed");
    assert_eq!(failed.len(), 1, "the worker's line for the stray order");
    assert_eq!(
        failed[0]["span"]["span_id"],
        letter_hop.span_id().as_str(),
        "the dead letter names the worker's span as its parent"
    );
    let dead_lettered = first(&logs, STRAY_TRACE, "dead-lettered").await;
    assert_eq!(dead_lettered["reason"], "unknown_sku");
    assert_eq!(dead_lettered["span"]["order_id"], stray.order_id.as_str());
    stack.stop().await.unwrap();
}
