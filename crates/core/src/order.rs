//! The order and refund state machines. Status only changes through [`OrderStatus::apply`], and
//! the store persists a change with a compare-and-set on the old status, so a transition that
//! is wrong here can never reach the database.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{AppName, Channel, Currency, DomainError, Fen, OrderId, OutTradeNo, ProviderKind};

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Created at the provider, waiting for the buyer.
    Pending,
    /// The provider confirmed the buyer paid the full amount.
    Paid,
    /// Closed unpaid (expired or closed by the merchant).
    Closed,
    /// Paid, and part of the amount has been refunded.
    PartiallyRefunded,
    /// Paid, and the whole amount has been refunded.
    Refunded,
}

/// Something that happened to an order, which may move its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderEvent {
    /// A verified notify or query says the buyer paid.
    PaymentConfirmed,
    /// The provider confirmed payment of an order we had already closed locally (a late notify,
    /// re-checked with a query). Money that arrived is never dropped.
    LatePaymentConfirmed,
    /// The order was closed unpaid, at the provider first.
    Closed,
    /// A refund succeeded and money is still left on the order.
    PartiallyRefunded,
    /// A refund succeeded and nothing is left on the order.
    FullyRefunded,
}

impl OrderEvent {
    /// The refund event that matches a refunded total against the paid amount.
    pub fn for_refunded_total(refunded_total: Fen, paid: Fen) -> OrderEvent {
        if refunded_total >= paid {
            OrderEvent::FullyRefunded
        } else {
            OrderEvent::PartiallyRefunded
        }
    }
}

/// A transition the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an order that is {from} cannot take the event {event:?}")]
pub struct TransitionError {
    /// The status the order was in.
    pub from: OrderStatus,
    /// The event that was refused.
    pub event: OrderEvent,
}

impl OrderStatus {
    /// Every status, for exhaustive tests and listings.
    pub const ALL: [OrderStatus; 5] = [
        OrderStatus::Pending,
        OrderStatus::Paid,
        OrderStatus::Closed,
        OrderStatus::PartiallyRefunded,
        OrderStatus::Refunded,
    ];

    /// The next status after `event`, or a typed error when the move is not allowed.
    pub fn apply(self, event: OrderEvent) -> Result<OrderStatus, TransitionError> {
        use OrderEvent as E;
        use OrderStatus as S;
        match (self, event) {
            (S::Pending, E::PaymentConfirmed) => Ok(S::Paid),
            (S::Pending, E::Closed) => Ok(S::Closed),
            (S::Closed, E::LatePaymentConfirmed) => Ok(S::Paid),
            (S::Paid | S::PartiallyRefunded, E::PartiallyRefunded) => Ok(S::PartiallyRefunded),
            (S::Paid | S::PartiallyRefunded, E::FullyRefunded) => Ok(S::Refunded),
            (from, event) => Err(TransitionError { from, event }),
        }
    }

    /// Whether the buyer's money was received (whatever was refunded since).
    pub const fn is_paid(self) -> bool {
        matches!(
            self,
            OrderStatus::Paid | OrderStatus::PartiallyRefunded | OrderStatus::Refunded
        )
    }

    /// Whether a refund may be requested.
    pub const fn is_refundable(self) -> bool {
        matches!(self, OrderStatus::Paid | OrderStatus::PartiallyRefunded)
    }

    /// The snake_case name used in the API and the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Paid => "paid",
            OrderStatus::Closed => "closed",
            OrderStatus::PartiallyRefunded => "partially_refunded",
            OrderStatus::Refunded => "refunded",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| DomainError::UnknownStatus(text.to_owned()))
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a refund is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    /// Sent (or being sent) to the provider; the outcome is not final yet.
    Processing,
    /// The provider confirmed the money went back.
    Succeeded,
    /// The provider refused or closed the refund; nothing was returned.
    Failed,
}

impl RefundStatus {
    /// Every status, for exhaustive tests and listings.
    pub const ALL: [RefundStatus; 3] = [
        RefundStatus::Processing,
        RefundStatus::Succeeded,
        RefundStatus::Failed,
    ];

    /// Whether moving to `next` is allowed: only processing refunds move, and only to a final state.
    pub fn can_become(self, next: RefundStatus) -> bool {
        matches!(
            (self, next),
            (
                RefundStatus::Processing,
                RefundStatus::Succeeded | RefundStatus::Failed
            )
        )
    }

    /// The snake_case name used in the API and the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Processing => "processing",
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Failed => "failed",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| DomainError::UnknownStatus(text.to_owned()))
    }
}

/// An order as paygate keeps it: what the merchant asked for and what the provider said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// paygate's id.
    pub id: OrderId,
    /// The provider that takes the money.
    pub provider: ProviderKind,
    /// The configured provider app the order was created with.
    pub app: AppName,
    /// The payment product.
    pub channel: Channel,
    /// The merchant's order number, unique per app.
    pub out_trade_no: OutTradeNo,
    /// The amount the merchant's backend asked for.
    pub amount: Fen,
    /// The currency of `amount`.
    pub currency: Currency,
    /// What the buyer sees as the item name (`body` / `subject`).
    pub subject: String,
    /// Optional longer description.
    pub description: Option<String>,
    /// Current status.
    pub status: OrderStatus,
    /// The provider's trade number (`transaction_id` / `trade_no`) once known.
    pub provider_trade_no: Option<String>,
    /// The buyer at the provider (openid / buyer_id) once known.
    pub payer_id: Option<String>,
    /// The pay params as issued at creation, served again on an idempotent retry.
    pub pay_params: Option<crate::PayParams>,
    /// Sum of succeeded refunds.
    pub refunded_amount: Fen,
    /// Merchant's free-form JSON metadata, kept verbatim.
    pub metadata: Option<String>,
    /// When the order was created (UTC).
    pub created_at: DateTime<Utc>,
    /// When the buyer paid, as the provider reports it (UTC).
    pub paid_at: Option<DateTime<Utc>>,
    /// When the order was closed (UTC).
    pub closed_at: Option<DateTime<Utc>>,
    /// When the order stops being payable (UTC).
    pub expires_at: DateTime<Utc>,
    /// Bumped by every update; optimistic-locking guard.
    pub version: i64,
}

impl Order {
    /// The amount that may still be refunded.
    pub fn refundable_amount(&self) -> Fen {
        if self.status.is_refundable() {
            self.amount
                .checked_sub(self.refunded_amount)
                .unwrap_or(Fen::ZERO)
        } else {
            Fen::ZERO
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENTS: [OrderEvent; 5] = [
        OrderEvent::PaymentConfirmed,
        OrderEvent::LatePaymentConfirmed,
        OrderEvent::Closed,
        OrderEvent::PartiallyRefunded,
        OrderEvent::FullyRefunded,
    ];

    /// The whole table, written out so that a change to `apply` has to change this too.
    fn expected(from: OrderStatus, event: OrderEvent) -> Option<OrderStatus> {
        use OrderEvent as E;
        use OrderStatus as S;
        match (from, event) {
            (S::Pending, E::PaymentConfirmed) => Some(S::Paid),
            (S::Pending, E::Closed) => Some(S::Closed),
            (S::Closed, E::LatePaymentConfirmed) => Some(S::Paid),
            (S::Paid, E::PartiallyRefunded) => Some(S::PartiallyRefunded),
            (S::Paid, E::FullyRefunded) => Some(S::Refunded),
            (S::PartiallyRefunded, E::PartiallyRefunded) => Some(S::PartiallyRefunded),
            (S::PartiallyRefunded, E::FullyRefunded) => Some(S::Refunded),
            _ => None,
        }
    }

    #[test]
    fn every_pair_in_the_transition_table() {
        let mut allowed = 0;
        for from in OrderStatus::ALL {
            for event in EVENTS {
                match expected(from, event) {
                    Some(to) => {
                        allowed += 1;
                        assert_eq!(from.apply(event), Ok(to), "{from} + {event:?}");
                    }
                    None => assert_eq!(
                        from.apply(event),
                        Err(TransitionError { from, event }),
                        "{from} + {event:?} must be refused"
                    ),
                }
            }
        }
        assert_eq!(allowed, 7);
    }

    #[test]
    fn paid_is_never_undone_by_a_close() {
        assert!(OrderStatus::Paid.apply(OrderEvent::Closed).is_err());
        assert!(
            OrderStatus::Refunded
                .apply(OrderEvent::PaymentConfirmed)
                .is_err()
        );
        assert!(
            OrderStatus::Paid
                .apply(OrderEvent::PaymentConfirmed)
                .is_err()
        );
    }

    #[test]
    fn refund_event_follows_the_refunded_total() {
        let paid = Fen::new(1000).unwrap();
        assert_eq!(
            OrderEvent::for_refunded_total(Fen::new(999).unwrap(), paid),
            OrderEvent::PartiallyRefunded
        );
        assert_eq!(
            OrderEvent::for_refunded_total(paid, paid),
            OrderEvent::FullyRefunded
        );
    }

    #[test]
    fn refund_statuses_only_move_forward() {
        for from in RefundStatus::ALL {
            for to in RefundStatus::ALL {
                let ok = from == RefundStatus::Processing && to != RefundStatus::Processing;
                assert_eq!(from.can_become(to), ok, "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn status_names_round_trip() {
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()).unwrap(), s);
        }
        for s in RefundStatus::ALL {
            assert_eq!(RefundStatus::parse(s.as_str()).unwrap(), s);
        }
        assert!(OrderStatus::parse("PAID").is_err());
    }
}
