//! Hot-SKU buckets: one sale's units split over several buckets (hash tags), with buyers kept in
//! their home bucket and buckets lending to each other.

use super::{accepted, candidate, reserve, sku};
use chrono::Utc;
use domain::{OrderId, SaleSpec, SkuId, UserId};
use std::collections::{BTreeMap, HashSet};
use stock::home_bucket;
use stock::{
    ClaimOutcome, ReleaseMode, ReleaseOutcome, ReserveOutcome, RestoreOutcome, RestoredOrder,
    RetireOutcome, StockError, StockLedger, WarmOutcome,
};
use testkit::{fresh_ledger, open_spec};

fn bucketed(stock: i64, per_user_limit: i64, buckets: i64) -> SaleSpec {
    open_spec(stock, per_user_limit)
        .with_buckets(buckets)
        .unwrap()
}

/// `count` user names whose home bucket, in a sale of `buckets`, is `bucket`.
fn users_of_bucket(bucket: u8, buckets: u8, count: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("b{bucket}-user-{i}"))
        .filter(|user| home_bucket(&UserId::parse(user.as_str()).unwrap(), buckets) == bucket)
        .take(count)
        .collect()
}

/// Units left in each bucket.
async fn left_per_bucket(ledger: &StockLedger, sku: &SkuId, buckets: u8) -> Vec<i64> {
    let mut conn = testkit::raw_redis().await;
    let mut left = Vec::new();
    for bucket in 0..buckets {
        let units: Option<i64> = redis::cmd("GET")
            .arg(&ledger.bucket_keys(sku, bucket).stock)
            .query_async(&mut conn)
            .await
            .unwrap();
        left.push(units.unwrap_or(-1));
    }
    left
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_buckets_sell_exactly_their_m_units_to_a_racing_crowd() {
    let ledger = fresh_ledger();
    let sku = sku();
    const BUCKETS: u8 = 8;
    const STOCK: i64 = 300;
    const BUYERS: usize = 1_500;
    let spec = bucketed(STOCK, 1, i64::from(BUCKETS));
    assert_eq!(
        ledger.warm(&sku, &spec).await.unwrap(),
        WarmOutcome::Created(STOCK)
    );
    assert_eq!(
        left_per_bucket(&ledger, &sku, BUCKETS).await,
        vec![38, 38, 38, 38, 37, 37, 37, 37]
    );

    let attempts = (0..BUYERS).map(|i| {
        let (ledger, sku) = (ledger.clone(), sku.clone());
        tokio::spawn(async move {
            let user = format!("u{i}");
            let mut order = candidate(&sku, &user, "k", 1);
            let reserved = ledger.reserve(&mut order, None, false).await;
            (user, order, reserved)
        })
    });
    let (mut accepted, mut sold_out, mut contended) = (Vec::new(), 0, 0);
    for attempt in futures::future::join_all(attempts).await {
        let (user, order, reserved) = attempt.unwrap();
        let (outcome, entry) = match reserved {
            Ok(reserved) => reserved,
            // Units came into the buyer's bucket round after round and others took them first:
            // a 503 the buyer may retry, counted below.
            Err(stock::StockError::Contended(_)) => {
                contended += 1;
                continue;
            }
            Err(error) => panic!("{error}"),
        };
        match outcome {
            ReserveOutcome::Accepted(id) => {
                // The order lives in its buyer's bucket, and its message names that id.
                let home = home_bucket(&UserId::parse(user.as_str()).unwrap(), BUCKETS);
                assert_eq!(id.bucket(), home, "{id} of {user}");
                assert_eq!(id, order.order_id);
                let queued = domain::OrderRequested::decode(&entry.payload).unwrap();
                assert_eq!(queued.order_id, id);
                accepted.push(id);
            }
            ReserveOutcome::SoldOut(seen) => {
                assert_eq!(seen.remaining, 0, "sold out while units were left");
                sold_out += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(accepted.len(), STOCK as usize, "exactly the stock is sold");
    assert_eq!(sold_out + contended, BUYERS - STOCK as usize);
    assert!(
        contended * 100 <= BUYERS,
        "{contended} of {BUYERS} buyers were told to retry"
    );
    assert_eq!(
        accepted.iter().collect::<HashSet<_>>().len(),
        accepted.len(),
        "no order twice"
    );
    let buckets_used: HashSet<u8> = accepted.iter().map(OrderId::bucket).collect();
    assert_eq!(buckets_used.len(), usize::from(BUCKETS));
    let snapshot = ledger.snapshot(&sku).await.unwrap().unwrap();
    assert_eq!(
        (
            snapshot.remaining,
            snapshot.initial,
            snapshot.reserved,
            snapshot.released,
            snapshot.in_transit,
            snapshot.buckets
        ),
        (0, STOCK, STOCK, 0, 0, BUCKETS)
    );
    assert_eq!(
        left_per_bucket(&ledger, &sku, BUCKETS).await,
        vec![0; usize::from(BUCKETS)]
    );
}

#[tokio::test]
async fn a_buyer_whose_bucket_is_empty_borrows_and_is_sold_out_only_when_every_bucket_is() {
    let ledger = fresh_ledger();
    let sku = sku();
    ledger.warm(&sku, &bucketed(8, 10, 4)).await.unwrap();
    // Every buyer of bucket 0: its own 2 units, then 6 borrowed from the other three buckets.
    let users = users_of_bucket(0, 4, 9);
    for (i, user) in users.iter().take(8).enumerate() {
        match reserve(&ledger, &sku, user, "k", 1).await {
            ReserveOutcome::Accepted(id) => assert_eq!(id.bucket(), 0),
            other => panic!("unit {} of 8 refused: {other:?}", i + 1),
        }
    }
    match reserve(&ledger, &sku, &users[8], "k", 1).await {
        ReserveOutcome::SoldOut(seen) => {
            assert_eq!(seen.remaining, 0);
            assert_eq!(
                seen.reserved, 8,
                "the units ever reserved, summed over the buckets"
            );
        }
        other => panic!("the ninth buyer got {other:?}"),
    }
    let snapshot = ledger.snapshot(&sku).await.unwrap().unwrap();
    assert_eq!(
        (snapshot.remaining, snapshot.reserved, snapshot.in_transit),
        (0, 8, 0)
    );

    // A release puts the unit back in its buyer's bucket; a buyer of another bucket borrows it.
    let ReserveOutcome::Duplicate { order_id, .. } =
        reserve(&ledger, &sku, &users[0], "k", 1).await
    else {
        panic!("the first order is not known to its key")
    };
    assert_eq!(
        ledger
            .release(&order_id, ReleaseMode::Compensate)
            .await
            .unwrap(),
        ReleaseOutcome::Released
    );
    let other = &users_of_bucket(3, 4, 1)[0];
    let ReserveOutcome::Accepted(borrowed) = reserve(&ledger, &sku, other, "k", 1).await else {
        panic!("the unit given back could not be bought from another bucket")
    };
    assert_eq!(borrowed.bucket(), 3);
    let snapshot = ledger.snapshot(&sku).await.unwrap().unwrap();
    assert_eq!(
        (
            snapshot.remaining,
            snapshot.reserved,
            snapshot.released,
            snapshot.in_transit
        ),
        (0, 9, 1, 0)
    );
}

#[tokio::test]
async fn the_per_user_limit_and_idempotency_stay_exact_across_buckets() {
    let ledger = fresh_ledger();
    let sku = sku();
    // One unit per bucket: every second order of a buyer needs units from another bucket.
    ledger.warm(&sku, &bucketed(6, 2, 6)).await.unwrap();
    let ReserveOutcome::Accepted(first) = reserve(&ledger, &sku, "alice", "a", 1).await else {
        panic!("refused")
    };
    let ReserveOutcome::Accepted(second) = reserve(&ledger, &sku, "alice", "b", 1).await else {
        panic!("refused")
    };
    assert_eq!(first.bucket(), second.bucket(), "one home bucket per buyer");
    assert_eq!(
        reserve(&ledger, &sku, "alice", "c", 1).await,
        ReserveOutcome::LimitExceeded
    );
    // The same request again is the same order; the same key for another quantity is refused.
    match reserve(&ledger, &sku, "alice", "a", 1).await {
        ReserveOutcome::Duplicate { order_id, .. } => assert_eq!(order_id, first),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        reserve(&ledger, &sku, "alice", "a", 2).await,
        ReserveOutcome::KeyReused { quantity: 1, .. }
    ));
    let snapshot = ledger.snapshot(&sku).await.unwrap().unwrap();
    assert_eq!((snapshot.remaining, snapshot.reserved), (4, 2));
    // A gateway that believed the sale had one bucket learns it has six, from bucket 0.
    let other = fresh_ledger_sharing(&ledger);
    match reserve(&other, &sku, "alice", "b", 1).await {
        ReserveOutcome::Duplicate { order_id, .. } => assert_eq!(order_id, second),
        other => panic!("{other:?}"),
    }
}

/// A second ledger (another process) on the same keys, which has seen none of the sales.
fn fresh_ledger_sharing(ledger: &StockLedger) -> StockLedger {
    let sku = SkuId::parse("probe").unwrap();
    let prefix = ledger
        .keys(&sku)
        .sale
        .trim_end_matches(":{probe}:sale")
        .to_owned();
    let mut settings = settings::Settings::defaults().redis;
    settings.url = settings::secrecy::SecretString::from(
        std::env::var("SECKILL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
    );
    settings.key_prefix = prefix;
    StockLedger::new(&settings).unwrap()
}

#[tokio::test]
async fn orders_are_claimed_finished_and_released_in_their_own_bucket() {
    let ledger = fresh_ledger();
    let sku = sku();
    ledger.warm(&sku, &bucketed(40, 1, 4)).await.unwrap();
    let mut orders = Vec::new();
    for i in 0..12 {
        let ReserveOutcome::Accepted(id) = reserve(&ledger, &sku, &format!("u{i}"), "k", 1).await
        else {
            panic!("refused")
        };
        orders.push(id);
    }
    assert!(
        orders
            .iter()
            .map(OrderId::bucket)
            .collect::<HashSet<_>>()
            .len()
            > 1
    );
    let ids: Vec<&OrderId> = orders.iter().collect();
    assert_eq!(
        ledger.claim(&sku, &ids).await.unwrap(),
        vec![ClaimOutcome::Claimed; 12]
    );
    assert_eq!(ledger.finish(&sku, &ids[..6]).await.unwrap(), 6);
    assert_eq!(ledger.snapshot(&sku).await.unwrap().unwrap().unfinished, 6);
    for id in &orders[6..] {
        assert_eq!(
            ledger.release(id, ReleaseMode::Compensate).await.unwrap(),
            ReleaseOutcome::Released
        );
        assert!(ledger.reservation(id).await.unwrap().is_some());
    }
    let snapshot = ledger.snapshot(&sku).await.unwrap().unwrap();
    assert_eq!(
        (
            snapshot.remaining,
            snapshot.reserved,
            snapshot.released,
            snapshot.unfinished
        ),
        (34, 12, 6, 0)
    );
    // The sweeper takes stale reservations from every bucket.
    let again: Vec<_> = (0..4).map(|i| format!("late{i}")).collect::<Vec<_>>();
    for user in &again {
        reserve(&ledger, &sku, user, "k", 1).await;
    }
    let later = Utc::now() + chrono::Duration::seconds(60);
    let stale = ledger.take_stale(&sku, 4, later, later, 100).await.unwrap();
    assert_eq!(stale.len(), 4);
}

#[tokio::test]
async fn a_transfer_left_half_done_is_completed_once_and_no_unit_is_lost() {
    let ledger = fresh_ledger();
    let sku = sku();
    ledger.warm(&sku, &bucketed(40, 1, 4)).await.unwrap();
    testkit::strand_transfer(&ledger, &sku, 1, 2, 3).await;
    let snapshot = ledger.snapshot(&sku).await.unwrap().unwrap();
    assert_eq!(
        (snapshot.remaining, snapshot.in_transit),
        (40 - 5, 5),
        "half of bucket 1's ten units left it and reached no bucket"
    );
    // The receiver counted a second transfer, and its lender died before forgetting it.
    let received = testkit::strand_transfer(&ledger, &sku, 3, 0, 1).await;
    ledger.receive_only(&sku, 0, &received, 5).await.unwrap();

    let now = Utc::now().timestamp_millis();
    assert_eq!(ledger.complete_transfers(&sku, 4, now).await.unwrap(), 2);
    assert_eq!(ledger.complete_transfers(&sku, 4, now).await.unwrap(), 0);
    let snapshot = ledger.snapshot(&sku).await.unwrap().unwrap();
    assert_eq!((snapshot.remaining, snapshot.in_transit), (40, 0));
    assert_eq!(left_per_bucket(&ledger, &sku, 4).await, vec![15, 5, 15, 5]);

    // A buyer who comes across a stale transfer while borrowing completes it too: bucket 0 is
    // emptied, bucket 1 (its first lender) is left with a transfer to bucket 3 half done.
    let buyers = users_of_bucket(0, 4, 16);
    for user in &buyers[..15] {
        accepted(&ledger, &sku, user, "k", 1).await;
    }
    assert_eq!(left_per_bucket(&ledger, &sku, 4).await, vec![0, 5, 15, 5]);
    testkit::strand_transfer(&ledger, &sku, 1, 3, 2).await;
    accepted(&ledger, &sku, &buyers[15], "k", 1).await;
    let lent: usize = redis::cmd("HLEN")
        .arg(&ledger.bucket_keys(&sku, 1).lent)
        .query_async(&mut testkit::raw_redis().await)
        .await
        .unwrap();
    assert_eq!(lent, 0, "the stale transfer of bucket 1 was completed");
    let snapshot = ledger.snapshot(&sku).await.unwrap().unwrap();
    assert_eq!(
        (snapshot.remaining, snapshot.reserved, snapshot.in_transit),
        (40 - 16, 16, 0)
    );
}

#[tokio::test]
async fn a_bucketed_sale_grows_shrinks_and_keeps_its_number_of_buckets() {
    let ledger = fresh_ledger();
    let sku = sku();
    let spec = bucketed(20, 5, 4);
    ledger.warm(&sku, &spec).await.unwrap();
    for i in 0..6 {
        reserve(&ledger, &sku, &users_of_bucket(1, 4, 6)[i], "k", 1).await;
    }
    // Bucket 1 had 5 units and borrowed: 14 left over the four buckets.
    assert_eq!(ledger.snapshot(&sku).await.unwrap().unwrap().remaining, 14);
    let grown = SaleSpec { stock: 30, ..spec };
    assert_eq!(
        ledger.warm(&sku, &grown).await.unwrap(),
        WarmOutcome::Updated(24)
    );
    let shrunk = SaleSpec { stock: 10, ..spec };
    assert_eq!(
        ledger.warm(&sku, &shrunk).await.unwrap(),
        WarmOutcome::Updated(4)
    );
    let below = SaleSpec { stock: 5, ..spec };
    assert_eq!(
        ledger.warm(&sku, &below).await.unwrap(),
        WarmOutcome::BelowReserved(4)
    );
    let snapshot = ledger.snapshot(&sku).await.unwrap().unwrap();
    assert_eq!(
        (
            snapshot.remaining,
            snapshot.initial,
            snapshot.reserved,
            snapshot.in_transit
        ),
        (4, 10, 6, 0),
        "a refused change changed nothing"
    );
    let other = SaleSpec { buckets: 2, ..spec };
    assert_eq!(
        ledger.warm(&sku, &other).await.unwrap(),
        WarmOutcome::BucketsFixed(4)
    );
}

#[tokio::test]
async fn a_lost_bucketed_sale_is_restored_with_each_order_in_its_bucket() {
    let ledger = fresh_ledger();
    let sku = sku();
    let spec = bucketed(12, 2, 3);
    ledger.warm(&sku, &spec).await.unwrap();
    let mut orders = Vec::new();
    for i in 0..5 {
        let user = format!("u{i}");
        let ReserveOutcome::Accepted(id) = reserve(&ledger, &sku, &user, "k", 2).await else {
            panic!("refused")
        };
        orders.push(RestoredOrder {
            order_id: id,
            user: UserId::parse(user).unwrap(),
            key: domain::IdempotencyKey::parse("k").unwrap(),
            quantity: 2,
            // The last order failed: its units are back.
            holds_stock: i < 4,
        });
    }
    ledger
        .release(&orders[4].order_id, ReleaseMode::Compensate)
        .await
        .unwrap();
    let before = ledger.snapshot(&sku).await.unwrap().unwrap();
    ledger.forget(&sku).await.unwrap();
    assert_eq!(ledger.snapshot(&sku).await.unwrap(), None);

    // The database: 12 units, 8 held by the four orders that stand.
    assert_eq!(
        ledger.restore(&sku, &spec, 4, &orders).await.unwrap(),
        RestoreOutcome::Restored(4)
    );
    let after = ledger.snapshot(&sku).await.unwrap().unwrap();
    assert_eq!(
        (
            after.remaining,
            after.initial,
            after.reserved,
            after.released,
            after.in_transit
        ),
        (before.remaining, 12, 10, 2, 0)
    );
    assert_eq!(after.remaining, 4);
    for order in &orders {
        match reserve(&ledger, &sku, order.user.as_str(), "k", 2).await {
            ReserveOutcome::Duplicate { order_id, .. } => assert_eq!(order_id, order.order_id),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        reserve(&ledger, &sku, "u0", "again", 1).await,
        ReserveOutcome::LimitExceeded,
        "the buyer's count is back in the buyer's bucket"
    );
    // What is left sells, across the buckets, and no more.
    let mut sold = 0;
    for i in 0..10 {
        if let ReserveOutcome::Accepted(_) = reserve(&ledger, &sku, &format!("n{i}"), "k", 1).await
        {
            sold += 1;
        }
    }
    assert_eq!(sold, 4);

    // Redis with only some of the buckets is not restored over: the whole sale is rebuilt.
    let mut conn = testkit::raw_redis().await;
    let keys = ledger.bucket_keys(&sku, 1);
    redis::cmd("DEL")
        .arg(&keys.sale)
        .query_async::<i64>(&mut conn)
        .await
        .unwrap();
    assert_eq!(ledger.snapshot(&sku).await.unwrap(), None);
    let error = ledger.restore(&sku, &spec, 0, &orders).await.unwrap_err();
    assert!(
        error.to_string().contains("2 of the 3 stock buckets"),
        "{error}"
    );
}

#[tokio::test]
async fn an_ended_bucketed_sale_is_retired_in_every_bucket() {
    let ledger = fresh_ledger();
    let sku = sku();
    let now = Utc::now();
    let spec = SaleSpec::new(
        9,
        1,
        now - chrono::Duration::hours(1),
        now + chrono::Duration::seconds(1),
    )
    .unwrap()
    .with_buckets(3)
    .unwrap();
    ledger.warm(&sku, &spec).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..6 {
        if let ReserveOutcome::Accepted(id) = reserve(&ledger, &sku, &format!("u{i}"), "k", 1).await
        {
            ids.push(id);
        }
    }
    assert_eq!(ids.len(), 6);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let expire_at = Utc::now() + chrono::Duration::hours(1);
    assert_eq!(
        ledger.retire(&sku, 3, expire_at).await.unwrap(),
        RetireOutcome::Unfinished(6)
    );
    let refs: Vec<&OrderId> = ids.iter().collect();
    ledger.finish(&sku, &refs).await.unwrap();
    assert_eq!(
        ledger.retire(&sku, 3, expire_at).await.unwrap(),
        RetireOutcome::Retired
    );
    let mut conn = testkit::raw_redis().await;
    let mut expiring = BTreeMap::new();
    for bucket in ids.iter().map(OrderId::bucket).collect::<HashSet<_>>() {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&ledger.bucket_keys(&sku, bucket).resv)
            .query_async(&mut conn)
            .await
            .unwrap();
        expiring.insert(bucket, ttl > 0);
    }
    assert!(expiring.values().all(|&set| set), "{expiring:?}");
}

#[tokio::test]
async fn a_lend_sent_twice_lends_once_and_drifted_counters_do_not_hold_up_sold_out() {
    let ledger = fresh_ledger();
    let sku = sku();
    ledger.warm(&sku, &bucketed(8, 8, 2)).await.unwrap();
    // The client sends the same lend again after a lost reply: the same answer, lent once.
    let keys = ledger.bucket_keys(&sku, 1);
    let lend = || async {
        let (given, _, _) = ledger
            .lend_only(&sku, 1, 0, "1>0.sent-twice", 1)
            .await
            .unwrap();
        given
    };
    assert_eq!(lend().await, 2, "half of bucket 1's four units");
    assert_eq!(lend().await, 2, "the same transfer");
    assert_eq!(left_per_bucket(&ledger, &sku, 2).await, vec![4, 2]);
    assert_eq!(ledger.snapshot(&sku).await.unwrap().unwrap().in_transit, 2);
    let now_ms = Utc::now().timestamp_millis() + 60_000;
    assert_eq!(ledger.complete_transfers(&sku, 2, now_ms).await.unwrap(), 1);
    assert_eq!(left_per_bucket(&ledger, &sku, 2).await, vec![6, 2]);
    // Sent again after it was completed (a retry that came very late): nothing lent.
    assert_eq!(lend().await, 0, "a completed transfer lends nothing");
    assert_eq!(left_per_bucket(&ledger, &sku, 2).await, vec![6, 2]);

    // A counter off by some units with no transfer under way (a hand edit, a failover that
    // kept half of a transfer) shows in the snapshot and does not keep buyers from `sold_out`.
    redis::cmd("HINCRBY")
        .arg(&keys.sale)
        .arg("lent")
        .arg(3)
        .query_async::<i64>(&mut testkit::raw_redis().await)
        .await
        .unwrap();
    for i in 0..8 {
        accepted(&ledger, &sku, &format!("u{i}"), "k", 1).await;
    }
    assert!(matches!(
        reserve(&ledger, &sku, "one-too-many", "k", 1).await,
        ReserveOutcome::SoldOut(_)
    ));
    assert_eq!(ledger.snapshot(&sku).await.unwrap().unwrap().in_transit, 3);

    // A sale that lost a bucket is not warmed over: that would make the bucket anew, empty.
    testkit::delete_keys(&[keys.sale.as_str()]).await;
    let error = ledger.warm(&sku, &bucketed(9, 8, 2)).await.unwrap_err();
    assert!(
        error.to_string().contains("1 of the 2 stock buckets"),
        "{error}"
    );
}

#[tokio::test]
async fn a_transfer_under_way_is_never_answered_as_sold_out_from_memory() {
    let ledger = fresh_ledger();
    let sku = sku();
    ledger.warm(&sku, &bucketed(4, 1, 2)).await.unwrap();
    for user in users_of_bucket(0, 2, 2) {
        accepted(&ledger, &sku, &user, "k", 1).await;
    }
    // Bucket 1 lends its two units to bucket 0 for a borrower that has not received them yet.
    let (given, stale, _) = ledger
        .lend_only(&sku, 1, 0, "1>0.under-way", 2)
        .await
        .unwrap();
    assert_eq!((given, stale), (2, 0));
    assert_eq!(left_per_bucket(&ledger, &sku, 2).await, vec![0, 0]);
    // Every bucket is empty, the units are on their way: `sold_out` for this buyer, with the
    // transfer counted as left, so that no gateway keeps answering it from memory.
    let buyer = users_of_bucket(1, 2, 2);
    match reserve(&ledger, &sku, &buyer[0], "k", 1).await {
        ReserveOutcome::SoldOut(seen) => assert_eq!(seen.remaining, 1),
        other => panic!("{other:?}"),
    }
    // Once the transfer lands, the units sell.
    let later = Utc::now().timestamp_millis() + 60_000;
    assert_eq!(ledger.complete_transfers(&sku, 2, later).await.unwrap(), 1);
    accepted(&ledger, &sku, &buyer[1], "k", 1).await;
}

#[tokio::test]
async fn a_transfer_record_that_does_not_parse_is_reported_not_read_as_a_default() {
    let ledger = fresh_ledger();
    let sku = sku();
    ledger.warm(&sku, &bucketed(8, 8, 2)).await.unwrap();
    redis::cmd("HSET")
        .arg(&ledger.bucket_keys(&sku, 1).lent)
        .arg("1>0.garbled")
        .arg("not a transfer")
        .query_async::<i64>(&mut testkit::raw_redis().await)
        .await
        .unwrap();
    // The same transfer sent again finds its record unreadable: nothing is lent on a guess.
    let again = ledger.lend_only(&sku, 1, 0, "1>0.garbled", 1).await;
    assert!(
        matches!(again, Err(StockError::Reply { script: "lend", .. })),
        "{again:?}"
    );
    // Completing the transfers of the bucket reports it too.
    let completing = ledger.complete_transfers(&sku, 2, i64::MAX).await;
    assert!(
        matches!(completing, Err(StockError::Reply { script: "lend", .. })),
        "{completing:?}"
    );
    assert_eq!(left_per_bucket(&ledger, &sku, 2).await, vec![4, 4]);
}
