//! Logging and metrics set-up shared by the seckill services, and the small ops HTTP server
//! (`/healthz`, `/readyz`, `/metrics`) that the worker and the replayer expose beside their loops.

pub mod metrics;
pub mod ops;
pub mod trace;

use prometheus::{Encoder, Registry, TextEncoder};
use settings::{LogFormat, LogSettings};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::{fmt, EnvFilter};

pub use prometheus;
pub use trace::TraceContext;

/// Installs the global tracing subscriber, writing to stdout. `RUST_LOG` wins over the settings'
/// filter. Safe to call twice (tests, the dev stack): the second call is a no-op.
pub fn init_tracing(log: &LogSettings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.filter));
    let _ = install(filter, log.format, std::io::stdout);
}

/// Installs the global tracing subscriber with exactly the settings' filter (`RUST_LOG` is
/// ignored), writing to `writer`: how a test captures the log the services write. Fails when
/// a global subscriber is already installed.
pub fn try_init_tracing<W>(log: &LogSettings, writer: W) -> Result<(), TryInitError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    install(EnvFilter::new(&log.filter), log.format, writer)
}

fn install<W>(filter: EnvFilter, format: LogFormat, writer: W) -> Result<(), TryInitError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_writer(writer);
    match format {
        LogFormat::Pretty => builder.compact().try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    }
}

/// Why the tracing subscriber could not be installed.
pub type TryInitError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A registry with the process collector (CPU, memory, file descriptors) already in it.
pub fn new_registry() -> Registry {
    let registry = Registry::new();
    #[cfg(target_os = "linux")]
    {
        let _ = registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
    }
    registry
}

/// Renders a registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut buffer = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut buffer)
        .expect("the text encoder writes to a Vec");
    String::from_utf8(buffer).expect("the text format is UTF-8")
}

/// A token cancelled on SIGTERM or Ctrl-C; if the service has not exited `grace` later, the
/// process exits with status 1 (Kubernetes would SIGKILL it soon after anyway). Call it first
/// thing in `main`: the SIGTERM handler is installed before it returns, so a stop requested while
/// the service is still connecting is a clean stop too, not the default "killed by signal".
pub fn shutdown_on_signal(grace: std::time::Duration) -> tokio_util::sync::CancellationToken {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let stop = shutdown.clone();
    let signalled = terminate_signal();
    tokio::spawn(async move {
        signalled.await;
        stop.cancel();
        tokio::time::sleep(grace).await;
        tracing::error!("grace period over; exiting without a clean stop");
        std::process::exit(1);
    });
    shutdown
}

/// Installs the SIGTERM handler now and resolves when the process receives SIGTERM or Ctrl-C.
/// Must be called inside a Tokio runtime.
pub fn terminate_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async move {
            match term {
                Some(mut signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
    }
}
