//! Merchant events written to the outbox in the same transaction as the change they report.
//! The payload is what a merchant's webhook receives, so it is built from the API's own views.

use paygate_core::Order;
use paygate_store::{EventKind, NewOutboxEvent, Refund};
use serde_json::json;

/// The event for a change of `order`.
pub fn order_event(kind: EventKind, order: &Order) -> NewOutboxEvent {
    NewOutboxEvent {
        kind,
        order_id: order.id.clone(),
        refund_id: None,
        payload: json!({
            "order_id": order.id,
            "provider": order.provider,
            "app": order.app,
            "out_trade_no": order.out_trade_no,
            "amount": order.amount,
            "currency": order.currency,
        }),
    }
}

/// The event for a change of `refund` (of `order`).
pub fn refund_event(kind: EventKind, order: &Order, refund: &Refund) -> NewOutboxEvent {
    NewOutboxEvent {
        kind,
        order_id: order.id.clone(),
        refund_id: Some(refund.id.clone()),
        payload: json!({
            "order_id": order.id,
            "refund_id": refund.id,
            "out_trade_no": order.out_trade_no,
            "out_refund_no": refund.out_refund_no,
            "amount": refund.amount,
        }),
    }
}
