//! The tests' Redis: a plain connection, a ledger under a fresh key prefix, and the states of
//! the ledger only a fault or a hand edit makes (lost keys, a stranded transfer, a record that
//! does not parse, reservations a failover lost).

use crate::unique;
use domain::{OrderId, OrderRequested, SkuId};
use settings::secrecy::SecretString;
use settings::Settings;
use std::time::Duration;

/// What a Redis failover that lost `units` of acknowledged reservations of `sku` leaves behind:
/// the promoted replica's stock counter is `units` higher, and its `reserved` counter `units`
/// lower, than the answers the gateway gave (the orders themselves are in Kafka).
pub async fn set_back_reservations(ledger: &stock::StockLedger, sku: &SkuId, units: i64) {
    let keys = ledger.keys(sku);
    let mut conn = raw_redis().await;
    redis::pipe()
        .cmd("INCRBY")
        .arg(&keys.stock)
        .arg(units)
        .cmd("HINCRBY")
        .arg(&keys.sale)
        .arg("reserved")
        .arg(-units)
        .query_async::<()>(&mut conn)
        .await
        .expect("redis answers");
}

/// A plain connection to the tests' Redis, for what no ledger call does.
pub async fn raw_redis() -> redis::aio::MultiplexedConnection {
    let url =
        std::env::var("SECKILL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    redis::Client::open(url)
        .expect("a valid redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis answers")
}

/// A ledger on the machine's Redis under a fresh key prefix (tests that need only Redis).
pub fn fresh_ledger() -> stock::StockLedger {
    let mut settings = Settings::defaults().redis;
    settings.url = SecretString::from(
        std::env::var("SECKILL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
    );
    settings.key_prefix = unique("t");
    stock::StockLedger::new(&settings).expect("redis settings are valid")
}

/// Reserves `order` in Redis the way the gateway does (so the worker finds its reservation), in
/// a sale of one stock bucket (where the order keeps its id).
pub async fn reserve(ledger: &stock::StockLedger, order: &OrderRequested) -> stock::ReserveOutcome {
    let mut reserved = order.clone();
    let (outcome, _) = ledger
        .reserve(&mut reserved, None, false)
        .await
        .expect("redis answers");
    assert_eq!(
        reserved.order_id, order.order_id,
        "testkit::reserve is for sales of one stock bucket"
    );
    outcome
}

/// Deletes `keys` from the tests' Redis, as a Redis (or a cluster shard) that lost its data.
pub async fn delete_keys(keys: &[&str]) {
    redis::cmd("DEL")
        .arg(keys)
        .query_async::<i64>(&mut raw_redis().await)
        .await
        .expect("redis answers");
}

/// Strands a transfer of units between two stock buckets of `sku`'s sale, as a gateway that
/// died half way a minute ago would: the ledger's lend and never its second step, dated a minute
/// back (so it is stale). Returns the transfer id; the bucket lent at least `units`.
pub async fn strand_transfer(
    ledger: &stock::StockLedger,
    sku: &SkuId,
    from: u8,
    to: u8,
    units: i64,
) -> String {
    ledger
        .strand_transfer(sku, from, to, units, Duration::from_secs(60))
        .await
        .expect("redis answers and the bucket has the units")
}

/// Overwrites the reservation record of `order` in Redis with `record`, as a bug or a hand edit
/// would (tests of what happens when a stored value cannot be read).
pub async fn overwrite_reservation(ledger: &stock::StockLedger, order: &OrderId, record: &str) {
    let mut conn = raw_redis().await;
    redis::cmd("HSET")
        .arg(&ledger.keys(&order.sku()).resv)
        .arg(order.as_str())
        .arg(record)
        .query_async::<i64>(&mut conn)
        .await
        .expect("redis answers");
}
