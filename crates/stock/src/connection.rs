//! The ledger's one connection to Redis: a multiplexed connection to one server, or a Redis
//! Cluster client that routes each command to the primary of its keys' slot (every key of a
//! sale shares the sale's hash tag, so a script or pipeline of one sale goes to one primary).
//! Both connect in the background and reconnect by themselves; the cluster client also follows
//! `MOVED`/`ASK` and a failover. In cluster mode `redis.max_in_flight` has no effect.

use crate::StockError;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, Value};
use settings::secrecy::ExposeSecret;
use settings::{RedisMode, RedisSettings};
use std::time::Duration;

/// A connection to one Redis or to a Redis Cluster; cheap to clone (clones share it).
#[derive(Clone)]
pub(crate) enum Connection {
    /// One server.
    Single(ConnectionManager),
    /// A cluster.
    Cluster(ClusterConnection),
}

impl Connection {
    /// The connection `settings` describe. Nothing is connected yet: a service starts while
    /// Redis is down, and the connection is made (and made again) in the background, on the
    /// runtime this is called in, which must be the service's own (not an HTTP worker's).
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
                    // One request, its retries included (a failover answers MOVED or fails
                    // until the replica is promoted), never takes longer than the timeout.
                    .overall_response_timeout(Some(timeout))
                    .retries(6)
                    .min_retry_wait(50)
                    .max_retry_wait(500);
                if let Some(certificates) = certificates(settings)? {
                    builder = builder.certs(certificates);
                }
                let client = builder.build().map_err(config)?;
                let pending = ClusterConfig::new()
                    .set_connection_timeout(timeout)
                    .set_response_timeout(timeout);
                Ok(Connection::Cluster(
                    client.get_pending_async_connection_with_config(pending),
                ))
            }
        }
    }

    /// Whether Redis answers a `PING`. For a cluster, one node answering is enough: while a
    /// primary fails over, the others still serve their sales, and a pod that reaches the
    /// cluster is ready. Up to three nodes are tried at random.
    pub(crate) async fn ping(&self) -> redis::RedisResult<()> {
        match self {
            Connection::Single(manager) => {
                let mut manager = manager.clone();
                redis::cmd("PING")
                    .query_async::<String>(&mut manager)
                    .await?;
                Ok(())
            }
            Connection::Cluster(cluster) => {
                let mut cluster = cluster.clone();
                let random = || RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random);
                let mut answer = cluster.route_command(redis::cmd("PING"), random()).await;
                for _ in 1..3 {
                    if answer.is_ok() {
                        break;
                    }
                    answer = cluster.route_command(redis::cmd("PING"), random()).await;
                }
                answer.map(|_| ())
            }
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(manager) => manager.req_packed_command(cmd),
            Connection::Cluster(cluster) => cluster.req_packed_command(cmd),
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
            Connection::Cluster(cluster) => cluster.req_packed_commands(pipeline, offset, count),
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
