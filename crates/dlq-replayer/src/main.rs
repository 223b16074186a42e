//! `seckill-dlq-replayer`: drains the dead-letter topic (`run`).

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Settles dead letters of the seckill order pipeline: republishes retryable ones, compensates
/// the rest (order marked failed, Redis reservation released). Settings come from
/// config/default.toml, config/$SECKILL_ENV.toml and SECKILL__* variables.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Drain the dead-letter topic continuously (the default).
    Run,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = settings::Settings::load().context("loading settings")?;
    telemetry::init_tracing(&settings.log);
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            let shutdown = telemetry::shutdown_on_signal(std::time::Duration::from_secs(
                settings.shutdown.grace_secs,
            ));
            let broker = kafka::LocalBroker::for_settings(&settings.kafka).await?;
            let deps = dlq_replayer::Dependencies::connect(&settings, broker.bootstrap()).await?;
            let replayer = dlq_replayer::Replayer::build(&settings, deps)?;
            tracing::info!(ops_port = replayer.ops_port(), "dlq replayer starting");
            replayer.run_until_stopped(shutdown).await
        }
    }
}
