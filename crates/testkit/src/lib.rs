//! Test support: every integration test gets its own PostgreSQL database, Redis key prefix,
//! Kafka topics and consumer groups (on its own embedded broker), so tests run in parallel on
//! the machine's real Redis and PostgreSQL without stepping on each other.
//!
//! `SECKILL_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) names the
//! server used to create the per-test databases; `SECKILL_TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379`) the Redis.

use anyhow::Context;
use chrono::{Duration as ChronoDuration, Utc};
use domain::{IdempotencyKey, OrderId, OrderRequested, Quantity, SaleSpec, SkuId, UserId};
use kafka::EmbeddedKafka;
use sea_orm::{ConnectionTrait, Database};
use settings::secrecy::{ExposeSecret, SecretString};
use settings::Settings;
use std::future::Future;
use std::time::{Duration, Instant};

pub use kafka;

pub mod process;
pub mod redis_cluster;
pub mod tls;

/// One test's private world.
pub struct TestContext {
    /// Settings pointing at this test's database, prefix, topics and broker.
    pub settings: Settings,
    /// The test's embedded broker.
    pub broker: EmbeddedKafka,
    /// The test's database name.
    pub database: String,
}

/// A short unique name: `<prefix><12 hex digits>`.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

fn pg_admin_url() -> String {
    std::env::var("SECKILL_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Creates a fresh PostgreSQL database and returns its URL. Databases of earlier runs older
/// than an hour are dropped on the way (their names carry their creation time).
pub async fn fresh_database() -> anyhow::Result<(String, String)> {
    let admin_url = pg_admin_url();
    let admin = Database::connect(&admin_url).await.with_context(|| {
        format!("connecting to {admin_url} (is PostgreSQL running? `make deps`)")
    })?;
    let now = Utc::now().timestamp();
    let name = format!("seckill_t_{now}_{}", unique(""));
    let stale = admin
        .query_all(sea_orm::Statement::from_string(
            admin.get_database_backend(),
            "SELECT datname FROM pg_database WHERE datname LIKE 'seckill_t_%'",
        ))
        .await?;
    for row in stale {
        let old: String = row.try_get("", "datname")?;
        let created: i64 = old
            .split('_')
            .nth(2)
            .and_then(|t| t.parse().ok())
            .unwrap_or(now);
        if now - created > 3600 {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{old}\" WITH (FORCE)"))
                .await;
        }
    }
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await?;
    let base = admin_url
        .rsplit_once('/')
        .map(|(base, _)| base.to_owned())
        .unwrap_or(admin_url);
    Ok((format!("{base}/{name}"), name))
}

impl TestContext {
    /// A fresh world: embedded broker with the test's topics, a new database (migrated by the
    /// first service that connects), a unique Redis prefix and consumer groups.
    pub async fn new() -> anyhow::Result<Self> {
        let broker = EmbeddedKafka::start(1)?;
        let (url, database) = fresh_database().await?;
        let mut settings = Settings::defaults();
        settings.http.port = 0;
        settings.http.ops_port = 0;
        settings.http.admin_port = 0;
        // Most tests drive the admin API through the gateway's one URL; the test of the
        // separate admin listener turns this off.
        settings.http.admin_on_public = true;
        settings.shutdown.grace_secs = 10;
        settings.kafka.bootstrap_servers = broker.bootstrap_servers().to_owned();
        settings.kafka.orders_topic = unique("orders-");
        settings.kafka.dlq_topic = unique("dlq-");
        settings.kafka.worker_group = unique("worker-");
        settings.kafka.replayer_group = unique("replayer-");
        settings.kafka.partitions = 3;
        settings.kafka.delivery_timeout_ms = 2000;
        settings.database.url = SecretString::from(url);
        settings.database.max_connections = 5;
        settings.redis.url = SecretString::from(
            std::env::var("SECKILL_TEST_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        );
        settings.redis.key_prefix = unique("t");
        settings.worker.retry_backoff_ms = 20;
        settings.worker.retry_backoff_max_ms = 200;
        settings.replayer.retry_backoff_ms = 20;
        settings.replayer.retry_backoff_max_ms = 200;
        settings.replayer.replay_delay_secs = 0;
        // Tests share two cores: an HTTP worker may run late because another test is busy, and
        // a test expecting 202 must not be shed for it. The tests of shedding turn it on.
        settings.gateway.max_loop_lag_ms = 0;
        let endpoint = kafka::Endpoint::from_settings(&settings.kafka, None);
        kafka::topics::provision(&settings.kafka, &endpoint, Some(&broker)).await?;
        Ok(Self {
            settings,
            broker,
            database,
        })
    }

    /// The Kafka endpoint of the test's broker.
    pub fn endpoint(&self) -> kafka::Endpoint {
        kafka::Endpoint::from_settings(&self.settings.kafka, None)
    }

    /// A ledger on the test's Redis prefix.
    pub fn ledger(&self) -> stock::StockLedger {
        stock::StockLedger::new(&self.settings.redis)
            .expect("redis settings are valid")
            .with_queued_grace(self.settings.sweeper.queued_grace())
    }

    /// The test's database, migrated.
    pub async fn store(&self) -> store::Store {
        store::Store::connect(&self.settings.database)
            .await
            .expect("the test database is reachable")
    }

    /// The HS256 secret.
    pub fn secret(&self) -> Vec<u8> {
        self.settings
            .auth
            .jwt_secret
            .expose_secret()
            .as_bytes()
            .to_vec()
    }

    /// Puts `sku` on sale in both the database and Redis, open now for an hour.
    pub async fn open_sale(&self, sku: &SkuId, stock: i64, per_user_limit: i64) -> SaleSpec {
        self.open_sale_as(sku, open_spec(stock, per_user_limit))
            .await
    }

    /// Puts `sku` on sale as `spec` says, in both the database and Redis.
    pub async fn open_sale_as(&self, sku: &SkuId, spec: SaleSpec) -> SaleSpec {
        self.store()
            .await
            .upsert_sale(sku, &spec)
            .await
            .expect("sale saved");
        self.ledger().warm(sku, &spec).await.expect("sale warmed");
        spec
    }
}

/// Orders as the worker leaves them: reserved in Redis the gateway's way, claimed, written to
/// the database (awaiting payment, `pay_by` = now + the sale's window) and out of the outbox.
/// Panics unless every order is accepted and written.
pub async fn written_orders(
    ledger: &stock::StockLedger,
    store: &store::Store,
    orders: &[OrderRequested],
) {
    for order in orders {
        let outcome = reserve(ledger, order).await;
        assert!(
            matches!(outcome, stock::ReserveOutcome::Accepted(_)),
            "reserving {}: {outcome:?}",
            order.order_id
        );
    }
    for chunk in orders.chunks(500) {
        let sku = &chunk[0].sku_id;
        let ids: Vec<&OrderId> = chunk.iter().map(|o| &o.order_id).collect();
        ledger.claim(sku, &ids).await.expect("redis answers");
        let written = store
            .persist_batch(chunk)
            .await
            .expect("the batch is written");
        for order in chunk {
            assert_eq!(
                written.get(&order.order_id),
                Some(&store::Written::Accepted),
                "writing {}",
                order.order_id
            );
        }
        ledger.finish(sku, &ids).await.expect("redis answers");
    }
}

/// A payment notice of `order`, signed the provider's way at `now` with `secret`: the body and
/// its `Seckill-Signature` header.
pub fn signed_notice(
    secret: &[u8],
    payment_id: &str,
    order: &OrderId,
    amount_minor: u64,
    currency: &str,
) -> (Vec<u8>, String) {
    let body = serde_json::to_vec(&serde_json::json!({
        "payment_id": payment_id,
        "order_id": order.as_str(),
        "amount_minor": amount_minor,
        "currency": currency,
    }))
    .expect("a notice serializes");
    let header = domain::payment::sign(secret, Utc::now().timestamp(), &body);
    (body, header)
}

/// A payment notice (store-level tests).
pub fn notice(payment_id: &str, order: &OrderId, amount_minor: u64) -> domain::PaymentNotice {
    domain::PaymentNotice {
        payment_id: domain::PaymentId::parse(payment_id).expect("valid payment id"),
        order_id: order.clone(),
        amount_minor,
        currency: domain::Currency::parse("EUR").expect("valid currency"),
    }
}

/// A sale open from a second ago for an hour.
pub fn open_spec(stock: i64, per_user_limit: i64) -> SaleSpec {
    let now = Utc::now();
    SaleSpec::new(
        stock,
        per_user_limit,
        now - ChronoDuration::seconds(1),
        now + ChronoDuration::hours(1),
    )
    .expect("valid sale")
}

/// A valid order message for `user` buying `quantity` of `sku`.
pub fn order(sku: &SkuId, user: &str, key: &str, quantity: i64) -> OrderRequested {
    OrderRequested {
        v: domain::ORDER_SCHEMA_VERSION,
        order_id: OrderId::new(sku, uuid::Uuid::now_v7().as_u128()),
        user_id: UserId::parse(user).expect("valid user"),
        sku_id: sku.clone(),
        quantity: Quantity::new(quantity).expect("valid quantity"),
        idempotency_key: IdempotencyKey::parse(key).expect("valid key"),
        requested_at: Utc::now(),
    }
}

/// What a test's global log subscriber writes (`telemetry::try_init_tracing` with a clone of it
/// as the writer), kept in memory for the test to read.
#[derive(Clone, Default)]
pub struct CapturedLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLog {
    /// Everything written so far.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut buffer) = self.0.lock() {
            buffer.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

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

/// Polls `done` (blocking, every 50 ms) until it is true, or fails after `limit` naming `what`:
/// for what a test waits on outside the async world (a process, a CLI).
pub(crate) fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `check` until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

/// Produces `payload` with `key` to `topic` and waits for the acknowledgement.
pub async fn produce(
    endpoint: &kafka::Endpoint,
    topic: &str,
    key: &[u8],
    payload: &[u8],
) -> anyhow::Result<()> {
    produce_with_headers(endpoint, topic, key, payload, &[]).await
}

/// Like [`produce`], with `headers` (name, value) on the message.
pub async fn produce_with_headers(
    endpoint: &kafka::Endpoint,
    topic: &str,
    key: &[u8],
    payload: &[u8],
    headers: &[(&str, &str)],
) -> anyhow::Result<()> {
    use kafka::rdkafka::message::{Header, OwnedHeaders};
    use kafka::rdkafka::producer::FutureRecord;
    let producer = kafka::producer(endpoint)?;
    let mut owned = OwnedHeaders::new();
    for (name, value) in headers {
        owned = owned.insert(Header {
            key: name,
            value: Some(value.as_bytes()),
        });
    }
    producer
        .send(
            FutureRecord::to(topic)
                .key(key)
                .payload(payload)
                .headers(owned),
            kafka::rdkafka::util::Timeout::After(Duration::from_secs(10)),
        )
        .await
        .map_err(|(e, _)| e)?;
    Ok(())
}

/// A consumer of `topic` from its start, in a consumer group of its own: a test's window on
/// what reached the topic, taking nothing from the services' groups.
pub fn probe(endpoint: &kafka::Endpoint, topic: &str) -> kafka::rdkafka::consumer::StreamConsumer {
    use kafka::rdkafka::consumer::Consumer;
    let consumer = kafka::consumer(endpoint, &unique("probe-")).expect("a probe consumer");
    consumer.subscribe(&[topic]).expect("the probe subscribes");
    consumer
}

/// The next message of `consumer`, detached; fails the test with `what` after `within`.
pub async fn next_message(
    consumer: &kafka::rdkafka::consumer::StreamConsumer,
    within: Duration,
    what: &str,
) -> kafka::rdkafka::message::OwnedMessage {
    tokio::time::timeout(within, consumer.recv())
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {within:?}"))
        .unwrap_or_else(|e| panic!("{what}: {e}"))
        .detach()
}

/// Reserves `order` in Redis the way the gateway does (so the worker finds its reservation), in
/// a sale of one stock bucket (where the order keeps its id).
pub async fn reserve(ledger: &stock::StockLedger, order: &OrderRequested) -> stock::ReserveOutcome {
    let mut reserved = order.clone();
    let (outcome, _) = ledger
        .reserve(&mut reserved, None)
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
/// died half way a minute ago would: runs the ledger's own `lend.lua` and never its second step,
/// then dates the transfer a minute back (so it is stale). Returns the transfer id; the bucket
/// lent at least `units`.
pub async fn strand_transfer(
    ledger: &stock::StockLedger,
    sku: &SkuId,
    from: u8,
    to: u8,
    units: i64,
) -> String {
    let keys = ledger.bucket_keys(sku, from);
    let transfer = format!("{from}>{to}.stranded{}", uuid::Uuid::now_v7().simple());
    let mut conn = raw_redis().await;
    let reply: Vec<i64> = redis::Script::new(include_str!("../../stock/src/lua/lend.lua"))
        .key(&keys.sale)
        .key(&keys.stock)
        .key(&keys.lent)
        .key(&keys.settled)
        .arg(&transfer)
        .arg(to)
        .arg(units)
        .arg(10_000)
        .invoke_async(&mut conn)
        .await
        .expect("redis answers");
    assert!(reply[0] >= units, "bucket {from} lent {reply:?}");
    let a_minute_ago = reply[2] - 60_000;
    redis::cmd("HSET")
        .arg(&keys.lent)
        .arg(&transfer)
        .arg(format!("{to}|{}|{a_minute_ago}", reply[0]))
        .query_async::<i64>(&mut conn)
        .await
        .expect("redis answers");
    transfer
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

/// Total lag of `group` on `topic`.
pub async fn group_lag(endpoint: &kafka::Endpoint, group: &str, topic: &str) -> i64 {
    let consumer = std::sync::Arc::new(kafka::consumer(endpoint, group).expect("consumer"));
    kafka::lag::total_lag(consumer, topic).await
}

/// The environment variables that make a service binary run with `settings` (for tests that
/// start services as separate processes, e.g. to SIGKILL or SIGTERM them).
pub fn service_env(settings: &Settings) -> Vec<(String, String)> {
    let k = &settings.kafka;
    [
        (
            "SECKILL__KAFKA__BOOTSTRAP_SERVERS",
            k.bootstrap_servers.clone(),
        ),
        ("SECKILL__KAFKA__ORDERS_TOPIC", k.orders_topic.clone()),
        ("SECKILL__KAFKA__DLQ_TOPIC", k.dlq_topic.clone()),
        ("SECKILL__KAFKA__WORKER_GROUP", k.worker_group.clone()),
        ("SECKILL__KAFKA__REPLAYER_GROUP", k.replayer_group.clone()),
        ("SECKILL__KAFKA__PARTITIONS", k.partitions.to_string()),
        (
            "SECKILL__KAFKA__DELIVERY_TIMEOUT_MS",
            k.delivery_timeout_ms.to_string(),
        ),
        (
            "SECKILL__AUTH__JWT_SECRET",
            settings.auth.jwt_secret.expose_secret().to_owned(),
        ),
        (
            "SECKILL__DATABASE__URL",
            settings.database.url.expose_secret().to_owned(),
        ),
        (
            "SECKILL__REDIS__URL",
            settings.redis.url.expose_secret().to_owned(),
        ),
        (
            "SECKILL__REDIS__KEY_PREFIX",
            settings.redis.key_prefix.clone(),
        ),
        ("SECKILL__HTTP__PORT", "0".to_owned()),
        ("SECKILL__HTTP__ADMIN_PORT", "0".to_owned()),
        (
            "SECKILL__HTTP__ADMIN_ON_PUBLIC",
            settings.http.admin_on_public.to_string(),
        ),
        (
            "SECKILL__GATEWAY__MAX_LOOP_LAG_MS",
            settings.gateway.max_loop_lag_ms.to_string(),
        ),
        ("SECKILL__HTTP__OPS_PORT", "0".to_owned()),
        (
            "SECKILL__SHUTDOWN__GRACE_SECS",
            settings.shutdown.grace_secs.to_string(),
        ),
        (
            "SECKILL__WORKER__BATCH_MAX",
            settings.worker.batch_max.to_string(),
        ),
        (
            "SECKILL__WORKER__RETRY_BACKOFF_MS",
            settings.worker.retry_backoff_ms.to_string(),
        ),
        (
            "SECKILL__WORKER__RETRY_BACKOFF_MAX_MS",
            settings.worker.retry_backoff_max_ms.to_string(),
        ),
        (
            "SECKILL__REPLAYER__REPLAY_DELAY_SECS",
            settings.replayer.replay_delay_secs.to_string(),
        ),
        (
            "SECKILL__REPLAYER__MAX_REPLAYS",
            settings.replayer.max_replays.to_string(),
        ),
        (
            "SECKILL__SWEEPER__INTERVAL_SECS",
            settings.sweeper.interval_secs.to_string(),
        ),
        (
            "SECKILL__SWEEPER__STALE_AFTER_SECS",
            settings.sweeper.stale_after_secs.to_string(),
        ),
        (
            "SECKILL__SWEEPER__ACKNOWLEDGED_STALE_AFTER_SECS",
            settings.sweeper.acknowledged_stale_after_secs.to_string(),
        ),
        ("SECKILL__LOG__FILTER", "warn".to_owned()),
        ("SECKILL_CONFIG_DIR", "/nonexistent".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Makes this test's database refuse connections and drops the open ones (`up = false`), or
/// lets connections in again (`up = true`): the database "going down" and "coming back".
pub async fn set_database_up(database: &str, up: bool) -> anyhow::Result<()> {
    let admin = Database::connect(&pg_admin_url()).await?;
    admin
        .execute_unprepared(&format!(
            "ALTER DATABASE \"{database}\" ALLOW_CONNECTIONS {}",
            if up { "true" } else { "false" }
        ))
        .await?;
    if !up {
        admin
            .execute_unprepared(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"
            ))
            .await?;
    }
    Ok(())
}

/// A row lock on a sale, held by an open transaction: whoever writes that sale's stock waits
/// until it is released (a worker "stuck mid-batch", deterministically).
pub struct SaleLock(sea_orm::DatabaseTransaction);

impl SaleLock {
    /// Locks the `sales` row of `sku` in the database of `settings`.
    pub async fn hold(settings: &Settings, sku: &SkuId) -> anyhow::Result<SaleLock> {
        use sea_orm::TransactionTrait;
        let db = Database::connect(settings.database.url.expose_secret()).await?;
        let txn = db.begin().await?;
        txn.execute_unprepared(&format!(
            "SELECT stock FROM sales WHERE sku_id = '{}' FOR UPDATE",
            sku.as_str()
        ))
        .await?;
        Ok(SaleLock(txn))
    }

    /// Lets the waiting writers go on.
    pub async fn release(self) -> anyhow::Result<()> {
        Ok(self.0.rollback().await?)
    }
}
