//! sea-orm entities of the tables created by the `migration` crate.

pub mod orders;
pub mod sales;
