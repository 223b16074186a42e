//! Test support: every integration test gets its own PostgreSQL database, Redis key prefix,
//! Kafka topics and consumer groups (on its own embedded broker), so tests run in parallel on
//! the machine's real Redis and PostgreSQL without stepping on each other.
//!
//! `SECKILL_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) names the
//! server used to create the per-test databases; `SECKILL_TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379`) the Redis.

use anyhow::Context;
use chrono::{Duration as ChronoDuration, Utc};
use domain::{
    IdempotencyKey, OrderId, OrderRequested, PaymentTerms, Quantity, SaleSpec, SkuId, UserId,
};
use kafka::EmbeddedKafka;
use sea_orm::{ConnectionTrait, Database};
use settings::secrecy::{ExposeSecret, SecretString};
use settings::Settings;
use std::future::Future;
use std::time::{Duration, Instant};

pub use kafka;

mod kafka_probe;
pub mod process;
pub mod redis_cluster;
mod redis_state;
pub mod tls;

pub use kafka_probe::{
    group_lag, next_message, order_signature, probe, produce, produce_signed, produce_with_headers,
    until_committed,
};
pub use redis_state::{
    delete_keys, fresh_ledger, overwrite_reservation, raw_redis, reserve, set_back_reservations,
    strand_transfer,
};

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

/// A SKU no other test uses.
pub fn sku() -> SkuId {
    SkuId::parse(unique("sku-")).expect("a unique name is a valid SKU")
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

    /// A fresh world with a sale of its own open: `stock` units, `per_user_limit` per buyer.
    pub async fn with_sale(stock: i64, per_user_limit: i64) -> (Self, SkuId) {
        let ctx = Self::new().await.expect("a fresh test world");
        let sku = sku();
        ctx.open_sale(&sku, stock, per_user_limit).await;
        (ctx, sku)
    }

    /// What the worker group has not committed of the orders topic.
    pub async fn worker_lag(&self) -> i64 {
        let kafka = &self.settings.kafka;
        group_lag(&self.endpoint(), &kafka.worker_group, &kafka.orders_topic).await
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

    /// The sale of `sku` as the database has it; panics if it has none.
    pub async fn sale_stats(&self, sku: &SkuId) -> store::SaleStats {
        self.store()
            .await
            .sale_stats(sku)
            .await
            .expect("the database answers")
            .expect("the database has the sale")
    }

    /// The sale of `sku` as Redis has it; panics if Redis has none.
    pub async fn snapshot(&self, sku: &SkuId) -> stock::LedgerSnapshot {
        self.ledger()
            .snapshot(sku)
            .await
            .expect("redis answers")
            .expect("redis has the sale")
    }

    /// Waits up to `within` for the database's figures of `sku`'s sale to pass `done` (a sale not
    /// there yet does not), naming `what` if they never do; returns them.
    pub async fn sale_stats_when(
        &self,
        sku: &SkuId,
        within: Duration,
        what: &str,
        done: impl Fn(&store::SaleStats) -> bool,
    ) -> store::SaleStats {
        let store = self.store().await;
        eventually(within, what, || async {
            let stats = store.sale_stats(sku).await.ok()??;
            done(&stats).then_some(stats)
        })
        .await
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

/// A sale open from a second ago for an hour, free (a payment of 0 pays its orders), with the
/// default payment window; `with_payment` gives it a price, for payments of more than 0.
pub fn open_spec(stock: i64, per_user_limit: i64) -> SaleSpec {
    let now = Utc::now();
    SaleSpec::new(
        stock,
        per_user_limit,
        now - ChronoDuration::seconds(1),
        now + ChronoDuration::hours(1),
    )
    .expect("valid sale")
    .with_payment(
        PaymentTerms::new(
            i64::from(PaymentTerms::DEFAULT_WINDOW_SECS),
            None,
            None,
            true,
        )
        .expect("free terms"),
    )
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

/// A service's loop (the gateway's, the worker's, the replayer's `run_until_stopped`) running in
/// the test's process, with the token that stops it.
pub struct Spawned {
    stop: tokio_util::sync::CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Spawned {
    /// Spawns `run`, handing it a stop token of its own.
    pub fn spawn<F>(run: impl FnOnce(tokio_util::sync::CancellationToken) -> F) -> Self
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let stop = tokio_util::sync::CancellationToken::new();
        let handle = tokio::spawn(run(stop.clone()));
        Self { stop, handle }
    }

    /// Stops it and waits for its end; panics unless it ended cleanly.
    pub async fn stop(self) {
        self.stop.cancel();
        self.handle
            .await
            .expect("the loop ran to its end")
            .expect("the loop ended cleanly");
    }
}

/// The environment variables that make a service binary run with `settings` (for tests that
/// start services as separate processes, e.g. to SIGKILL or SIGTERM them): every key of the
/// settings, derived from them, so a key added to the settings is carried too; and no overlay
/// file, so nothing but these variables and the compiled-in defaults counts.
pub fn service_env(settings: &Settings) -> Vec<(String, String)> {
    let mut variables = settings
        .environment_variables()
        .unwrap_or_else(|error| panic!("the test's settings cannot start a process: {error}"));
    variables.push(("SECKILL_CONFIG_DIR".to_owned(), "/nonexistent".to_owned()));
    variables
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

#[cfg(test)]
mod tests {
    use super::*;
    use settings::{KafkaSecurityProtocol, LogFormat, RedisMode, SaslMechanism};

    /// Settings with a value other than the default in every section, of every type: strings,
    /// numbers, flags, enums, secrets, paths and a map.
    fn unlike_the_defaults(ca_file: &std::path::Path) -> Settings {
        let mut s = Settings::defaults();
        s.environment = "test".into();
        s.http.host = "0.0.0.0".into();
        s.http.port = 18_080;
        s.http.admin_on_public = true;
        s.shutdown.grace_secs = 7;
        s.log.format = LogFormat::Json;
        s.log.filter = "debug,rdkafka=info".into();
        s.redis.mode = RedisMode::Cluster;
        s.redis.url = SecretString::from("rediss://:pw@a:6380, rediss://b:6380".to_owned());
        s.redis.tls.ca_file = ca_file.to_owned();
        s.redis.timeout_secs = 3;
        s.kafka.bootstrap_servers = "k1:9092,k2:9092".into();
        s.kafka.partitions = 12;
        s.kafka.security.protocol = KafkaSecurityProtocol::SaslSsl;
        s.kafka.security.sasl_mechanism = SaslMechanism::Plain;
        s.kafka.security.sasl_username = "seckill".into();
        s.kafka.security.sasl_password = SecretString::from("kafka password".to_owned());
        s.kafka.security.tls.ca_file = ca_file.to_owned();
        s.kafka.client.insert("debug".into(), "broker,topic".into());
        s.database.url = SecretString::from("postgres://u:p@db:5432/seckill".to_owned());
        s.database.migrate_on_start = false;
        s.auth.jwt_secret = SecretString::from("a-jwt-secret-of-this-test-run".to_owned());
        s.auth.jwks_url = "https://id.example.com/.well-known/jwks.json".into();
        s.auth.issuer = "https://id.example.com/".into();
        s.auth.role_claim = "roles".into();
        s.gateway.sold_out_max_orders = 12_345;
        s.worker.batch_wait_ms = 9;
        s.replayer.max_replays = 4;
        s.sweeper.retain_after_end_secs = 3_600;
        s.payments.webhook_secret = SecretString::from("a-webhook-secret-of-this-run".to_owned());
        s.payments.default_window_secs = 600;
        s.expiry.interval_ms = 250;
        s.validate().expect("the changed settings are valid");
        s
    }

    #[test]
    fn settings_carried_to_a_process_in_variables_load_back_unchanged() {
        let ca_file = std::env::temp_dir().join(unique("seckill-ca-"));
        std::fs::write(&ca_file, "not read here").expect("written");
        let settings = unlike_the_defaults(&ca_file);
        let loaded =
            Settings::load_from_variables(&service_env(&settings)).expect("the variables load");
        // Serialized, the two compare whole (secrets in the clear); `environment` is no key.
        let whole = |s: &Settings| serde_json::to_value(s).expect("settings serialize");
        assert_eq!(whole(&loaded), whole(&settings));
        assert_eq!(loaded.environment, settings.environment);
        assert_ne!(whole(&loaded), whole(&Settings::defaults()));
        std::fs::remove_file(ca_file).expect("removed");
    }

    #[test]
    fn every_key_carried_is_documented_in_the_default_file_and_every_key_there_is_read() {
        let mut documented = std::collections::BTreeSet::new();
        let mut section = String::new();
        for line in settings::DEFAULT_TOML.lines().map(str::trim) {
            if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = header.to_owned();
            } else if let Some((key, _)) = line.split_once(" = ") {
                if !line.starts_with('#') {
                    documented.insert(format!("{section}.{key}"));
                }
            }
        }
        let carried: std::collections::BTreeSet<String> = service_env(&Settings::defaults())
            .into_iter()
            .filter_map(|(name, _)| {
                let key = name.strip_prefix("SECKILL__")?;
                Some(key.to_lowercase().replace("__", "."))
            })
            .collect();
        assert_eq!(
            carried, documented,
            "the keys read, and those of config/default.toml"
        );
    }

    #[test]
    fn a_value_no_variable_can_carry_is_refused_naming_its_key() {
        let mut settings = Settings::defaults();
        settings
            .kafka
            .client
            .insert("queue.buffering.max.ms".into(), "5".into());
        let error = settings.environment_variables().expect_err("refused");
        assert!(
            error
                .to_string()
                .contains("`kafka.client.queue.buffering.max.ms`"),
            "{error}"
        );
    }
}
