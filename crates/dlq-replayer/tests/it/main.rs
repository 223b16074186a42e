//! The replayer against the machine's Redis and PostgreSQL and an embedded Kafka.

// Test helpers panic to report, like the tests themselves.
#![allow(clippy::unwrap_used)]

mod process;

use dlq_replayer::{Settled, Settler};
use domain::dead_letter::header;
use domain::signing::SIGNATURE_HEADER;
use domain::{DeadLetter, Keyring, OrderRequested, ReasonCode, Signed, SkuId};
use kafka::rdkafka::consumer::StreamConsumer;
use kafka::rdkafka::message::{Header, OwnedHeaders};
use kafka::rdkafka::producer::FutureRecord;
use kafka::rdkafka::Message;
use std::time::Duration;
use stock::ReserveOutcome;
use telemetry::trace::TRACEPARENT;
use testkit::{eventually, order, TestContext};

const PATIENCE: Duration = Duration::from_secs(30);
/// The trace context every test letter carries, as the worker's dead letters do.
const LETTER_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// An order of `quantity` units of `sku` by `user`, reserved the gateway's way.
async fn reserved(ctx: &TestContext, sku: &SkuId, user: &str, quantity: i64) -> OrderRequested {
    let o = order(sku, user, "k", quantity);
    assert!(matches!(
        testkit::reserve(&ctx.ledger(), &o).await,
        ReserveOutcome::Accepted(_)
    ));
    o
}

/// One order of one unit reserved for each of `users`.
async fn reserved_each<const N: usize>(
    ctx: &TestContext,
    sku: &SkuId,
    users: [&str; N],
) -> [OrderRequested; N] {
    let mut orders = Vec::with_capacity(N);
    for user in users {
        orders.push(reserved(ctx, sku, user, 1).await);
    }
    orders.try_into().unwrap()
}

/// A replayer running in the test's process.
struct Running {
    metrics: dlq_replayer::metrics::ReplayerMetrics,
    task: testkit::Spawned,
}

impl Running {
    /// A replayer on `settings`.
    async fn start(settings: &settings::Settings) -> Self {
        let replayer = dlq_replayer::Replayer::connect(settings, None)
            .await
            .unwrap();
        Self {
            metrics: replayer.metrics(),
            task: testkit::Spawned::spawn(|stop| replayer.run_until_stopped(stop)),
        }
    }

    /// A replayer of the test's world, once its group has committed the whole dead-letter topic.
    async fn drain(ctx: &TestContext) -> Self {
        let running = Self::start(&ctx.settings).await;
        let kafka = &ctx.settings.kafka;
        testkit::until_committed(
            &ctx.endpoint(),
            &kafka.replayer_group,
            &kafka.dlq_topic,
            PATIENCE,
        )
        .await;
        running
    }

    /// How many letters it counted settled with `outcome`.
    fn settled(&self, outcome: &str) -> u64 {
        self.metrics.settled.with_label_values(&[outcome]).get()
    }

    /// Stops it and waits for a clean exit.
    async fn stop(self) {
        self.task.stop().await;
    }
}

/// A consumer of the test's orders topic from the start, in a group of its own.
fn orders_probe(ctx: &TestContext) -> StreamConsumer {
    testkit::probe(&ctx.endpoint(), &ctx.settings.kafka.orders_topic)
}

/// The test's keys: those of its settings, which the worker signs its letters with.
fn keyring(ctx: &TestContext) -> Keyring {
    ctx.settings.messages.keyring().unwrap()
}

/// The signature header value of a letter keyed `k` with `payload` and the raw `reason` and
/// `attempts` headers, made with `keys`.
fn letter_signature(keys: &Keyring, payload: &[u8], reason: &str, attempts: &str) -> String {
    keys.sign(&Signed::DeadLetter {
        key: b"k",
        payload,
        reason: reason.as_bytes(),
        attempts: attempts.as_bytes(),
    })
}

/// Produces dead letters (payload, reason, attempts) with one producer, all in flight at once,
/// each with [`LETTER_TRACEPARENT`] and signed as the worker signs them.
async fn send_letters(ctx: &TestContext, letters: &[(Vec<u8>, ReasonCode, u32)]) {
    send_letters_signed_with(ctx, &keyring(ctx), letters).await;
}

/// [`send_letters`], signed with `keys`.
async fn send_letters_signed_with(
    ctx: &TestContext,
    keys: &Keyring,
    letters: &[(Vec<u8>, ReasonCode, u32)],
) {
    let producer = kafka::producer(&ctx.endpoint()).unwrap();
    let sends = letters.iter().map(|(payload, reason, attempts)| {
        let letter = DeadLetter {
            reason: *reason,
            error: "test".into(),
            attempts: *attempts,
            original_topic: ctx.settings.kafka.orders_topic.clone(),
            original_partition: 0,
            original_offset: 0,
            failed_at: chrono::Utc::now(),
        };
        let signature = letter_signature(
            keys,
            payload,
            letter.reason.as_str(),
            &letter.attempts.to_string(),
        );
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: TRACEPARENT,
                value: Some(LETTER_TRACEPARENT.as_bytes()),
            })
            .insert(Header {
                key: SIGNATURE_HEADER,
                value: Some(signature.as_bytes()),
            });
        for (name, value) in letter.to_headers() {
            headers = headers.insert(Header {
                key: name,
                value: Some(value.as_bytes()),
            });
        }
        let producer = producer.clone();
        let topic = ctx.settings.kafka.dlq_topic.clone();
        async move {
            producer
                .send(
                    FutureRecord::to(&topic)
                        .key("k")
                        .payload(payload.as_slice())
                        .headers(headers),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
        }
    });
    for sent in futures::future::join_all(sends).await {
        sent.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compensating_the_same_dead_letter_twice_has_one_effect() {
    let (ctx, sku) = TestContext::with_sale(10, 5).await;
    let o = reserved(&ctx, &sku, "alice", 3).await;
    let settler = Settler {
        ledger: ctx.ledger(),
        store: ctx.store().await,
        producer: kafka::producer(&ctx.endpoint()).unwrap(),
        orders_topic: ctx.settings.kafka.orders_topic.clone(),
        keyring: keyring(&ctx),
        config: ctx.settings.replayer.clone(),
    };
    for _ in 0..2 {
        assert_eq!(
            settler
                .compensate(&o, ReasonCode::UnknownSku)
                .await
                .unwrap(),
            Settled::Compensated
        );
    }
    let snapshot = ctx.snapshot(&sku).await;
    assert_eq!((snapshot.remaining, snapshot.released), (10, 3));
    let stats = ctx.sale_stats(&sku).await;
    assert_eq!(
        (
            stats.failed.orders,
            stats.awaiting_payment.orders,
            stats.stock
        ),
        (1, 0, 10)
    );
    let row = ctx.store().await.order(&o.order_id).await.unwrap().unwrap();
    assert_eq!(row.reason.as_deref(), Some("unknown_sku"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replayer_retries_what_is_retryable_compensates_the_rest_and_commits() {
    let (ctx, sku) = TestContext::with_sale(10, 5).await;
    let permanent = reserved(&ctx, &sku, "p", 2).await;
    let retryable = reserved(&ctx, &sku, "r", 1).await;
    let exhausted = reserved(&ctx, &sku, "x", 1).await;
    let over_the_limit = ctx.settings.replayer.max_replays + 1;
    send_letters(
        &ctx,
        &[
            (permanent.encode(), ReasonCode::UnknownSku, 1),
            (retryable.encode(), ReasonCode::RetriesExhausted, 1),
            (
                exhausted.encode(),
                ReasonCode::RetriesExhausted,
                over_the_limit,
            ),
            (b"garbage".to_vec(), ReasonCode::Undecodable, 1),
        ],
    )
    .await;

    let running = Running::drain(&ctx).await;
    let outcomes = ["retried", "compensated", "unrecoverable"].map(|o| running.settled(o));
    assert_eq!(outcomes, [1, 2, 1]);
    assert_eq!(
        ctx.snapshot(&sku).await.released,
        3,
        "the permanent and the exhausted letters' units came back"
    );
    let store = ctx.store().await;
    let row = store.order(&exhausted.order_id).await.unwrap().unwrap();
    assert_eq!(row.reason.as_deref(), Some("replay_attempts_exhausted"));

    // The retryable order is back on the orders topic with its replay count, in its trace
    // under the replayer's span.
    let consumer = orders_probe(&ctx);
    let message = testkit::next_message(&consumer, PATIENCE, "the retried order").await;
    assert_eq!(
        OrderRequested::decode(message.payload().unwrap())
            .unwrap()
            .order_id,
        retryable.order_id
    );
    assert_eq!(
        kafka::consume::header(&message, header::REPLAYS),
        Some(b"1".as_slice())
    );
    let replayed = kafka::trace::carried(&message).expect("a valid traceparent");
    assert_eq!(replayed.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(replayed.traceparent(), LETTER_TRACEPARENT);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_lists_the_unsettled_letters_and_replay_republishes_one_reason_committing_nothing()
{
    use dlq_replayer::letters;
    let (ctx, sku) = TestContext::with_sale(10, 5).await;
    let [settled_before, permanent, retry_a, retry_b] =
        reserved_each(&ctx, &sku, ["s", "p", "a", "b"]).await;
    send_letters(
        &ctx,
        &[
            (settled_before.encode(), ReasonCode::RetriesExhausted, 1),
            (permanent.encode(), ReasonCode::UnknownSku, 1),
            (retry_a.encode(), ReasonCode::RetriesExhausted, 1),
            (b"garbage".to_vec(), ReasonCode::Undecodable, 1),
            (retry_b.encode(), ReasonCode::RetriesExhausted, 2),
        ],
    )
    .await;
    let endpoint = ctx.endpoint();
    let kafka_settings = &ctx.settings.kafka;
    let all = letters::pending(&endpoint, kafka_settings).await.unwrap();
    assert_eq!(all.len(), 5);
    // The replayer has settled the first letter: it is no longer listed.
    let replayer_group: std::sync::Arc<StreamConsumer> =
        std::sync::Arc::new(kafka::consumer(&endpoint, &kafka_settings.replayer_group).unwrap());
    let mut offsets = kafka::PartitionOffsets::new();
    offsets.processed(&kafka_settings.dlq_topic, all[0].partition, all[0].offset);
    kafka::commit_processed(&replayer_group, &offsets)
        .await
        .unwrap();
    let pending = letters::pending(&endpoint, kafka_settings).await.unwrap();
    let orders: Vec<Option<String>> = pending
        .iter()
        .map(|l| l.order.as_ref().map(|o| o.order_id.to_string()))
        .collect();
    assert_eq!(
        orders,
        vec![
            Some(permanent.order_id.to_string()),
            Some(retry_a.order_id.to_string()),
            None,
            Some(retry_b.order_id.to_string()),
        ]
    );
    let table = letters::table(&pending, chrono::Utc::now());
    assert!(table.contains(permanent.order_id.as_str()), "{table}");
    assert!(table.contains("(not an order)"), "{table}");
    assert_eq!(
        table.matches("4bf92f3577b34da6a3ce929d0e0e4736").count(),
        4,
        "each letter's trace id: {table}"
    );
    assert!(
        table.contains(
            "4 dead letters not yet settled: retries_exhausted 2, undecodable 1, unknown_sku 1"
        ),
        "{table}"
    );

    let in_orders_topic = || async {
        testkit::group_lag(
            &endpoint,
            &testkit::unique("count-"),
            &kafka_settings.orders_topic,
        )
        .await
    };
    let producer = kafka::producer(&endpoint).unwrap();
    let orders_topic = &kafka_settings.orders_topic;
    let keys = keyring(&ctx);
    let replay = |reason, dry_run| {
        letters::replay(
            &pending,
            reason,
            &producer,
            orders_topic,
            &keys,
            dry_run,
            false,
        )
    };
    let dry = replay(ReasonCode::RetriesExhausted, true).await.unwrap();
    assert_eq!((dry.replayed, dry.skipped, dry.refused), (2, 0, 0));
    assert_eq!(in_orders_topic().await, 0, "a dry run publishes nothing");
    let done = replay(ReasonCode::RetriesExhausted, false).await.unwrap();
    assert_eq!((done.replayed, done.skipped, done.refused), (2, 0, 0));
    assert_eq!(in_orders_topic().await, 2);
    let garbage = replay(ReasonCode::Undecodable, false).await.unwrap();
    assert_eq!((garbage.replayed, garbage.skipped), (0, 1));
    assert_eq!(
        in_orders_topic().await,
        2,
        "what is not an order is never replayed"
    );

    let consumer = orders_probe(&ctx);
    let mut replayed = Vec::new();
    for _ in 0..2 {
        let message = testkit::next_message(&consumer, PATIENCE, "a replayed order").await;
        let order = OrderRequested::decode(message.payload().unwrap()).unwrap();
        let replays = kafka::consume::header(&message, header::REPLAYS).map(<[u8]>::to_vec);
        assert_eq!(
            kafka::trace::carried(&message)
                .expect("a valid traceparent")
                .trace_id(),
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "an operator's replay stays in the order's trace"
        );
        replayed.push((order.order_id.to_string(), replays));
    }
    replayed.sort();
    let mut expected = vec![
        (retry_a.order_id.to_string(), Some(b"1".to_vec())),
        (retry_b.order_id.to_string(), Some(b"2".to_vec())),
    ];
    expected.sort();
    assert_eq!(replayed, expected);
    // Nothing was committed for the replayer: it still has the four letters to settle.
    assert_eq!(
        testkit::group_lag(
            &endpoint,
            &kafka_settings.replayer_group,
            &kafka_settings.dlq_topic
        )
        .await,
        4
    );
}

/// Drains the dead-letter topic, where a letter the replayer cannot settle waits ahead of the
/// letter of an order of 2 units to compensate (same key, same partition): checks that the first
/// was counted `outcome`, that the one behind it was compensated all the same, and that only its
/// units came back.
async fn assert_settled_past_an_unsettled_letter(ctx: &TestContext, sku: &SkuId, outcome: &str) {
    let running = Running::drain(ctx).await;
    assert_eq!(
        (running.settled(outcome), running.settled("compensated")),
        (1, 1)
    );
    let snapshot = ctx.snapshot(sku).await;
    assert_eq!(
        (snapshot.remaining, snapshot.released),
        (9, 2),
        "the letter behind got its 2 units back; the unsettled one's unit stays reserved"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_letter_that_cannot_be_settled_is_counted_abandoned_and_the_letters_behind_it_are_settled(
) {
    let (ctx, sku) = TestContext::with_sale(10, 5).await;
    let broken = reserved(&ctx, &sku, "b", 1).await;
    let behind = reserved(&ctx, &sku, "f", 2).await;
    testkit::overwrite_reservation(&ctx.ledger(), &broken.order_id, "not a record").await;
    send_letters(
        &ctx,
        &[
            (broken.encode(), ReasonCode::UnknownSku, 1),
            (behind.encode(), ReasonCode::UnknownSku, 1),
        ],
    )
    .await;
    assert_settled_past_an_unsettled_letter(&ctx, &sku, "abandoned").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_order_whose_letter_headers_cannot_be_read_goes_back_to_the_worker_as_its_last_replay(
) {
    let (ctx, sku) = TestContext::with_sale(10, 5).await;
    let unreadable = reserved(&ctx, &sku, "u", 1).await;
    let behind = reserved(&ctx, &sku, "f", 2).await;
    // A reason this build does not know, as a newer build may write (and sign), under the key of
    // the letter behind it.
    let signature = letter_signature(&keyring(&ctx), &unreadable.encode(), "gremlins", "");
    testkit::produce_with_headers(
        &ctx.endpoint(),
        &ctx.settings.kafka.dlq_topic,
        b"k",
        &unreadable.encode(),
        &[
            (header::REASON, "gremlins"),
            (SIGNATURE_HEADER, signature.as_str()),
        ],
    )
    .await
    .unwrap();
    send_letters(&ctx, &[(behind.encode(), ReasonCode::UnknownSku, 1)]).await;
    let consumer = orders_probe(&ctx);
    assert_settled_past_an_unsettled_letter(&ctx, &sku, "unreadable").await;
    assert_eq!(
        ctx.store().await.order(&unreadable.order_id).await.unwrap(),
        None,
        "the order was not marked failed"
    );
    // Its order is on the orders topic again, as its last replay: if it fails once more, its
    // letter carries headers this build reads and no replay is left.
    let message = testkit::next_message(&consumer, Duration::from_secs(30), "the replay").await;
    assert_eq!(
        OrderRequested::decode(message.payload().unwrap()).unwrap(),
        unreadable
    );
    let max_replays = ctx.settings.replayer.max_replays.to_string();
    assert_eq!(
        kafka::consume::header(&message, header::REPLAYS),
        Some(max_replays.as_bytes())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn letters_of_forged_messages_and_letters_no_worker_signed_are_neither_retried_nor_compensated(
) {
    let (ctx, sku) = TestContext::with_sale(10, 5).await;
    // Real buyers' reservations, which the letters below name: their units must stay theirs.
    let [copied, targeted, laundered] = reserved_each(&ctx, &sku, ["c", "t", "l"]).await;
    // The worker refused a copy of a real order as forged: a letter it signed.
    send_letters(&ctx, &[(copied.encode(), ReasonCode::Forged, 1)]).await;
    // Letters a forger wrote to the dead-letter topic: one to have a buyer's order failed, one to
    // have bytes republished (and signed) to the orders topic, one without any signature.
    let forger = Keyring::parse("dev:a-secret-the-forger-guessed", "dev").unwrap();
    send_letters_signed_with(
        &ctx,
        &forger,
        &[
            (targeted.encode(), ReasonCode::UnknownSku, 1),
            (laundered.encode(), ReasonCode::RetriesExhausted, 1),
        ],
    )
    .await;
    testkit::produce_with_headers(
        &ctx.endpoint(),
        &ctx.settings.kafka.dlq_topic,
        b"k",
        &targeted.encode(),
        &[
            (header::REASON, "idempotency_conflict"),
            (header::ATTEMPTS, "1"),
        ],
    )
    .await
    .unwrap();

    let running = Running::drain(&ctx).await;
    assert_eq!(
        (running.settled("forged"), running.settled("unauthentic")),
        (1, 3)
    );
    for outcome in ["retried", "compensated", "already_written", "unreadable"] {
        assert_eq!(running.settled(outcome), 0, "{outcome}");
    }
    let snapshot = ctx.snapshot(&sku).await;
    assert_eq!(
        (snapshot.remaining, snapshot.released),
        (7, 0),
        "every unit stays with its buyer"
    );
    let store = ctx.store().await;
    for named in [&copied, &targeted, &laundered] {
        assert_eq!(store.order(&named.order_id).await.unwrap(), None);
    }
    let kafka_settings = &ctx.settings.kafka;
    let on_the_orders_topic = testkit::group_lag(
        &ctx.endpoint(),
        &testkit::unique("count-"),
        &kafka_settings.orders_topic,
    )
    .await;
    assert_eq!(on_the_orders_topic, 0, "nothing was republished");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_in_the_middle_of_a_run_commits_the_letters_settled_and_hands_back_the_rest() {
    let (ctx, sku) = TestContext::with_sale(10, 5).await;
    let [compensated, waiting] = reserved_each(&ctx, &sku, ["c", "w"]).await;
    // One run of two letters: the second waits out its replay delay when the stop comes.
    send_letters(
        &ctx,
        &[
            (compensated.encode(), ReasonCode::UnknownSku, 1),
            (waiting.encode(), ReasonCode::RetriesExhausted, 1),
        ],
    )
    .await;
    let mut settings = ctx.settings.clone();
    settings.replayer.replay_delay_secs = 3600;
    // Both letters are in the topic before the replayer starts: one batch, one run.
    settings.replayer.batch_wait_ms = 1000;
    let running = Running::start(&settings).await;
    eventually(PATIENCE, "the first letter to be compensated", || async {
        (running.settled("compensated") == 1).then_some(())
    })
    .await;
    let metrics = running.metrics.clone();
    running.stop().await;
    let lag = testkit::group_lag(
        &ctx.endpoint(),
        &settings.kafka.replayer_group,
        &settings.kafka.dlq_topic,
    )
    .await;
    assert_eq!(
        lag, 1,
        "the settled letter is committed, the waiting one is not"
    );
    assert_eq!(metrics.settled.with_label_values(&["retried"]).get(), 0);
}
