//! `seckill-ctl` run as the operator runs it: a separate process, configured by `SECKILL__*`
//! variables, against the test's own PostgreSQL database and embedded broker.

use migration::{Migrator, MigratorTrait};
use std::process::{Command, Output, Stdio};

/// Runs `seckill-ctl` with `args` and only `env` for settings: from a directory with no `.env`
/// and a configuration directory that does not exist, so the machine's files cannot interfere.
fn ctl(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seckill-ctl"))
        .args(args)
        .current_dir(std::env::temp_dir())
        .env("SECKILL_CONFIG_DIR", "/nonexistent")
        .env("SECKILL__LOG__FILTER", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("seckill-ctl runs")
}

/// The standard output of a run that must succeed.
fn succeeds(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = ctl(args, env);
    assert!(
        output.status.success(),
        "seckill-ctl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The rows of a table printed under a header line, each split into its words.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().map(str::to_owned).collect())
        .collect()
}

#[test]
fn the_help_lists_every_subcommand_and_each_subcommand_has_its_own() {
    let help = succeeds(&["--help"], &[]);
    for command in ["migrate", "topics", "lag", "dlq", "release", "reconcile"] {
        assert!(
            help.lines()
                .any(|line| line.trim_start().starts_with(command)),
            "{command} in:\n{help}"
        );
    }
    for (args, words) in [
        (&["migrate", "--help"][..], &["up", "down", "status"][..]),
        (&["dlq", "--help"], &["inspect", "replay"]),
        (
            &["dlq", "replay", "--help"],
            &["--reason", "--dry-run", "retries_exhausted"],
        ),
        (
            &["reconcile", "--help"],
            &["--sku", "--rebuild", "--drain-timeout-secs"],
        ),
        (&["migrate", "down", "--help"], &["--steps"]),
    ] {
        let help = succeeds(args, &[]);
        for word in words {
            assert!(help.contains(word), "{word} in `{args:?}`:\n{help}");
        }
    }
}

#[test]
fn a_replay_of_an_unknown_reason_is_refused_with_the_known_ones() {
    let output = ctl(&["dlq", "replay", "--reason", "bogus"], &[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bogus") && stderr.contains("retries_exhausted"),
        "{stderr}"
    );
}

#[test]
fn a_kafka_subcommand_without_brokers_names_the_setting_to_set() {
    for args in [
        &["topics"][..],
        &["lag"],
        &["dlq", "inspect"],
        &["reconcile"],
    ] {
        let output = ctl(args, &[("SECKILL__KAFKA__BOOTSTRAP_SERVERS", "")]);
        assert!(!output.status.success(), "{args:?} must fail");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("SECKILL__KAFKA__BOOTSTRAP_SERVERS"),
            "{args:?}: {stderr}"
        );
    }
}

#[tokio::test]
async fn migrate_applies_lists_and_reverts_the_migrations_of_a_fresh_database() {
    let (url, _) = testkit::fresh_database().await.unwrap();
    let env = [("SECKILL__DATABASE__URL", url.as_str())];
    let names: Vec<String> = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    let listed = |statuses: Vec<&str>| -> Vec<Vec<String>> {
        names
            .iter()
            .zip(statuses)
            .map(|(name, status)| vec![name.clone(), status.to_owned()])
            .collect()
    };
    let all = |status: &str| listed(vec![status; names.len()]);

    assert_eq!(
        rows(&succeeds(&["migrate", "status"], &env)),
        all("pending")
    );
    assert_eq!(rows(&succeeds(&["migrate", "up"], &env)), all("applied"));
    assert_eq!(rows(&succeeds(&["migrate", "up"], &env)), all("applied"));
    let mut last_reverted = vec!["applied"; names.len()];
    *last_reverted.last_mut().unwrap() = "pending";
    assert_eq!(
        rows(&succeeds(&["migrate", "down", "--steps", "1"], &env)),
        listed(last_reverted)
    );
    assert_eq!(
        rows(&succeeds(&["migrate", "status"], &env)).len(),
        names.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_counts_what_each_group_has_not_committed() {
    let ctx = testkit::TestContext::new().await.unwrap();
    let kafka = &ctx.settings.kafka;
    const ORDERS: usize = 4;
    for i in 0..ORDERS {
        testkit::produce(
            &ctx.endpoint(),
            &kafka.orders_topic,
            b"sku",
            format!("{i}").as_bytes(),
        )
        .await
        .unwrap();
    }
    let env = [
        (
            "SECKILL__KAFKA__BOOTSTRAP_SERVERS",
            kafka.bootstrap_servers.as_str(),
        ),
        ("SECKILL__KAFKA__ORDERS_TOPIC", kafka.orders_topic.as_str()),
        ("SECKILL__KAFKA__DLQ_TOPIC", kafka.dlq_topic.as_str()),
        ("SECKILL__KAFKA__WORKER_GROUP", kafka.worker_group.as_str()),
        (
            "SECKILL__KAFKA__REPLAYER_GROUP",
            kafka.replayer_group.as_str(),
        ),
    ];
    let table = succeeds(&["lag"], &env);
    let totals: Vec<Vec<String>> = rows(&table)
        .into_iter()
        .filter(|row| row.get(2).map(String::as_str) == Some("all"))
        .collect();
    assert_eq!(
        totals,
        [
            vec![
                kafka.worker_group.clone(),
                kafka.orders_topic.clone(),
                "all".to_owned(),
                ORDERS.to_string()
            ],
            vec![
                kafka.replayer_group.clone(),
                kafka.dlq_topic.clone(),
                "all".to_owned(),
                "0".to_owned()
            ],
        ],
        "{table}"
    );
    let partitions = rows(&table).len() - totals.len();
    assert_eq!(
        partitions,
        2 * kafka.partitions as usize,
        "one row per partition of each topic:\n{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_gives_a_reservation_back_once_and_leaves_an_order_its_row_holds_alone() {
    let (ctx, sku) = testkit::TestContext::with_sale(10, 5).await;
    let ledger = ctx.ledger();
    let stranded = testkit::order(&sku, "alice", "k1", 3);
    assert!(matches!(
        testkit::reserve(&ledger, &stranded).await,
        stock::ReserveOutcome::Accepted(_)
    ));
    let written = testkit::order(&sku, "bob", "k1", 2);
    testkit::written_orders(&ledger, &ctx.store().await, std::slice::from_ref(&written)).await;
    let env = testkit::service_env(&ctx.settings);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let release = |order: &domain::OrderId| ctl(&["release", "--order", order.as_str()], &env);

    let first = release(&stranded.order_id);
    assert!(first.status.success(), "{first:?}");
    assert!(String::from_utf8_lossy(&first.stdout).contains("released, its units are back"));
    let again = release(&stranded.order_id);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already released"));
    let refused = release(&written.order_id);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("awaiting_payment"),
        "{refused:?}"
    );

    // Alice's three units are back once; Bob's two stay with his order.
    let snapshot = ctx.snapshot(&sku).await;
    assert_eq!(
        (snapshot.remaining, snapshot.reserved, snapshot.released),
        (8, 5, 3)
    );
}
