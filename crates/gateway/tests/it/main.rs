//! The gateway over real HTTP, against the machine's Redis and PostgreSQL and an embedded Kafka.

// Test helpers panic to report, like the tests themselves.
#![allow(clippy::unwrap_used)]

mod abuse;
mod hot_path;
mod payments;
mod process;
mod reconcile;
mod waiting_room;

use domain::SkuId;
use kafka::rdkafka::Message;
use serde_json::{json, Value};
use std::time::Duration;
use testkit::{sku, TestContext};
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
    /// A gateway of a fresh world.
    async fn start() -> Self {
        Self::with(|_| ()).await
    }

    /// A gateway of a fresh world whose settings `adjust` changes first.
    async fn with(adjust: impl FnOnce(&mut settings::Settings)) -> Self {
        let mut ctx = TestContext::new().await.unwrap();
        adjust(&mut ctx.settings);
        Self::on(ctx).await
    }

    /// A gateway in this process, in `ctx`'s world.
    async fn on(ctx: TestContext) -> Self {
        let deps = connections::Connections::connect(&ctx.settings, None)
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

    /// A buyer's token for `user`.
    fn token(&self, user: &str) -> String {
        gateway::auth::sign(&self.ctx.secret(), user, None, 600)
    }

    /// An admin's token.
    fn admin(&self) -> String {
        gateway::auth::sign(&self.ctx.secret(), "ops", Some("admin"), 600)
    }

    /// `GET path` on the public port, as an admin.
    async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.url))
            .bearer_auth(self.admin())
            .send()
            .await
            .unwrap()
    }

    /// `GET path` as an admin, answered 200: the body.
    async fn admin_json(&self, path: &str) -> Value {
        let response = self.admin_get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.unwrap()
    }

    /// `GET /v1/admin/sales/{sku}`: the sale as the database and Redis see it.
    async fn sale_view(&self, sku: &SkuId) -> Value {
        self.admin_json(&format!("/v1/admin/sales/{sku}")).await
    }

    /// The request of `user` buying `sku` under `key` with `body`, to the gateway at `base` (this
    /// one's URL or a replica's).
    fn buy_request(
        &self,
        base: &str,
        sku: &str,
        user: &str,
        key: &str,
        body: &Value,
    ) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{base}/v1/sales/{sku}/orders"))
            .bearer_auth(self.token(user))
            .header("Idempotency-Key", key)
            .json(body)
    }

    /// `user` buying `sku` under `key` with `body`: the status and the body.
    async fn buy(&self, sku: &str, user: &str, key: &str, body: Value) -> (u16, Value) {
        answer(self.buy_request(&self.url, sku, user, key, &body)).await
    }

    /// `GET path` on the public port.
    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
    }

    /// `GET /readyz` (on the admin port): its status and body.
    async fn readyz(&self) -> (u16, Value) {
        answer(self.client.get(format!("{}/readyz", self.admin_url))).await
    }

    /// `PUT /v1/admin/sales/{sku}` of `sale` as an admin: the status and the body.
    async fn put_sale(&self, sku: &SkuId, sale: &Value) -> (u16, Value) {
        let request = self
            .client
            .put(format!("{}/v1/admin/sales/{sku}", self.url))
            .bearer_auth(self.admin());
        answer(request.json(sale)).await
    }

    /// Sends `body` to buy `sku` as `user` under `key`; asserts the order is accepted: its body.
    async fn accepted(&self, sku: &SkuId, user: &str, key: &str, body: Value) -> Value {
        let (status, body) = self.buy(sku.as_str(), user, key, body).await;
        assert_eq!(status, 202, "{body}");
        body
    }

    /// Asserts that `user` buying one unit of `sku` under `key` is refused as sold out.
    async fn assert_sold_out(&self, sku: &SkuId, user: &str, key: &str) {
        let answer = self.buy(sku.as_str(), user, key, json!({})).await;
        assert_problem(&answer, 409, "sold_out");
    }

    /// The units of `sku` Redis still offers.
    async fn remaining(&self, sku: &SkuId) -> i64 {
        self.ctx.snapshot(sku).await.remaining
    }
}

/// A worker on `settings` in the test's process, writing what the gateway queues.
async fn start_worker(settings: &settings::Settings) -> testkit::Spawned {
    let worker = order_worker::Worker::connect(settings, None).await.unwrap();
    testkit::Spawned::spawn(|stop| worker.run_until_stopped(stop))
}

/// Sends `request`: the status and the JSON body (null if it has none).
async fn answer(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Asserts that `answer` (a status and a body) is the problem `code` with `status`.
fn assert_problem(answer: &(u16, Value), status: u16, code: &str) {
    let (answered, body) = answer;
    assert_eq!(
        (*answered, body["code"].as_str()),
        (status, Some(code)),
        "{body}"
    );
}

/// A gateway of a fresh world with a sale of `stock` units open, `per_user_limit` per buyer.
async fn selling(stock: i64, per_user_limit: i64) -> (Running, SkuId) {
    let gw = Running::start().await;
    let sku = sku();
    gw.ctx.open_sale(&sku, stock, per_user_limit).await;
    (gw, sku)
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_4xx_with_a_stable_code_and_reserves_nothing() {
    let (gw, sku) = selling(10, 2).await;
    let url = &gw.url;
    let buyer = gw.token("mallory");
    let orders = format!("{url}/v1/sales/{sku}/orders");
    let c = &gw.client;
    let mut cases: Vec<(String, reqwest::RequestBuilder, u16, &str)> = Vec::new();
    // Tokens that prove nothing.
    let another_secret = gateway::auth::sign(b"another-secret-of-16+", "mallory", None, 60);
    for (what, token) in [
        ("no token", None),
        (
            "token signed with another secret",
            Some(another_secret.as_str()),
        ),
        ("garbage token", Some("a.b.c")),
    ] {
        let request = c.post(&orders).header("Idempotency-Key", "k");
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        cases.push((what.to_owned(), request, 401, "unauthorized"));
    }
    // A buyer's order, right but for what each case below gets wrong.
    let buyer_post = |to: &str| {
        c.post(to)
            .bearer_auth(&buyer)
            .header("Idempotency-Key", "k")
    };
    let too_large = " ".repeat(5000);
    for (body, status, code) in [
        (r#"{"quantity":0}"#, 400, "invalid_quantity"),
        (r#"{"quantity":1000000}"#, 400, "invalid_quantity"),
        (r#"{"quantity":-1}"#, 400, "invalid_quantity"),
        (r#"{"quantity":"2"}"#, 400, "invalid_body"),
        ("quantity=1", 400, "invalid_body"),
        // JSON, but an array of the fields' values.
        ("[null]", 400, "invalid_body"),
        (r#"{"qty":1}"#, 400, "invalid_body"),
        (too_large.as_str(), 413, "payload_too_large"),
    ] {
        let request = buyer_post(&orders).body(body.to_owned());
        cases.push((format!("the body {body:.30}"), request, status, code));
    }
    for (sku, status, code) in [
        ("a%7Bb%7D".to_owned(), 400, "invalid_sku"),
        (format!("nope-{sku}"), 404, "sale_not_found"),
    ] {
        let request = buyer_post(&format!("{url}/v1/sales/{sku}/orders"));
        cases.push((format!("the sku {sku}"), request, status, code));
    }
    // Places a buyer may not GET.
    for (path, status, code) in [
        (format!("/v1/sales/{sku}/orders"), 405, "method_not_allowed"),
        ("/v2/whatever".to_owned(), 404, "not_found"),
        ("/v1/orders/nope".to_owned(), 400, "invalid_order_id"),
        (format!("/v1/admin/sales/{sku}"), 403, "forbidden"),
    ] {
        let request = c.get(format!("{url}{path}")).bearer_auth(&buyer);
        cases.push((format!("GET {path}"), request, status, code));
    }
    let other_cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
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
            "sale with its end before its start",
            c.put(format!("{url}/v1/admin/sales/{sku}"))
                .bearer_auth(gw.admin())
                .json(&json!({
                    "stock": 5, "per_user_limit": 1, "free": true,
                    "starts_at": "2030-01-02T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z"
                })),
            400,
            "invalid_sale",
        ),
    ];
    for (what, request, status, code) in other_cases {
        cases.push((what.to_owned(), request, status, code));
    }
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
    let (gw, sku) = selling(10, 5).await;
    let first = gw
        .accepted(&sku, "alice", "key-1", json!({"quantity": 2}))
        .await;
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
    let (gw, sku) = selling(3, 2).await;
    assert_eq!(
        gw.buy(sku.as_str(), "a", "1", json!({"quantity": 2}))
            .await
            .0,
        202
    );
    assert_problem(
        &gw.buy(sku.as_str(), "a", "2", json!({})).await,
        409,
        "limit_exceeded",
    );
    assert_eq!(gw.buy(sku.as_str(), "b", "1", json!({})).await.0, 202);
    gw.assert_sold_out(&sku, "c", "1").await;
    assert_eq!(gw.remaining(&sku).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_broker_does_not_acknowledge_the_buyer_gets_503_and_the_reservation_is_released() {
    let (gw, sku) = selling(5, 5).await;
    // Warm the producer's connection so the fault hits the produce, not the bootstrap.
    assert_eq!(gw.buy(sku.as_str(), "warm", "w", json!({})).await.0, 202);

    gw.ctx.broker.mock().broker_down(1).unwrap();
    let started = std::time::Instant::now();
    assert_problem(
        &gw.buy(sku.as_str(), "dave", "k", json!({"quantity": 2}))
            .await,
        503,
        "broker_unavailable",
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
    let sale = json!({
        "stock": 7, "per_user_limit": 1, "price_minor": 1999, "currency": "EUR",
        "starts_at": "2020-01-01T00:00:00Z", "ends_at": "2099-01-01T00:00:00Z"
    });
    assert_eq!(gw.put_sale(&sku, &sale).await.0, 200);
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
    let (gw, sku) = selling(5, 5).await;
    // Redis restarted empty: every key of the sale is gone, the database still has the sale.
    gw.ctx.ledger().forget(&sku).await.unwrap();
    for user in ["a", "b", "c"] {
        assert_problem(
            &gw.buy(sku.as_str(), user, "k", json!({})).await,
            503,
            "sale_not_ready",
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
    let (gw, sku) = selling(5, 5).await;
    assert_eq!(gw.buy(sku.as_str(), "warm", "w", json!({})).await.0, 202);
    gw.ctx.broker.mock().request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 3],
    );
    let body = gw.accepted(&sku, "erin", "k", json!({})).await;
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
    // Nothing listens on port 1.
    let gw = Running::with(|s| s.auth.jwks_url = "http://127.0.0.1:1/jwks.json".into()).await;
    assert_eq!(
        gw.readyz().await,
        (
            503,
            json!({"status": "unavailable", "failing": ["identity_provider"]})
        )
    );
    // And no token is taken meanwhile, not even one signed with the HS256 secret.
    assert_eq!(gw.buy("phone-x", "alice", "k", json!({})).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_reused_for_another_quantity_is_422_and_reserves_nothing() {
    let (gw, sku) = selling(10, 5).await;
    let erin = |key: &'static str, quantity: i64| {
        gw.buy(sku.as_str(), "erin", key, json!({ "quantity": quantity }))
    };
    let (status, first) = erin("k-1", 1).await;
    assert_eq!(status, 202, "{first}");
    let reused = erin("k-1", 2).await;
    assert_problem(&reused, 422, "idempotency_key_reused");
    let reused = reused.1;
    assert!(
        reused["title"]
            .as_str()
            .unwrap()
            .contains(first["order_id"].as_str().unwrap()),
        "the answer names the order the key belongs to: {reused}"
    );
    assert_eq!(gw.remaining(&sku).await, 9, "nothing more was reserved");
    // The same request again is still the same order; another key is another order.
    let (status, again) = erin("k-1", 1).await;
    assert!(matches!(status, 202 | 409), "{again}");
    if status == 202 {
        assert_eq!(again["order_id"], first["order_id"]);
    }
    assert_eq!(erin("k-2", 2).await.0, 202, "another key is another order");
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
    let served: Value = gw.get("/openapi.json").await.json().await.unwrap();
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
    let page = gw.get("/docs/").await;
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
    let gw = Running::with(|s| s.http.admin_on_public = false).await;
    let sku = sku();
    let now = chrono::Utc::now();
    let sale = json!({
        "stock": 5, "per_user_limit": 1, "free": true,
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
    assert_eq!(gw.admin_get("/v1/admin/refunds").await.status(), 404);
    assert_ne!(gw.admin_url, gw.url);
    assert_eq!(put(&gw.admin_url).await.unwrap().status(), 200);
    // The buyers' API stays on the public port.
    gw.accepted(&sku, "olga", "k1", json!({})).await;
}
