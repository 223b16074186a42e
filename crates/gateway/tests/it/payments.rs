//! The payment webhook over real HTTP: paid in time, the same notice twice, late, for a paid,
//! failed, queued or unknown order, with a bad signature or a wrong amount; a priced sale's
//! orders paid only with their exact price, a free sale's only with 0, a sale saved before
//! sales had to name a price not at all; and units an expiry returns sold again at once,
//! through the sold-out flag.

use super::{answer, assert_problem, sku, Running};
use domain::sale::Pricing;
use domain::{OrderId, PaymentTerms, SkuId};
use serde_json::{json, Value};
use std::time::Duration;
use testkit::{order, signed_notice, written_orders};

impl Running {
    /// The secret payment notices are signed with.
    fn webhook_secret(&self) -> Vec<u8> {
        use settings::secrecy::ExposeSecret;
        self.ctx
            .settings
            .payments
            .webhook_secret
            .expose_secret()
            .as_bytes()
            .to_vec()
    }

    /// Sends a notice signed with the gateway's webhook secret.
    async fn pay(
        &self,
        payment_id: &str,
        order: &OrderId,
        amount: u64,
        currency: &str,
    ) -> (u16, Value) {
        let (body, signature) =
            signed_notice(&self.webhook_secret(), payment_id, order, amount, currency);
        self.notify(body, Some(signature)).await
    }

    /// Sends `body` as a payment notice, with `signature` if any: the status and the body.
    async fn notify(&self, body: Vec<u8>, signature: Option<String>) -> (u16, Value) {
        let mut request = self
            .client
            .post(format!("{}/v1/payments", self.url))
            .header("content-type", "application/json")
            .body(body);
        if let Some(signature) = signature {
            request = request.header("Seckill-Signature", signature);
        }
        answer(request).await
    }

    /// The order as `user` sees it; asserts they may.
    async fn order_of(&self, user: &str, order: &OrderId) -> Value {
        let response = self
            .client
            .get(format!("{}/v1/orders/{order}", self.url))
            .bearer_auth(self.token(user))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// How many notices the gateway counted with `outcome`.
    fn payments_counted(&self, outcome: &str) -> u64 {
        self.app
            .metrics
            .payments
            .with_label_values(&[outcome])
            .get()
    }
}

/// A sale of its own on `terms`, with `n` orders written (buyer `buyer-<i>`, one unit each): its
/// SKU and the orders.
async fn sale_with_orders(
    gw: &Running,
    stock: i64,
    terms: PaymentTerms,
    n: usize,
) -> (SkuId, Vec<OrderId>) {
    let sku = sku();
    let spec = testkit::open_spec(stock, 2).with_payment(terms);
    gw.ctx.open_sale_as(&sku, spec).await;
    let orders: Vec<_> = (0..n)
        .map(|i| order(&sku, &format!("buyer-{i}"), "k-1", 1))
        .collect();
    written_orders(&gw.ctx.ledger(), &gw.ctx.store().await, &orders).await;
    (sku, orders.into_iter().map(|o| o.order_id).collect())
}

/// The price of a unit of the sales [`window`] makes, in minor units of EUR.
const PRICE: u64 = 100;

/// [`sale_with_orders`] giving a second to pay, once that second has passed.
async fn overdue_orders(gw: &Running, stock: i64, n: usize) -> (SkuId, Vec<OrderId>) {
    let sale = sale_with_orders(gw, stock, window(1), n).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    sale
}

/// An expirer of the test's world (the gateway's tests run one by hand, not a whole worker).
pub(super) fn expirer(gw: &Running, store: &store::Store) -> order_worker::expirer::Expirer {
    order_worker::expirer::Expirer::new(
        gw.ctx.ledger(),
        store.clone(),
        gw.ctx.settings.expiry.clone(),
        order_worker::metrics::WorkerMetrics::new(telemetry::new_registry()),
    )
}

/// Payment terms of `secs` to pay, at [`PRICE`] EUR a unit.
fn window(secs: i64) -> PaymentTerms {
    PaymentTerms::new(secs, Some(PRICE as i64), Some("EUR"), false).unwrap()
}

/// Payment terms of a free sale, 600 seconds to pay.
fn free() -> PaymentTerms {
    PaymentTerms::new(600, None, None, true).unwrap()
}

/// A sale body for the admin API, open now for an hour, with `pricing`'s fields added.
fn sale_body(pricing: Value) -> Value {
    let now = chrono::Utc::now();
    let mut body = json!({
        "stock": 5, "per_user_limit": 2,
        "starts_at": now - chrono::Duration::minutes(1),
        "ends_at": now + chrono::Duration::hours(1),
    });
    body.as_object_mut()
        .unwrap()
        .extend(pricing.as_object().unwrap().clone());
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_in_time_pays_the_order_once_and_the_same_notice_again_changes_nothing() {
    let gw = Running::start().await;
    let (sku, orders) = sale_with_orders(&gw, 5, window(600), 1).await;
    let id = &orders[0];
    let before = gw.order_of("buyer-0", id).await;
    assert_eq!(before["status"], "awaiting_payment", "{before}");
    assert!(before["pay_by"].is_string(), "{before}");

    let (status, paid) = gw.pay("pay-1", id, PRICE, "EUR").await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(
        paid,
        json!({"order_id": id.as_str(), "status": "paid", "payment_id": "pay-1"})
    );
    let after = gw.order_of("buyer-0", id).await;
    assert_eq!(after["status"], "paid", "{after}");
    assert!(after["paid_at"].is_string(), "{after}");

    // The provider retries: same answer, nothing moves.
    assert_eq!(gw.pay("pay-1", id, PRICE, "EUR").await, (200, paid.clone()));
    assert_eq!(gw.payments_counted("paid"), 1);
    assert_eq!(gw.payments_counted("replayed"), 1);
    // The same id for another amount is a client bug.
    assert_problem(
        &gw.pay("pay-1", id, 999, "EUR").await,
        422,
        "payment_conflict",
    );
    // A second payment of a paid order is money to give back.
    assert_problem(
        &gw.pay("pay-2", id, PRICE, "EUR").await,
        409,
        "order_already_paid",
    );

    let sale = gw.admin_json(&format!("/v1/admin/sales/{sku}")).await;
    assert_eq!(
        sale["database"]["paid"],
        json!({"orders": 1, "units": 1}),
        "{sale}"
    );
    assert_eq!(sale["database"]["stock"], 4, "{sale}");
    assert_eq!(sale["database"]["refunds_due"], 1, "{sale}");
    let refunds = gw.admin_json("/v1/admin/refunds").await;
    let listed = refunds["refunds_due"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{refunds}");
    assert_eq!(listed[0]["payment_id"], "pay-2");
    assert_eq!(listed[0]["reason"], "order_already_paid");
    assert_eq!(gw.app.metrics.refunds_due.get(), 1);
    for query in ["limit=0", "limit=1001", "limit=x", "page=2"] {
        let response = gw.admin_get(&format!("/v1/admin/refunds?{query}")).await;
        assert_eq!(response.status(), 400, "{query}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "invalid_query", "{query}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_after_expiry_is_409_recorded_as_a_refund_and_moves_no_unit() {
    let gw = Running::start().await;
    let (sku, orders) = overdue_orders(&gw, 3, 2).await;
    let store = gw.ctx.store().await;

    // The first order expired before its payment came: the expirer ran.
    let expirer = expirer(&gw, &store);
    let report = expirer.expire().await.unwrap();
    assert_eq!((report.expired, report.units_returned), (2, 2));
    let stock_before = store.sale_stats(&sku).await.unwrap().unwrap().stock;
    let remaining_before = gw.remaining(&sku).await;
    assert_eq!((stock_before, remaining_before), (3, 3));

    assert_problem(
        &gw.pay("late-1", &orders[0], PRICE, "EUR").await,
        409,
        "order_expired",
    );
    assert_eq!(
        gw.pay("late-1", &orders[0], PRICE, "EUR").await.0,
        409,
        "a retry answers the same"
    );
    assert_eq!(
        store.sale_stats(&sku).await.unwrap().unwrap().stock,
        stock_before
    );
    assert_eq!(gw.remaining(&sku).await, remaining_before);
    let view = gw.order_of("buyer-0", &orders[0]).await;
    assert_eq!(view["status"], "expired", "{view}");
    assert_eq!(view["reason"], "payment_window_elapsed", "{view}");
    let refunds = gw.admin_json("/v1/admin/refunds").await;
    assert_eq!(
        refunds["refunds_due"][0]["reason"], "order_expired",
        "{refunds}"
    );
    assert_eq!(gw.payments_counted("order_expired"), 1);
    assert_eq!(gw.payments_counted("replayed"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_payment_that_beats_the_expirer_expires_the_order_itself() {
    let gw = Running::start().await;
    let (sku, orders) = overdue_orders(&gw, 1, 1).await;
    let store = gw.ctx.store().await;

    assert_problem(
        &gw.pay("late-1", &orders[0], PRICE, "EUR").await,
        409,
        "order_expired",
    );
    let row = store.order(&orders[0]).await.unwrap().unwrap();
    assert_eq!(row.status, "expired");
    assert_eq!(
        row.units_returned_at, None,
        "Redis is the expirer's to give back"
    );
    assert_eq!(store.sale_stats(&sku).await.unwrap().unwrap().stock, 1);
    assert_eq!(gw.remaining(&sku).await, 0);
    let expirer = expirer(&gw, &store);
    let report = expirer.expire().await.unwrap();
    assert_eq!((report.expired, report.units_returned), (0, 1));
    assert_eq!(gw.remaining(&sku).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_without_a_valid_signature_are_401_and_record_nothing() {
    let gw = Running::start().await;
    let (_, orders) = sale_with_orders(&gw, 2, window(600), 1).await;
    let id = &orders[0];
    let (body, good) = signed_notice(&gw.webhook_secret(), "pay-1", id, PRICE, "EUR");
    let now = chrono::Utc::now().timestamp();
    let cases = [
        ("no header", None),
        (
            "another secret",
            Some(domain::payment::sign(b"not-the-webhook-secret", now, &body)),
        ),
        (
            "stale",
            Some(domain::payment::sign(
                &gw.webhook_secret(),
                now - 301,
                &body,
            )),
        ),
        ("malformed", Some("v1=abc".to_owned())),
        (
            "signature of another body",
            Some(domain::payment::sign(&gw.webhook_secret(), now, b"{}")),
        ),
    ];
    for (what, signature) in cases {
        let (status, problem) = gw.notify(body.clone(), signature).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (401, Some("invalid_signature")),
            "{what}: {problem}"
        );
    }
    let view = gw.order_of("buyer-0", id).await;
    assert_eq!(view["status"], "awaiting_payment", "{view}");
    assert_eq!(gw.payments_counted("invalid_signature"), 5);
    assert_eq!(
        gw.notify(body, Some(good)).await.0,
        200,
        "the genuine notice still pays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_unknown_failed_and_mispriced_orders_each_get_their_own_answer() {
    let gw = Running::start().await;
    let terms = PaymentTerms::new(600, Some(1999), Some("EUR"), false).unwrap();
    let (sku, orders) = sale_with_orders(&gw, 5, terms, 1).await;
    // Mispriced: nothing recorded, the right amount then pays.
    for (amount, currency) in [(1000, "EUR"), (1999, "USD")] {
        assert_problem(
            &gw.pay("pay-1", &orders[0], amount, currency).await,
            422,
            "amount_mismatch",
        );
    }
    assert_eq!(gw.pay("pay-1", &orders[0], 1999, "EUR").await.0, 200);

    // Queued: reserved in Redis, not yet written.
    let queued = order(&sku, "buyer-q", "k-1", 1);
    testkit::reserve(&gw.ctx.ledger(), &queued).await;
    assert_problem(
        &gw.pay("pay-q", &queued.order_id, 1999, "EUR").await,
        409,
        "order_pending",
    );
    // Unknown.
    let unknown = order(&sku, "nobody", "k-1", 1).order_id;
    assert_problem(
        &gw.pay("pay-u", &unknown, 1999, "EUR").await,
        404,
        "order_not_found",
    );
    // Failed.
    let failed = order(&sku, "buyer-f", "k-1", 1);
    let store = gw.ctx.store().await;
    store
        .mark_failed(&failed, domain::ReasonCode::DbOutOfStock)
        .await
        .unwrap();
    assert_problem(
        &gw.pay("pay-f", &failed.order_id, 1999, "EUR").await,
        409,
        "order_failed",
    );
    // Bad body (signed, so it reaches the parser).
    let (body, signature) = {
        let body = br#"{"payment_id": "", "order_id": 1}"#.to_vec();
        let header =
            domain::payment::sign(&gw.webhook_secret(), chrono::Utc::now().timestamp(), &body);
        (body, header)
    };
    assert_problem(&gw.notify(body, Some(signature)).await, 400, "invalid_body");

    let stats = store.sale_stats(&sku).await.unwrap().unwrap();
    assert_eq!((stats.paid.orders, stats.refunds_due), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_of_a_priced_sale_is_paid_only_by_its_exact_price_never_by_0() {
    let gw = Running::start().await;
    let terms = PaymentTerms::new(600, Some(1999), Some("EUR"), false).unwrap();
    let (sku, orders) = sale_with_orders(&gw, 5, terms, 1).await;
    let id = &orders[0];
    let wrong = [
        (0, "EUR"),
        (1999, "USD"),
        (0, "USD"),
        (1998, "EUR"),
        (2000, "EUR"),
    ];
    for (n, (amount, currency)) in wrong.into_iter().enumerate() {
        let (status, problem) = gw.pay(&format!("pay-{n}"), id, amount, currency).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (422, Some("amount_mismatch")),
            "{amount} {currency}: {problem}"
        );
        let title = problem["title"].as_str().unwrap();
        assert!(title.contains("1999 in minor units of EUR"), "{title}");
    }
    let view = gw.order_of("buyer-0", id).await;
    assert_eq!(view["status"], "awaiting_payment", "{view}");
    let store = gw.ctx.store().await;
    assert!(
        store.payments_of_sku(&sku).await.unwrap().is_empty(),
        "nothing recorded"
    );
    assert_eq!(gw.payments_counted("amount_mismatch"), 5);
    // A refused notice records nothing, its payment id included: the right amount then pays
    // under it.
    assert_eq!(gw.pay("pay-0", id, 1999, "EUR").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_of_a_free_sale_is_paid_by_0_and_by_nothing_else() {
    let gw = Running::start().await;
    let (sku, orders) = sale_with_orders(&gw, 5, free(), 1).await;
    let id = &orders[0];
    let refused = gw.pay("pay-1", id, PRICE, "EUR").await;
    assert_problem(&refused, 422, "amount_mismatch");
    let title = refused.1["title"].as_str().unwrap();
    assert!(title.contains("amount_minor 0"), "{title}");
    let view = gw.order_of("buyer-0", id).await;
    assert_eq!(view["status"], "awaiting_payment", "{view}");

    // The notice's currency is not checked: a free sale names none.
    let (status, paid) = gw.pay("pay-2", id, 0, "USD").await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(gw.order_of("buyer-0", id).await["status"], "paid");
    let stats = gw.ctx.sale_stats(&sku).await;
    assert_eq!((stats.paid.orders, stats.refunds_due), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_saved_before_sales_named_a_price_refuses_every_payment_until_it_is_put_again() {
    let gw = Running::start().await;
    // The row a sale saved by an earlier build holds: no price, not free.
    let legacy = PaymentTerms {
        window_secs: 600,
        pricing: Pricing::Unpriced,
    };
    let (sku, orders) = sale_with_orders(&gw, 5, legacy, 1).await;
    let id = &orders[0];
    let row = gw.ctx.store().await.sale(&sku).await.unwrap().unwrap();
    assert_eq!(
        (row.price_minor, &row.currency, row.free),
        (None, &None, false)
    );

    for (n, amount) in [0, PRICE].into_iter().enumerate() {
        let (status, problem) = gw.pay(&format!("pay-{n}"), id, amount, "EUR").await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (422, Some("sale_unpriced")),
            "{amount}: {problem}"
        );
        let title = problem["title"].as_str().unwrap();
        assert!(
            title.contains("price_minor") && title.contains("free"),
            "the title tells the operator what to do: {problem}"
        );
    }
    let view = gw.order_of("buyer-0", id).await;
    assert_eq!(view["status"], "awaiting_payment", "{view}");
    assert_eq!(gw.payments_counted("sale_unpriced"), 2);
    let view = gw.sale_view(&sku).await;
    assert_eq!(view["free"], false, "{view}");
    assert!(view.get("price_minor").is_none(), "{view}");

    // The operator puts it again with its price: the order can be paid.
    let priced = sale_body(json!({"price_minor": PRICE, "currency": "EUR"}));
    assert_eq!(gw.put_sale(&sku, &priced).await.0, 200);
    assert_eq!(gw.pay("pay-2", id, PRICE, "EUR").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_is_put_with_a_price_or_as_free_and_anything_else_is_400_naming_the_fields() {
    let gw = Running::start().await;
    let cases = [
        ("neither price nor free", json!({})),
        ("free false, no price", json!({"free": false})),
        ("a price of 0", json!({"price_minor": 0, "currency": "EUR"})),
        ("a price without currency", json!({"price_minor": 100})),
        ("a currency without price", json!({"currency": "EUR"})),
        (
            "free with a price",
            json!({"free": true, "price_minor": 100, "currency": "EUR"}),
        ),
        (
            "free with a currency",
            json!({"free": true, "currency": "EUR"}),
        ),
    ];
    for (what, pricing) in cases {
        let sku = sku();
        let (status, problem) = gw.put_sale(&sku, &sale_body(pricing)).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (400, Some("invalid_sale")),
            "{what}: {problem}"
        );
        let title = problem["title"].as_str().unwrap();
        assert!(
            title.contains("price_minor") && title.contains("free"),
            "{what}: the title names the fields: {problem}"
        );
        let saved = gw.admin_get(&format!("/v1/admin/sales/{sku}")).await;
        assert_eq!(saved.status(), 404, "{what}: nothing saved");
    }

    let sku = sku();
    let (status, saved) = gw.put_sale(&sku, &sale_body(json!({"free": true}))).await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["free"], true, "{saved}");
    assert!(saved.get("price_minor").is_none(), "{saved}");
    assert_eq!(gw.sale_view(&sku).await["free"], true);
    // Put again with a price: no longer free.
    let priced = sale_body(json!({"price_minor": 1999, "currency": "EUR"}));
    let (status, saved) = gw.put_sale(&sku, &priced).await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(
        (&saved["price_minor"], &saved["currency"], &saved["free"]),
        (&json!(1999), &json!("EUR"), &json!(false)),
        "{saved}"
    );
    let view = gw.sale_view(&sku).await;
    assert_eq!(
        (&view["price_minor"], &view["currency"], &view["free"]),
        (&json!(1999), &json!("EUR"), &json!(false)),
        "{view}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_an_expiry_returns_are_sold_again_at_once_though_the_sale_was_sold_out() {
    let gw = Running::with(|s| s.gateway.sold_out_recheck_ms = 200).await;
    let (sku, _) = sale_with_orders(&gw, 1, window(1), 1).await;
    let store = gw.ctx.store().await;
    // Sold out, and remembered by the gateway.
    for key in ["a", "b", "c"] {
        gw.assert_sold_out(&sku, "latecomer", key).await;
    }
    assert!(
        gw.app.metrics.sold_out_local.get() >= 1,
        "the flag answered"
    );
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let expirer = expirer(&gw, &store);
    testkit::eventually(Duration::from_secs(5), "the order to expire", || async {
        (expirer.expire().await.unwrap().units_returned == 1).then_some(())
    })
    .await;
    // Within the flag's re-check bound (200 ms); the wait allows for a busy machine.
    let (status, bought) = testkit::eventually(
        Duration::from_secs(3),
        "the returned unit to sell",
        || async {
            let answer = gw.buy(sku.as_str(), "latecomer", "d", json!({})).await;
            (answer.0 == 202).then_some(answer)
        },
    )
    .await;
    assert_eq!(status, 202, "{bought}");
}
