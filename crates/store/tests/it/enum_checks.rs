//! The columns holding a domain enum as text accept every stored form of it and nothing else,
//! on PostgreSQL (`CHECK` constraints) and on the embedded SQLite (triggers), and the
//! migration that adds them goes back down.

use super::{exec, on_both_databases, one_written_order, set_order};
use domain::payment::PaymentOutcomeKind;
use domain::{OrderStatus, ReasonCode, RefundReason};
use store::Store;
use strum::VariantArray;

/// A refusal of the database: permanent, so the worker dead-letters instead of retrying it.
pub(crate) async fn refused(store: &Store, sql: &str) {
    let error = exec(store, sql)
        .await
        .expect_err(&format!("the database took {sql}"));
    assert!(!error.is_transient(), "{sql}: {error:?}");
}

/// An order row with its stock taken, and a statement inserting a payment row for it.
async fn one_order(store: &Store) -> (String, impl Fn(&str, &str, &str) -> String) {
    let (o, sku) = one_written_order(store).await;
    let (id, sku) = (o.order_id.to_string(), sku.to_string());
    let payment = move |payment_id: &str, outcome: &str, reason: &str| {
        format!(
            "INSERT INTO payments (payment_id, order_id, sku_id, amount_minor, currency, outcome, \
             reason, received_at) VALUES ('{payment_id}', '{id}', '{sku}', 100, 'EUR', \
             '{outcome}', {reason}, '2026-11-27 10:00:00+00:00')"
        )
    };
    (o.order_id.to_string(), payment)
}

async fn every_value_no_build_can_read_is_refused(store: Store) {
    let (id, payment) = one_order(&store).await;
    let set = |assignments: &str| set_order(&id, assignments);
    refused(&store, &set("status = 'shipped'")).await;
    refused(&store, &set("status = 'pending'")).await;
    refused(&store, &set("status = 'failed', reason = 'gremlins'")).await;
    refused(
        &store,
        "INSERT INTO orders (order_id, user_id, sku_id, quantity, idempotency_key, status, \
         requested_at, created_at, updated_at) VALUES ('x.0000000000000000000000000000000a', \
         'u', 'x', 1, 'k', 'confirmed', '2026-11-27 10:00:00+00:00', \
         '2026-11-27 10:00:00+00:00', '2026-11-27 10:00:00+00:00')",
    )
    .await;
    refused(&store, &payment("p-1", "refunded", "NULL")).await;
    refused(&store, &payment("p-2", "refund_due", "NULL")).await;
    refused(&store, &payment("p-3", "refund_due", "'gremlins'")).await;
    refused(&store, &payment("p-4", "paid", "'order_expired'")).await;
    let row = store
        .order(&domain::OrderId::parse(id.as_str()).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.order_status().unwrap(), OrderStatus::AwaitingPayment);
}

/// What keeps the lists of the migration and the domain's enums together: a variant the
/// database refuses fails here until a migration widens the list.
async fn every_stored_form_of_the_enums_is_accepted(store: Store) {
    let (id, payment) = one_order(&store).await;
    let set = |assignments: &str| set_order(&id, assignments);
    for status in OrderStatus::VARIANTS {
        let written = exec(&store, &set(&format!("status = '{status}'"))).await;
        match status {
            // Only Redis and Kafka hold pending orders; the store reads a stored one as corrupt.
            OrderStatus::Pending => assert!(written.is_err(), "a stored pending order"),
            OrderStatus::AwaitingPayment
            | OrderStatus::Paid
            | OrderStatus::Expired
            | OrderStatus::Failed => written.unwrap(),
        }
    }
    for reason in ReasonCode::VARIANTS {
        let written = exec(
            &store,
            &set(&format!("status = 'failed', reason = '{reason}'")),
        )
        .await;
        // A forged message is never written: no order row holds its reason, and the database
        // refuses one (the migration's list does not name it).
        if *reason == ReasonCode::Forged {
            assert!(written.is_err(), "an order row failed as forged");
        } else {
            written.unwrap();
        }
    }
    for (n, kind) in PaymentOutcomeKind::VARIANTS.iter().enumerate() {
        match kind {
            PaymentOutcomeKind::Paid => exec(&store, &payment(&format!("p-{n}"), "paid", "NULL"))
                .await
                .unwrap(),
            PaymentOutcomeKind::RefundDue => {
                for reason in RefundReason::VARIANTS {
                    let payment_id = format!("p-{n}-{reason}");
                    exec(
                        &store,
                        &payment(&payment_id, kind.as_str(), &format!("'{reason}'")),
                    )
                    .await
                    .unwrap();
                }
            }
        }
    }
}

on_both_databases!(
    the_database_refuses_a_status_reason_or_outcome_no_build_can_read,
    on_sqlite_the_triggers_refuse_a_status_reason_or_outcome_no_build_can_read,
    every_value_no_build_can_read_is_refused
);

on_both_databases!(
    the_database_accepts_every_stored_form_of_the_domain_enums,
    on_sqlite_the_triggers_accept_every_stored_form_of_the_domain_enums,
    every_stored_form_of_the_enums_is_accepted
);

/// Rolls back the migrations down to (and including) the one that added the checks: the
/// schema of a newer build, whose lists this build's are a part of.
pub async fn revert_the_checks(store: &Store) {
    use migration::{Migrator, MigratorTrait};
    let steps = Migrator::migrations()
        .iter()
        .rev()
        .position(|m| m.name() == "m20261127_000004_enum_checks")
        .expect("the migration of the checks")
        + 1;
    Migrator::down(store.connection(), Some(steps as u32))
        .await
        .unwrap();
}

async fn the_checks_go_down_and_up(store: Store) {
    let (o, _) = one_written_order(&store).await;
    let set = set_order(&o.order_id, "status = 'shipped'");
    revert_the_checks(&store).await;
    exec(&store, &set).await.unwrap();
    let up = store.migrate().await.unwrap_err();
    assert!(
        up.to_string().contains("orders_known_status_and_reason"),
        "a row outside the list stops the migration, naming the check: {up}"
    );
    exec(&store, &set_order(&o.order_id, "status = 'paid'"))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    refused(&store, &set).await;
}

on_both_databases!(
    the_checks_go_down_and_a_row_outside_them_stops_them_going_up,
    on_sqlite_the_triggers_go_down_and_a_row_outside_them_stops_them_going_up,
    the_checks_go_down_and_up
);
