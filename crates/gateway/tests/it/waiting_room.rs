//! The waiting room over real HTTP: joins, polls answered from the gateway's view, tickets
//! checked at the buy, admission in join order (or shuffled at the opening), and sold out
//! ending the wait. Two gateways share one line in Redis.

use super::hot_path::replica;
use super::{answer, assert_problem, sku, Running};
use chrono::Utc;
use domain::SkuId;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A sale of `stock` units behind a waiting room of `admission`, open now (or at `starts_in`).
async fn room_sale(gw: &Running, stock: i64, admission: Value, starts_in: Duration) -> SkuId {
    let sku = sku();
    let starts = Utc::now() + chrono::Duration::from_std(starts_in).unwrap();
    let sale = json!({
        "stock": stock,
        "per_user_limit": 1,
        "free": true,
        "starts_at": starts - chrono::Duration::milliseconds(if starts_in.is_zero() { 1000 } else { 0 }),
        "ends_at": starts + chrono::Duration::hours(1),
        "admission": admission,
    });
    let (status, body) = gw.put_sale(&sku, &sale).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["admission"]["mode"], admission["mode"], "{body}");
    sku
}

/// `user` joins the room of `sku` on the gateway at `base`: the answer.
async fn join(gw: &Running, base: &str, sku: &SkuId, user: &str) -> (u16, Value) {
    let request = gw
        .client
        .post(format!("{base}/v1/sales/{sku}/queue"))
        .bearer_auth(gw.token(user));
    answer(request).await
}

/// `user` polls with `place` on the gateway at `base` (held when `wait`): the answer.
async fn poll(
    gw: &Running,
    base: &str,
    sku: &SkuId,
    user: &str,
    place: &str,
    wait: bool,
) -> (u16, Value) {
    let request = gw
        .client
        .get(format!("{base}/v1/sales/{sku}/queue?wait={wait}"))
        .bearer_auth(gw.token(user))
        .header("Place-Token", place);
    answer(request).await
}

/// `user` buys one unit of `sku` with `ticket`: the answer.
async fn buy_with(gw: &Running, sku: &SkuId, user: &str, ticket: Option<&str>) -> (u16, Value) {
    let mut request = gw.buy_request(
        &gw.url,
        sku.as_str(),
        user,
        &format!("k-{user}"),
        &json!({}),
    );
    if let Some(ticket) = ticket {
        request = request.header("Admission-Ticket", ticket);
    }
    answer(request).await
}

/// Spearman's rank correlation of two equally long lists (ties take their mean rank).
fn rank_correlation(a: &[f64], b: &[f64]) -> f64 {
    fn ranks(values: &[f64]) -> Vec<f64> {
        let mut order: Vec<usize> = (0..values.len()).collect();
        order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
        let mut ranks = vec![0.0; values.len()];
        let mut i = 0;
        while i < order.len() {
            let mut j = i;
            while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
                j += 1;
            }
            for &k in &order[i..=j] {
                ranks[k] = (i + j) as f64 / 2.0;
            }
            i = j + 1;
        }
        ranks
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let n = a.len() as f64;
    let mean = (n - 1.0) / 2.0;
    let cov: f64 = ra
        .iter()
        .zip(&rb)
        .map(|(x, y)| (x - mean) * (y - mean))
        .sum();
    let var_a: f64 = ra.iter().map(|x| (x - mean).powi(2)).sum();
    let var_b: f64 = rb.iter().map(|y| (y - mean).powi(2)).sum();
    cov / (var_a * var_b).sqrt()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_room_admits_in_join_order_across_two_gateways_and_sells_only_with_a_ticket() {
    let gw = Running::start().await;
    let (other_url, _other, other_stop) = replica(&gw).await;
    let buyers = 30;
    let room = json!({"mode": "fifo", "rate_per_sec": 15, "ticket_secs": 60});
    let sku = room_sale(&gw, 100, room, Duration::ZERO).await;

    // Without a ticket the sale sells nothing.
    assert_problem(
        &buy_with(&gw, &sku, "u0", None).await,
        403,
        "admission_required",
    );
    // Buyers join one after the other, half on each gateway; joining again is the same place.
    let mut places = Vec::new();
    for i in 0..buyers {
        let base = if i % 2 == 0 { &gw.url } else { &other_url };
        let (status, body) = join(&gw, base, &sku, &format!("u{i}")).await;
        assert_eq!(status, 200, "{body}");
        places.push(body["place_token"].as_str().unwrap().to_owned());
    }
    let (_, again) = join(&gw, &other_url, &sku, "u0").await;
    let (_, first) = poll(&gw, &gw.url, &sku, "u0", &places[0], false).await;
    let (_, first_again) = poll(
        &gw,
        &gw.url,
        &sku,
        "u0",
        again["place_token"].as_str().unwrap(),
        false,
    )
    .await;
    assert_eq!(first["status"], first_again["status"]);
    // A poll's credential is its place token: without a good one, nothing is said.
    assert_problem(
        &poll(&gw, &gw.url, &sku, "u1", "not-a-place-token", false).await,
        400,
        "invalid_place_token",
    );
    let (status, _) = answer(
        gw.client
            .get(format!("{}/v1/sales/{sku}/queue", gw.url))
            .header("Place-Token", &places[1]),
    )
    .await;
    assert_eq!(status, 200, "a poll needs no bearer token");

    // Everyone long-polls (on the other gateway from the one joined) until admitted.
    let started = Instant::now();
    let mut waits = Vec::new();
    for (i, place) in places.iter().enumerate() {
        let base = if i % 2 == 0 {
            other_url.clone()
        } else {
            gw.url.clone()
        };
        let (client, token, sku, place) = (
            gw.client.clone(),
            gw.token(&format!("u{i}")),
            sku.clone(),
            place.clone(),
        );
        waits.push(tokio::spawn(async move {
            loop {
                let request = client
                    .get(format!("{base}/v1/sales/{sku}/queue?wait=true"))
                    .bearer_auth(&token)
                    .header("Place-Token", &place);
                let (status, body) = answer(request).await;
                assert_eq!(status, 200, "{body}");
                match body["status"].as_str() {
                    Some("waiting") => continue,
                    Some("admitted") => return (started.elapsed(), body),
                    _ => panic!("{body}"),
                }
            }
        }));
    }
    let mut admitted = Vec::new();
    for wait in waits {
        admitted.push(wait.await.unwrap());
    }
    let joined: Vec<f64> = (0..buyers).map(|i| i as f64).collect();
    let at: Vec<f64> = admitted.iter().map(|(t, _)| t.as_secs_f64()).collect();
    let correlation = rank_correlation(&joined, &at);
    assert!(
        correlation >= 0.99,
        "rank correlation {correlation:.4}: {at:?}"
    );
    // 30 buyers at 15 per second: about two seconds, not all at once.
    let last = at.iter().cloned().fold(0.0, f64::max);
    assert!(
        (1.2..6.0).contains(&last),
        "the last was admitted after {last:.2} s"
    );

    // An admitted buyer's ticket buys, once per ticket's buyer and sale.
    let ticket = |i: usize| admitted[i].1["ticket"].as_str().unwrap().to_owned();
    let (status, body) = buy_with(&gw, &sku, "u3", Some(&ticket(3))).await;
    assert_eq!(status, 202, "{body}");
    assert_problem(
        &buy_with(&gw, &sku, "u4", Some(&ticket(3))).await,
        403,
        "admission_required",
    );
    assert_problem(
        &buy_with(&gw, &sku, "u4", Some("forged")).await,
        403,
        "admission_required",
    );
    // The ticket keeps its expiry however often its buyer polls.
    let (_, polled) = poll(&gw, &gw.url, &sku, "u3", &places[3], false).await;
    assert_eq!(
        polled["ticket_expires_at"],
        admitted[3].1["ticket_expires_at"]
    );
    assert_eq!(gw.remaining(&sku).await, 99);
    other_stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sold_out_ends_every_wait_at_once_and_units_that_come_back_resume_admission() {
    let gw = Running::start().await;
    let room = json!({"mode": "fifo", "rate_per_sec": 2, "ticket_secs": 60});
    let sku = room_sale(&gw, 1, room.clone(), Duration::ZERO).await;
    let (_, first) = join(&gw, &gw.url, &sku, "first").await;
    let first_place = first["place_token"].as_str().unwrap().to_owned();
    let mut places = Vec::new();
    for i in 0..20 {
        let (_, body) = join(&gw, &gw.url, &sku, &format!("w{i}")).await;
        assert_eq!(body["status"], "waiting", "{body}");
        assert!(
            body["estimated_wait_secs"].as_f64().unwrap() > 0.0,
            "{body}"
        );
        assert!(body["poll_after_ms"].as_u64().unwrap() >= 1000, "{body}");
        places.push(body["place_token"].as_str().unwrap().to_owned());
    }
    // The last buyers wait in held polls.
    let mut held = Vec::new();
    for (i, place) in places.iter().enumerate().skip(15) {
        let (client, token, sku, place, base) = (
            gw.client.clone(),
            gw.token(&format!("w{i}")),
            sku.clone(),
            place.clone(),
            gw.url.clone(),
        );
        held.push(tokio::spawn(async move {
            let request = client
                .get(format!("{base}/v1/sales/{sku}/queue?wait=true"))
                .bearer_auth(&token)
                .header("Place-Token", &place);
            let (_, body) = answer(request).await;
            (Instant::now(), body)
        }));
    }
    // The first buyer is admitted and buys the only unit.
    let ticket = loop {
        let (_, body) = poll(&gw, &gw.url, &sku, "first", &first_place, true).await;
        if body["status"] == "admitted" {
            break body["ticket"].as_str().unwrap().to_owned();
        }
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sold = Instant::now();
    let (status, body) = buy_with(&gw, &sku, "first", Some(&ticket)).await;
    assert_eq!(status, 202, "{body}");
    // The room's clock sees the stock at 0 within a tick and wakes every held poll.
    for (at, body) in futures::future::join_all(held)
        .await
        .into_iter()
        .map(Result::unwrap)
    {
        assert_eq!(body["status"], "sold_out", "{body}");
        let told = at.saturating_duration_since(sold);
        assert!(told < Duration::from_millis(1000), "told after {told:?}");
    }
    for (i, place) in places.iter().enumerate().take(5) {
        let (_, body) = poll(&gw, &gw.url, &sku, &format!("w{i}"), place, false).await;
        assert_eq!(body["status"], "sold_out", "{body}");
    }
    // A unit comes back (the admin raises the stock): the line moves again.
    let sale = gw.sale_view(&sku).await;
    assert_eq!(sale["redis"]["remaining"], 0, "{sale}");
    let now = Utc::now();
    let raised = json!({
        "stock": 2, "per_user_limit": 1, "free": true,
        "starts_at": now - chrono::Duration::seconds(5),
        "ends_at": now + chrono::Duration::hours(1),
        "admission": room,
    });
    assert_eq!(gw.put_sale(&sku, &raised).await.0, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, body) = poll(&gw, &gw.url, &sku, "w0", &places[0], false).await;
        if body["status"] == "admitted" || body["status"] == "waiting" {
            break;
        }
        assert!(Instant::now() < deadline, "still {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_at_open_room_draws_the_places_of_the_pre_queue_at_the_opening() {
    let gw = Running::start().await;
    let room = json!({"mode": "random_at_open", "rate_per_sec": 1000, "ticket_secs": 60, "pre_queue_secs": 600});
    let sku = room_sale(&gw, 100, room, Duration::from_secs(3)).await;
    let early = 40;
    let mut places = Vec::new();
    for i in 0..early {
        let (status, body) = join(&gw, &gw.url, &sku, &format!("p{i}")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "waiting", "{body}");
        // No place is drawn before the opening.
        assert!(body.get("position").is_none(), "{body}");
        assert!(body["opens_at"].is_string(), "{body}");
        places.push(body["place_token"].as_str().unwrap().to_owned());
    }
    // A buy before the opening is refused as any buy before a sale.
    assert_problem(
        &buy_with(&gw, &sku, "p0", None).await,
        403,
        "sale_not_active",
    );
    tokio::time::sleep(Duration::from_millis(3300)).await;
    let (_, late) = join(&gw, &gw.url, &sku, "late").await;
    // Everyone of the pre-queue is admitted at once at 1000 per second; their tickets carry the
    // drawn places.
    let mut drawn = Vec::new();
    for (i, place) in places.iter().enumerate() {
        let body = loop {
            let (_, body) = poll(&gw, &gw.url, &sku, &format!("p{i}"), place, true).await;
            if body["status"] == "admitted" {
                break body;
            }
        };
        let ticket = body["ticket"].as_str().unwrap();
        let claims = ticket.split('.').nth(1).unwrap();
        use base64::Engine;
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(claims)
                .unwrap(),
        )
        .unwrap();
        drawn.push(claims["place"].as_u64().unwrap());
    }
    let mut sorted = drawn.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=early as u64).collect::<Vec<_>>());
    let joined: Vec<f64> = (0..early).map(|i| i as f64).collect();
    let places_drawn: Vec<f64> = drawn.iter().map(|&p| p as f64).collect();
    let correlation = rank_correlation(&joined, &places_drawn);
    assert!(
        correlation.abs() < 0.6,
        "the draw follows the join order: {correlation:.3}"
    );
    // A buyer who joined after the opening is behind all of them.
    let late_place = late["place_token"].as_str().unwrap();
    let (_, body) = poll(&gw, &gw.url, &sku, "late", late_place, true).await;
    assert!(
        body["status"] == "admitted" || body["position"].as_u64().is_some(),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_is_refused_where_it_makes_no_sense_with_clear_codes() {
    let (gw, plain) = super::selling(5, 1).await;
    assert_problem(
        &join(&gw, &gw.url, &plain, "u").await,
        409,
        "no_waiting_room",
    );
    let missing = sku();
    assert_problem(
        &join(&gw, &gw.url, &missing, "u").await,
        404,
        "sale_not_found",
    );
    // Too early: the pre-queue opens 10 s before a sale an hour away.
    let room = json!({"mode": "fifo", "rate_per_sec": 10, "pre_queue_secs": 10});
    let later = room_sale(&gw, 5, room, Duration::from_secs(3600)).await;
    assert_problem(
        &join(&gw, &gw.url, &later, "u").await,
        403,
        "queue_not_open",
    );
    // An invalid room definition is a 400 naming the field.
    let now = Utc::now();
    for bad in [
        json!({"mode": "lifo", "rate_per_sec": 10}),
        json!({"mode": "fifo", "rate_per_sec": 0}),
        json!({"mode": "fifo", "rate_per_sec": "fast"}),
        json!({"mode": "fifo", "rate_per_sec": 10, "ticket_secs": 5}),
    ] {
        let sale = json!({
            "stock": 5, "per_user_limit": 1, "starts_at": now, "ends_at": now + chrono::Duration::hours(1),
            "free": true, "admission": bad,
        });
        let (status, body) = gw.put_sale(&sku(), &sale).await;
        assert_eq!(status, 400, "{body}");
        assert!(
            ["invalid_body", "invalid_sale"].contains(&body["code"].as_str().unwrap()),
            "{body}"
        );
    }
    // A ticket past its expiry is refused as such.
    let room = json!({"mode": "fifo", "rate_per_sec": 10});
    let sale = room_sale(&gw, 5, room, Duration::ZERO).await;
    let tokens =
        gateway::waiting_room::tokens::Tokens::new(&gw.ctx.settings.waiting_room.ticket_secret);
    let stale = tokens.ticket("u", sale.as_str(), 1, Utc::now().timestamp_millis() - 1);
    assert_problem(
        &buy_with(&gw, &sale, "u", Some(&stale)).await,
        403,
        "admission_expired",
    );
    assert_eq!(gw.remaining(&sale).await, 5);
}
