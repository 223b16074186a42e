//! The gateway over real HTTP, against the machine's Redis and PostgreSQL and an embedded Kafka.

// Test helpers panic to report, like the tests themselves.
#![allow(clippy::unwrap_used)]

mod hot_path;
mod payments;
mod process;
mod reconcile;

use domain::SkuId;
use kafka::rdkafka::Message;
use serde_json::{json, Value};
use std::time::Duration;
use testkit::TestContext;
use tokio_util::sync::CancellationToken;

struct Running {
    ctx: TestContext,
    url: String,
    admin_url: String,
    client: reqwest::Client,
    stop: CancellationToken,
    app: actix_web::web::Data<gateway::AppState>,
}

impl Running {
    async fn start() -> Self {
        Self::on(TestContext::new().await.unwrap()).await
    }

    /// A gateway in this process, in `ctx`'s world.
    async fn on(ctx: TestContext) -> Self {
        let deps = backends::Backends::connect(&ctx.settings, None)
            .await
            .unwrap();
        let app = gateway::Application::build(&ctx.settings, deps).unwrap();
        let url = format!("http://127.0.0.1:{}", app.port());
        let admin_url = format!("http://127.0.0.1:{}", app.admin_port());
        let state = app.state();
        let stop = CancellationToken::new();
        tokio::spawn(app.run_until_stopped(stop.clone()));
        Self {
            ctx,
            url,
            admin_url,
            client: reqwest::Client::new(),
            stop,
            app: state,
        }
    }

    fn token(&self, user: &str) -> String {
        gateway::auth::sign(&self.ctx.secret(), user, None, 600)
    }

    fn admin(&self) -> String {
        gateway::auth::sign(&self.ctx.secret(), "ops", Some("admin"), 600)
    }

    /// `GET /v1/admin/sales/{sku}`: the sale as the database and Redis see it.
    async fn sale_view(&self, sku: &SkuId) -> Value {
        self.client
            .get(format!("{}/v1/admin/sales/{sku}", self.url))
            .bearer_auth(self.admin())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn buy(&self, sku: &str, user: &str, key: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}/v1/sales/{sku}/orders", self.url))
            .bearer_auth(self.token(user))
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `GET /readyz`: its status and body.
    async fn readyz(&self) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}/readyz", self.url))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn remaining(&self, sku: &SkuId) -> i64 {
        self.ctx
            .ledger()
            .snapshot(sku)
            .await
            .unwrap()
            .unwrap()
            .remaining
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn sku() -> SkuId {
    SkuId::parse(testkit::unique("sku-")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_4xx_with_a_stable_code_and_reserves_nothing() {
    let gw = Running::start().await;
    let sku = sku();
    gw.ctx.open_sale(&sku, 10, 2).await;
    let url = &gw.url;
    let buyer = gw.token("mallory");
    let orders = format!("{url}/v1/sales/{sku}/orders");
    let c = &gw.client;
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        (
            "no token",
            c.post(&orders).header("Idempotency-Key", "k"),
            401,
            "unauthorized",
        ),
        (
            "token signed with another secret",
            c.post(&orders)
                .bearer_auth(gateway::auth::sign(
                    b"another-secret-of-16+",
                    "mallory",
                    None,
                    60,
                ))
                .header("Idempotency-Key", "k"),
            401,
            "unauthorized",
        ),
        (
            "garbage token",
            c.post(&orders)
                .bearer_auth("a.b.c")
                .header("Idempotency-Key", "k"),
            401,
            "unauthorized",
        ),
        (
            "no idempotency key",
            c.post(&orders).bearer_auth(&buyer),
            400,
            "missing_idempotency_key",
        ),
        (
            "idempotency key too long",
            c.post(&orders)
                .bearer_auth(&buyer)
                .header("Idempotency-Key", "x".repeat(65)),
            400,
            "invalid_idempotency_key",
        ),
        (
            "zero quantity",
            c.post(&orders)
                .bearer_auth(&buyer)
                .header("Idempotency-Key", "k")
                .body(r#"{"quantity":0}"#),
            400,
            "invalid_quantity",
        ),
        (
            "huge quantity",
            c.post(&orders)
                .bearer_auth(&buyer)
                .header("Idempotency-Key", "k")
                .body(r#"{"quantity":1000000}"#),
            400,
            "invalid_quantity",
        ),
        (
            "negative quantity",
            c.post(&orders)
                .bearer_auth(&buyer)
                .header("Idempotency-Key", "k")
                .body(r#"{"quantity":-1}"#),
            400,
            "invalid_quantity",
        ),
        (
            "quantity as text",
            c.post(&orders)
                .bearer_auth(&buyer)
                .header("Idempotency-Key", "k")
                .body(r#"{"quantity":"2"}"#),
            400,
            "invalid_body",
        ),
        (
            "not JSON",
            c.post(&orders)
                .bearer_auth(&buyer)
                .header("Idempotency-Key", "k")
                .body("quantity=1"),
            400,
            "invalid_body",
        ),
        (
            "JSON, but an array of the fields' values",
            c.post(&orders)
                .bearer_auth(&buyer)
                .header("Idempotency-Key", "k-array")
                .body("[null]"),
            400,
            "invalid_body",
        ),
        (
            "unknown field",
            c.post(&orders)
                .bearer_auth(&buyer)
                .header("Idempotency-Key", "k")
                .body(r#"{"qty":1}"#),
            400,
            "invalid_body",
        ),
        (
            "body too large",
            c.post(&orders)
                .bearer_auth(&buyer)
                .header("Idempotency-Key", "k")
                .body(" ".repeat(5000)),
            413,
            "payload_too_large",
        ),
        (
            "sku with forbidden characters",
            c.post(format!("{url}/v1/sales/a%7Bb%7D/orders"))
                .bearer_auth(&buyer)
                .header("Idempotency-Key", "k"),
            400,
            "invalid_sku",
        ),
        (
            "sale that does not exist",
            c.post(format!("{url}/v1/sales/nope-{sku}/orders"))
                .bearer_auth(&buyer)
                .header("Idempotency-Key", "k"),
            404,
            "sale_not_found",
        ),
        (
            "wrong method",
            c.get(&orders).bearer_auth(&buyer),
            405,
            "method_not_allowed",
        ),
        (
            "unknown route",
            c.get(format!("{url}/v2/whatever")),
            404,
            "not_found",
        ),
        (
            "malformed order id",
            c.get(format!("{url}/v1/orders/nope")).bearer_auth(&buyer),
            400,
            "invalid_order_id",
        ),
        (
            "admin route with a buyer token",
            c.get(format!("{url}/v1/admin/sales/{sku}"))
                .bearer_auth(&buyer),
            403,
            "forbidden",
        ),
        (
            "sale with its end before its start",
            c.put(format!("{url}/v1/admin/sales/{sku}"))
                .bearer_auth(gw.admin())
                .json(&json!({
                    "stock": 5, "per_user_limit": 1,
                    "starts_at": "2030-01-02T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z"
                })),
            400,
            "invalid_sale",
        ),
    ];
    for (what, request, status, code) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{what}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{what}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], code, "{what}: {body}");
        assert!(
            body["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{what}"
        );
    }
    assert_eq!(gw.remaining(&sku).await, 10, "bad input reserved stock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_order_is_in_kafka_once_keyed_by_sku_and_a_retry_returns_the_same_order() {
    let gw = Running::start().await;
    let sku = sku();
    gw.ctx.open_sale(&sku, 10, 5).await;
    let (status, first) = gw
        .buy(sku.as_str(), "alice", "key-1", json!({"quantity": 2}))
        .await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["status"], "pending");
    for _ in 0..3 {
        let (status, again) = gw
            .buy(sku.as_str(), "alice", "key-1", json!({"quantity": 2}))
            .await;
        assert_eq!(status, 202);
        assert_eq!(again["order_id"], first["order_id"]);
    }
    assert_eq!(gw.remaining(&sku).await, 8);

    let consumer = testkit::probe(&gw.ctx.endpoint(), &gw.ctx.settings.kafka.orders_topic);
    let message = testkit::next_message(
        &consumer,
        Duration::from_secs(15),
        "the order reached the topic",
    )
    .await;
    assert_eq!(message.key(), Some(sku.as_str().as_bytes()));
    let order = domain::OrderRequested::decode(message.payload().unwrap()).unwrap();
    assert_eq!(order.order_id.as_str(), first["order_id"].as_str().unwrap());
    assert_eq!(order.quantity.get(), 2);
    assert!(
        kafka::trace::carried(&message).is_some(),
        "a request without traceparent starts a trace the message carries"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), consumer.recv())
            .await
            .is_err(),
        "a retry produced a second message"
    );

    // The owner sees it pending; another buyer does not see it at all.
    let path = format!("{}/v1/orders/{}", gw.url, order.order_id);
    let mine: Value = gw
        .client
        .get(&path)
        .bearer_auth(gw.token("alice"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine["status"], "pending");
    let theirs = gw
        .client
        .get(&path)
        .bearer_auth(gw.token("bob"))
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status().as_u16(), 404);
    let reservations = gw
        .app
        .metrics
        .reservations
        .with_label_values(&["accepted"])
        .get();
    assert_eq!(reservations, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sold_out_and_limit_are_409_with_their_codes() {
    let gw = Running::start().await;
    let sku = sku();
    gw.ctx.open_sale(&sku, 3, 2).await;
    assert_eq!(
        gw.buy(sku.as_str(), "a", "1", json!({"quantity": 2}))
            .await
            .0,
        202
    );
    let (status, body) = gw.buy(sku.as_str(), "a", "2", json!({})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("limit_exceeded"))
    );
    assert_eq!(gw.buy(sku.as_str(), "b", "1", json!({})).await.0, 202);
    let (status, body) = gw.buy(sku.as_str(), "c", "1", json!({})).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("sold_out")));
    assert_eq!(gw.remaining(&sku).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_broker_does_not_acknowledge_the_buyer_gets_503_and_the_reservation_is_released() {
    let gw = Running::start().await;
    let sku = sku();
    gw.ctx.open_sale(&sku, 5, 5).await;
    // Warm the producer's connection so the fault hits the produce, not the bootstrap.
    assert_eq!(gw.buy(sku.as_str(), "warm", "w", json!({})).await.0, 202);

    gw.ctx.broker.mock().broker_down(1).unwrap();
    let started = std::time::Instant::now();
    let (status, body) = gw
        .buy(sku.as_str(), "dave", "k", json!({"quantity": 2}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("broker_unavailable")),
        "{body}"
    );
    // The delivery timeout (2 s here) plus at most one capped reconnect backoff (0.5 s) and
    // room for two busy cores; librdkafka's default backoff made it 10 s.
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "the 503 took {:?}",
        started.elapsed()
    );
    let snapshot = gw.ctx.ledger().snapshot(&sku).await.unwrap().unwrap();
    assert_eq!(
        snapshot.remaining, 4,
        "the failed order's units were not given back"
    );
    assert_eq!(snapshot.released, 2);
    assert_eq!(gw.app.metrics.produce_failures.get(), 1);

    // The broker comes back; the same key is free again and goes through.
    gw.ctx.broker.mock().broker_up(1).unwrap();
    let (status, body) =
        testkit::eventually(Duration::from_secs(20), "a 202 after recovery", || async {
            let answer = gw
                .buy(sku.as_str(), "dave", "k", json!({"quantity": 2}))
                .await;
            (answer.0 == 202).then_some(answer)
        })
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(gw.remaining(&sku).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_creates_a_sale_and_sees_it_from_both_sides() {
    let gw = Running::start().await;
    let sku = sku();
    let put = gw
        .client
        .put(format!("{}/v1/admin/sales/{sku}", gw.url))
        .bearer_auth(gw.admin())
        .json(&json!({
            "stock": 7, "per_user_limit": 1,
            "starts_at": "2020-01-01T00:00:00Z", "ends_at": "2099-01-01T00:00:00Z"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 200);
    assert_eq!(gw.buy(sku.as_str(), "e", "1", json!({})).await.0, 202);
    let view = gw.sale_view(&sku).await;
    assert_eq!(view["database"]["initial_stock"], 7);
    assert_eq!(
        view["database"]["stock"], 7,
        "nothing is confirmed without a worker"
    );
    assert_eq!(view["redis"]["remaining"], 6);
    assert_eq!(view["in_flight_units"], 1);
    assert_eq!(gw.readyz().await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_lost_the_sale_makes_the_gateway_refuse_with_503_not_sold_out_nor_unlimited() {
    let gw = Running::start().await;
    let sku = sku();
    gw.ctx.open_sale(&sku, 5, 5).await;
    // Redis restarted empty: every key of the sale is gone, the database still has the sale.
    gw.ctx.ledger().forget(&sku).await.unwrap();
    for user in ["a", "b", "c"] {
        let (status, body) = gw.buy(sku.as_str(), user, "k", json!({})).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (503, Some("sale_not_ready")),
            "{body}"
        );
    }
    assert!(
        gw.ctx.ledger().snapshot(&sku).await.unwrap().is_none(),
        "nothing was sold or recreated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retriable_produce_errors_are_retried_and_the_order_lands_in_kafka_exactly_once() {
    use kafka::rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let gw = Running::start().await;
    let sku = sku();
    gw.ctx.open_sale(&sku, 5, 5).await;
    assert_eq!(gw.buy(sku.as_str(), "warm", "w", json!({})).await.0, 202);
    gw.ctx.broker.mock().request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 3],
    );
    let (status, body) = gw.buy(sku.as_str(), "erin", "k", json!({})).await;
    assert_eq!(status, 202, "{body}");
    let consumer = testkit::probe(&gw.ctx.endpoint(), &gw.ctx.settings.kafka.orders_topic);
    let mut copies = 0;
    while let Ok(Ok(message)) = tokio::time::timeout(Duration::from_secs(3), consumer.recv()).await
    {
        let order = domain::OrderRequested::decode(message.payload().unwrap()).unwrap();
        if order.order_id.as_str() == body["order_id"].as_str().unwrap() {
            copies += 1;
        }
    }
    assert_eq!(copies, 1);
    assert_eq!(gw.app.metrics.produce_failures.get(), 0);
    assert_eq!(gw.remaining(&sku).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_goes_false_while_the_broker_is_down_and_true_when_it_is_back() {
    let gw = Running::start().await;
    let readyz = || gw.readyz();
    let ready = || async { readyz().await.0 };
    assert_eq!(readyz().await, (200, json!({"status": "ok"})));
    gw.ctx.broker.mock().broker_down(1).unwrap();
    let down = testkit::eventually(Duration::from_secs(20), "readiness to go false", || async {
        let (status, body) = readyz().await;
        (status == 503).then_some(body)
    })
    .await;
    assert_eq!(down, json!({"status": "unavailable", "failing": ["kafka"]}));
    gw.ctx.broker.mock().broker_up(1).unwrap();
    testkit::eventually(
        Duration::from_secs(30),
        "readiness to come back",
        || async { (ready().await == 200).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_identity_provider_cannot_be_reached_is_not_ready_and_names_it() {
    let mut ctx = TestContext::new().await.unwrap();
    // Nothing listens on port 1.
    ctx.settings.auth.jwks_url = "http://127.0.0.1:1/jwks.json".into();
    let gw = Running::on(ctx).await;
    assert_eq!(
        gw.readyz().await,
        (
            503,
            json!({"status": "unavailable", "failing": ["identity_provider"]})
        )
    );
    // And no token is taken meanwhile, not even one signed with the HS256 secret.
    let (status, _) = gw.buy("phone-x", "alice", "k", json!({})).await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_reused_for_another_quantity_is_422_and_reserves_nothing() {
    let gw = Running::start().await;
    let sku = sku();
    gw.ctx.open_sale(&sku, 10, 5).await;
    let (status, first) = gw
        .buy(sku.as_str(), "erin", "k-1", json!({"quantity": 1}))
        .await;
    assert_eq!(status, 202, "{first}");
    let (status, reused) = gw
        .buy(sku.as_str(), "erin", "k-1", json!({"quantity": 2}))
        .await;
    assert_eq!(
        (status, reused["code"].as_str()),
        (422, Some("idempotency_key_reused")),
        "{reused}"
    );
    assert!(
        reused["title"]
            .as_str()
            .unwrap()
            .contains(first["order_id"].as_str().unwrap()),
        "the answer names the order the key belongs to: {reused}"
    );
    assert_eq!(gw.remaining(&sku).await, 9, "nothing more was reserved");
    // The same request again is still the same order; another key is another order.
    let (status, again) = gw
        .buy(sku.as_str(), "erin", "k-1", json!({"quantity": 1}))
        .await;
    assert!(matches!(status, 202 | 409), "{again}");
    if status == 202 {
        assert_eq!(again["order_id"], first["order_id"]);
    }
    let (status, other) = gw
        .buy(sku.as_str(), "erin", "k-2", json!({"quantity": 2}))
        .await;
    assert_eq!(status, 202, "{other}");
    assert_eq!(gw.remaining(&sku).await, 7);
    assert_eq!(
        gw.app
            .metrics
            .reservations
            .with_label_values(&["key_reused"])
            .get(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_committed_openapi_document_is_the_one_the_gateway_generates_and_serves() {
    let committed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json"),
    )
    .unwrap();
    assert!(
        committed == gateway::openapi::pretty_json(),
        "docs/openapi.json differs from what the handlers' annotations generate: run `make openapi` and commit it"
    );
    let gw = Running::start().await;
    let served: Value = gw
        .client
        .get(format!("{}/openapi.json", gw.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served, serde_json::from_str::<Value>(&committed).unwrap());
    assert_eq!(served["openapi"], "3.1.0");
    for route in [
        "/v1/sales/{sku_id}/orders",
        "/v1/orders/{order_id}",
        "/v1/payments",
        "/v1/admin/sales/{sku_id}",
        "/v1/admin/refunds",
    ] {
        assert!(served["paths"][route].is_object(), "{route} is documented");
    }
    let page = gw
        .client
        .get(format!("{}/docs/", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("swagger-ui"),
        "the page for people: {html:.200}"
    );
}

#[test]
fn a_deployment_with_the_development_secret_refuses_to_start_and_names_the_key() {
    // The development secret given explicitly (a `.env` file nearby cannot replace it), from a
    // directory with no `.env`, and no backend to reach: the check comes first.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_seckill-gateway"))
        .current_dir(std::env::temp_dir())
        .env("SECKILL_ENV", "production")
        .env("SECKILL_CONFIG_DIR", "/nonexistent")
        .env(
            "SECKILL__AUTH__JWT_SECRET",
            "local-development-secret-change-me",
        )
        .env("SECKILL__REDIS__URL", "redis://127.0.0.1:1")
        .env("SECKILL__KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success(), "it must not start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("auth.jwt_secret") && stderr.contains("development default"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_listens_on_its_own_port_and_the_public_one_does_not_reveal_it() {
    let mut ctx = TestContext::new().await.unwrap();
    ctx.settings.http.admin_on_public = false;
    let gw = Running::on(ctx).await;
    let sku = sku();
    let now = chrono::Utc::now();
    let sale = json!({
        "stock": 5, "per_user_limit": 1,
        "starts_at": now - chrono::Duration::minutes(1),
        "ends_at": now + chrono::Duration::hours(1),
    });
    let put = |base: &str| {
        gw.client
            .put(format!("{base}/v1/admin/sales/{sku}"))
            .bearer_auth(gw.admin())
            .json(&sale)
            .send()
    };
    let public = put(&gw.url).await.unwrap();
    assert_eq!(
        public.status(),
        404,
        "the public port does not serve the admin API"
    );
    let problem: Value = public.json().await.unwrap();
    assert_eq!(problem["code"], "not_found");
    let refunds = gw
        .client
        .get(format!("{}/v1/admin/refunds", gw.url))
        .bearer_auth(gw.admin())
        .send()
        .await
        .unwrap();
    assert_eq!(refunds.status(), 404);
    assert_ne!(gw.admin_url, gw.url);
    assert_eq!(put(&gw.admin_url).await.unwrap().status(), 200);
    // The buyers' API stays on the public port.
    let (status, body) = gw.buy(sku.as_str(), "olga", "k1", json!({})).await;
    assert_eq!(status, 202, "{body}");
}
