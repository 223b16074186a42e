//! The ledger's one connection to Redis: a multiplexed connection to one server, or a Redis
//! Cluster client that routes each command to the primary of its keys' slot (every key of a
//! sale shares the sale's hash tag, so a script or pipeline of one sale goes to one primary).
//! Both reconnect by themselves; the cluster client also follows `MOVED`/`ASK` and a failover.

use crate::StockError;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use settings::secrecy::ExposeSecret;
use settings::{RedisMode, RedisSettings};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// A connection to one Redis or to a Redis Cluster; cheap to clone (clones share it).
#[derive(Clone)]
pub(crate) enum Connection {
    /// One server.
    Single(ConnectionManager),
    /// A cluster, connected on first use.
    Cluster(Arc<LazyCluster>),
}

/// A cluster client that connects on first use, so that a service starts while Redis is down.
pub(crate) struct LazyCluster {
    client: ClusterClient,
    connection: OnceCell<ClusterConnection>,
}

impl LazyCluster {
    async fn connection(&self) -> redis::RedisResult<ClusterConnection> {
        self.connection
            .get_or_try_init(|| self.client.get_async_connection())
            .await
            .cloned()
    }
}

impl Connection {
    /// The connection `settings` describe; nothing is connected yet.
    pub(crate) fn new(settings: &RedisSettings) -> Result<Self, StockError> {
        let timeout = Duration::from_secs(settings.timeout_secs.max(1));
        let config = |e: redis::RedisError| StockError::Config(e.to_string());
        match settings.mode {
            RedisMode::Standalone => {
                let client = client(settings)?;
                let manager = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500))
                    .set_concurrency_limit(settings.max_in_flight)
                    .set_pipeline_buffer_size(settings.max_in_flight);
                ConnectionManager::new_lazy_with_config(client, manager)
                    .map(Connection::Single)
                    .map_err(config)
            }
            RedisMode::Cluster => {
                let mut builder = ClusterClientBuilder::new(settings.node_urls())
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    // A failover takes the cluster's node timeout plus an election; the client
                    // retries (learning the new primary from MOVED) for up to about 3 s.
                    .retries(6)
                    .min_retry_wait(50)
                    .max_retry_wait(1000);
                if let Some(certificates) = certificates(settings)? {
                    builder = builder.certs(certificates);
                }
                let client = builder.build().map_err(config)?;
                Ok(Connection::Cluster(Arc::new(LazyCluster {
                    client,
                    connection: OnceCell::new(),
                })))
            }
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(manager) => manager.req_packed_command(cmd),
            Connection::Cluster(cluster) => {
                Box::pin(async move { cluster.connection().await?.req_packed_command(cmd).await })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(manager) => manager.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(cluster) => Box::pin(async move {
                cluster
                    .connection()
                    .await?
                    .req_packed_commands(pipeline, offset, count)
                    .await
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(manager) => manager.get_db(),
            Connection::Cluster(_) => 0,
        }
    }
}

/// The client of `settings.url`; a `rediss://` URL is TLS, checked against `settings.tls`'s CA
/// (or the system's) and, with a client certificate, mutual.
fn client(settings: &RedisSettings) -> Result<redis::Client, StockError> {
    let url = settings.url.expose_secret();
    let config = |e: redis::RedisError| StockError::Config(e.to_string());
    match certificates(settings)? {
        None => redis::Client::open(url).map_err(config),
        Some(certificates) => redis::Client::build_with_tls(url, certificates).map_err(config),
    }
}

/// The CA and client certificate of `settings.tls`, when any is set.
fn certificates(settings: &RedisSettings) -> Result<Option<redis::TlsCertificates>, StockError> {
    let tls = &settings.tls;
    if !tls.is_set() {
        return Ok(None);
    }
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|e| StockError::Config(format!("redis.tls.{key} {}: {e}", path.display())))
    };
    let optional = |key: &str, path: &std::path::Path| {
        (!path.as_os_str().is_empty())
            .then(|| read(key, path))
            .transpose()
    };
    let client_tls = match (
        optional("certificate_file", &tls.certificate_file)?,
        optional("key_file", &tls.key_file)?,
    ) {
        (Some(client_cert), Some(client_key)) => Some(redis::ClientTlsConfig {
            client_cert,
            client_key,
        }),
        _ => None,
    };
    Ok(Some(redis::TlsCertificates {
        client_tls,
        root_cert: optional("ca_file", &tls.ca_file)?,
    }))
}
