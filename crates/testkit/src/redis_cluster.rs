//! A real Redis Cluster of the test's own: six `redis-server` processes in cluster mode on
//! loopback (three primaries, each with a replica), made with `redis-cli --cluster create`, and
//! stopped when dropped. Each test gets its own, so a test that kills a primary disturbs no
//! other test.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a primary may be unreachable before its replica is promoted, in ms.
pub const NODE_TIMEOUT_MS: u64 = 1000;

/// A running cluster.
pub struct TestCluster {
    nodes: Vec<Node>,
    dir: PathBuf,
}

struct Node {
    port: u16,
    child: Option<Child>,
}

impl TestCluster {
    /// Starts six nodes and creates the cluster; returns once every slot is served.
    pub fn start() -> TestCluster {
        let dir = std::env::temp_dir().join(crate::unique("seckill-redis-cluster-"));
        std::fs::create_dir_all(&dir).expect("the cluster's directory can be made");
        let ports = cluster_ports(6);
        let mut cluster = TestCluster {
            nodes: Vec::new(),
            dir,
        };
        for port in ports {
            let child = cluster.spawn(port);
            cluster.nodes.push(Node {
                port,
                child: Some(child),
            });
        }
        for node in &mut cluster.nodes {
            let port = node.port;
            let child = node.child.as_mut().expect("just started");
            crate::wait_until(
                Duration::from_secs(10),
                "a cluster node answers PING",
                || {
                    assert!(
                        matches!(child.try_wait(), Ok(None)),
                        "redis-server on port {port} exited (its port was taken?)"
                    );
                    cli(port, &["PING"]).as_deref() == Some("PONG")
                },
            );
        }
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(created.success(), "redis-cli --cluster create failed");
        cluster.wait_until_healthy();
        cluster
    }

    fn spawn(&self, port: u16) -> Child {
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
            .arg("--cluster-config-file")
            .arg(self.dir.join(format!("nodes-{port}.conf")))
            .arg("--dir")
            .arg(&self.dir)
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (scripts/deps.sh installs it)")
    }

    /// Waits until every running node sees all 16384 slots served and the cluster `ok`, and
    /// every replica has synced with its primary (a replica that never did cannot take over).
    pub fn wait_until_healthy(&self) {
        let running = || self.nodes.iter().filter(|n| n.child.is_some());
        crate::wait_until(Duration::from_secs(30), "the cluster to be ok", || {
            running().all(|n| {
                cli(n.port, &["CLUSTER", "INFO"]).is_some_and(|info| {
                    info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
                })
            })
        });
        // Right after `--cluster create` the replicas-to-be still call themselves primaries
        // (of no slot): wait until each running node is a primary of slots or a synced replica.
        crate::wait_until(Duration::from_secs(30), "every replica to sync", || {
            running().all(|n| {
                cli(n.port, &["INFO", "replication"]).is_some_and(|info| {
                    (info.contains("role:master") && serves_slots(n.port))
                        || info.contains("master_link_status:up")
                })
            })
        });
    }

    /// The cluster's settings URL: every node, comma-separated.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The port of the primary that serves `key`'s slot now.
    pub fn primary_of(&self, key: &str) -> u16 {
        let running = self
            .nodes
            .iter()
            .find(|n| n.child.is_some())
            .expect("a running node");
        let slot = cli(running.port, &["CLUSTER", "KEYSLOT", key])
            .and_then(|s| s.parse::<u16>().ok())
            .expect("a slot");
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .find(|n| owns(n.port, slot))
            .map(|n| n.port)
            .expect("a primary serves the slot")
    }

    /// The ports of the primaries now.
    pub fn primaries(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .filter(|n| cli(n.port, &["ROLE"]).is_some_and(|role| role.starts_with("master")))
            .map(|n| n.port)
            .collect()
    }

    /// Waits until every replica has acknowledged what its primary had written when this was
    /// called (replication is asynchronous: a primary killed before that loses those writes).
    pub fn wait_replicated(&self) {
        let offset = |info: &str, field: &str| -> Vec<u64> {
            info.lines()
                .filter_map(|line| line.split_once(field).map(|(_, rest)| rest))
                .filter_map(|rest| rest.split(',').next()?.trim().parse().ok())
                .collect()
        };
        for port in self.primaries() {
            let Some(info) = cli(port, &["INFO", "replication"]) else {
                continue;
            };
            let Some(&written) = offset(&info, "master_repl_offset:").first() else {
                continue;
            };
            crate::wait_until(Duration::from_secs(30), "the replicas to catch up", || {
                cli(port, &["INFO", "replication"]).is_some_and(|info| {
                    offset(&info, "offset=")
                        .iter()
                        .all(|&acked| acked >= written)
                })
            });
        }
    }

    /// After `primary` was killed: waits until its replica is promoted, then starts it again, and
    /// waits until it has rejoined as a replica. (It keeps nothing on disk: restarted before its
    /// replica took over, it would come back as the empty primary of its slots.)
    pub fn rejoin_after_failover(&mut self, primary: u16) {
        crate::wait_until(Duration::from_secs(30), "the replica's promotion", || {
            self.primaries().len() == 3
        });
        self.restart(primary);
        self.wait_until_healthy();
    }

    /// The port of the replica of the primary on `primary`.
    pub fn replica_of(&self, primary: u16) -> u16 {
        let info = cli(primary, &["INFO", "replication"]).expect("the primary answers");
        info.lines()
            .find(|line| line.starts_with("slave0:"))
            .and_then(|line| line.split(",port=").nth(1))
            .and_then(|rest| rest.split(',').next()?.parse().ok())
            .expect("the primary has a replica")
    }

    /// Stops the node on `port` (SIGSTOP) without killing it: it reads nothing, answers nothing.
    pub fn freeze(&self, port: u16) {
        self.signal(port, "-STOP");
    }

    /// Lets a frozen node go on (SIGCONT).
    pub fn thaw(&self, port: u16) {
        self.signal(port, "-CONT");
    }

    fn signal(&self, port: u16, signal: &str) {
        let pid = self
            .nodes
            .iter()
            .find(|n| n.port == port)
            .and_then(|n| n.child.as_ref())
            .expect("a running node of this cluster")
            .id();
        let sent = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill {signal} {pid}");
    }

    /// Writes 32 MiB under `key` on the primary on `port` (which must serve its slot), by a
    /// script, so that the value does not cross the command line. To a replica that reads
    /// nothing (frozen), this fills the socket and leaves what the primary writes next queued in
    /// the primary's memory: lost if the primary dies before the replica reads again.
    pub fn fill_replication_stream(&self, port: u16, key: &str) {
        let written = cli(
            port,
            &[
                "EVAL",
                "redis.call('SET', KEYS[1], string.rep('x', 33554432)) return 1",
                "1",
                key,
            ],
        );
        assert_eq!(written.as_deref(), Some("1"), "filling {key} on {port}");
    }

    /// How many script calls (`EVALSHA` and `EVAL`) the node on `port` has run since it started
    /// (its `INFO commandstats`).
    pub fn script_calls(&self, port: u16) -> u64 {
        let stats = cli(port, &["INFO", "commandstats"]).unwrap_or_default();
        stats
            .lines()
            .filter(|line| {
                line.starts_with("cmdstat_evalsha:") || line.starts_with("cmdstat_eval:")
            })
            .filter_map(|line| {
                let calls = line.split_once("calls=")?.1;
                calls.split(',').next()?.parse::<u64>().ok()
            })
            .sum()
    }

    /// The ports of every node, running or not.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// Whether the node on `port` is a replica now.
    pub fn is_replica(&self, port: u16) -> bool {
        cli(port, &["ROLE"]).is_some_and(|role| role.starts_with("slave"))
    }

    /// Kills the node on `port` (SIGKILL: no goodbye to the cluster).
    pub fn kill(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of this cluster");
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the node on `port` again, with its cluster configuration: it rejoins (a killed
    /// primary comes back as a replica of the one promoted in its place).
    pub fn restart(&mut self, port: u16) {
        let child = self.spawn(port);
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of this cluster");
        node.child = Some(child);
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether the node on `port` serves any slot (a primary of the cluster's data).
fn serves_slots(port: u16) -> bool {
    !own_slots(port).is_empty()
}

/// Whether the node on `port` is the primary that owns `slot`.
fn owns(port: u16, slot: u16) -> bool {
    own_slots(port).iter().any(|range| range.contains(&slot))
}

/// The slot ranges the node on `port` serves (its own line of CLUSTER NODES); none for a
/// replica or a node that does not answer.
fn own_slots(port: u16) -> Vec<std::ops::RangeInclusive<u16>> {
    let Some(nodes) = cli(port, &["CLUSTER", "NODES"]) else {
        return Vec::new();
    };
    let Some(own) = nodes.lines().find(|line| line.contains("myself")) else {
        return Vec::new();
    };
    own.split_whitespace()
        .skip(8)
        .filter_map(|range| {
            let (low, high) = range.split_once('-').unwrap_or((range, range));
            Some(low.parse::<u16>().ok()?..=high.parse::<u16>().ok()?)
        })
        .collect()
}

/// `redis-cli -p port args...`: its answer, `None` when the node does not answer.
fn cli(port: u16, args: &[&str]) -> Option<String> {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let answer = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (output.status.success() && !answer.starts_with("Could not connect")).then_some(answer)
}

/// `count` ports free now whose cluster bus ports (+10000) are free too, all below Linux's
/// ephemeral range (32768), and different from those of the other clusters of this process
/// (tests of one binary run as threads of one process under `cargo test`).
fn cluster_ports(count: usize) -> Vec<u16> {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    const FIRST: u16 = 20_000;
    const SPAN: u16 = 2_700;
    let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
    let process = (std::process::id().wrapping_mul(7_919) % u32::from(SPAN)) as u16;
    let mut ports = Vec::new();
    while ports.len() < count {
        let step = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let candidate = FIRST + (process.wrapping_add(step.wrapping_mul(7))) % SPAN;
        if free(candidate) && free(candidate + 10_000) && !ports.contains(&candidate) {
            ports.push(candidate);
        }
    }
    ports
}
