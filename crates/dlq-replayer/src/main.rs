//! `seckill-dlq-replayer`: drains the dead-letter topic (`run`, the default). Listing and
//! replaying the unsettled letters are operator's tasks: `seckill-ctl dlq inspect|replay`.

use anyhow::Context;
use clap::Parser;

/// Settles dead letters of the seckill order pipeline: republishes retryable ones, compensates
/// the rest (order marked failed, Redis reservation released). Settings come from
/// config/default.toml, config/$SECKILL_ENV.toml and SECKILL__* variables.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// `run`: drain the dead-letter topic continuously (the default, and the only command; it
    /// stays a word of its own because the manifests name it).
    #[arg(default_value = "run", value_parser = ["run"])]
    command: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    Cli::parse();
    let settings = settings::Settings::load().context("loading settings")?;
    telemetry::init_tracing(&settings.log);
    let shutdown =
        telemetry::shutdown_on_signal(std::time::Duration::from_secs(settings.shutdown.grace_secs));
    let broker = kafka::LocalBroker::for_settings(&settings.kafka).await?;
    let replayer = dlq_replayer::Replayer::connect(&settings, broker.bootstrap()).await?;
    tracing::info!(ops_port = replayer.ops_port(), "dlq replayer starting");
    replayer.run_until_stopped(shutdown).await
}
