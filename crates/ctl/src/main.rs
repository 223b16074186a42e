//! `seckill-ctl`: the operator's one command, with a subcommand per task (schema migrations,
//! topics, consumer lag, dead letters, releasing one reservation, reconcile). The work itself
//! lives in the library of the crate that owns it (`migration`, `kafka`,
//! `dlq_replayer::letters`, `stock`, `gateway::reconcile`), so
//! the services and the tests run the very same code; this file parses, connects and prints.
//!
//! What a subcommand answers goes to stdout, so that it can be piped; the log goes to stderr.

use anyhow::Context;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand};
use domain::{OrderId, ReasonCode, SkuId};
use migration::{Migrator, MigratorTrait};
use settings::Settings;
use std::io::IsTerminal;
use std::time::Duration;
use stock::{ReleaseMode, ReleaseOutcome, StockLedger};
use strum::VariantArray;

/// Operator tasks of seckill, run against the environment the settings name.
///
/// Settings come from config/default.toml, config/$SECKILL_ENV.toml and SECKILL__* variables,
/// as for the services (docs/configuration.md). Every subcommand but `migrate` talks to the
/// brokers of SECKILL__KAFKA__BOOTSTRAP_SERVERS.
#[derive(Parser)]
#[command(name = "seckill-ctl", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply, revert or list the schema migrations of the configured database.
    ///
    /// The database is SECKILL__DATABASE__URL (empty: the embedded SQLite file). The services
    /// apply pending migrations themselves unless database.migrate_on_start is false, as in
    /// Kubernetes, where a Job runs `seckill-ctl migrate up`.
    Migrate {
        #[command(subcommand)]
        action: Migrate,
    },
    /// Create the orders and dead-letter topics; existing topics are left alone.
    ///
    /// Partitions, replication factor and min.insync.replicas come from the settings
    /// (kafka.partitions, kafka.replication_factor, kafka.min_insync_replicas). Not needed
    /// where Strimzi's KafkaTopic objects manage the topics.
    Topics,
    /// Print the consumer lag per partition: the worker group on the orders topic and the
    /// replayer group on the dead-letter topic.
    ///
    /// Reads the groups' committed offsets without joining them: the running consumers are
    /// not rebalanced.
    Lag,
    /// List or replay the dead letters the replayer has not settled yet.
    Dlq {
        #[command(subcommand)]
        action: Dlq,
    },
    /// Give back to the sale the units one order's reservation holds in Redis.
    ///
    /// For the reservations nothing else settles: a dead letter the replayer abandoned, a
    /// reservation whose order message cannot be read. Refused when the order's row holds
    /// its units or gave them back itself (awaiting payment, paid or expired): its payment or
    /// its expiry decides. A failed order, or one without a row, is released (as the
    /// replayer's compensation does; the buyer then sees it failed). Running it twice changes
    /// nothing the second time.
    Release {
        /// The order.
        #[arg(long, value_parser = parse_order)]
        order: OrderId,
    },
    /// Rebuild in Redis the sales Redis has lost, from the database.
    ///
    /// Waits for the dead-letter replayer and then the order worker to catch up (the orders
    /// still pending are then in the database) and writes each lost sale back. Sales Redis
    /// still has are left alone, so running it twice, or on a healthy Redis, changes nothing.
    Reconcile {
        /// Only this SKU (repeatable); all sales of the database by default.
        #[arg(long = "sku", value_name = "SKU", value_parser = parse_sku)]
        skus: Vec<SkuId>,
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

#[derive(Subcommand)]
enum Migrate {
    /// Apply every pending migration, then list them all.
    Up,
    /// Revert the last migrations, then list them all.
    Down {
        /// How many to revert.
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// List every migration and whether it is applied.
    Status,
}

#[derive(Subcommand)]
enum Dlq {
    /// List the unsettled dead letters: where, age, reason, order, attempts, trace id, error,
    /// and a count per reason. Reads only; commits nothing.
    Inspect,
    /// Republish to the orders topic, now, the orders of the unsettled dead letters of one
    /// reason.
    ///
    /// Commits nothing for the replayer, which still settles each letter afterwards without a
    /// second effect; stop the replayer first if the replay must win over a compensation.
    /// Letters of forged messages, and letters without a valid signature of a worker, are
    /// refused: the orders republished are signed with this shell's `messages.signing_keys`.
    Replay {
        /// The reason code of the letters to replay (`dlq inspect` counts them by reason).
        #[arg(long, value_parser = reason_parser())]
        reason: ReasonCode,
        /// Only say what would be replayed.
        #[arg(long)]
        dry_run: bool,
    },
}

fn parse_order(value: &str) -> Result<OrderId, String> {
    OrderId::parse(value).map_err(|error| error.to_string())
}

fn parse_sku(value: &str) -> Result<SkuId, String> {
    SkuId::parse(value).map_err(|error| error.to_string())
}

/// The reason codes as clap's possible values, so that `--help` and a typo list them.
fn reason_parser() -> impl TypedValueParser<Value = ReasonCode> {
    PossibleValuesParser::new(ReasonCode::VARIANTS.iter().map(|reason| reason.as_str()))
        .try_map(|value| value.parse::<ReasonCode>())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load().context("loading settings")?;
    // The settings' filter, not RUST_LOG: SECKILL__LOG__FILTER changes it, as for the services.
    telemetry::try_init_tracing(&settings.log, std::io::stderr)
        .map_err(|error| anyhow::anyhow!(error).context("installing the log"))?;
    connections::require_verified_transport(&settings)?;
    match cli.command {
        Command::Migrate { action } => migrate(&settings, action).await,
        Command::Topics => {
            kafka::topics::provision(&settings.kafka, &brokers(&settings)?, None)
                .await
                .context("creating the topics")?;
            Ok(())
        }
        Command::Lag => {
            let lags = kafka::group_lag::project_lag(&settings.kafka, &brokers(&settings)?)
                .await
                .context("reading the consumer lag")?;
            print!("{}", kafka::group_lag::table(&lags));
            Ok(())
        }
        Command::Dlq { action } => dlq(&settings, action).await,
        Command::Release { order } => release(&settings, &order).await,
        Command::Reconcile {
            skus,
            drain_timeout_secs,
            rebuild,
        } => {
            let endpoint = brokers(&settings)?;
            let options = gateway::reconcile::Options {
                skus,
                drain_timeout: Duration::from_secs(drain_timeout_secs),
                rebuild,
            };
            let deps = connections::Connections::connect(&settings, None).await?;
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

/// The brokers the services use. An embedded broker lives inside the process that started it,
/// so there is none to reach from here.
fn brokers(settings: &Settings) -> anyhow::Result<kafka::Endpoint> {
    anyhow::ensure!(
        !settings.kafka.is_embedded(),
        "kafka.bootstrap_servers is empty: set SECKILL__KAFKA__BOOTSTRAP_SERVERS to the brokers the \
         services use (an embedded broker lives inside the process that started it; `make stack` \
         prints its address)"
    );
    Ok(kafka::Endpoint::from_settings(&settings.kafka, None))
}

/// The database of the settings, connected without migrating it: the operator's command decides
/// what is applied, not its connection.
async fn database(settings: &Settings) -> anyhow::Result<store::Store> {
    let mut database = settings.database.clone();
    database.migrate_on_start = false;
    store::Store::connect(&database)
        .await
        .context("connecting to the database")
}

async fn migrate(settings: &Settings, action: Migrate) -> anyhow::Result<()> {
    let store = database(settings).await?;
    let db = store.connection();
    match action {
        Migrate::Up => Migrator::up(db, None).await.context("applying")?,
        Migrate::Down { steps } => Migrator::down(db, Some(steps)).await.context("reverting")?,
        Migrate::Status => {}
    }
    let migrations = Migrator::get_migration_with_status(db)
        .await
        .context("listing the migrations")?;
    println!("{:<48} status", "migration");
    for migration in migrations {
        println!(
            "{:<48} {}",
            migration.name(),
            migration.status().to_string().to_lowercase()
        );
    }
    Ok(())
}

async fn release(settings: &Settings, order: &OrderId) -> anyhow::Result<()> {
    let store = database(settings).await?;
    if let Some(row) = store.order(order).await.context("reading the order")? {
        let status = row.order_status()?;
        anyhow::ensure!(
            !status.took_stock(),
            "order {order} is {status} in the database: its row decides what happens to its \
             units, nothing was released"
        );
    }
    let ledger = StockLedger::new(&settings.redis).context("redis settings")?;
    let released = ledger
        .release(order, ReleaseMode::Compensate)
        .await
        .context("releasing the reservation")?;
    println!(
        "{order}: {}",
        match released {
            ReleaseOutcome::Released => "released, its units are back on sale",
            ReleaseOutcome::AlreadyReleased => "already released, nothing changed",
            ReleaseOutcome::Missing => "Redis has no reservation of it, nothing changed",
            ReleaseOutcome::Claimed => "claimed by the worker, nothing changed",
            ReleaseOutcome::SaleMissing =>
                "Redis has lost its sale, nothing changed (rebuild it: seckill-ctl reconcile)",
        }
    );
    Ok(())
}

async fn dlq(settings: &Settings, action: Dlq) -> anyhow::Result<()> {
    let endpoint = brokers(settings)?;
    let letters = dlq_replayer::letters::pending(&endpoint, &settings.kafka)
        .await
        .context("reading the unsettled dead letters")?;
    match action {
        Dlq::Inspect => print!(
            "{}",
            dlq_replayer::letters::table(&letters, chrono::Utc::now())
        ),
        Dlq::Replay { reason, dry_run } => {
            let producer = kafka::producer(&endpoint).context("kafka producer")?;
            // The orders replayed are signed with these keys: in a deployment, its own (the
            // workers there refuse the development keys' signatures as forged).
            settings.require_deployed_message_keys()?;
            let keyring = settings.messages.keyring()?;
            let orders_topic = &settings.kafka.orders_topic;
            let report = dlq_replayer::letters::replay(
                &letters,
                reason,
                &producer,
                orders_topic,
                &keyring,
                dry_run,
                std::io::stderr().is_terminal(),
            )
            .await?;
            println!(
                "{} {} dead letters ({reason}) to {orders_topic}; {} not orders, skipped; {} \
                 forged or not signed by a worker, refused",
                if dry_run { "would replay" } else { "replayed" },
                report.replayed,
                report.skipped,
                report.refused
            );
        }
    }
    Ok(())
}
