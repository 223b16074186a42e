//! The order message carried by the `seckill.orders` topic, and the order's life cycle.

use crate::{IdempotencyKey, OrderId, Quantity, ReasonCode, SkuId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strum::{Display, EnumString, IntoStaticStr, VariantArray};

/// The schema version the gateway writes and the worker understands.
pub const ORDER_SCHEMA_VERSION: u16 = 1;

/// Payloads above this size are refused before parsing: an order is ~250 bytes.
pub const MAX_ORDER_BYTES: usize = 4 * 1024;

/// "A buyer reserved stock; create the order." Produced by the gateway after the Redis
/// reservation, keyed by `sku_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderRequested {
    /// Schema version, [`ORDER_SCHEMA_VERSION`].
    pub v: u16,
    /// The order's id, unique across all SKUs.
    pub order_id: OrderId,
    /// The buyer.
    pub user_id: UserId,
    /// What is bought.
    pub sku_id: SkuId,
    /// How many units.
    pub quantity: Quantity,
    /// The buyer's idempotency key.
    pub idempotency_key: IdempotencyKey,
    /// When the gateway accepted the order.
    pub requested_at: DateTime<Utc>,
}

/// Why a message on the orders topic is not a valid order. Every variant is permanent: the same
/// bytes will never decode, so the message goes to the dead-letter topic at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Larger than [`MAX_ORDER_BYTES`].
    #[error("payload of {0} bytes exceeds the {MAX_ORDER_BYTES} byte limit")]
    Oversized(usize),
    /// Not JSON, or not an object.
    #[error("payload is not a JSON object: {0}")]
    NotJson(String),
    /// A version this build does not understand.
    #[error("unsupported schema version {0}")]
    UnsupportedVersion(u64),
    /// JSON, right version, but a field is missing or invalid.
    #[error("invalid order: {0}")]
    InvalidField(String),
    /// The order id does not belong to the SKU it names.
    #[error("order id {order_id} does not belong to sku {sku_id}")]
    SkuMismatch {
        /// The order id in the message.
        order_id: String,
        /// The SKU in the message.
        sku_id: String,
    },
}

impl DecodeError {
    /// The dead-letter reason for this error.
    pub fn reason(&self) -> ReasonCode {
        match self {
            DecodeError::Oversized(_) => ReasonCode::Oversized,
            DecodeError::NotJson(_) => ReasonCode::Undecodable,
            DecodeError::UnsupportedVersion(_) => ReasonCode::UnsupportedVersion,
            DecodeError::InvalidField(_) | DecodeError::SkuMismatch { .. } => {
                ReasonCode::InvalidField
            }
        }
    }
}

impl OrderRequested {
    /// Serialises the message as JSON.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an OrderRequested always serialises")
    }

    /// Parses and validates a message from the orders topic.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_ORDER_BYTES {
            return Err(DecodeError::Oversized(bytes.len()));
        }
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::NotJson(e.to_string()))?;
        let object = value
            .as_object()
            .ok_or_else(|| DecodeError::NotJson("top level is not an object".into()))?;
        match object.get("v").and_then(serde_json::Value::as_u64) {
            Some(v) if v == u64::from(ORDER_SCHEMA_VERSION) => {}
            Some(v) => return Err(DecodeError::UnsupportedVersion(v)),
            None => {
                return Err(DecodeError::InvalidField(
                    "missing or non-numeric `v`".into(),
                ))
            }
        }
        let order: OrderRequested =
            serde_json::from_value(value).map_err(|e| DecodeError::InvalidField(e.to_string()))?;
        if order.order_id.sku() != order.sku_id {
            return Err(DecodeError::SkuMismatch {
                order_id: order.order_id.to_string(),
                sku_id: order.sku_id.to_string(),
            });
        }
        Ok(order)
    }
}

/// Where an order is in its life:
/// `pending` -> `awaiting_payment` -> `paid` | `expired`, or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(Display, EnumString, IntoStaticStr, VariantArray)]
#[strum(serialize_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum OrderStatus {
    /// Reserved in Redis and queued; the worker has not written it yet.
    Pending,
    /// Written to the database with its stock taken; the buyer has until its `pay_by` to pay.
    AwaitingPayment,
    /// Paid in time: the unit is sold.
    Paid,
    /// Not paid by its `pay_by`: its units went back on sale.
    Expired,
    /// Will not be fulfilled; its reservation was (or is being) given back.
    Failed,
}

impl OrderStatus {
    /// The status as stored in the database and shown in the API: snake_case of the variant's
    /// name, like its serde form (a test pins each).
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether an order in this status holds its units in the database's stock (awaiting
    /// payment or paid). Every other written status has given them back, or never took them.
    pub fn holds_stock(self) -> bool {
        match self {
            OrderStatus::AwaitingPayment | OrderStatus::Paid => true,
            OrderStatus::Pending | OrderStatus::Expired | OrderStatus::Failed => false,
        }
    }

    /// Whether an order in this status took its units from the database's stock (it holds them,
    /// or gave them back on expiry): its payment or its expiry decides what happens to its Redis
    /// reservation, never a compensation. A failed order never took any, a pending one has no
    /// row.
    pub fn took_stock(self) -> bool {
        match self {
            OrderStatus::AwaitingPayment | OrderStatus::Paid | OrderStatus::Expired => true,
            OrderStatus::Pending | OrderStatus::Failed => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray;

    fn sample() -> OrderRequested {
        let sku = SkuId::parse("sku-1").unwrap();
        OrderRequested {
            v: ORDER_SCHEMA_VERSION,
            order_id: OrderId::new(&sku, 7),
            user_id: UserId::parse("alice").unwrap(),
            sku_id: sku,
            quantity: Quantity::new(2).unwrap(),
            idempotency_key: IdempotencyKey::parse("k-1").unwrap(),
            requested_at: DateTime::from_timestamp_millis(1_700_000_000_000).unwrap(),
        }
    }

    #[test]
    fn an_order_survives_encode_and_decode() {
        let order = sample();
        assert_eq!(OrderRequested::decode(&order.encode()).unwrap(), order);
    }

    #[test]
    fn every_status_keeps_its_stored_string_and_only_unsettled_or_paid_orders_hold_stock() {
        crate::enum_checks::assert_stable_strings::<OrderStatus>(&[
            "pending",
            "awaiting_payment",
            "paid",
            "expired",
            "failed",
        ]);
        crate::enum_checks::assert_serde_is_the_string::<OrderStatus>();
        let holding: Vec<_> = OrderStatus::VARIANTS
            .iter()
            .copied()
            .filter(|s| s.holds_stock())
            .collect();
        assert_eq!(holding, [OrderStatus::AwaitingPayment, OrderStatus::Paid]);
        let took: Vec<_> = OrderStatus::VARIANTS
            .iter()
            .copied()
            .filter(|s| s.took_stock())
            .collect();
        assert_eq!(
            took,
            [
                OrderStatus::AwaitingPayment,
                OrderStatus::Paid,
                OrderStatus::Expired
            ]
        );
    }

    #[test]
    fn every_kind_of_poison_gets_its_reason() {
        let mut value = serde_json::to_value(sample()).unwrap();
        let cases: Vec<(Vec<u8>, ReasonCode)> = vec![
            (b"not json".to_vec(), ReasonCode::Undecodable),
            (b"[1,2]".to_vec(), ReasonCode::Undecodable),
            (vec![b' '; MAX_ORDER_BYTES + 1], ReasonCode::Oversized),
            (
                {
                    value["v"] = 9.into();
                    serde_json::to_vec(&value).unwrap()
                },
                ReasonCode::UnsupportedVersion,
            ),
            (
                {
                    value["v"] = 1.into();
                    value["quantity"] = (-1).into();
                    serde_json::to_vec(&value).unwrap()
                },
                ReasonCode::InvalidField,
            ),
            (
                {
                    value["quantity"] = 1.into();
                    value.as_object_mut().unwrap().remove("user_id");
                    serde_json::to_vec(&value).unwrap()
                },
                ReasonCode::InvalidField,
            ),
            (
                {
                    value["user_id"] = "bob".into();
                    value["sku_id"] = "other-sku".into();
                    serde_json::to_vec(&value).unwrap()
                },
                ReasonCode::InvalidField,
            ),
        ];
        for (bytes, reason) in cases {
            let err = OrderRequested::decode(&bytes).unwrap_err();
            assert_eq!(err.reason(), reason, "{err}");
        }
    }
}
