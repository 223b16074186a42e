//! The seckill schema, one migration per change, applied by the services at start-up
//! (`database.migrate_on_start`), by `make migrate` and by the Kubernetes migration Job.

pub use sea_orm_migration::prelude::*;

mod common;
mod m20261125_000001_create_sales_and_orders;
mod m20261126_000002_payment_window;
mod m20261126_000003_stock_buckets;
mod m20261127_000004_enum_checks;
mod m20261207_000005_waiting_room;
mod m20261207_000006_sale_pricing;

/// All migrations, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_sales_and_orders::Migration),
            Box::new(m20261126_000002_payment_window::Migration),
            Box::new(m20261126_000003_stock_buckets::Migration),
            Box::new(m20261127_000004_enum_checks::Migration),
            Box::new(m20261207_000005_waiting_room::Migration),
            Box::new(m20261207_000006_sale_pricing::Migration),
        ]
    }
}
