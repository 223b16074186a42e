//! sea-orm entities of the tables created by the `migration` crate, and the one place where the
//! stored strings of an order's status and reason become the domain's types. A value that does
//! not parse is a [`StoreError::Corrupt`], never a default.

pub mod orders;
pub mod payments;
pub mod sales;

use crate::StoreError;
use domain::{OrderStatus, ReasonCode};

/// Parses the `status` column of the order `order_id`.
pub fn parse_status(order_id: &str, value: &str) -> Result<OrderStatus, StoreError> {
    value.parse().map_err(|_| StoreError::Corrupt {
        order_id: order_id.to_owned(),
        column: "status",
        value: value.to_owned(),
    })
}

/// Parses the `reason` column of the order `order_id` (`NULL` is `None`).
pub fn parse_reason(order_id: &str, value: Option<&str>) -> Result<Option<ReasonCode>, StoreError> {
    value
        .map(|value| {
            value.parse().map_err(|_| StoreError::Corrupt {
                order_id: order_id.to_owned(),
                column: "reason",
                value: value.to_owned(),
            })
        })
        .transpose()
}
