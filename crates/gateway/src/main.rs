//! `seckill-gateway`: the buyer and admin HTTP API (`serve`), and `reconcile`, which rebuilds
//! in Redis the sales Redis has lost.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::time::Duration;

/// The seckill gateway. Settings come from config/default.toml, config/$SECKILL_ENV.toml and
/// SECKILL__* variables (see README.md).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the buyer and admin API until SIGTERM (the default).
    Serve,
    /// Print the OpenAPI document of the API (what `/openapi.json` serves; `make openapi`
    /// writes it to docs/openapi.json).
    Openapi,
    /// Rebuild in Redis every sale Redis has lost, from the database, once the order worker
    /// and the dead-letter replayer have caught up. Sales Redis still has are left alone.
    Reconcile {
        /// Only this SKU (repeatable); all sales of the database by default.
        #[arg(long = "sku")]
        skus: Vec<String>,
        /// Longest wait, in seconds, for the consumers to catch up.
        #[arg(long, default_value_t = 300)]
        drain_timeout_secs: u64,
        /// Rebuild the --sku sales although Redis has them (after a Redis failover that lost
        /// acknowledged writes: Redis shows more stock left than the database). They stop
        /// selling (503 sale_not_ready) until rebuilt.
        #[arg(long, requires = "skus")]
        rebuild: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = Cli::parse().command.unwrap_or(Command::Serve);
    // The document needs no settings (nor a reachable anything).
    if let Command::Openapi = command {
        print!("{}", gateway::openapi::pretty_json());
        return Ok(());
    }
    let settings = settings::Settings::load().context("loading settings")?;
    telemetry::init_tracing(&settings.log);
    match command {
        Command::Serve => serve(settings).await,
        Command::Openapi => Ok(()),
        Command::Reconcile {
            skus,
            drain_timeout_secs,
            rebuild,
        } => {
            if settings.kafka.bootstrap_servers.is_empty() {
                anyhow::bail!(
                    "reconcile needs the brokers the services use: set SECKILL__KAFKA__BOOTSTRAP_SERVERS"
                );
            }
            let options = gateway::reconcile::Options {
                skus: skus
                    .into_iter()
                    .map(domain::SkuId::parse)
                    .collect::<Result<_, _>>()?,
                drain_timeout: Duration::from_secs(drain_timeout_secs),
                rebuild,
            };
            let deps = backends::Backends::connect(&settings, None).await?;
            let endpoint = kafka::Endpoint::from_settings(&settings.kafka, None);
            let reports = gateway::reconcile::reconcile(
                &deps.ledger,
                &deps.store,
                &endpoint,
                &settings.kafka,
                &options,
            )
            .await?;
            for report in reports {
                println!("{report}");
            }
            Ok(())
        }
    }
}

async fn serve(settings: settings::Settings) -> anyhow::Result<()> {
    // Before anything is connected: a deployment with the development secret does not start.
    settings
        .require_deployed_secrets()
        .context("checking the gateway's secrets")?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let signalled = telemetry::terminate_signal();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        signalled.await;
        stop.cancel();
    });
    let broker = kafka::LocalBroker::for_settings(&settings.kafka).await?;
    let deps = backends::Backends::connect(&settings, broker.bootstrap()).await?;
    let app = gateway::Application::build(&settings, deps)?;
    tracing::info!(
        port = app.port(),
        admin_port = app.admin_port(),
        "gateway listening"
    );
    app.run_until_stopped(shutdown).await
}
