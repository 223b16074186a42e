//! `seckill-gateway`: the buyer and admin HTTP API (`serve`), and its OpenAPI document
//! (`openapi`). Rebuilding lost sales in Redis is an operator's task: `seckill-ctl reconcile`.

use anyhow::Context;
use clap::{Parser, Subcommand};

/// The seckill gateway. Settings come from config/default.toml, config/$SECKILL_ENV.toml and
/// SECKILL__* variables (see docs/configuration.md).
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command.unwrap_or(Command::Serve) {
        // The document needs no settings (nor a reachable anything).
        Command::Openapi => {
            print!("{}", gateway::openapi::pretty_json());
            Ok(())
        }
        Command::Serve => {
            let settings = settings::Settings::load().context("loading settings")?;
            telemetry::init_tracing(&settings.log);
            serve(settings).await
        }
    }
}

async fn serve(settings: settings::Settings) -> anyhow::Result<()> {
    // Before anything is connected: a deployment with the development secret does not start.
    settings
        .require_deployed_secrets()
        .context("checking the gateway's secrets")?;
    settings
        .require_deployed_message_keys()
        .context("checking the keys order messages are signed with")?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let signalled = telemetry::terminate_signal();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        signalled.await;
        stop.cancel();
    });
    let broker = kafka::LocalBroker::for_settings(&settings.kafka).await?;
    let deps = connections::Connections::connect(&settings, broker.bootstrap()).await?;
    let app = gateway::Application::build(&settings, deps)?;
    tracing::info!(
        port = app.port(),
        admin_port = app.admin_port(),
        "gateway listening"
    );
    app.run_until_stopped(shutdown).await
}
