//! The waiting room's scripts against the machine's real Redis: the clock admits at the rate it
//! should and nobody while the sale has nothing left, an `auto` rate grows and is cut, a buyer
//! has one place, the pre-queue freezes at the opening, a ticket's expiry never moves, and a sale
//! with a room sells only to admitted buyers.

use super::{candidate, sku};
use chrono::Utc;
use domain::{Admission, AdmissionMode, AdmissionRate, SkuId, UserId};
use stock::{AutoRate, JoinOutcome, ReserveOutcome, StockLedger, Tick, TickOutcome, TicketOutcome};
use testkit::{fresh_ledger, open_spec};

const AUTO: AutoRate = AutoRate {
    start: 100.0,
    min: 10.0,
    max: 1000.0,
    step_per_sec: 50.0,
};

async fn room_sale(ledger: &StockLedger, stock: i64, rate: AdmissionRate) -> SkuId {
    let sku = sku();
    let room = Admission::new(AdmissionMode::Fifo, rate, 60, 600).unwrap();
    let spec = open_spec(stock, 1).with_admission(Some(room));
    ledger.warm(&sku, &spec).await.unwrap();
    sku
}

async fn tick(ledger: &StockLedger, sku: &SkuId, now_ms: i64, pressure: bool) -> stock::RoomState {
    let tick = Tick {
        now_ms,
        pressure,
        seed: 7,
        epoch: "e1",
        auto: AUTO,
    };
    match ledger.tick_room(sku, &tick).await.unwrap() {
        TickOutcome::Room(room) => room,
        other => panic!("{other:?}"),
    }
}

async fn join(ledger: &StockLedger, sku: &SkuId, user: &str, now_ms: i64) -> stock::Place {
    let user = UserId::parse(user).unwrap();
    match ledger.join_room(sku, &user, now_ms, "e1").await.unwrap() {
        JoinOutcome::Place(place) => place,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_clock_admits_at_the_rate_up_to_the_last_place_and_never_while_sold_out() {
    let ledger = fresh_ledger();
    let sku = room_sale(&ledger, 3, AdmissionRate::Fixed(10)).await;
    let t0 = Utc::now().timestamp_millis();
    for i in 0..30 {
        let place = join(&ledger, &sku, &format!("u{i}"), t0).await;
        assert_eq!((place.seq, place.again), (i + 1, false));
    }
    let again = join(&ledger, &sku, "u0", t0 + 5).await;
    assert_eq!((again.seq, again.joined_ms, again.again), (1, t0, true));
    // The first tick opens the room; each later one admits 10 per second of elapsed time, at
    // most a second's worth.
    let opened = tick(&ledger, &sku, t0, false).await;
    assert_eq!(
        (opened.served, opened.opened_ms, opened.joined),
        (0.0, Some(t0), 30)
    );
    assert_eq!(tick(&ledger, &sku, t0 + 500, false).await.served, 5.0);
    assert_eq!(tick(&ledger, &sku, t0 + 5_000, false).await.served, 15.0);
    // An admitted buyer's ticket: its expiry is fixed at the first claim.
    let alice = UserId::parse("u2").unwrap();
    let first = ledger
        .claim_ticket(&sku, &alice, 3, t0 + 5_000, 60_000, false)
        .await
        .unwrap();
    assert_eq!(first, TicketOutcome::Issued(t0 + 65_000));
    let later = ledger
        .claim_ticket(&sku, &alice, 3, t0 + 9_000, 60_000, false)
        .await
        .unwrap();
    assert_eq!(later, TicketOutcome::Again(t0 + 65_000));
    let ahead = UserId::parse("u20").unwrap();
    let early = ledger
        .claim_ticket(&sku, &ahead, 21, t0 + 5_000, 60_000, false)
        .await
        .unwrap();
    assert_eq!(early, TicketOutcome::Waiting);
    let lapsed = UserId::parse("u4").unwrap();
    let late = ledger
        .claim_ticket(&sku, &lapsed, 5, t0 + 5_000, 60_000, true)
        .await
        .unwrap();
    assert_eq!(late, TicketOutcome::Lapsed);

    // A sale with a room sells to admitted buyers only, and its stock runs out.
    let mut order = candidate(&sku, "u0", "k0", 1);
    let refused = ledger.reserve(&mut order, None, false).await.unwrap().0;
    assert_eq!(refused, ReserveOutcome::AdmissionRequired);
    for i in 0..3 {
        let mut order = candidate(&sku, &format!("u{i}"), "k", 1);
        let (outcome, _) = ledger.reserve(&mut order, None, true).await.unwrap();
        assert!(
            matches!(outcome, ReserveOutcome::Accepted(_)),
            "{outcome:?}"
        );
    }
    let sold = tick(&ledger, &sku, t0 + 6_000, false).await;
    assert_eq!(sold.left, 0);
    // Nothing is admitted while nothing is left, then the line moves again when units come back.
    assert_eq!(tick(&ledger, &sku, t0 + 7_000, false).await.served, 15.0);
    let more = open_spec(4, 1).with_admission(Some(
        Admission::new(AdmissionMode::Fifo, AdmissionRate::Fixed(10), 60, 600).unwrap(),
    ));
    ledger.warm(&sku, &more).await.unwrap();
    let back = tick(&ledger, &sku, t0 + 7_500, false).await;
    assert_eq!((back.left, back.served), (1, 20.0));
    // Never past the last place given.
    assert_eq!(tick(&ledger, &sku, t0 + 8_500, false).await.served, 30.0);
}

#[tokio::test]
async fn an_auto_rate_grows_while_buyers_wait_and_is_cut_under_pressure_once_a_second() {
    let ledger = fresh_ledger();
    let sku = room_sale(&ledger, 1000, AdmissionRate::Auto).await;
    let t0 = Utc::now().timestamp_millis();
    for i in 0..900 {
        join(&ledger, &sku, &format!("u{i}"), t0).await;
    }
    assert_eq!(tick(&ledger, &sku, t0, false).await.rate, 100.0);
    // Half a second without pressure: +25 per second of rate.
    assert_eq!(tick(&ledger, &sku, t0 + 500, false).await.rate, 125.0);
    // Pressure: cut by 30%, and not again within the second.
    assert_eq!(tick(&ledger, &sku, t0 + 600, true).await.rate, 87.5);
    assert_eq!(tick(&ledger, &sku, t0 + 700, true).await.rate, 87.5);
    assert_eq!(tick(&ledger, &sku, t0 + 1_700, true).await.rate, 61.25);
    for step in 0..20 {
        tick(&ledger, &sku, t0 + 2_800 + step * 1_100, true).await;
    }
    assert_eq!(tick(&ledger, &sku, t0 + 30_000, true).await.rate, 10.0);
}

#[tokio::test]
async fn joins_before_the_opening_form_the_pre_queue_and_later_ones_do_not() {
    let ledger = fresh_ledger();
    let sku = sku();
    let now = Utc::now();
    let starts = now + chrono::Duration::seconds(30);
    let room =
        Admission::new(AdmissionMode::RandomAtOpen, AdmissionRate::Fixed(5), 60, 10).unwrap();
    let spec = domain::SaleSpec::new(5, 1, starts, starts + chrono::Duration::hours(1))
        .unwrap()
        .with_admission(Some(room));
    ledger.warm(&sku, &spec).await.unwrap();
    let starts_ms = starts.timestamp_millis();
    let user = UserId::parse("early").unwrap();
    let too_early = ledger
        .join_room(&sku, &user, starts_ms - 11_000, "e1")
        .await
        .unwrap();
    assert_eq!(too_early, JoinOutcome::TooEarly(starts_ms - 10_000));
    for i in 0..4 {
        join(&ledger, &sku, &format!("p{i}"), starts_ms - 5_000).await;
    }
    let before = tick(&ledger, &sku, starts_ms - 1_000, false).await;
    assert_eq!(
        (before.pre_queue, before.opened_ms, before.served),
        (4, None, 0.0)
    );
    let opened = tick(&ledger, &sku, starts_ms, false).await;
    assert_eq!(
        (opened.pre_queue, opened.opened_ms, opened.seed),
        (4, Some(starts_ms), 7)
    );
    let late = join(&ledger, &sku, "late", starts_ms + 1).await;
    assert_eq!(late.seq, 5);
    assert_eq!(
        tick(&ledger, &sku, starts_ms + 100, false).await.pre_queue,
        4
    );
    // A sale without a room has none to join.
    let plain = super::sku();
    ledger.warm(&plain, &open_spec(5, 1)).await.unwrap();
    assert_eq!(
        ledger
            .join_room(&plain, &user, starts_ms, "e1")
            .await
            .unwrap(),
        JoinOutcome::NoRoom
    );
}
