//! The whole pipeline, as `make demo` runs it, but on PostgreSQL: a flash sale end to end with
//! every invariant checked on real numbers.

// Test helpers panic to report, like the tests themselves.
#![allow(clippy::unwrap_used)]

mod cluster;
mod load;
mod room;
mod trace;

use flash_sim::Scenario;
use std::time::Duration;
use testkit::TestContext;

/// The test's settings for a stack of its own: its own embedded broker, no per-user rate limit
/// (a test's crowd is many buyers from one machine).
fn stack_settings(ctx: &TestContext) -> settings::Settings {
    let mut settings = ctx.settings.clone();
    settings.kafka.bootstrap_servers.clear();
    settings.gateway.per_user_rate_per_sec = 0;
    settings
}

/// A stack of the test's own on [`stack_settings`].
async fn local_stack(ctx: &TestContext) -> flash_sim::stack::LocalStack {
    flash_sim::stack::LocalStack::start(stack_settings(ctx))
        .await
        .unwrap()
}

/// A sale of `stock` units for `users` buyers in `requests` requests (request mix `seed`), as
/// the tests run it: 2 units per buyer, 16 requests in flight, half of the first crowd paying
/// within a 5 s window, 10 late payers, 100 latecomers for the units that come back, 60 s to
/// drain.
fn test_sale(stock: i64, users: usize, requests: usize, seed: u64) -> Scenario {
    Scenario {
        stock,
        users,
        requests,
        seed,
        per_user_limit: 2,
        concurrency: 16,
        drain_timeout: Duration::from_secs(60),
        payment_window_secs: 5,
        pay_share: 0.5,
        late_payers: 10,
        latecomers: 100,
        ..Scenario::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flash_sale_sells_exactly_its_stock_and_loses_nothing() {
    let ctx = TestContext::new().await.unwrap();
    let settings = stack_settings(&ctx);
    let scenario = Scenario {
        concurrency: 32,
        ..test_sale(60, 400, 900, 7)
    };
    let verdict = flash_sim::demo(settings, &scenario).await.unwrap();
    println!("{}", verdict.render());
    assert_eq!(verdict.requests, 900 + 200, "both crowds");
    assert_eq!(
        verdict.paid.units + verdict.awaiting_payment.units,
        60,
        "the whole stock sells, no more, the unpaid units a second time: {}",
        verdict.render()
    );
    assert!(verdict.expired.units > 0, "half the buyers did not pay");
    assert_eq!(
        verdict.resold_units, verdict.expired.units,
        "the latecomers bought every unit that came back"
    );
    assert_eq!(verdict.paid_twice, 0);
    assert_eq!(verdict.payments.late_sent, 10);
    assert_eq!(verdict.payments.late_refused, 10);
    assert_eq!(verdict.payments.late_moved_units, 0);
    assert_eq!(verdict.refunds_due, 10 + verdict.payments.too_late as i64);
    assert!(verdict.payments.replays > 0);
    assert_eq!(verdict.payments.replays_same, verdict.payments.replays);
    assert_eq!(verdict.oversold, 0);
    assert_eq!(verdict.duplicates, 0);
    assert_eq!(verdict.lost, 0);
    assert_eq!(verdict.conservation_gap, 0);
    assert_eq!(verdict.bad_input_violations, 0);
    assert_eq!((verdict.orders_lag, verdict.dlq_lag), (0, 0));
    assert!(
        verdict.accepted_orders >= 30,
        "{} orders accepted",
        verdict.accepted_orders
    );
    assert!(
        verdict.idempotent_replays > 0,
        "the crowd's retries were answered with their order"
    );
    let sold_out = verdict.rejected.get("409 sold_out").copied().unwrap_or(0);
    assert!(sold_out > 0, "{:?}", verdict.rejected);
    assert!(verdict.holds());
}

/// promtool from `PROMTOOL`, the PATH, or where `scripts/check-deploy.sh` (run by `make test`)
/// unpacks it. Missing promtool fails the test: the check is part of the contract.
fn promtool() -> std::path::PathBuf {
    if let Ok(path) = std::env::var("PROMTOOL") {
        return path.into();
    }
    let unpacked = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/deploy-tools/usr/bin/promtool");
    if unpacked.exists() {
        return unpacked;
    }
    let on_path = std::process::Command::new("promtool")
        .arg("--version")
        .output();
    assert!(
        on_path.is_ok(),
        "promtool not found: run scripts/check-deploy.sh (make test does) or set PROMTOOL"
    );
    "promtool".into()
}

fn promtool_check_metrics(service: &str, exposition: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(exposition.as_bytes())
        .expect("promtool reads its input");
    let output = child.wait_with_output().expect("promtool finishes");
    assert!(
        output.status.success(),
        "promtool check metrics on the {service}'s /metrics:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The value of the sample `name{labels}` (labels as rendered, e.g. `outcome="accepted"`).
fn sample(exposition: &str, name: &str, labels: &[&str]) -> Option<f64> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.split(['{', ' ']).next() == Some(name) && labels.iter().all(|x| l.contains(x)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_exports_metrics_promtool_accepts_and_they_add_up() {
    let ctx = TestContext::new().await.unwrap();
    let stack = local_stack(&ctx).await;
    let scenario = Scenario {
        per_user_limit: 1,
        ..test_sale(20, 100, 200, 11)
    };
    let verdict = flash_sim::run_sale(&stack, &scenario).await.unwrap();
    assert!(verdict.holds(), "{}", verdict.render());
    let get = |port: u16| async move {
        reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let gateway = get(stack.admin_port).await;
    // The worker's lag gauge is refreshed on a timer; wait for it to show the drained queue.
    let orders_topic = format!("topic=\"{}\"", stack.settings.kafka.orders_topic);
    let worker = testkit::eventually(Duration::from_secs(30), "the lag gauge at 0", || {
        let orders_topic = orders_topic.clone();
        async move {
            let text = get(stack.worker_ops_port).await;
            let lags: Vec<f64> = text
                .lines()
                .filter(|l| {
                    l.starts_with("seckill_consumer_lag_messages{") && l.contains(&orders_topic)
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
                .collect();
            (lags.len() == stack.settings.kafka.partitions as usize
                && lags.iter().all(|l| *l == 0.0))
            .then_some(text)
        }
    })
    .await;
    let replayer = get(stack.replayer_ops_port).await;
    for (service, text) in [
        ("gateway", &gateway),
        ("order worker", &worker),
        ("dlq replayer", &replayer),
    ] {
        promtool_check_metrics(service, text);
    }
    // The counters tell the same story as the verdict.
    let accepted = verdict.accepted_orders as f64;
    assert_eq!(
        sample(
            &gateway,
            "seckill_reservations_total",
            &["outcome=\"accepted\""]
        ),
        Some(accepted),
        "gateway reservations accepted"
    );
    assert_eq!(
        sample(
            &worker,
            "seckill_orders_persisted_total",
            &["outcome=\"accepted\""]
        ),
        Some(accepted),
        "worker orders confirmed"
    );
    stack.stop().await.unwrap();
}
