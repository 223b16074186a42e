//! `seckill-sim`: the flash-sale simulator (`demo`) and the all-in-one local stack (`stack`).

use anyhow::Context;
use clap::{Parser, Subcommand};
use flash_sim::{stack::LocalStack, Scenario};
use settings::secrecy::ExposeSecret;
use std::time::Duration;

/// Runs seckill on one machine. Settings come from config/default.toml (compiled in),
/// config/$SECKILL_ENV.toml and SECKILL__* variables; with none set, Kafka is an embedded
/// broker, the database an SQLite file and Redis the local one (started if none answers).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate a flash sale end to end and print a verdict; exits 1 if an invariant breaks.
    Demo {
        /// Units on sale.
        #[arg(long, default_value_t = 1_000)]
        stock: i64,
        /// Most units one buyer may hold.
        #[arg(long, default_value_t = 2)]
        per_user_limit: i64,
        /// Distinct buyers.
        #[arg(long, default_value_t = 10_000)]
        users: usize,
        /// Requests in all (first orders, retries, second orders, over-limit and malformed).
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 128)]
        concurrency: usize,
        /// Seed of the request mix.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Seconds to wait for the pipeline to drain.
        #[arg(long, default_value_t = 120)]
        drain_timeout: u64,
        /// Print the verdict as JSON too.
        #[arg(long)]
        json: bool,
    },
    /// Start the whole pipeline and keep it running until Ctrl-C.
    Stack,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut settings = settings::Settings::load().context("loading settings")?;
    if std::env::var_os("SECKILL__HTTP__PORT").is_none() {
        settings.http.port = 0;
    }
    if std::env::var_os("SECKILL__LOG__FILTER").is_none() && std::env::var_os("RUST_LOG").is_none()
    {
        settings.log.filter = "warn,rdkafka=error".into();
    }
    telemetry::init_tracing(&settings.log);
    match cli.command {
        Command::Demo {
            stock,
            per_user_limit,
            users,
            requests,
            concurrency,
            seed,
            drain_timeout,
            json,
        } => {
            // The demo's crowd is many buyers; the per-user rate limit guards a real shop.
            settings.gateway.per_user_rate_per_sec = 0;
            let scenario = Scenario {
                stock,
                per_user_limit,
                users,
                requests,
                concurrency,
                seed,
                drain_timeout: Duration::from_secs(drain_timeout),
                progress: true,
            };
            let verdict = flash_sim::demo(settings, &scenario).await?;
            println!("{}", verdict.render());
            if json {
                println!("{}", serde_json::to_string_pretty(&verdict)?);
            }
            if !verdict.holds() {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Stack => {
            let stack = LocalStack::start(settings).await?;
            let secret = stack
                .settings
                .auth
                .jwt_secret
                .expose_secret()
                .as_bytes()
                .to_vec();
            println!("gateway        {}", stack.gateway_url());
            println!(
                "worker ops     http://127.0.0.1:{}/metrics",
                stack.worker_ops_port
            );
            println!(
                "replayer ops   http://127.0.0.1:{}/metrics",
                stack.replayer_ops_port
            );
            println!("kafka          {}", stack.settings.kafka.bootstrap_servers);
            println!(
                "admin token    {}",
                gateway::auth::sign(&secret, "operator", Some("admin"), 86_400)
            );
            println!(
                "buyer token    {}  (sub = alice)",
                gateway::auth::sign(&secret, "alice", None, 86_400)
            );
            println!("Ctrl-C stops everything.");
            telemetry::terminate_signal().await;
            stack.stop().await
        }
    }
}
