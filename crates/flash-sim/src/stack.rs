//! The all-in-one local stack: the three services in one process, on the embedded broker, the
//! configured (or a freshly started) Redis and the configured (default: SQLite) database. The
//! services are the very same `run` functions their binaries call.

use anyhow::{bail, Context};
use kafka::EmbeddedKafka;
use settings::secrecy::SecretString;
use settings::{RedisMode, Settings};
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running stack. Dropping it without [`LocalStack::stop`] aborts the services.
pub struct LocalStack {
    /// The settings the services run with (bootstrap servers and Redis URL filled in).
    pub settings: Settings,
    /// The gateway's port on 127.0.0.1.
    pub gateway_port: u16,
    /// Port of the gateway's admin API.
    pub admin_port: u16,
    /// The worker's ops port.
    pub worker_ops_port: u16,
    /// The replayer's ops port.
    pub replayer_ops_port: u16,
    broker: Option<EmbeddedKafka>,
    redis: Option<Child>,
    shutdown: CancellationToken,
    services: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
}

impl LocalStack {
    /// Starts the stack. Kafka: the configured brokers, or an embedded cluster. Redis: the
    /// configured one if it answers, else a `redis-server` started on a free port.
    pub async fn start(settings: Settings) -> anyhow::Result<Self> {
        Self::start_with(settings, true).await
    }

    /// [`LocalStack::start`], with or without the order worker (without: orders pile up in the
    /// topic, for a worker started on its own to drain; `worker_ops_port` is then 0).
    pub async fn start_with(mut settings: Settings, with_worker: bool) -> anyhow::Result<Self> {
        let broker = if settings.kafka.is_embedded() {
            let broker = EmbeddedKafka::start(1).context("starting the embedded broker")?;
            settings.kafka.bootstrap_servers = broker.bootstrap_servers().to_owned();
            let endpoint = kafka::Endpoint::from_settings(&settings.kafka, None);
            kafka::topics::provision(&settings.kafka, &endpoint, Some(&broker)).await?;
            Some(broker)
        } else {
            let endpoint = kafka::Endpoint::from_settings(&settings.kafka, None);
            kafka::topics::provision(&settings.kafka, &endpoint, None).await?;
            None
        };
        let redis = ensure_redis(&mut settings).await?;
        let shutdown = CancellationToken::new();
        let bootstrap = Some(settings.kafka.bootstrap_servers.as_str());

        let gateway = gateway::Application::build(
            &settings,
            connections::Connections::connect(&settings, bootstrap).await?,
        )?;
        let worker = match with_worker {
            true => Some(order_worker::Worker::connect(&settings, bootstrap).await?),
            false => None,
        };
        let replayer = dlq_replayer::Replayer::connect(&settings, bootstrap).await?;
        let gateway_port = gateway.port();
        let admin_port = gateway.admin_port();
        let worker_ops_port = worker.as_ref().map_or(0, |worker| worker.ops_port());
        let replayer_ops_port = replayer.ops_port();
        let mut services = vec![
            (
                "gateway",
                tokio::spawn(gateway.run_until_stopped(shutdown.child_token())),
            ),
            (
                "dlq-replayer",
                tokio::spawn(replayer.run_until_stopped(shutdown.child_token())),
            ),
        ];
        if let Some(worker) = worker {
            services.push((
                "order-worker",
                tokio::spawn(worker.run_until_stopped(shutdown.child_token())),
            ));
        }
        Ok(Self {
            settings,
            gateway_port,
            admin_port,
            worker_ops_port,
            replayer_ops_port,
            broker,
            redis,
            shutdown,
            services,
        })
    }

    /// The gateway's base URL.
    pub fn gateway_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.gateway_port)
    }

    /// The base URL of the gateway's admin API.
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    /// Whether the broker is the embedded one.
    pub fn embedded_broker(&self) -> Option<&EmbeddedKafka> {
        self.broker.as_ref()
    }

    /// Stops every service gracefully, then the broker and any Redis it started.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let grace = Duration::from_secs(self.settings.shutdown.grace_secs);
        for (name, handle) in self.services.drain(..) {
            match tokio::time::timeout(grace, handle).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(error))) => tracing::error!(service = name, %error, "service failed"),
                Ok(Err(error)) => tracing::error!(service = name, %error, "service panicked"),
                Err(_) => tracing::error!(service = name, "service did not stop in time"),
            }
        }
        // The services have returned, but the gateway's HTTP workers drop their share of its
        // state (the producer among it) on their own threads a moment later. The embedded broker
        // must outlive every client, or each logs the broker's disappearance as an error.
        if self.broker.is_some() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if let Some(mut redis) = self.redis.take() {
            let _ = redis.kill().await;
        }
        Ok(())
    }
}

/// Uses the configured Redis (or Redis Cluster) if it answers; otherwise, for one Redis,
/// starts `redis-server` on a free port (nothing on disk) and points the settings at it.
async fn ensure_redis(settings: &mut Settings) -> anyhow::Result<Option<Child>> {
    if redis_answers(&settings.redis).await {
        return Ok(None);
    }
    if settings.redis.mode == RedisMode::Cluster {
        bail!("the Redis Cluster of redis.url does not answer (scripts/redis-cluster.sh start)");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    tracing::info!(
        port,
        "no Redis answers at the configured URL; starting redis-server"
    );
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context(
            "no Redis answers and redis-server could not be started (is it installed? `make deps`)",
        )?;
    let url = format!("redis://127.0.0.1:{port}");
    let mut started = settings.redis.clone();
    started.url = SecretString::from(url);
    for _ in 0..50 {
        if redis_answers(&started).await {
            settings.redis = started;
            return Ok(Some(child));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("redis-server started but does not answer on port {port}")
}

/// Whether the Redis (or Redis Cluster) of `redis` answers a PING within a second, asked the
/// way the services ask it: through a ledger.
async fn redis_answers(redis: &settings::RedisSettings) -> bool {
    let Ok(ledger) = stock::StockLedger::new(redis) else {
        return false;
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), ledger.ping()).await,
        Ok(Ok(()))
    )
}
