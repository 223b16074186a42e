//! What a hostile client can do to the sale of honest buyers, and what stops it: slow request
//! bodies, floods of order-status reads, many requests from one address (behind a proxy or
//! not), and readiness and metrics off the public port.

use crate::{answer, assert_problem, Running};
use serde_json::json;
use std::time::{Duration, Instant};
use testkit::sku;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A buy request on a raw connection whose head is sent whole and whose body stops after one
/// byte of the twenty it announces: the slow client's connection.
async fn slow_buy(port: u16, sku: &str, token: &str, key: &str) -> TcpStream {
    let mut connection = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let head = format!(
        "POST /v1/sales/{sku}/orders HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {token}\r\n\
         Idempotency-Key: {key}\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{{"
    );
    connection.write_all(head.as_bytes()).await.unwrap();
    connection
}

/// The status line of what `connection` is answered within `within`.
async fn status_line(connection: &mut TcpStream, within: Duration) -> String {
    let mut answer = vec![0; 512];
    let read = tokio::time::timeout(within, connection.read(&mut answer))
        .await
        .expect("an answer in time")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]).into_owned();
    answer.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_hold_no_buy_slot_and_are_answered_408_while_honest_buyers_buy() {
    let gw = Running::with(|s| {
        s.gateway.max_in_flight = 2;
        s.http.body_timeout_ms = 1_500;
    })
    .await;
    let sku = sku();
    gw.ctx.open_sale(&sku, 10, 5).await;
    let port: u16 = gw.url.rsplit(':').next().unwrap().parse().unwrap();
    // One token, six connections, each body stopped after its first byte: three times the
    // gateway's buy slots.
    let token = gw.token("mallory");
    let started = Instant::now();
    let mut slow = Vec::new();
    for i in 0..6 {
        slow.push(slow_buy(port, sku.as_str(), &token, &format!("slow-{i}")).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        gw.app.admission.current(),
        0,
        "a body being read holds no slot"
    );
    for user in ["alice", "bob", "carol"] {
        gw.accepted(&sku, user, "k1", json!({})).await;
    }
    for connection in &mut slow {
        let status = status_line(connection, Duration::from_secs(5)).await;
        assert!(status.starts_with("HTTP/1.1 408"), "{status}");
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1_400),
        "answered after the deadline: {took:?}"
    );
    // The slow buys reserved nothing; the three honest ones did.
    assert_eq!(gw.remaining(&sku).await, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_status_reads_past_a_buyers_allowance_are_refused_429_and_never_cost_a_buy() {
    let gw = Running::with(|s| {
        s.gateway.per_user_read_rate_per_sec = 1;
        s.gateway.per_user_read_burst = 3;
    })
    .await;
    let sku = sku();
    gw.ctx.open_sale(&sku, 10, 5).await;
    let order = gw.accepted(&sku, "dora", "k1", json!({})).await;
    let path = format!(
        "{}/v1/orders/{}",
        gw.url,
        order["order_id"].as_str().unwrap()
    );
    let token = gw.token("dora");
    let started = Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let (status, _) = answer(gw.client.get(&path).bearer_auth(&token)).await;
        statuses.push(status);
    }
    // The burst of three, then one more per second the loop took (a loaded machine is slow).
    let refilled = started.elapsed().as_secs() as usize;
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(statuses[..3], [200, 200, 200], "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    assert!(
        refused >= 5 - refilled.min(4),
        "{statuses:?} in {refilled} s"
    );
    let counted = gw
        .app
        .metrics
        .rate_limited
        .with_label_values(&["read"])
        .get();
    assert_eq!(counted, refused as u64);
    // Another buyer reads; and the flood cost dora none of her buys.
    let other = gw.client.get(&path).bearer_auth(gw.token("erin"));
    assert_problem(&answer(other).await, 404, "order_not_found");
    gw.accepted(&sku, "dora", "k2", json!({})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_past_its_allowance_is_refused_429_and_a_trusted_proxy_names_the_address() {
    let limited = |trusted: &'static str| {
        move |s: &mut settings::Settings| {
            s.gateway.per_address_rate_per_sec = 1;
            s.gateway.per_address_burst = 3;
            s.http.trusted_proxies = trusted.into();
        }
    };
    // Behind a trusted proxy (the test's own address): each forwarded client has its allowance.
    let gw = Running::with(limited("127.0.0.1")).await;
    let read = |path: String, forwarded: Vec<&'static str>, n: usize| {
        let mut request = gw
            .client
            .get(format!("{}{path}", gw.url))
            .bearer_auth(gw.token(&format!("user-{n}")));
        for line in forwarded {
            request = request.header("X-Forwarded-For", line);
        }
        async move { answer(request).await.0 }
    };
    let order = |n: usize| format!("/v1/orders/{}.{n:032x}", sku());
    let started = Instant::now();
    let mut flood = Vec::new();
    for n in 0..6 {
        flood.push(read(order(n), vec!["6.6.6.6, 198.51.100.1"], n).await);
    }
    // The burst of three, then one more per second the loop took (a loaded machine is slow).
    let refilled = started.elapsed().as_secs() as usize;
    let refused = flood.iter().filter(|s| **s == 429).count();
    assert_eq!(
        flood[..3],
        [404, 404, 404],
        "many tokens, one address: {flood:?}"
    );
    assert!(refused >= 3 - refilled.min(2), "{flood:?} in {refilled} s");
    let other = read(order(7), vec!["198.51.100.2"], 7).await;
    assert_eq!(other, 404, "another address has its own");
    // Three reads of a fresh address, then one more: refused (unless a second passed, which
    // refills one). The three are written with escapes in the path, or with the address in a
    // second header line the proxy added: both count for the address.
    let exhausts =
        |label: &'static str, first: Vec<Vec<&'static str>>, path: fn(usize) -> String| {
            let read = &read;
            async move {
                let started = Instant::now();
                for (n, lines) in first.into_iter().enumerate() {
                    assert_eq!(read(path(n), lines, n).await, 404, "{label}");
                }
                let fourth = read(order(99), vec![label], 99).await;
                assert!(
                    fourth == 429 || started.elapsed() >= Duration::from_secs(1),
                    "{label}: the fourth read was answered {fourth}"
                );
            }
        };
    fn escaped(n: usize) -> String {
        format!("/%76%31/orders/{}.{n:032x}", testkit::sku())
    }
    fn plain(n: usize) -> String {
        format!("/v1/orders/{}.{n:032x}", testkit::sku())
    }
    exhausts("198.51.100.50", vec![vec!["198.51.100.50"]; 3], escaped).await;
    let two_lines = vec!["198.51.100.77", "198.51.100.60"];
    exhausts("198.51.100.60", vec![two_lines; 3], plain).await;
    // Without trusted proxies the header is never read: every request is the test's address.
    let direct = Running::with(limited("")).await;
    let started = Instant::now();
    let mut statuses = Vec::new();
    for (n, client) in [
        "198.51.100.3",
        "198.51.100.4",
        "198.51.100.5",
        "198.51.100.6",
    ]
    .into_iter()
    .enumerate()
    {
        let request = direct
            .client
            .get(format!("{}{}", direct.url, order(n)))
            .bearer_auth(direct.token("frank"))
            .header("X-Forwarded-For", client);
        statuses.push(answer(request).await.0);
    }
    let refilled = started.elapsed().as_secs();
    assert_eq!(statuses[..3], [404, 404, 404]);
    assert!(refilled > 0 || statuses[3] == 429, "{statuses:?}");
    // Liveness is not counted.
    assert_eq!(direct.get("/healthz").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_and_metrics_are_served_on_the_admin_port_only() {
    let gw = Running::with(|s| s.http.admin_on_public = false).await;
    for path in ["/readyz", "/metrics"] {
        let public = answer(gw.client.get(format!("{}{path}", gw.url))).await;
        assert_problem(&public, 404, "not_found");
        let admin = gw.client.get(format!("{}{path}", gw.admin_url));
        assert_eq!(admin.send().await.unwrap().status(), 200, "{path}");
    }
    assert_eq!(gw.get("/healthz").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buy_without_a_ticket_needs_a_solved_challenge_bound_to_its_buyer_sale_and_key() {
    let gw = Running::with(|s| s.proof_of_work.max_number = 2_000).await;
    let sku = sku();
    gw.ctx.open_sale(&sku, 10, 5).await;
    let challenge = |user: &str, key: &str| {
        let request = gw
            .client
            .get(format!("{}/v1/sales/{sku}/challenge?key={key}", gw.url))
            .bearer_auth(gw.token(user));
        async move {
            let (status, body) = answer(request).await;
            assert_eq!(status, 200, "{body}");
            let challenge: domain::pow::Challenge = serde_json::from_value(body).unwrap();
            assert_eq!(challenge.maxnumber, 2_000);
            challenge.solve().expect("solvable").encode()
        }
    };
    let buy = |user: &str, key: &str, proof: Option<&str>| {
        let mut request = gw.buy_request(&gw.url, sku.as_str(), user, key, &json!({}));
        if let Some(proof) = proof {
            request = request.header("Proof-Of-Work", proof);
        }
        answer(request)
    };
    assert_problem(
        &buy("alice", "k1", None).await,
        403,
        "proof_of_work_required",
    );
    assert_problem(
        &buy("alice", "k1", Some("bm90IGEgc29sdXRpb24=")).await,
        403,
        "proof_of_work_invalid",
    );
    let solved = challenge("alice", "k1").await;
    let (status, first) = buy("alice", "k1", Some(&solved)).await;
    assert_eq!(status, 202, "{first}");
    // The same solution again is the same order (a retry), never a second one...
    let (status, again) = buy("alice", "k1", Some(&solved)).await;
    assert_eq!((status, &again["order_id"]), (202, &first["order_id"]));
    // ...and it pays for no other order, nor for another buyer.
    assert_problem(
        &buy("alice", "k2", Some(&solved)).await,
        403,
        "proof_of_work_invalid",
    );
    assert_problem(
        &buy("bob", "k1", Some(&solved)).await,
        403,
        "proof_of_work_invalid",
    );
    assert_eq!(
        gw.remaining(&sku).await,
        9,
        "one unit sold, for one solved challenge"
    );
    // A join asks the same, without a key.
    let join = gw
        .client
        .post(format!("{}/v1/sales/{sku}/queue", gw.url))
        .bearer_auth(gw.token("alice"));
    assert_problem(&answer(join).await, 403, "proof_of_work_required");
}
