//! The order repository against the machine's real PostgreSQL (one database per test).

// Test helpers panic to report, like the tests themselves.
#![allow(clippy::unwrap_used)]

use domain::{OrderRequested, OrderStatus, ReasonCode, SkuId};
use sea_orm::ConnectionTrait;
use settings::DatabaseSettings;
use store::{SaleStats, Store, StoreError, Written};
use testkit::{fresh_database, open_spec, order};

mod enum_checks;
mod pricing;
mod tls;

/// A store on a new PostgreSQL database, its settings changed by `change` first.
async fn store_with(change: impl FnOnce(&mut DatabaseSettings)) -> Store {
    let (url, _) = fresh_database().await.unwrap();
    let mut settings = settings::Settings::defaults().database;
    settings.url = settings::secrecy::SecretString::from(url);
    change(&mut settings);
    Store::connect(&settings).await.unwrap()
}

/// A store on a new PostgreSQL database.
async fn store() -> Store {
    store_with(|_| {}).await
}

/// A store on a new embedded SQLite file, and its directory, removed when that is dropped.
async fn sqlite_store() -> (Store, TempDir) {
    let dir = TempDir(std::env::temp_dir().join(testkit::unique("seckill-sqlite-")));
    let mut settings = settings::Settings::defaults().database;
    settings.sqlite_path = dir.0.join("seckill.db");
    (Store::connect(&settings).await.unwrap(), dir)
}

/// A directory that is removed when dropped, the test passed or not.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Two tests of one body: `$pg` on PostgreSQL, `$sqlite` on the embedded SQLite.
macro_rules! on_both_databases {
    ($pg:ident, $sqlite:ident, $body:path) => {
        #[tokio::test]
        async fn $pg() {
            $body(crate::store().await).await;
        }

        #[tokio::test]
        async fn $sqlite() {
            let (store, _dir) = crate::sqlite_store().await;
            $body(store).await;
        }
    };
}
pub(crate) use on_both_databases;

/// What a unit of the sales [`open_sale`] opens costs, in minor units of EUR: what
/// `testkit::notice` pays for an order of one unit in the tests.
const PRICE: i64 = 100;

/// Opens a sale of `stock` units at [`PRICE`] EUR, at most `per_user` for each buyer, in
/// `store`; its SKU.
async fn open_sale(store: &Store, stock: i64, per_user: i64) -> SkuId {
    let sku = testkit::sku();
    let spec = open_spec(stock, per_user);
    let priced = domain::PaymentTerms::new(
        spec.payment.window_secs.into(),
        Some(PRICE),
        Some("EUR"),
        false,
    )
    .unwrap();
    store
        .upsert_sale(&sku, &spec.with_payment(priced))
        .await
        .unwrap();
    sku
}

/// A store on a new PostgreSQL database with a sale open as [`open_sale`] opens it.
async fn store_with_sale(stock: i64, per_user: i64) -> (Store, SkuId) {
    let store = store().await;
    let sku = open_sale(&store, stock, per_user).await;
    (store, sku)
}

/// An order of one unit by buyer `a` (key `k`), written to a sale of three units: the
/// order, and its SKU.
async fn one_written_order(store: &Store) -> (OrderRequested, SkuId) {
    let sku = open_sale(store, 3, 3).await;
    let o = order(&sku, "a", "k", 1);
    store.persist_batch([&o]).await.unwrap();
    (o, sku)
}

/// One order of `quantity` by each of `buyers` buyers, `u0`, `u1`, .. (all with key `k`).
fn orders_of_buyers(sku: &SkuId, buyers: i64, quantity: i64) -> Vec<OrderRequested> {
    (0..buyers)
        .map(|i| order(sku, &format!("u{i}"), "k", quantity))
        .collect()
}

/// The figures of `sku`'s sale, which the store has.
async fn stats(store: &Store, sku: &SkuId) -> SaleStats {
    store.sale_stats(sku).await.unwrap().unwrap()
}

/// Runs `sql` as it is on the store's database.
async fn exec(store: &Store, sql: &str) -> Result<(), StoreError> {
    store
        .connection()
        .execute_unprepared(sql)
        .await
        .map(|_| ())
        .map_err(StoreError::from)
}

/// An update of order `id`'s row setting `assignments`, as a newer build or a hand would.
fn set_order(id: &impl std::fmt::Display, assignments: &str) -> String {
    format!("UPDATE orders SET {assignments} WHERE order_id = '{id}'")
}

#[tokio::test]
async fn a_redelivered_batch_writes_each_order_once_and_takes_its_stock_once() {
    let (store, sku) = store_with_sale(10, 5).await;
    let batch = orders_of_buyers(&sku, 4, 2);
    for _ in 0..3 {
        let outcome = store.persist_batch(&batch).await.unwrap();
        assert!(
            outcome.iter().all(|(_, w)| *w == Written::Accepted),
            "{outcome:?}"
        );
    }
    let stats = stats(&store, &sku).await;
    assert_eq!(stats.awaiting_payment.orders, 4);
    assert_eq!(stats.held_units(), 8);
    assert_eq!(stats.stock, 2);
}

// On SQLite too: its insert is built differently.
on_both_databases!(
    a_mixed_batch_reports_each_order_and_writes_its_columns,
    on_sqlite_a_mixed_batch_reports_each_order_and_writes_its_columns,
    mixed_batch
);

/// One batch mixing every outcome: the store reports what it wrote itself and reads back only
/// the orders it did not insert; every row holds what its message said, `pay_by` its sale's
/// window after the write.
async fn mixed_batch(store: Store) {
    let sku = open_sale(&store, 3, 5).await;
    let earlier_accepted = order(&sku, "early", "k", 1);
    let earlier_refused = order(&sku, "big", "k", 5);
    store
        .persist_batch([&earlier_accepted, &earlier_refused])
        .await
        .unwrap();
    let new = order(&sku, "new", "k", 2);
    let holder_of_key = order(&sku, "early", "k", 1);
    let ghost = order(&testkit::sku(), "ghost", "k", 1);
    let beyond = order(&sku, "beyond", "k", 1);
    let batch = [
        &earlier_accepted,
        &new,
        &earlier_refused,
        &holder_of_key,
        &ghost,
        &beyond,
    ];
    let outcome = store.persist_batch(batch).await.unwrap();
    let expected = [
        Written::Accepted,
        Written::Accepted,
        Written::Failed(ReasonCode::DbOutOfStock),
        Written::KeyConflict,
        Written::Failed(ReasonCode::UnknownSku),
        Written::Failed(ReasonCode::DbOutOfStock),
    ];
    for (o, want) in batch.iter().zip(expected) {
        assert_eq!(outcome[&o.order_id], want, "{}", o.user_id.as_str());
    }
    assert_eq!(outcome.len(), 6);
    let stats = stats(&store, &sku).await;
    assert_eq!((stats.stock, stats.held_units()), (0, 3));

    let row = store.order(&new.order_id).await.unwrap().unwrap();
    assert_eq!(
        (
            row.user_id.as_str(),
            row.sku_id.as_str(),
            row.quantity,
            row.idempotency_key.as_str(),
            row.status.as_str(),
            row.reason.as_deref()
        ),
        (
            "new",
            sku.as_str(),
            2,
            "k",
            OrderStatus::AwaitingPayment.as_str(),
            None
        )
    );
    assert_eq!(
        row.requested_at.timestamp_micros(),
        new.requested_at.timestamp_micros()
    );
    assert_eq!(row.created_at, row.updated_at);
    assert_eq!(
        row.pay_by.unwrap() - row.created_at,
        chrono::Duration::seconds(i64::from(open_spec(3, 5).payment.window_secs))
    );
    let ghost_row = store.order(&ghost.order_id).await.unwrap().unwrap();
    assert_eq!(
        (ghost_row.reason.as_deref(), ghost_row.pay_by),
        (Some("unknown_sku"), None)
    );
}

#[tokio::test]
async fn the_database_refuses_the_order_beyond_its_stock_even_if_redis_let_it_through() {
    const STOCK: i64 = 5;
    let (store, sku) = store_with_sale(STOCK, 5).await;
    let batch = orders_of_buyers(&sku, STOCK + 1, 1);
    let outcome = store.persist_batch(&batch).await.unwrap();
    let refused: Vec<_> = outcome
        .iter()
        .filter(|(_, w)| **w == Written::Failed(ReasonCode::DbOutOfStock))
        .collect();
    assert_eq!(refused.len(), 1);
    // Message order decides: the last one is the one that does not fit.
    assert_eq!(refused[0].0, &batch[STOCK as usize].order_id);
    let stats = stats(&store, &sku).await;
    assert_eq!(stats.stock, 0);
    assert_eq!(stats.held_units(), STOCK);
    assert_eq!(stats.failed.orders, 1);
    // A second batch against an empty stock is refused as a whole.
    let late = order(&sku, "late", "k", 1);
    let outcome = store.persist_batch([&late]).await.unwrap();
    assert_eq!(
        outcome[&late.order_id],
        Written::Failed(ReasonCode::DbOutOfStock)
    );
}

#[tokio::test]
async fn an_order_for_a_sku_without_a_sale_is_recorded_as_failed() {
    let store = store().await;
    let ghost = order(&testkit::sku(), "u", "k", 1);
    let outcome = store.persist_batch([&ghost]).await.unwrap();
    assert_eq!(
        outcome[&ghost.order_id],
        Written::Failed(ReasonCode::UnknownSku)
    );
    let row = store.order(&ghost.order_id).await.unwrap().unwrap();
    assert_eq!(row.status, "failed");
    assert_eq!(row.reason.as_deref(), Some("unknown_sku"));
}

#[tokio::test]
async fn marking_failed_never_overrides_a_confirmed_order_and_is_idempotent() {
    let store = store().await;
    let (confirmed, sku) = one_written_order(&store).await;
    assert_eq!(
        store
            .mark_failed(&confirmed, ReasonCode::RetriesExhausted)
            .await
            .unwrap(),
        OrderStatus::AwaitingPayment
    );
    let lost_in_queue = order(&sku, "b", "k", 1);
    for _ in 0..2 {
        assert_eq!(
            store
                .mark_failed(&lost_in_queue, ReasonCode::ReplayAttemptsExhausted)
                .await
                .unwrap(),
            OrderStatus::Failed
        );
    }
    let stats = stats(&store, &sku).await;
    assert_eq!(
        (
            stats.awaiting_payment.orders,
            stats.failed.orders,
            stats.stock
        ),
        (1, 1, 2)
    );
}

#[tokio::test]
async fn a_second_order_under_the_same_buyer_key_is_reported_as_a_conflict() {
    let (store, sku) = store_with_sale(3, 3).await;
    let first = order(&sku, "a", "same-key", 1);
    let second = order(&sku, "a", "same-key", 1);
    let outcome = store.persist_batch([&first, &second]).await.unwrap();
    assert_eq!(outcome[&first.order_id], Written::Accepted);
    assert_eq!(outcome[&second.order_id], Written::KeyConflict);
    assert_eq!(stats(&store, &sku).await.stock, 2);
}

#[tokio::test]
async fn shrinking_a_sale_below_what_is_sold_is_refused() {
    let (store, sku) = store_with_sale(5, 5).await;
    store
        .persist_batch(&orders_of_buyers(&sku, 3, 1))
        .await
        .unwrap();
    assert!(matches!(
        store.upsert_sale(&sku, &open_spec(2, 5)).await,
        Err(store::StoreError::BelowSold { sold: 3, .. })
    ));
    store.upsert_sale(&sku, &open_spec(8, 5)).await.unwrap();
    let stats = stats(&store, &sku).await;
    assert_eq!((stats.initial_stock, stats.stock), (8, 5));
}

#[tokio::test]
async fn the_same_order_twice_in_one_batch_takes_its_stock_once() {
    let (store, sku) = store_with_sale(10, 5).await;
    let once = order(&sku, "u", "k", 3);
    let outcome = store.persist_batch([&once, &once]).await.unwrap();
    assert_eq!(outcome.len(), 1, "one order, once");
    assert_eq!(outcome[&once.order_id], Written::Accepted);
    let stats = stats(&store, &sku).await;
    assert_eq!((stats.awaiting_payment.orders, stats.stock), (1, 7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sale_figures_read_while_batches_commit_always_add_up() {
    const STOCK: i64 = 200;
    let (store, sku) = store_with_sale(STOCK, 1).await;
    let writer = {
        let store = store.clone();
        let sku = sku.clone();
        tokio::spawn(async move {
            for i in 0..STOCK {
                let one = [order(&sku, &format!("u{i}"), "k", 1)];
                store.persist_batch(&one).await.unwrap();
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() {
        let stats = stats(&store, &sku).await;
        assert_eq!(
            stats.stock + stats.held_units(),
            STOCK,
            "a read mid-commit: {stats:?}"
        );
        reads += 1;
    }
    writer.await.unwrap();
    let stats = stats(&store, &sku).await;
    assert_eq!((stats.stock, stats.held_units()), (0, STOCK));
    assert!(reads > 10, "only {reads} reads overlapped the writes");
}

#[tokio::test]
async fn a_stored_status_or_reason_this_build_cannot_read_is_an_error_never_a_default() {
    let store = store().await;
    let (o, sku) = one_written_order(&store).await;

    // A status written by a newer version, whose schema allows it.
    enum_checks::revert_the_checks(&store).await;
    exec(&store, &set_order(&o.order_id, "status = 'shipped'"))
        .await
        .unwrap();
    let row = store.order(&o.order_id).await.unwrap().unwrap();
    assert!(matches!(
        row.order_status(),
        Err(StoreError::Corrupt {
            column: "status",
            ..
        })
    ));
    // A redelivery reports it for that order alone: the batch's other orders are written.
    let other = order(&sku, "b", "k", 1);
    let redelivered = store.persist_batch([&o, &other]).await.unwrap();
    assert_eq!(redelivered[&o.order_id], Written::Unreadable);
    assert_eq!(redelivered[&other.order_id], Written::Accepted);
    assert!(store.sale_stats(&sku).await.is_err());
    assert!(store.mark_failed(&o, ReasonCode::UnknownSku).await.is_err());

    // A failed order whose reason nobody knows.
    exec(
        &store,
        &set_order(&o.order_id, "status = 'failed', reason = 'gremlins'"),
    )
    .await
    .unwrap();
    let row = store.order(&o.order_id).await.unwrap().unwrap();
    assert_eq!(row.order_status().unwrap(), OrderStatus::Failed);
    assert!(matches!(
        row.failure_reason(),
        Err(StoreError::Corrupt {
            column: "reason",
            ..
        })
    ));
    assert_eq!(
        store.persist_batch([&o]).await.unwrap()[&o.order_id],
        Written::Unreadable
    );
    let error = row.failure_reason().unwrap_err();
    assert!(!error.is_transient(), "{error}");
}

#[tokio::test]
async fn a_database_that_cannot_be_reached_is_a_transient_error() {
    let mut settings = settings::Settings::defaults().database;
    settings.url =
        settings::secrecy::SecretString::from("postgres://postgres@127.0.0.1:1/none".to_owned());
    settings.connect_timeout_secs = 1;
    let error = Store::connect(&settings).await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
}

#[tokio::test]
async fn a_read_only_primary_is_a_transient_error_and_a_refused_statement_a_permanent_one() {
    // One connection: the session made read-only is the one the batch is written on.
    let store = store_with(|settings| settings.max_connections = 1).await;
    let sku = open_sale(&store, 3, 3).await;

    let refused = exec(&store, "SELEC 1").await.unwrap_err();
    assert!(!refused.is_transient(), "{refused:?}");

    // What a failover that still points at the old primary answers: SQLSTATE 25006.
    exec(
        &store,
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    )
    .await
    .unwrap();
    let read_only = store
        .persist_batch([&order(&sku, "a", "k", 1)])
        .await
        .unwrap_err();
    assert!(read_only.is_transient(), "{read_only:?}");
}

#[tokio::test]
async fn the_payment_window_migration_keeps_confirmed_orders_sold_and_goes_back_down() {
    use migration::{Migrator, MigratorTrait};
    use store::sea_orm::Database;
    let (url, _) = fresh_database().await.unwrap();
    let db = Database::connect(url.as_str()).await.unwrap();
    Migrator::up(&db, Some(1)).await.unwrap();
    db.execute_unprepared(
        "INSERT INTO sales (sku_id, initial_stock, stock, per_user_limit, starts_at, ends_at, created_at, updated_at) \
         VALUES ('old-sale', 10, 9, 1, now(), now() + interval '1 hour', now(), now()); \
         INSERT INTO orders (order_id, user_id, sku_id, quantity, idempotency_key, status, requested_at, created_at, updated_at) \
         VALUES ('old-sale.0000000000000000000000000000000a', 'alice', 'old-sale', 1, 'k', 'confirmed', now(), now(), now())",
    )
    .await
    .unwrap();
    Migrator::up(&db, None).await.unwrap();
    let store = Store::from_connection(db.clone());
    let id = domain::OrderId::parse("old-sale.0000000000000000000000000000000a").unwrap();
    let row = store.order(&id).await.unwrap().unwrap();
    assert_eq!(
        row.order_status().unwrap(),
        OrderStatus::Paid,
        "a confirmed order was sold"
    );
    let sale = store
        .sale(&SkuId::parse("old-sale").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        sale.payment_terms().unwrap(),
        domain::PaymentTerms {
            window_secs: domain::PaymentTerms::DEFAULT_WINDOW_SECS,
            pricing: domain::sale::Pricing::Unpriced,
        },
        "a sale made before payment terms has the default window and no price: unpriced"
    );
    assert_eq!(sale.buckets, 1, "a sale made before stock buckets has one");

    // Down past the pricing, the waiting room, the checks, the stock buckets and the payment
    // window.
    Migrator::down(&db, Some(5)).await.unwrap();
    let status: String = db
        .query_one(store::statement(
            db.get_database_backend(),
            "SELECT status FROM orders",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "status")
        .unwrap();
    assert_eq!(status, "confirmed");
}

#[tokio::test]
async fn paying_is_idempotent_on_the_payment_id_and_a_paid_order_is_never_expired() {
    let store = store().await;
    let (o, sku) = one_written_order(&store).await;
    let notice = testkit::notice("pay-1", &o.order_id, 100);
    let now = chrono::Utc::now();
    let first = store.pay(&notice, now).await.unwrap();
    assert_eq!(first, store::Paid::Recorded(domain::PaymentOutcome::Paid));
    assert_eq!(
        store.pay(&notice, now).await.unwrap(),
        store::Paid::Replayed(domain::PaymentOutcome::Paid)
    );
    // Past its window, a paid order stays paid and keeps its unit.
    let later = now + chrono::Duration::hours(1);
    assert!(store.expire_due(later, 100).await.unwrap().is_empty());
    let stats = stats(&store, &sku).await;
    assert_eq!(
        (stats.paid.orders, stats.expired.orders, stats.stock),
        (1, 0, 2)
    );
    assert_eq!(store.payments_of_sku(&sku).await.unwrap().len(), 1);
    // The same payment id for an order the database does not have is still a conflict.
    let unknown = order(&sku, "bob", "k", 1).order_id;
    assert_eq!(
        store
            .pay(&testkit::notice("pay-1", &unknown, 100), now)
            .await
            .unwrap(),
        store::Paid::Conflict
    );
}

/// The embedded default: the same payment window on SQLite, where write transactions take the
/// database lock first and timestamps compare as text.
#[tokio::test]
async fn on_sqlite_orders_await_payment_are_paid_once_and_the_unpaid_expire_with_their_units() {
    let (store, _dir) = sqlite_store().await;
    let sku = open_sale(&store, 5, 1).await;
    let orders = orders_of_buyers(&sku, 3, 1);
    store.persist_batch(&orders).await.unwrap();
    let now = chrono::Utc::now();
    let paying = testkit::notice("pay-0", &orders[0].order_id, 100);
    let (first, again) = tokio::join!(store.pay(&paying, now), store.pay(&paying, now));
    let mut answers = [first.unwrap(), again.unwrap()];
    answers.sort_by_key(|a| matches!(a, store::Paid::Replayed(_)));
    assert_eq!(
        answers,
        [
            store::Paid::Recorded(domain::PaymentOutcome::Paid),
            store::Paid::Replayed(domain::PaymentOutcome::Paid)
        ]
    );
    assert!(
        store.expire_due(now, 100).await.unwrap().is_empty(),
        "none is due yet"
    );
    let later = now + chrono::Duration::seconds(901);
    let expired = store.expire_due(later, 100).await.unwrap();
    assert_eq!(expired.len(), 2);
    let late = testkit::notice("pay-1", &orders[1].order_id, 100);
    assert_eq!(
        store.pay(&late, later).await.unwrap(),
        store::Paid::Recorded(domain::PaymentOutcome::RefundDue(
            domain::RefundReason::OrderExpired
        ))
    );
    let stats = stats(&store, &sku).await;
    assert_eq!(
        (
            stats.paid.orders,
            stats.expired.orders,
            stats.stock,
            stats.refunds_due
        ),
        (1, 2, 4, 1)
    );
    let owed = store.unreturned_expiries(100, None).await.unwrap();
    assert_eq!(owed.len(), 2);
    let ids: Vec<_> = owed.iter().map(|o| &o.order_id).collect();
    store.mark_units_returned(&ids, later).await.unwrap();
    assert!(store
        .unreturned_expiries(100, None)
        .await
        .unwrap()
        .is_empty());
}
