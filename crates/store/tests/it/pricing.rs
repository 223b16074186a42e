//! A sale names its price or says it is free, on PostgreSQL (a `CHECK` constraint) and on the
//! embedded SQLite (triggers): a payment pays an order only with exactly what it costs, no
//! payment pays an order of a sale saved before the rule, and the migration that brings the rule
//! turns a price of 0 into free and goes back down.

use super::enum_checks::refused;
use super::{exec, on_both_databases, open_sale, PRICE};
use domain::sale::Pricing;
use domain::{
    Currency, OrderId, OrderStatus, PaymentNotice, PaymentOutcome, PaymentTerms, RefundReason,
    SkuId,
};
use store::{Paid, Store};
use testkit::{notice, open_spec, order};

/// Terms of the default window with `pricing`.
fn terms(pricing: Pricing) -> PaymentTerms {
    PaymentTerms {
        window_secs: PaymentTerms::DEFAULT_WINDOW_SECS,
        pricing,
    }
}

/// [`PRICE`] EUR a unit.
fn priced() -> Pricing {
    PaymentTerms::new(1, Some(PRICE), Some("EUR"), false)
        .unwrap()
        .pricing
}

/// A sale of three units on `pricing`, and one order of `quantity` written to it: the order's id
/// and the SKU.
async fn order_on(store: &Store, pricing: Pricing, quantity: i64) -> (OrderId, SkuId) {
    let sku = testkit::sku();
    let spec = open_spec(3, 3).with_payment(terms(pricing));
    store.upsert_sale(&sku, &spec).await.unwrap();
    let o = order(&sku, "a", "k", quantity);
    store.persist_batch([&o]).await.unwrap();
    (o.order_id, sku)
}

/// A notice paying `amount` in `currency` for `order`.
fn paying(payment_id: &str, order: &OrderId, amount: u64, currency: &str) -> PaymentNotice {
    PaymentNotice {
        currency: Currency::parse(currency).unwrap(),
        ..notice(payment_id, order, amount)
    }
}

/// The order's status, which the store has.
async fn status(store: &Store, order: &OrderId) -> OrderStatus {
    let row = store.order(order).await.unwrap().unwrap();
    row.order_status().unwrap()
}

async fn a_payment_pays_exactly_what_the_order_costs(store: Store) {
    let now = chrono::Utc::now();
    let eur = Some(Currency::parse("EUR").unwrap());

    // Priced: quantity x price, in the price's currency; 0 never pays.
    let (id, sku) = order_on(&store, priced(), 2).await;
    let costs = 2 * PRICE;
    for (amount, currency) in [(0, "EUR"), (100, "EUR"), (costs as u64, "USD")] {
        assert_eq!(
            store
                .pay(&paying("p-1", &id, amount, currency), now)
                .await
                .unwrap(),
            Paid::AmountMismatch {
                expected_minor: costs,
                currency: eur,
            },
            "{amount} {currency}"
        );
    }
    assert_eq!(status(&store, &id).await, OrderStatus::AwaitingPayment);
    assert!(store.payments_of_sku(&sku).await.unwrap().is_empty());
    assert_eq!(
        store
            .pay(&paying("p-1", &id, costs as u64, "EUR"), now)
            .await
            .unwrap(),
        Paid::Recorded(PaymentOutcome::Paid)
    );

    // Free: 0, in any currency.
    let (id, _) = order_on(&store, Pricing::Free, 1).await;
    assert_eq!(
        store.pay(&paying("p-2", &id, 1, "EUR"), now).await.unwrap(),
        Paid::AmountMismatch {
            expected_minor: 0,
            currency: None,
        }
    );
    assert_eq!(status(&store, &id).await, OrderStatus::AwaitingPayment);
    assert_eq!(
        store.pay(&paying("p-2", &id, 0, "USD"), now).await.unwrap(),
        Paid::Recorded(PaymentOutcome::Paid)
    );

    // Unpriced (saved before the rule): nothing pays, nothing is recorded.
    let (id, sku) = order_on(&store, Pricing::Unpriced, 1).await;
    for amount in [0, 1, 100] {
        assert_eq!(
            store
                .pay(&paying("p-3", &id, amount, "EUR"), now)
                .await
                .unwrap(),
            Paid::SaleUnpriced,
            "{amount}"
        );
    }
    assert_eq!(status(&store, &id).await, OrderStatus::AwaitingPayment);
    assert!(store.payments_of_sku(&sku).await.unwrap().is_empty());
    // The money of a payment that pays nothing anyway is recorded, to be refunded.
    let later = now + chrono::Duration::seconds(i64::from(PaymentTerms::DEFAULT_WINDOW_SECS) + 1);
    assert_eq!(
        store
            .pay(&paying("p-3", &id, 100, "EUR"), later)
            .await
            .unwrap(),
        Paid::Recorded(PaymentOutcome::RefundDue(RefundReason::OrderExpired))
    );
}

on_both_databases!(
    a_payment_pays_only_the_price_or_0_for_a_free_sale_and_nothing_for_an_unpriced_one,
    on_sqlite_a_payment_pays_only_the_price_or_0_for_a_free_sale_and_nothing_for_an_unpriced_one,
    a_payment_pays_exactly_what_the_order_costs
);

/// An update of the sale of `sku` setting `assignments`, as a hand would.
fn set_sale(sku: &SkuId, assignments: &str) -> String {
    format!("UPDATE sales SET {assignments} WHERE sku_id = '{sku}'")
}

/// The sale's pricing, as the store reads it.
async fn pricing(store: &Store, sku: &SkuId) -> Pricing {
    let sale = store.sale(sku).await.unwrap().unwrap();
    sale.payment_terms().unwrap().pricing
}

async fn a_free_sale_has_no_price_and_a_priced_one_a_price_of_at_least_1(store: Store) {
    let sku = open_sale(&store, 3, 1).await;
    let set = |assignments: &str| set_sale(&sku, assignments);
    for assignments in [
        "free = TRUE",
        "price_minor = 0",
        "price_minor = -5",
        "currency = NULL",
        "price_minor = NULL",
        "free = TRUE, price_minor = NULL",
    ] {
        refused(&store, &set(assignments)).await;
    }
    refused(
        &store,
        "INSERT INTO sales (sku_id, initial_stock, stock, per_user_limit, starts_at, ends_at, \
         free, price_minor, currency, created_at, updated_at) VALUES ('free-and-priced', 1, 1, \
         1, '2026-11-27 10:00:00+00:00', '2026-11-28 10:00:00+00:00', TRUE, 100, 'EUR', \
         '2026-11-27 10:00:00+00:00', '2026-11-27 10:00:00+00:00')",
    )
    .await;
    assert_eq!(pricing(&store, &sku).await, priced());

    exec(
        &store,
        &set("price_minor = NULL, currency = NULL, free = TRUE"),
    )
    .await
    .unwrap();
    assert_eq!(pricing(&store, &sku).await, Pricing::Free);
    // What a sale saved before the rule holds.
    exec(&store, &set("free = FALSE")).await.unwrap();
    assert_eq!(pricing(&store, &sku).await, Pricing::Unpriced);
}

on_both_databases!(
    the_database_refuses_a_free_sale_with_a_price_and_a_price_below_1,
    on_sqlite_the_triggers_refuse_a_free_sale_with_a_price_and_a_price_below_1,
    a_free_sale_has_no_price_and_a_priced_one_a_price_of_at_least_1
);

/// Rolls back the migrations down to (and including) the one that brought the pricing rule.
async fn revert_the_pricing(store: &Store) {
    use migration::{Migrator, MigratorTrait};
    let steps = Migrator::migrations()
        .iter()
        .rev()
        .position(|m| m.name() == "m20261207_000006_sale_pricing")
        .expect("the migration of the pricing")
        + 1;
    Migrator::down(store.connection(), Some(steps as u32))
        .await
        .unwrap();
}

async fn the_pricing_goes_down_and_up(store: Store) {
    let zero = open_sale(&store, 3, 1).await;
    let kept = open_sale(&store, 3, 1).await;
    let broken = open_sale(&store, 3, 1).await;
    revert_the_pricing(&store).await;
    exec(&store, &set_sale(&zero, "price_minor = 0"))
        .await
        .unwrap();
    exec(&store, &set_sale(&broken, "currency = NULL"))
        .await
        .unwrap();
    let up = store.migrate().await.unwrap_err();
    assert!(
        up.to_string().contains("sales_priced_or_free"),
        "a row the migration cannot bring within the check stops it, naming the check: {up}"
    );
    // Left without a price: as a sale saved before the rule.
    exec(&store, &set_sale(&broken, "price_minor = NULL"))
        .await
        .unwrap();
    store.migrate().await.unwrap();

    assert_eq!(
        pricing(&store, &zero).await,
        Pricing::Free,
        "0 cost nothing"
    );
    let row = store.sale(&zero).await.unwrap().unwrap();
    assert_eq!(
        (row.price_minor, row.currency, row.free),
        (None, None, true)
    );
    assert_eq!(pricing(&store, &kept).await, priced());
    assert_eq!(pricing(&store, &broken).await, Pricing::Unpriced);
    refused(&store, &set_sale(&kept, "free = TRUE")).await;
}

on_both_databases!(
    the_pricing_goes_down_and_a_price_of_0_comes_back_up_free,
    on_sqlite_the_pricing_goes_down_and_a_price_of_0_comes_back_up_free,
    the_pricing_goes_down_and_up
);
