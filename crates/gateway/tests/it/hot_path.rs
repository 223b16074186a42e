//! The gateway's hot path under its two shortcuts: the local sold-out flag (answers without
//! Redis, and lets units that come back sell again within its re-check bound on every replica)
//! and load shedding past `gateway.max_in_flight` (refused at once, nothing reserved).

use super::{answer, assert_problem, sku, Running};
use serde_json::json;
use std::time::{Duration, Instant};
use stock::ReleaseMode;
use tokio_util::sync::CancellationToken;

/// A second gateway process's worth of state, in the same world as `gw`.
pub(super) async fn replica(
    gw: &Running,
) -> (
    String,
    actix_web::web::Data<gateway::AppState>,
    CancellationToken,
) {
    let deps = connections::Connections::connect(&gw.ctx.settings, None)
        .await
        .unwrap();
    let app = gateway::Application::build(&gw.ctx.settings, deps).unwrap();
    let url = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    let stop = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(stop.clone()));
    (url, state, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sold_out_sale_is_answered_from_memory_and_returned_units_sell_again_within_the_bound_on_every_replica(
) {
    let gw = Running::with(|s| s.gateway.sold_out_recheck_ms = 300).await;
    let bound = Duration::from_millis(300);
    let (other_url, other, other_stop) = replica(&gw).await;
    let sku = sku();
    gw.ctx.open_sale(&sku, 1, 1).await;
    let first = gw.accepted(&sku, "alice", "k1", json!({})).await;
    // Both replicas learn from Redis that it is sold out.
    gw.assert_sold_out(&sku, "bob", "k1").await;
    let buy_on_other = |user: &'static str, key: &'static str| {
        answer(gw.buy_request(&other_url, sku.as_str(), user, key, &json!({})))
    };
    assert_eq!(buy_on_other("bob", "k1").await.0, 409);
    // Now from memory: no Redis call, counted as such.
    for user in ["carol", "dave", "erin"] {
        gw.assert_sold_out(&sku, user, "k1").await;
    }
    assert_eq!(gw.app.metrics.sold_out_local.get(), 3);
    assert_eq!(
        gw.app
            .metrics
            .reservations
            .with_label_values(&["sold_out"])
            .get(),
        1,
        "one sold-out answer came from Redis"
    );
    // A retry of the accepted order still gets its order, on either replica.
    let (status, again) = gw.buy(sku.as_str(), "alice", "k1", json!({})).await;
    assert_eq!((status, &again["order_id"]), (202, &first["order_id"]));
    // The other replica knows the order once its gateway has marked it acknowledged (within
    // `gateway.ack_flush_ms`); until then it answers 409 request_in_progress.
    let (status, again) = testkit::eventually(
        Duration::from_secs(5),
        "the retry on the other replica",
        || async {
            let answer = buy_on_other("alice", "k1").await;
            if answer.0 == 409 {
                assert_eq!(answer.1["code"], "request_in_progress");
            }
            (answer.0 == 202).then_some(answer)
        },
    )
    .await;
    assert_eq!((status, &again["order_id"]), (202, &first["order_id"]));

    // The unit comes back (as a compensation does it). Within the bound, both replicas sell it.
    let order = domain::OrderId::parse(first["order_id"].as_str().unwrap()).unwrap();
    let returned = Instant::now();
    gw.ctx
        .ledger()
        .release(&order, ReleaseMode::Compensate)
        .await
        .unwrap();
    let mut sold = None;
    while sold.is_none() {
        let elapsed = returned.elapsed();
        assert!(
            elapsed < bound + Duration::from_millis(500),
            "the returned unit was not offered within {elapsed:?}"
        );
        let (status, _) = buy_on_other("frank", "k1").await;
        if status == 202 {
            sold = Some(elapsed);
        } else {
            assert_eq!(status, 409);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Sold out again; the first replica re-checks within the bound too and answers it.
    gw.assert_sold_out(&sku, "grace", "k1").await;
    assert_eq!(gw.remaining(&sku).await, 0);
    assert!(other.metrics.sold_out_local.get() <= 100);
    other_stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_in_flight_a_buy_is_refused_at_once_with_retry_after_and_reserves_nothing() {
    let gw = Running::with(|s| s.gateway.max_in_flight = 2).await;
    let sku = sku();
    gw.ctx.open_sale(&sku, 10, 5).await;
    // Warm the producer's connection so that the outage hits the produce.
    assert_eq!(gw.buy(sku.as_str(), "warm", "w", json!({})).await.0, 202);
    gw.ctx.broker.mock().broker_down(1).unwrap();
    // Two buys wait for a broker that does not answer: the gateway's two slots are taken.
    let hanging: Vec<_> = ["alice", "bob"]
        .into_iter()
        .map(|user| {
            let request = gw.buy_request(&gw.url, sku.as_str(), user, "k1", &json!({}));
            tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
        })
        .collect();
    testkit::eventually(Duration::from_secs(5), "two requests in flight", || async {
        (gw.app.admission.current() == 2).then_some(())
    })
    .await;
    let started = Instant::now();
    let response = gw
        .buy_request(&gw.url, sku.as_str(), "carol", "k1", &json!({}))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "overloaded");
    assert!(took < Duration::from_millis(500), "shedding took {took:?}");
    assert_eq!(
        gw.app.metrics.shed.with_label_values(&["in_flight"]).get(),
        1
    );
    // The warm-up and the two waiting buys hold units; the refused one holds none.
    assert_eq!(gw.remaining(&sku).await, 7);
    let requests = gw
        .ctx
        .ledger()
        .order_requests(&sku, 100)
        .await
        .unwrap()
        .unwrap();
    assert!(!requests.contains(&"carol|k1".to_owned()), "{requests:?}");
    assert_eq!(requests.len(), 3, "{requests:?}");

    gw.ctx.broker.mock().broker_up(1).unwrap();
    for request in hanging {
        let status = request.await.unwrap();
        assert!(status == 202 || status == 503, "{status}");
    }
    assert_eq!(gw.app.admission.current(), 0, "every slot is given back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_in_stock_buckets_sells_exactly_its_units_over_http_and_keeps_its_buckets() {
    let gw = Running::with(|s| s.gateway.sold_out_recheck_ms = 300).await;
    let sku = sku();
    let sale = |stock: i64, extra: serde_json::Value| {
        let mut body = json!({
            "stock": stock, "per_user_limit": 2, "free": true,
            "starts_at": "2020-01-01T00:00:00Z", "ends_at": "2099-01-01T00:00:00Z"
        });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    assert_problem(
        &gw.put_sale(&sku, &sale(8, json!({"buckets": 0}))).await,
        400,
        "invalid_sale",
    );
    let (status, body) = gw.put_sale(&sku, &sale(8, json!({"buckets": 4}))).await;
    assert_eq!((status, &body["buckets"]), (200, &json!(4)), "{body}");

    // Twenty buyers, eight units spread over four buckets: exactly eight are sold.
    let mut accepted = Vec::new();
    for i in 0..20 {
        let (status, body) = gw
            .buy(sku.as_str(), &format!("buyer-{i}"), "k", json!({}))
            .await;
        match status {
            202 => accepted.push(body["order_id"].as_str().unwrap().to_owned()),
            409 => assert_eq!(body["code"], "sold_out", "{body}"),
            _ => panic!("{status}: {body}"),
        }
    }
    assert_eq!(accepted.len(), 8);
    let buckets: std::collections::HashSet<u8> = accepted
        .iter()
        .map(|id| domain::OrderId::parse(id.as_str()).unwrap().bucket())
        .collect();
    assert!(
        buckets.len() > 1,
        "the orders live in their buyers' buckets"
    );
    assert!(
        gw.app.metrics.sold_out_local.get() > 0,
        "sold out is answered from memory for a bucketed sale too"
    );
    let view = gw.sale_view(&sku).await;
    assert_eq!(
        (
            &view["redis"]["remaining"],
            &view["redis"]["reserved"],
            &view["redis"]["buckets"],
            &view["redis"]["in_transit"]
        ),
        (&json!(0), &json!(8), &json!(4), &json!(0)),
        "{view}"
    );

    // A unit given back sells again within the re-check bound, to a buyer of any bucket.
    let order = domain::OrderId::parse(accepted[0].as_str()).unwrap();
    gw.ctx
        .ledger()
        .release(&order, ReleaseMode::Compensate)
        .await
        .unwrap();
    let (status, _) = testkit::eventually(Duration::from_secs(3), "the unit to sell again", || {
        let gw = &gw;
        let sku = &sku;
        async move {
            let answer = gw.buy(sku.as_str(), "late-buyer", "k", json!({})).await;
            (answer.0 == 202).then_some(answer)
        }
    })
    .await;
    assert_eq!(status, 202);

    // The number of buckets is fixed; a change that leaves it out keeps it.
    assert_problem(
        &gw.put_sale(&sku, &sale(8, json!({"buckets": 2}))).await,
        409,
        "buckets_fixed",
    );
    let (status, body) = gw.put_sale(&sku, &sale(10, json!({}))).await;
    assert_eq!((status, &body["buckets"]), (200, &json!(4)), "{body}");
    assert_eq!(body["redis_remaining"], 2);
}
