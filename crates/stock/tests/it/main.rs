//! The Redis ledger against the machine's real Redis.

// Test helpers panic to report, like the tests themselves.
#![allow(clippy::unwrap_used)]

use chrono::{Duration, Utc};
use domain::{IdempotencyKey, OrderId, OrderRequested, Quantity, ReservationState, SkuId, UserId};
use stock::{
    ClaimOutcome, ReleaseMode, ReleaseOutcome, ReservationRecord, ReserveOutcome, RestoredOrder,
    RetireOutcome, SoldOut, StockError, StockLedger,
};
use testkit::{fresh_ledger, open_spec};

mod buckets;
mod cluster;
mod room;
mod tls;

fn sku() -> SkuId {
    SkuId::parse(testkit::unique("sku-")).unwrap()
}

fn new_order(sku: &SkuId) -> OrderId {
    OrderId::new(sku, uuid::Uuid::now_v7().as_u128())
}

/// A new order of `quantity` units for `user` under `key`, requested now.
fn candidate(sku: &SkuId, user: &str, key: &str, quantity: i64) -> OrderRequested {
    OrderRequested {
        v: domain::ORDER_SCHEMA_VERSION,
        order_id: new_order(sku),
        user_id: UserId::parse(user).unwrap(),
        sku_id: sku.clone(),
        quantity: Quantity::new(quantity).unwrap(),
        idempotency_key: IdempotencyKey::parse(key).unwrap(),
        requested_at: Utc::now(),
    }
}

async fn reserve(
    ledger: &StockLedger,
    sku: &SkuId,
    user: &str,
    key: &str,
    quantity: i64,
) -> ReserveOutcome {
    let mut order = candidate(sku, user, key, quantity);
    ledger.reserve(&mut order, None, false).await.unwrap().0
}

/// [`reserve`], expected to be accepted: the new order.
async fn accepted(
    ledger: &StockLedger,
    sku: &SkuId,
    user: &str,
    key: &str,
    quantity: i64,
) -> OrderId {
    match reserve(ledger, sku, user, key, quantity).await {
        ReserveOutcome::Accepted(order) => order,
        other => panic!("{user}'s order of {quantity} under {key:?} was refused: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_the_stock_is_reserved_when_many_buyers_race_for_it() {
    let ledger = fresh_ledger();
    let sku = sku();
    const STOCK: i64 = 50;
    const BUYERS: usize = 400;
    ledger.warm(&sku, &open_spec(STOCK, 1)).await.unwrap();
    let attempts = (0..BUYERS).map(|i| {
        let ledger = ledger.clone();
        let sku = sku.clone();
        tokio::spawn(async move { reserve(&ledger, &sku, &format!("u{i}"), "k", 1).await })
    });
    let outcomes: Vec<ReserveOutcome> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let accepted = outcomes
        .iter()
        .filter(|o| matches!(o, ReserveOutcome::Accepted(_)))
        .count();
    let sold_out: Vec<&SoldOut> = outcomes
        .iter()
        .filter_map(|o| match o {
            ReserveOutcome::SoldOut(seen) => Some(seen),
            _ => None,
        })
        .collect();
    let sold_out = sold_out
        .iter()
        .inspect(|seen| {
            // What the gateway's sold-out flag is built from.
            assert_eq!(seen.remaining, 0);
            assert_eq!(seen.reserved, STOCK);
            assert!(seen.ends_at_ms > Utc::now().timestamp_millis());
        })
        .count();
    assert_eq!(accepted, STOCK as usize);
    assert_eq!(sold_out, BUYERS - STOCK as usize);
    let snapshot = ledger.snapshot(&sku).await.unwrap().unwrap();
    assert_eq!(snapshot.remaining, 0);
    assert_eq!(snapshot.reserved, STOCK);
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_same_order_and_reserves_once() {
    let ledger = fresh_ledger();
    let sku = sku();
    ledger.warm(&sku, &open_spec(10, 5)).await.unwrap();
    let first = accepted(&ledger, &sku, "alice", "k1", 2).await;
    for _ in 0..3 {
        match reserve(&ledger, &sku, "alice", "k1", 2).await {
            ReserveOutcome::Duplicate { order_id, state } => {
                assert_eq!(order_id, first);
                assert_eq!(state, ReservationState::Reserved);
            }
            other => panic!("expected a duplicate, got {other:?}"),
        }
    }
    // The same key from another buyer is another order.
    accepted(&ledger, &sku, "bob", "k1", 1).await;
    assert_eq!(ledger.snapshot(&sku).await.unwrap().unwrap().remaining, 7);
}

#[tokio::test]
async fn a_buyer_cannot_hold_more_than_the_per_user_limit() {
    let ledger = fresh_ledger();
    let sku = sku();
    ledger.warm(&sku, &open_spec(100, 3)).await.unwrap();
    accepted(&ledger, &sku, "carol", "a", 2).await;
    assert_eq!(
        reserve(&ledger, &sku, "carol", "b", 2).await,
        ReserveOutcome::LimitExceeded
    );
    accepted(&ledger, &sku, "carol", "c", 1).await;
    assert_eq!(
        reserve(&ledger, &sku, "carol", "d", 1).await,
        ReserveOutcome::LimitExceeded
    );
    assert_eq!(ledger.snapshot(&sku).await.unwrap().unwrap().remaining, 97);
}

#[tokio::test]
async fn a_sale_outside_its_window_or_unknown_to_redis_sells_nothing() {
    let ledger = fresh_ledger();
    let sku = sku();
    assert_eq!(
        reserve(&ledger, &sku, "dan", "k", 1).await,
        ReserveOutcome::NotFound
    );
    let now = Utc::now();
    let later =
        domain::SaleSpec::new(5, 1, now + Duration::hours(1), now + Duration::hours(2)).unwrap();
    ledger.warm(&sku, &later).await.unwrap();
    assert_eq!(
        reserve(&ledger, &sku, "dan", "k", 1).await,
        ReserveOutcome::NotActive
    );
    assert_eq!(ledger.snapshot(&sku).await.unwrap().unwrap().remaining, 5);
}

#[tokio::test]
async fn releasing_twice_gives_the_stock_back_once() {
    let ledger = fresh_ledger();
    let sku = sku();
    ledger.warm(&sku, &open_spec(10, 5)).await.unwrap();
    let order = accepted(&ledger, &sku, "erin", "k", 3).await;
    assert_eq!(
        ledger
            .release(&order, ReleaseMode::Compensate)
            .await
            .unwrap(),
        ReleaseOutcome::Released
    );
    assert_eq!(
        ledger
            .release(&order, ReleaseMode::Compensate)
            .await
            .unwrap(),
        ReleaseOutcome::AlreadyReleased
    );
    let snapshot = ledger.snapshot(&sku).await.unwrap().unwrap();
    assert_eq!(snapshot.remaining, 10);
    assert_eq!(snapshot.released, 3);
    // Compensation keeps the key: the buyer's retry shows the same (released) order.
    assert_eq!(
        reserve(&ledger, &sku, "erin", "k", 3).await,
        ReserveOutcome::Duplicate {
            order_id: order,
            state: ReservationState::Released
        }
    );
    // ...and the units held by the buyer were given back too.
    accepted(&ledger, &sku, "erin", "k2", 5).await;
}

#[tokio::test]
async fn a_failed_produce_releases_only_what_the_worker_has_not_claimed() {
    let ledger = fresh_ledger();
    let sku = sku();
    ledger.warm(&sku, &open_spec(10, 5)).await.unwrap();
    let unclaimed = accepted(&ledger, &sku, "fay", "k1", 1).await;
    let claimed = accepted(&ledger, &sku, "fay", "k2", 1).await;
    assert_eq!(
        ledger.claim(&sku, &[&claimed]).await.unwrap(),
        vec![ClaimOutcome::Claimed]
    );
    assert_eq!(
        ledger
            .release(&claimed, ReleaseMode::ProduceFailed)
            .await
            .unwrap(),
        ReleaseOutcome::Claimed
    );
    assert_eq!(
        ledger
            .release(&unclaimed, ReleaseMode::ProduceFailed)
            .await
            .unwrap(),
        ReleaseOutcome::Released
    );
    // A released reservation cannot be claimed: the worker will fail that order.
    assert_eq!(
        ledger.claim(&sku, &[&unclaimed]).await.unwrap(),
        vec![ClaimOutcome::Released]
    );
    // After a failed produce the key is free again: the buyer's retry gets a new order.
    match reserve(&ledger, &sku, "fay", "k1", 1).await {
        ReserveOutcome::Accepted(again) => assert_ne!(again, unclaimed),
        other => panic!("expected a new order, got {other:?}"),
    }
    assert_eq!(ledger.snapshot(&sku).await.unwrap().unwrap().remaining, 8);
}

#[tokio::test]
async fn changing_the_stock_of_a_live_sale_applies_the_delta_and_never_hands_out_reserved_units() {
    let ledger = fresh_ledger();
    let sku = sku();
    ledger.warm(&sku, &open_spec(10, 10)).await.unwrap();
    accepted(&ledger, &sku, "gus", "k", 6).await;
    assert_eq!(
        ledger.warm(&sku, &open_spec(15, 10)).await.unwrap(),
        stock::WarmOutcome::Updated(9)
    );
    assert_eq!(
        ledger.warm(&sku, &open_spec(5, 10)).await.unwrap(),
        stock::WarmOutcome::BelowReserved(9)
    );
    assert_eq!(ledger.snapshot(&sku).await.unwrap().unwrap().remaining, 9);
}

#[tokio::test]
async fn the_scripts_and_rust_read_and_write_one_reservation_record_format() {
    let ledger = fresh_ledger();
    let sku = sku();
    ledger.warm(&sku, &open_spec(10, 10)).await.unwrap();
    // Written by reserve.lua and advance.lua, read by Rust; the key holds the separator.
    let ReserveOutcome::Accepted(order) = reserve(&ledger, &sku, "alice", "k|1", 2).await else {
        panic!("the reservation was refused")
    };
    let expected = |state| ReservationRecord {
        state,
        quantity: 2,
        user: UserId::parse("alice").unwrap(),
        key: IdempotencyKey::parse("k|1").unwrap(),
    };
    let read = ledger.reservation(&order).await.unwrap();
    assert_eq!(read, Some(expected(ReservationState::Reserved)));
    ledger.claim(&sku, &[&order]).await.unwrap();
    let read = ledger.reservation(&order).await.unwrap();
    assert_eq!(read, Some(expected(ReservationState::Claimed)));

    // Written by Rust (restore), read by release.lua: the buyer's units come back.
    let restored_sku = self::sku();
    let restored = new_order(&restored_sku);
    ledger
        .restore(
            &restored_sku,
            &open_spec(10, 10),
            7,
            &[RestoredOrder {
                order_id: restored.clone(),
                user: UserId::parse("bob").unwrap(),
                key: IdempotencyKey::parse("k|2").unwrap(),
                quantity: 3,
                holds_stock: true,
            }],
        )
        .await
        .unwrap();
    assert_eq!(
        ledger
            .release(&restored, ReleaseMode::Compensate)
            .await
            .unwrap(),
        ReleaseOutcome::Released
    );
    let snapshot = ledger.snapshot(&restored_sku).await.unwrap().unwrap();
    assert_eq!((snapshot.remaining, snapshot.released), (10, 3));
}

#[tokio::test]
async fn a_reservation_record_that_cannot_be_read_is_a_permanent_error_never_a_default() {
    let ledger = fresh_ledger();
    let sku = sku();
    ledger.warm(&sku, &open_spec(5, 5)).await.unwrap();
    let ReserveOutcome::Accepted(order) = reserve(&ledger, &sku, "alice", "k", 1).await else {
        panic!("the reservation was refused")
    };
    testkit::overwrite_reservation(&ledger, &order, "Z|not a record").await;

    let read = ledger.reservation(&order).await.unwrap_err();
    let released = ledger
        .release(&order, ReleaseMode::Compensate)
        .await
        .unwrap_err();
    let mut retry = candidate(&sku, "alice", "k", 1);
    let again = ledger.reserve(&mut retry, None, false).await.unwrap_err();
    for error in [&read, &released, &again] {
        assert!(matches!(error, StockError::Corrupt(_)), "{error}");
        assert!(!error.is_transient(), "{error}");
    }
    // A claim reports it for that order alone, so the batch's other orders go on.
    let fine = match reserve(&ledger, &sku, "bob", "k", 1).await {
        ReserveOutcome::Accepted(id) => id,
        other => panic!("{other:?}"),
    };
    let claims = ledger.claim(&sku, &[&order, &fine]).await.unwrap();
    assert_eq!(claims, vec![ClaimOutcome::Corrupt, ClaimOutcome::Claimed]);
    let snapshot = ledger.snapshot(&sku).await.unwrap().unwrap();
    assert_eq!(
        (snapshot.remaining, snapshot.released),
        (3, 0),
        "nothing moved on a record nobody could read"
    );
}

#[tokio::test]
async fn a_redis_that_cannot_be_reached_is_a_transient_error() {
    let mut settings = settings::Settings::defaults().redis;
    settings.url = settings::secrecy::SecretString::from("redis://127.0.0.1:1".to_owned());
    settings.timeout_secs = 1;
    let error = StockLedger::new(&settings)
        .unwrap()
        .ping()
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error}");
}

#[tokio::test]
async fn what_redis_answers_in_an_outage_is_transient() {
    let url =
        std::env::var("SECKILL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for reply in [
        "OOM command not allowed when used memory > 'maxmemory'",
        "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist",
        "BUSY Redis is busy running a script",
        "LOADING Redis is loading the dataset in memory",
        "READONLY You can't write against a read only replica",
        "NOREPLICAS Not enough good replicas to write",
        "MASTERDOWN Link with MASTER is down",
    ] {
        let error = redis::cmd("EVAL")
            .arg("return redis.error_reply(ARGV[1])")
            .arg(0)
            .arg(reply)
            .query_async::<()>(&mut conn)
            .await
            .unwrap_err();
        let error = StockError::Redis(error);
        assert!(error.is_transient(), "{reply}: {error}");
    }
}

#[tokio::test]
async fn an_ended_sale_is_retired_only_once_nothing_is_pending_and_a_change_revives_it() {
    let ledger = fresh_ledger();
    let sku = sku();
    ledger.warm(&sku, &open_spec(5, 5)).await.unwrap();
    let ReserveOutcome::Accepted(order) = reserve(&ledger, &sku, "alice", "k", 1).await else {
        panic!("the reservation was refused")
    };
    let expire_at = Utc::now() + Duration::hours(1);
    assert_eq!(
        ledger.retire(&sku, 1, expire_at).await.unwrap(),
        RetireOutcome::Open,
        "a sale Redis has open is never retired"
    );
    let ended = domain::SaleSpec::new(
        5,
        5,
        Utc::now() - Duration::hours(2),
        Utc::now() - Duration::hours(1),
    )
    .unwrap();
    ledger.warm(&sku, &ended).await.unwrap();
    assert_eq!(
        ledger.retire(&sku, 1, expire_at).await.unwrap(),
        RetireOutcome::Unfinished(1)
    );
    assert_eq!(ledger.finish(&sku, &[&order]).await.unwrap(), 1);
    assert_eq!(
        ledger.retire(&sku, 1, expire_at).await.unwrap(),
        RetireOutcome::Retired
    );
    let url =
        std::env::var("SECKILL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys = ledger.keys(&sku);
    let ttl = |key: String| {
        let mut conn = conn.clone();
        async move {
            redis::cmd("PTTL")
                .arg(key)
                .query_async::<i64>(&mut conn)
                .await
                .unwrap()
        }
    };
    for key in [&keys.buyers, &keys.idem, &keys.resv] {
        let left = ttl(key.clone()).await;
        assert!(
            (3_500_000..=3_600_000).contains(&left),
            "{key} expires in {left} ms"
        );
    }
    assert_eq!(ttl(keys.sale.clone()).await, -1, "the sale hash stays");
    assert_eq!(ttl(keys.stock.clone()).await, -1, "the stock counter stays");

    // The admin reopens the sale: its keys live again.
    ledger.warm(&sku, &open_spec(6, 5)).await.unwrap();
    for key in [&keys.buyers, &keys.idem, &keys.resv] {
        assert_eq!(ttl(key.clone()).await, -1, "{key}");
    }
}

#[tokio::test]
async fn the_sweep_takes_an_unacknowledged_reservation_at_once_and_an_acknowledged_one_after_its_grace(
) {
    let ledger = fresh_ledger().with_queued_grace(std::time::Duration::from_secs(60));
    let sku = sku();
    ledger.warm(&sku, &open_spec(10, 10)).await.unwrap();
    let mut ids = Vec::new();
    for user in ["never-acked", "acked", "released"] {
        match reserve(&ledger, &sku, user, "k", 1).await {
            ReserveOutcome::Accepted(id) => ids.push(id),
            other => panic!("{other:?}"),
        }
    }
    let (never_acked, acked, released) = (&ids[0], &ids[1], &ids[2]);
    ledger.mark_acknowledged(acked).await.unwrap();
    ledger
        .release(released, ReleaseMode::ProduceFailed)
        .await
        .unwrap();
    assert_eq!(
        ledger.snapshot(&sku).await.unwrap().unwrap().unfinished,
        2,
        "a released order leaves the outbox"
    );

    let now = Utc::now();
    let taken = ledger.take_stale(&sku, 1, now, now, 10).await.unwrap();
    let taken: Vec<&OrderId> = taken.iter().map(|s| &s.order_id).collect();
    assert_eq!(
        taken,
        vec![never_acked],
        "the acknowledged one waits out its grace"
    );
    let later = ledger
        .take_stale(&sku, 1, now + Duration::seconds(61), now, 10)
        .await
        .unwrap();
    let acked_entry = later
        .iter()
        .find(|s| &s.order_id == acked)
        .expect("taken once its grace is over");
    let message = acked_entry.entry.clone().unwrap().unwrap();
    assert_eq!(
        OrderRequested::decode(&message.payload).unwrap().order_id,
        *acked,
        "the outbox holds the order message"
    );
}

#[tokio::test]
async fn an_order_finished_between_a_sweep_and_its_acknowledgement_stays_finished() {
    let ledger = fresh_ledger().with_queued_grace(std::time::Duration::from_secs(60));
    let sku = sku();
    ledger.warm(&sku, &open_spec(10, 10)).await.unwrap();
    let ReserveOutcome::Accepted(order) = reserve(&ledger, &sku, "alice", "k", 1).await else {
        panic!("the reservation was refused")
    };
    // The sweeper takes it; the order is written and finished; then the sweeper's republish is
    // acknowledged and marks it (the record is still R: no claim in between stops the mark).
    let now = Utc::now();
    assert_eq!(
        ledger
            .take_stale(&sku, 1, now, now, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(ledger.finish(&sku, &[&order]).await.unwrap(), 1);
    ledger.mark_acknowledged(&order).await.unwrap();
    let snapshot = ledger.snapshot(&sku).await.unwrap().unwrap();
    assert_eq!(snapshot.unfinished, 0, "the mark does not bring it back");
    let later = now + Duration::hours(1);
    assert!(ledger
        .take_stale(&sku, 1, later, later, 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_sale_lists_the_requests_of_its_orders_up_to_a_bound() {
    let ledger = fresh_ledger();
    let sku = sku();
    ledger.warm(&sku, &open_spec(10, 5)).await.unwrap();
    reserve(&ledger, &sku, "alice", "k1", 1).await;
    reserve(&ledger, &sku, "bob", "k2", 1).await;
    let mut fields = ledger.order_requests(&sku, 2).await.unwrap().unwrap();
    fields.sort();
    assert_eq!(fields, vec!["alice|k1".to_owned(), "bob|k2".to_owned()]);
    assert_eq!(ledger.order_requests(&sku, 1).await.unwrap(), None);
}

#[tokio::test]
async fn the_acknowledger_marks_what_it_gathered_and_what_is_left_when_it_finishes() {
    let ledger = fresh_ledger().with_queued_grace(std::time::Duration::from_secs(60));
    let sku = sku();
    ledger.warm(&sku, &open_spec(10, 10)).await.unwrap();
    let mut ids = Vec::new();
    for user in ["a", "b", "c"] {
        match reserve(&ledger, &sku, user, "k", 1).await {
            ReserveOutcome::Accepted(id) => ids.push(id),
            other => panic!("{other:?}"),
        }
    }
    let (acknowledger, task) = stock::Marks::start(
        ledger.clone(),
        stock::Mark::Acknowledged,
        std::time::Duration::from_millis(5),
    );
    acknowledger.mark(ids[0].clone());
    acknowledger.mark(ids[1].clone());
    let state = |id: OrderId| {
        let ledger = ledger.clone();
        async move { ledger.reservation(&id).await.unwrap().unwrap().state }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while state(ids[1].clone()).await != ReservationState::Acknowledged {
        assert!(
            std::time::Instant::now() < deadline,
            "not marked within 5 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(state(ids[0].clone()).await, ReservationState::Acknowledged);
    // Handed over just before the gateway stops: marked by `finish`, not lost.
    acknowledger.mark(ids[2].clone());
    task.finish().await;
    assert_eq!(state(ids[2].clone()).await, ReservationState::Acknowledged);
    // Marked orders wait out their grace before the sweeper takes them.
    let now = Utc::now();
    assert!(ledger
        .take_stale(&sku, 1, now, now, 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn one_call_for_a_group_answers_each_buyer_as_if_alone_limits_keys_and_sold_out_included() {
    let ledger = fresh_ledger();
    let sku = sku();
    // Three units, two per buyer.
    ledger.warm(&sku, &open_spec(3, 2)).await.unwrap();
    let ann_first = candidate(&sku, "ann", "k1", 1);
    let ann_again = OrderRequested {
        order_id: new_order(&sku),
        ..ann_first.clone()
    };
    let group = [
        ann_first.clone(),
        // The same key of the same buyer, in the same group: the first order again.
        ann_again,
        // The same key with another quantity: reused.
        candidate(&sku, "ann", "k1", 2),
        candidate(&sku, "ann", "k2", 1),
        // Ann holds two: over her limit.
        candidate(&sku, "ann", "k3", 1),
        candidate(&sku, "bob", "k1", 1),
        // Three units taken: sold out in the middle of the group, for everyone after.
        candidate(&sku, "cid", "k1", 1),
        candidate(&sku, "dee", "k1", 1),
    ];
    let orders: Vec<_> = group.iter().map(|o| (o.clone(), false)).collect();
    let outcomes = ledger.reserve_together(&orders).await.unwrap();
    assert_eq!(outcomes.len(), 8);
    assert_eq!(
        outcomes[0],
        ReserveOutcome::Accepted(ann_first.order_id.clone())
    );
    assert_eq!(
        outcomes[1],
        ReserveOutcome::Duplicate {
            order_id: ann_first.order_id.clone(),
            state: ReservationState::Reserved
        }
    );
    assert_eq!(
        outcomes[2],
        ReserveOutcome::KeyReused {
            order_id: ann_first.order_id.clone(),
            quantity: 1
        }
    );
    assert_eq!(
        outcomes[3],
        ReserveOutcome::Accepted(group[3].order_id.clone())
    );
    assert_eq!(outcomes[4], ReserveOutcome::LimitExceeded);
    assert_eq!(
        outcomes[5],
        ReserveOutcome::Accepted(group[5].order_id.clone())
    );
    for outcome in &outcomes[6..] {
        let ReserveOutcome::SoldOut(seen) = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!((seen.remaining, seen.reserved), (0, 3));
    }
    let snapshot = ledger.snapshot(&sku).await.unwrap().unwrap();
    assert_eq!(
        (snapshot.remaining, snapshot.reserved, snapshot.unfinished),
        (0, 3, 3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_buyers_of_one_sku_share_calls_and_sell_exactly_the_stock() {
    let ledger = fresh_ledger();
    let sku = sku();
    ledger.warm(&sku, &open_spec(100, 2)).await.unwrap();
    // 400 requests of 200 buyers (two keys each), all at once.
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            let (ledger, sku) = (ledger.clone(), sku.clone());
            tokio::spawn(async move {
                let user = format!("buyer-{}", i % 200);
                let key = format!("k{}", (i / 200) % 2);
                let mut order = candidate(&sku, &user, &key, 1);
                ledger.reserve(&mut order, None, false).await.unwrap().0
            })
        })
        .collect();
    let mut accepted = std::collections::HashSet::new();
    for task in tasks {
        if let ReserveOutcome::Accepted(order) = task.await.unwrap() {
            assert!(accepted.insert(order), "one order accepted twice");
        }
    }
    assert_eq!(accepted.len(), 100, "exactly the stock, never one more");
    let snapshot = ledger.snapshot(&sku).await.unwrap().unwrap();
    assert_eq!((snapshot.remaining, snapshot.reserved), (0, 100));
    let (calls, orders) = ledger.reserve_calls();
    assert_eq!(orders, 400, "every request was in one call");
    assert!(
        calls < orders,
        "{calls} calls for {orders} orders: none was grouped"
    );
}
