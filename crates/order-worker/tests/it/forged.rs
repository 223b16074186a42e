//! Order messages the gateway did not sign, written to the orders topic by a producer of the
//! test's own (as anyone who can write to the topic could): dead-lettered as forged, counted,
//! never written; a signed order beside them is written.

use super::{dead_letters, header_text, reserved_orders, settled, Running};
use domain::dead_letter::header;
use domain::signing::SIGNATURE_HEADER;
use kafka::rdkafka::Message;
use settings::secrecy::SecretString;
use testkit::{order, TestContext};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_without_a_valid_signature_are_dead_lettered_as_forged_and_never_written() {
    let (ctx, sku) = TestContext::with_sale(10, 5).await;
    let endpoint = ctx.endpoint();
    let topic = &ctx.settings.kafka.orders_topic;
    let key = sku.as_str().as_bytes();
    // Orders for buyers who never asked: no reservation stands behind them.
    let unsigned = order(&sku, "victim-1", "k", 3);
    let wrong_key = order(&sku, "victim-2", "k", 2);
    testkit::produce(&endpoint, topic, key, &unsigned.encode())
        .await
        .unwrap();
    let mut forger = ctx.settings.clone();
    forger.messages.signing_keys = SecretString::from("dev:a-secret-the-forger-guessed".to_owned());
    let guessed = testkit::order_signature(&forger, key, &wrong_key.encode());
    testkit::produce_with_headers(
        &endpoint,
        topic,
        key,
        &wrong_key.encode(),
        &[(SIGNATURE_HEADER, guessed.as_str())],
    )
    .await
    .unwrap();
    // Behind them on the same partition, an order the gateway's way: reserved, then signed.
    let signed = reserved_orders(&ctx, &sku, 1).await.remove(0);
    testkit::produce_signed(&endpoint, &ctx.settings, key, &signed.encode())
        .await
        .unwrap();

    let worker = Running::start(&ctx.settings).await;
    let stats = settled(&ctx, &sku, 1).await;
    assert_eq!((stats.awaiting_payment.orders, stats.stock), (1, 9));
    let store = ctx.store().await;
    assert!(store.order(&signed.order_id).await.unwrap().is_some());
    for forged in [&unsigned, &wrong_key] {
        assert_eq!(
            store.order(&forged.order_id).await.unwrap(),
            None,
            "a row for {}",
            forged.order_id
        );
    }
    assert_eq!(
        ctx.snapshot(&sku).await.remaining,
        9,
        "only the signed order took a unit"
    );

    let letters = dead_letters(&ctx, 2).await;
    let keyring = ctx.settings.messages.keyring().unwrap();
    for (letter, forged) in letters.iter().zip([&unsigned, &wrong_key]) {
        assert_eq!(header_text(letter, header::REASON), "forged");
        assert_eq!(letter.payload(), Some(forged.encode().as_slice()));
        let signed_by_the_worker = kafka::signature::dead_letter_of(letter);
        assert!(
            kafka::signature::verify(letter, &keyring, &signed_by_the_worker).is_ok(),
            "the worker signs its letters, so the replayer can tell them from a forger's"
        );
    }
    let forged = |problem: &str| worker.metrics.forged.with_label_values(&[problem]).get();
    assert_eq!((forged("missing"), forged("mismatch")), (1, 1));
    let total: u64 = ["missing", "malformed", "unknown_key", "mismatch"]
        .into_iter()
        .map(forged)
        .sum();
    assert_eq!(total, 2);
    let dead_lettered = worker.metrics.dead_letters.with_label_values(&["forged"]);
    assert_eq!(dead_lettered.get(), 2);
    assert_eq!(worker.persisted("accepted"), 1);
    worker.stop().await;
}
