//! `seckill-migrate up|down|status`: schema migrations against the configured database.

use clap::{Parser, Subcommand};
use migration::{Migrator, MigratorTrait};

/// Applies, reverts or lists the schema migrations of the database named by the settings
/// (`SECKILL__DATABASE__URL`; empty = the embedded SQLite file).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply every pending migration.
    Up,
    /// Revert the last `steps` migrations.
    Down {
        /// How many to revert.
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// List migrations and whether each is applied.
    Status,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut settings = settings::Settings::load()?;
    telemetry::init_tracing(&settings.log);
    settings.database.migrate_on_start = false;
    let store = store::Store::connect(&settings.database).await?;
    let db = store.connection();
    match cli.command {
        Command::Up => Migrator::up(db, None).await?,
        Command::Down { steps } => Migrator::down(db, Some(steps)).await?,
        Command::Status => Migrator::status(db).await?,
    }
    Ok(())
}
