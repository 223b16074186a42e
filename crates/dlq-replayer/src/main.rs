//! `seckill-dlq-replayer`: drains the dead-letter topic (`run`), and the operator's tools
//! `inspect` and `replay`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use domain::ReasonCode;
use std::io::IsTerminal;

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
    /// List the dead letters the replayer has not settled yet: where, age, reason, order,
    /// attempts, error. Reads only; commits nothing.
    Inspect,
    /// Republish to the orders topic, now, the orders of the unsettled dead letters with one
    /// reason. Commits nothing for the replayer, which still settles each letter afterwards
    /// without a second effect; stop `run` first if the replay must win over a compensation.
    Replay {
        /// The reason code of the letters to replay (see `inspect`), e.g. retries_exhausted.
        #[arg(long, value_parser = parse_reason)]
        reason: ReasonCode,
        /// Only say what would be replayed.
        #[arg(long)]
        dry_run: bool,
    },
}

fn parse_reason(value: &str) -> Result<ReasonCode, String> {
    ReasonCode::parse(value).ok_or_else(|| {
        let known: Vec<&str> = ReasonCode::ALL.iter().map(|r| r.as_str()).collect();
        format!("unknown reason; one of: {}", known.join(", "))
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = settings::Settings::load().context("loading settings")?;
    telemetry::init_tracing(&settings.log);
    let command = cli.command.unwrap_or(Command::Run);
    if !matches!(command, Command::Run) && settings.kafka.bootstrap_servers.is_empty() {
        anyhow::bail!(
            "inspect and replay read the brokers the services use: set SECKILL__KAFKA__BOOTSTRAP_SERVERS"
        );
    }
    let endpoint = kafka::Endpoint::from_settings(&settings.kafka, None);
    match command {
        Command::Run => {
            let shutdown = telemetry::shutdown_on_signal(std::time::Duration::from_secs(
                settings.shutdown.grace_secs,
            ));
            let broker = kafka::LocalBroker::for_settings(&settings.kafka).await?;
            let replayer = dlq_replayer::Replayer::connect(&settings, broker.bootstrap()).await?;
            tracing::info!(ops_port = replayer.ops_port(), "dlq replayer starting");
            replayer.run_until_stopped(shutdown).await
        }
        Command::Inspect => {
            let letters = dlq_replayer::letters::pending(&endpoint, &settings.kafka).await?;
            print!(
                "{}",
                dlq_replayer::letters::table(&letters, chrono::Utc::now())
            );
            Ok(())
        }
        Command::Replay { reason, dry_run } => {
            let letters = dlq_replayer::letters::pending(&endpoint, &settings.kafka).await?;
            let producer = kafka::producer(&endpoint)?;
            let report = dlq_replayer::letters::replay(
                &letters,
                reason,
                &producer,
                &settings.kafka.orders_topic,
                dry_run,
                std::io::stderr().is_terminal(),
            )
            .await?;
            println!(
                "{} {} dead letters ({reason}) to {}; {} not orders, skipped",
                if dry_run { "would replay" } else { "replayed" },
                report.replayed,
                settings.kafka.orders_topic,
                report.skipped
            );
            Ok(())
        }
    }
}
