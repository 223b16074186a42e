//! `seckill-kafka topics|lag`: provision the project's topics, print consumer lag.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::time::Duration;

/// Kafka chores of seckill against the brokers named by the settings
/// (`SECKILL__KAFKA__BOOTSTRAP_SERVERS`; there is no embedded broker to talk to from here).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the orders and dead-letter topics (partitions, replication, min.insync.replicas
    /// from the settings); existing topics are left alone.
    Topics,
    /// Print the lag of the worker group on the orders topic and of the replayer group on the
    /// dead-letter topic, per partition.
    Lag,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = settings::Settings::load().context("loading settings")?;
    telemetry::init_tracing(&settings.log);
    anyhow::ensure!(
        !settings.kafka.is_embedded(),
        "kafka.bootstrap_servers is empty: set SECKILL__KAFKA__BOOTSTRAP_SERVERS (an embedded broker \
         lives inside the process that started it, e.g. `make stack` prints its address)"
    );
    let endpoint = kafka::Endpoint::from_settings(&settings.kafka, None);
    match cli.command {
        Command::Topics => kafka::topics::provision(&settings.kafka, &endpoint, None).await?,
        Command::Lag => {
            println!(
                "{:<28} {:<28} {:>9} {:>12} {:>12} {:>10}",
                "group", "topic", "partition", "committed", "end", "lag"
            );
            for (group, topic) in [
                (&settings.kafka.worker_group, &settings.kafka.orders_topic),
                (&settings.kafka.replayer_group, &settings.kafka.dlq_topic),
            ] {
                let consumer = kafka::consumer(&endpoint, group)?;
                let topic_name = topic.clone();
                let lags = tokio::task::spawn_blocking(move || {
                    kafka::lag::topic_lag(&consumer, &topic_name, Duration::from_secs(10))
                })
                .await??;
                let mut total = 0;
                for lag in &lags {
                    total += lag.lag();
                    println!(
                        "{group:<28} {topic:<28} {:>9} {:>12} {:>12} {:>10}",
                        lag.partition,
                        lag.committed,
                        lag.end,
                        lag.lag()
                    );
                }
                println!(
                    "{group:<28} {topic:<28} {:>9} {:>12} {:>12} {total:>10}",
                    "all", "", ""
                );
            }
        }
    }
    Ok(())
}
