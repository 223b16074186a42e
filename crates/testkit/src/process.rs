//! A service run as a separate process, the way Kubernetes runs it: started with the test's
//! settings in `SECKILL__*` variables, probed on its ops port, stopped by signal.

use settings::Settings;
use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running service process and the port it serves `/healthz` on.
pub struct ServiceProcess {
    child: Child,
    /// The port of `/metrics`, `/healthz`, `/readyz`: the ops port of the worker and the
    /// replayer, the one port of the gateway (its API too).
    pub ops_port: u16,
}

impl ServiceProcess {
    /// Starts `binary` (e.g. `env!("CARGO_BIN_EXE_seckill-order-worker")`) with `args` on the
    /// test's settings and waits until its ops port answers `/healthz`, which the services serve
    /// only once their SIGTERM handler is installed. Its log goes to a file in the temp dir.
    pub fn start(binary: &str, args: &[&str], settings: &Settings) -> ServiceProcess {
        let ops_port = free_port();
        let name = std::path::Path::new(binary)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let log =
            std::env::temp_dir().join(format!("{name}-{}-{ops_port}.log", std::process::id()));
        // Nothing but the test's settings: no variable of this process (SECKILL__* set in a
        // shell or CI), and no `.env` from the working directory.
        let inherited =
            ["PATH", "HOME"].map(|name| (name, std::env::var_os(name).unwrap_or_default()));
        let child = Command::new(binary)
            .args(args)
            .env_clear()
            .envs(inherited)
            .current_dir(std::env::temp_dir())
            .envs(crate::service_env(settings))
            .env("SECKILL__HTTP__OPS_PORT", ops_port.to_string())
            .env("SECKILL__HTTP__PORT", ops_port.to_string())
            .env("SECKILL__LOG__FILTER", "info,rdkafka=warn,sqlx=warn")
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(&log)
                    .map(Stdio::from)
                    .unwrap_or(Stdio::null()),
            )
            .spawn()
            .unwrap_or_else(|e| panic!("{binary} starts: {e}"));
        let mut service = ServiceProcess { child, ops_port };
        let started = Instant::now();
        while http_status(ops_port, "/healthz") != Some(200) {
            if let Some(status) = service.child.try_wait().expect("the child can be polled") {
                panic!(
                    "{name} exited with {status} before it was up; see {}",
                    log.display()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{name} did not answer /healthz within 60 s; see {}",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        service
    }

    /// Sends `signal` (`"-TERM"`, `"-KILL"`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Waits for the process to exit, failing the test after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("the child can be polled") {
                return status;
            }
            assert!(
                started.elapsed() < within,
                "the process did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the exit status; a stop that overruns the grace period fails the test.
    pub fn terminate(&mut self, grace: Duration) -> ExitStatus {
        self.signal("-TERM");
        self.wait_exit(grace + Duration::from_secs(5))
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        // A failing test must not leave a service running.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A TCP port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

/// The HTTP status of `GET path` on 127.0.0.1:`port`, `None` if nothing answers.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    http_get(port, path).map(|(status, _)| status)
}

/// `GET path` on the loopback `port`: the status and the body, `None` when nothing answers.
/// Blocking; the read waits up to 5 s.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.get(9..12)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}
