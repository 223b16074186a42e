//! The pure core of seckill: what an order, a sale and a dead letter are, how they are named in
//! Redis and Kafka, and which inputs are valid. Nothing here does I/O, so every service and every
//! test agrees on the same definitions and can check them without a network.

pub mod dead_letter;
pub mod ids;
pub mod keys;
pub mod order;
pub mod payment;
pub mod reason;
pub mod retry;
pub mod sale;

pub use dead_letter::{DeadLetter, DeadLetterError};
pub use ids::{IdError, IdempotencyKey, OrderId, Quantity, SkuId, UserId};
pub use keys::{home_bucket, StockKeys};
pub use order::{DecodeError, OrderRequested, OrderStatus, ORDER_SCHEMA_VERSION};
pub use payment::{PaymentId, PaymentNotice, PaymentOutcome, RefundReason};
pub use reason::ReasonCode;
pub use retry::Backoff;
pub use sale::{Currency, PaymentTerms, Price, SaleError, SaleSpec, SaleWindow};

/// Default name of the topic that carries accepted orders from the gateway to the worker.
pub const ORDERS_TOPIC: &str = "seckill.orders";
/// Default name of the dead-letter topic drained by the replayer.
pub const DLQ_TOPIC: &str = "seckill.orders.dlq";
