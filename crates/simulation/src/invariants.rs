//! What must hold once the system has converged, and what must hold at every moment: the
//! provider's money equals paygate's, trade by trade and refund by refund; nothing moves
//! backwards; refunds never exceed the payment; every `order.paid` and `refund.succeeded`
//! event exists exactly once per transition.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use paygate_core::{Fen, OrderStatus, RefundStatus};
use paygate_sandbox::{Trade, TradeStatus};

use crate::merchant::{AnomalyView, EventView, OrderView, RefundView};

/// One order as paygate shows it, with its refunds and events.
#[derive(Debug, Clone)]
pub struct PaygateOrder {
    /// The order.
    pub order: OrderView,
    /// Its refunds.
    pub refunds: Vec<RefundView>,
    /// Its events.
    pub events: Vec<EventView>,
}

/// Both sides' books at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The provider's trades by `out_trade_no`.
    pub trades: BTreeMap<String, Trade>,
    /// paygate's orders by `out_trade_no`.
    pub orders: BTreeMap<String, PaygateOrder>,
    /// paygate's anomalies.
    pub anomalies: Vec<AnomalyView>,
}

/// Statuses seen over time, per order and per refund, in the order they were seen.
#[derive(Debug, Clone, Default)]
pub struct History {
    orders: BTreeMap<String, Vec<OrderStatus>>,
    refunds: BTreeMap<String, (String, Vec<RefundStatus>)>,
}

impl History {
    /// Records an order's status (keyed by `out_trade_no`).
    pub fn order(&mut self, out_trade_no: &str, status: OrderStatus) {
        let seen = self.orders.entry(out_trade_no.to_owned()).or_default();
        if seen.last() != Some(&status) {
            seen.push(status);
        }
    }

    /// Records a refund's status.
    pub fn refund(&mut self, out_trade_no: &str, refund: &RefundView) {
        let (_, seen) = self
            .refunds
            .entry(refund.out_refund_no.clone())
            .or_insert_with(|| (out_trade_no.to_owned(), Vec::new()));
        if seen.last() != Some(&refund.status) {
            seen.push(refund.status);
        }
    }

    /// Records everything in a snapshot.
    pub fn record(&mut self, snapshot: &Snapshot) {
        for (no, paygate) in &snapshot.orders {
            self.order(no, paygate.order.status);
            for refund in &paygate.refunds {
                self.refund(no, refund);
            }
        }
    }
}

/// A broken invariant, naming the trade it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// The provider holds a trade paygate has no order for.
    UnknownTrade {
        /// The trade.
        out_trade_no: String,
        /// Its status at the provider.
        provider: TradeStatus,
    },
    /// The provider's and paygate's statuses disagree (e.g. paid there, pending here).
    StatusDiverged {
        /// The trade.
        out_trade_no: String,
        /// At the provider (`None`: the provider never heard of it).
        provider: Option<TradeStatus>,
        /// Here.
        paygate: OrderStatus,
        /// Whether paygate recorded an anomaly for the order.
        anomaly: bool,
    },
    /// A paid trade's amount differs.
    AmountDiverged {
        /// The trade.
        out_trade_no: String,
        /// At the provider.
        provider: Fen,
        /// Here.
        paygate: Fen,
    },
    /// The money refunded differs: at the provider, in paygate's succeeded refunds, and in
    /// the order's `refunded_amount`.
    RefundedDiverged {
        /// The trade.
        out_trade_no: String,
        /// Refunded at the provider.
        provider: Fen,
        /// The sum of paygate's succeeded refunds.
        succeeded: Fen,
        /// The order's `refunded_amount`.
        counted: Fen,
        /// Whether paygate recorded an anomaly for the order.
        anomaly: bool,
    },
    /// One refund is settled differently on the two sides (e.g. executed by the provider but
    /// `failed` here, or `succeeded` here and unknown there).
    RefundDiverged {
        /// The trade.
        out_trade_no: String,
        /// The refund.
        out_refund_no: String,
        /// Its amount at the provider, when the provider has it.
        provider: Option<Fen>,
        /// Its status and amount here, when paygate has it.
        paygate: Option<(RefundStatus, Fen)>,
    },
    /// A refund still `processing` after the system was given time to converge.
    RefundUnsettled {
        /// The trade.
        out_trade_no: String,
        /// The refund.
        out_refund_no: String,
    },
    /// More refunded than paid, on either side.
    OverRefunded {
        /// The trade.
        out_trade_no: String,
        /// The refunded total.
        refunded: Fen,
        /// The paid amount.
        paid: Fen,
        /// Which side.
        side: &'static str,
    },
    /// The status does not say what the refunds say (`refunded` with money left, …).
    StatusContradictsRefunds {
        /// The trade.
        out_trade_no: String,
        /// The status.
        status: OrderStatus,
        /// The refunded total.
        refunded: Fen,
        /// The amount.
        amount: Fen,
    },
    /// An order's status moved backwards.
    OrderMovedBackwards {
        /// The trade.
        out_trade_no: String,
        /// Every status seen, in order.
        seen: Vec<OrderStatus>,
    },
    /// A refund's status changed after it was final.
    RefundMovedBackwards {
        /// The trade.
        out_trade_no: String,
        /// The refund.
        out_refund_no: String,
        /// Every status seen, in order.
        seen: Vec<RefundStatus>,
    },
    /// A statement run broke one of its expectations ([`crate::statements`]).
    Statement {
        /// The trade it concerns, or `statement PROVIDER DAY` for the run as a whole.
        out_trade_no: String,
        /// What went wrong.
        problem: String,
    },
    /// An event is missing or repeated for a transition.
    EventCount {
        /// The trade.
        out_trade_no: String,
        /// The event type.
        kind: &'static str,
        /// The order or refund it is about.
        subject: String,
        /// How many there should be.
        expected: usize,
        /// How many there are.
        found: usize,
    },
}

impl Violation {
    /// The trade the violation concerns.
    pub fn out_trade_no(&self) -> &str {
        match self {
            Violation::UnknownTrade { out_trade_no, .. }
            | Violation::StatusDiverged { out_trade_no, .. }
            | Violation::AmountDiverged { out_trade_no, .. }
            | Violation::RefundedDiverged { out_trade_no, .. }
            | Violation::RefundDiverged { out_trade_no, .. }
            | Violation::RefundUnsettled { out_trade_no, .. }
            | Violation::OverRefunded { out_trade_no, .. }
            | Violation::StatusContradictsRefunds { out_trade_no, .. }
            | Violation::OrderMovedBackwards { out_trade_no, .. }
            | Violation::RefundMovedBackwards { out_trade_no, .. }
            | Violation::Statement { out_trade_no, .. }
            | Violation::EventCount { out_trade_no, .. } => out_trade_no,
        }
    }

    /// Whether the violation can never be repaired by waiting longer (things seen moving
    /// backwards stay seen, a statement run's answer stays given); the others may still
    /// converge.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Violation::OrderMovedBackwards { .. }
                | Violation::RefundMovedBackwards { .. }
                | Violation::Statement { .. }
        )
    }
}

fn flagged(anomaly: bool) -> &'static str {
    if anomaly {
        " (an anomaly is recorded)"
    } else {
        " (no anomaly recorded)"
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::UnknownTrade {
                out_trade_no,
                provider,
            } => write!(
                f,
                "{out_trade_no}: the provider holds a {provider} trade paygate has no order for"
            ),
            Violation::StatusDiverged {
                out_trade_no,
                provider,
                paygate,
                anomaly,
            } => {
                let there = provider.map_or("unknown".to_owned(), |s| s.to_string());
                write!(
                    f,
                    "{out_trade_no}: {there} at the provider but {} in paygate{}",
                    paygate.as_str(),
                    flagged(*anomaly)
                )
            }
            Violation::AmountDiverged {
                out_trade_no,
                provider,
                paygate,
            } => write!(
                f,
                "{out_trade_no}: paid {provider} at the provider, {paygate} in paygate"
            ),
            Violation::RefundedDiverged {
                out_trade_no,
                provider,
                succeeded,
                counted,
                anomaly,
            } => write!(
                f,
                "{out_trade_no}: refunded {provider} at the provider, paygate's succeeded \
                 refunds sum to {succeeded} and its refunded_amount is {counted}{}",
                flagged(*anomaly)
            ),
            Violation::RefundDiverged {
                out_trade_no,
                out_refund_no,
                provider,
                paygate,
            } => {
                let there = provider.map_or("absent".to_owned(), |a| format!("{a} refunded"));
                let here = paygate.map_or("absent".to_owned(), |(status, amount)| {
                    format!("{} ({amount})", status.as_str())
                });
                write!(
                    f,
                    "{out_trade_no}: refund {out_refund_no} is {there} at the provider but {here} in paygate"
                )
            }
            Violation::RefundUnsettled {
                out_trade_no,
                out_refund_no,
            } => write!(
                f,
                "{out_trade_no}: refund {out_refund_no} still processing after convergence"
            ),
            Violation::OverRefunded {
                out_trade_no,
                refunded,
                paid,
                side,
            } => write!(
                f,
                "{out_trade_no}: {side} refunded {refunded} of {paid} paid"
            ),
            Violation::StatusContradictsRefunds {
                out_trade_no,
                status,
                refunded,
                amount,
            } => write!(
                f,
                "{out_trade_no}: {} with {refunded} of {amount} refunded",
                status.as_str()
            ),
            Violation::OrderMovedBackwards { out_trade_no, seen } => {
                let seen: Vec<&str> = seen.iter().map(|s| s.as_str()).collect();
                write!(f, "{out_trade_no}: moved backwards: {}", seen.join(" → "))
            }
            Violation::RefundMovedBackwards {
                out_trade_no,
                out_refund_no,
                seen,
            } => {
                let seen: Vec<&str> = seen.iter().map(|s| s.as_str()).collect();
                write!(
                    f,
                    "{out_trade_no}: refund {out_refund_no} moved backwards: {}",
                    seen.join(" → ")
                )
            }
            Violation::Statement {
                out_trade_no,
                problem,
            } => write!(f, "{out_trade_no}: statement run: {problem}"),
            Violation::EventCount {
                out_trade_no,
                kind,
                subject,
                expected,
                found,
            } => write!(
                f,
                "{out_trade_no}: {found} {kind} events for {subject}, expected {expected}"
            ),
        }
    }
}

fn paid_or_later(status: OrderStatus) -> bool {
    matches!(
        status,
        OrderStatus::Paid | OrderStatus::PartiallyRefunded | OrderStatus::Refunded
    )
}

/// Whether an order may go from `from` to `to` (the documented state machine; `closed → paid`
/// only for a late payment the provider confirmed).
fn order_step_allowed(from: OrderStatus, to: OrderStatus) -> bool {
    use OrderStatus::{Closed, PartiallyRefunded, Refunded};
    match from {
        OrderStatus::Pending => true,
        Closed => paid_or_later(to),
        OrderStatus::Paid => matches!(to, PartiallyRefunded | Refunded),
        PartiallyRefunded => to == Refunded,
        Refunded => false,
    }
}

/// Differences paygate did not converge but flagged to finance as anomalies (a closed order
/// paid at the provider, told by a mismatching notify), by `out_trade_no`.
pub fn flagged_differences(snapshot: &Snapshot) -> Vec<String> {
    let flagged: BTreeSet<&str> = snapshot
        .anomalies
        .iter()
        .filter_map(|a| a.order_id.as_deref())
        .collect();
    snapshot
        .orders
        .iter()
        .filter(|(no, paygate)| {
            paygate.order.status == OrderStatus::Closed
                && flagged.contains(paygate.order.id.as_str())
                && snapshot
                    .trades
                    .get(*no)
                    .is_some_and(|t| t.status == TradeStatus::Paid)
        })
        .map(|(no, _)| no.clone())
        .collect()
}

/// Checks what must hold at every moment: statuses only moved forwards.
pub fn check_history(history: &History) -> Vec<Violation> {
    let mut violations = Vec::new();
    for (no, seen) in &history.orders {
        if seen.windows(2).any(|w| !order_step_allowed(w[0], w[1])) {
            violations.push(Violation::OrderMovedBackwards {
                out_trade_no: no.clone(),
                seen: seen.clone(),
            });
        }
    }
    for (refund_no, (no, seen)) in &history.refunds {
        if seen.windows(2).any(|w| w[0] != RefundStatus::Processing) {
            violations.push(Violation::RefundMovedBackwards {
                out_trade_no: no.clone(),
                out_refund_no: refund_no.clone(),
                seen: seen.clone(),
            });
        }
    }
    violations
}

fn sum(amounts: impl Iterator<Item = Fen>) -> Fen {
    amounts.fold(Fen::ZERO, |total, a| total.checked_add(a).unwrap_or(total))
}

/// Checks what must hold once converged, trade by trade.
pub fn check_converged(snapshot: &Snapshot) -> Vec<Violation> {
    let mut violations = Vec::new();
    let flagged_orders: BTreeSet<&str> = snapshot
        .anomalies
        .iter()
        .filter_map(|a| a.order_id.as_deref())
        .collect();
    for (no, trade) in &snapshot.trades {
        if !snapshot.orders.contains_key(no) {
            violations.push(Violation::UnknownTrade {
                out_trade_no: no.clone(),
                provider: trade.status,
            });
        }
    }
    for (no, paygate) in &snapshot.orders {
        let anomaly = flagged_orders.contains(paygate.order.id.as_str());
        check_order(
            no,
            paygate,
            snapshot.trades.get(no),
            anomaly,
            &mut violations,
        );
    }
    violations
}

fn check_order(
    no: &str,
    paygate: &PaygateOrder,
    trade: Option<&Trade>,
    anomaly: bool,
    violations: &mut Vec<Violation>,
) {
    let order = &paygate.order;
    let status_ok = match trade.map(|t| t.status) {
        Some(TradeStatus::Paid) if order.status == OrderStatus::Closed => {
            // Paid after the close (Alipay app/wap/page create the trade only when the buyer
            // opens it, so a close before that finds nothing to close): the reconciler watches
            // such an order until it expires and reopens it as paid, unless what the provider
            // reports does not match the order, which finance has as an anomaly. The same
            // without an anomaly is money nobody is told about.
            anomaly
        }
        Some(TradeStatus::Paid) => paid_or_later(order.status),
        // Closed here with the trade still open there only happens when the trade was opened
        // at the provider after the close (Alipay app/wap/page create it at the buyer's first
        // step); no money is involved, and a payment would be honoured as a late one.
        Some(TradeStatus::AwaitingPayment) | None => {
            matches!(order.status, OrderStatus::Pending | OrderStatus::Closed)
        }
        Some(TradeStatus::Closed) => order.status == OrderStatus::Closed,
    };
    if !status_ok {
        violations.push(Violation::StatusDiverged {
            out_trade_no: no.to_owned(),
            provider: trade.map(|t| t.status),
            paygate: order.status,
            anomaly,
        });
    }
    let provider_refunded = trade.map_or(Fen::ZERO, Trade::refunded);
    if let Some(trade) = trade.filter(|t| t.status == TradeStatus::Paid)
        && trade.amount != order.amount
    {
        violations.push(Violation::AmountDiverged {
            out_trade_no: no.to_owned(),
            provider: trade.amount,
            paygate: order.amount,
        });
    }
    let succeeded = sum(paygate
        .refunds
        .iter()
        .filter(|r| r.status == RefundStatus::Succeeded)
        .map(|r| r.amount));
    if provider_refunded != succeeded || succeeded != order.refunded_amount {
        violations.push(Violation::RefundedDiverged {
            out_trade_no: no.to_owned(),
            provider: provider_refunded,
            succeeded,
            counted: order.refunded_amount,
            anomaly,
        });
    }
    for (side, refunded, paid) in [
        ("paygate", order.refunded_amount, order.amount),
        (
            "the provider",
            provider_refunded,
            trade.map_or(order.amount, |t| t.amount),
        ),
    ] {
        if refunded > paid {
            violations.push(Violation::OverRefunded {
                out_trade_no: no.to_owned(),
                refunded,
                paid,
                side,
            });
        }
    }
    if paid_or_later(order.status) {
        let expected = if order.refunded_amount == Fen::ZERO {
            OrderStatus::Paid
        } else if order.refunded_amount < order.amount {
            OrderStatus::PartiallyRefunded
        } else {
            OrderStatus::Refunded
        };
        if order.status != expected {
            violations.push(Violation::StatusContradictsRefunds {
                out_trade_no: no.to_owned(),
                status: order.status,
                refunded: order.refunded_amount,
                amount: order.amount,
            });
        }
    }
    check_refunds(no, paygate, trade, violations);
    check_events(no, paygate, violations);
}

fn check_refunds(
    no: &str,
    paygate: &PaygateOrder,
    trade: Option<&Trade>,
    violations: &mut Vec<Violation>,
) {
    let at_provider: BTreeMap<&str, Fen> = trade
        .map(|t| {
            t.refunds
                .iter()
                .map(|r| (r.out_refund_no.as_str(), r.amount))
                .collect()
        })
        .unwrap_or_default();
    let here: BTreeMap<&str, &RefundView> = paygate
        .refunds
        .iter()
        .map(|r| (r.out_refund_no.as_str(), r))
        .collect();
    let numbers: BTreeSet<&str> = at_provider.keys().chain(here.keys()).copied().collect();
    for number in numbers {
        let there = at_provider.get(number).copied();
        let mine = here.get(number).map(|r| (r.status, r.amount));
        let agree = match (there, mine) {
            (Some(amount), Some((RefundStatus::Succeeded, mine))) => amount == mine,
            (None, Some((RefundStatus::Failed, _))) => true,
            (_, Some((RefundStatus::Processing, _))) => {
                violations.push(Violation::RefundUnsettled {
                    out_trade_no: no.to_owned(),
                    out_refund_no: number.to_owned(),
                });
                true
            }
            _ => false,
        };
        if !agree {
            violations.push(Violation::RefundDiverged {
                out_trade_no: no.to_owned(),
                out_refund_no: number.to_owned(),
                provider: there,
                paygate: mine,
            });
        }
    }
}

fn check_events(no: &str, paygate: &PaygateOrder, violations: &mut Vec<Violation>) {
    let order = &paygate.order;
    let count = |kind: &str, refund: Option<&str>| {
        paygate
            .events
            .iter()
            .filter(|e| e.kind == kind && (refund.is_none() || e.refund_id.as_deref() == refund))
            .count()
    };
    let mut expect = |kind: &'static str, subject: &str, refund: Option<&str>, expected: usize| {
        let found = count(kind, refund);
        if found != expected {
            violations.push(Violation::EventCount {
                out_trade_no: no.to_owned(),
                kind,
                subject: subject.to_owned(),
                expected,
                found,
            });
        }
    };
    expect(
        "order.paid",
        &order.id,
        None,
        usize::from(paid_or_later(order.status)),
    );
    if order.status == OrderStatus::Closed {
        expect("order.closed", &order.id, None, 1);
    }
    for refund in &paygate.refunds {
        let succeeded = usize::from(refund.status == RefundStatus::Succeeded);
        expect("refund.succeeded", &refund.id, Some(&refund.id), succeeded);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_state_machine_only_goes_forwards() {
        use OrderStatus::*;
        assert!(order_step_allowed(Pending, Paid));
        assert!(order_step_allowed(Closed, Paid));
        assert!(order_step_allowed(Paid, Refunded));
        assert!(!order_step_allowed(Paid, Pending));
        assert!(!order_step_allowed(Refunded, PartiallyRefunded));
        assert!(!order_step_allowed(PartiallyRefunded, Paid));
        assert!(!order_step_allowed(Paid, Closed));
    }

    #[test]
    fn a_history_that_went_backwards_is_a_violation_and_a_forward_one_is_not() {
        let mut history = History::default();
        for status in [OrderStatus::Pending, OrderStatus::Paid, OrderStatus::Paid] {
            history.order("sim00001", status);
        }
        assert!(check_history(&history).is_empty());
        history.order("sim00001", OrderStatus::Pending);
        let violations = check_history(&history);
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].out_trade_no(), "sim00001");
        assert!(violations[0].is_permanent());
    }
}
