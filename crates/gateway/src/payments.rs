//! Applying what a provider says about a trade. Notifies, `POST /v1/orders/{id}/sync` and the
//! reconciler all come here, so "verified facts → checked against the stored order →
//! compare-and-set transition" is written once.

use chrono::Utc;
use paygate_core::{
    MerchantIdentity, Order, OrderEvent, OrderStatus, PaymentMismatch, Provider, ProviderError,
    TradeFacts, TradeState,
};
use paygate_store::{
    AnomalyKind, EventKind, JudgedCallback, NewAnomaly, OrderChanges, Store, StoreError, Transition,
};

/// What applying trade facts did.
#[derive(Debug, Clone, PartialEq)]
pub enum PaymentOutcome {
    /// The order moved to paid now.
    Paid(Box<Order>),
    /// A closed order was confirmed paid by a provider query and reopened as paid.
    PaidAfterClose(Box<Order>),
    /// The order was already paid (a duplicate or concurrent copy); nothing changed.
    AlreadyPaid(Box<Order>),
    /// The facts do not describe a payment of this order; nothing changed.
    Mismatch(PaymentMismatch),
    /// The facts say the trade is not paid (awaiting, closed, failed); nothing changed.
    NotPaid(TradeState),
}

/// Why trade facts could not be applied; the caller must not acknowledge as final.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The confirming query to the provider failed.
    #[error("confirming query failed: {0}")]
    Provider(#[from] ProviderError),
}

/// Applies verified trade facts to `order`: checks them against the order and the merchant,
/// then moves it to paid by compare-and-set. A closed order is only reopened after the
/// provider confirms the payment by query, so a forged-but-signed replay cannot resurrect it.
///
/// `callback` is the notify that brought the facts, if one did: when this call moves a pending
/// order to paid ([`PaymentOutcome::Paid`]) it is stored in the same transaction; on any other
/// outcome it is not stored and the caller stores it with the verdict that outcome calls for.
pub async fn apply_trade_facts(
    store: &Store,
    provider: &dyn Provider,
    order: Order,
    facts: &TradeFacts,
    callback: Option<JudgedCallback>,
) -> Result<PaymentOutcome, ApplyError> {
    let mut callback = callback;
    if !matches!(facts.state, TradeState::Paid | TradeState::Refunded) {
        return Ok(PaymentOutcome::NotPaid(facts.state));
    }
    if let Err(mismatch) = facts.check_payment(&order, provider.merchant()) {
        return Ok(PaymentOutcome::Mismatch(mismatch));
    }
    // Two rounds at most: a lost race against a concurrent close sends us to the closed path.
    let mut order = order;
    for _ in 0..2 {
        match order.status {
            OrderStatus::Pending => {
                let event = OrderEvent::PaymentConfirmed;
                match transition_to_paid(store, &order, event, facts, callback.take()).await? {
                    Transition::Applied(paid) => return Ok(PaymentOutcome::Paid(Box::new(paid))),
                    Transition::Lost(current) => order = current,
                }
            }
            OrderStatus::Closed => {
                let confirmed = provider
                    .query_payment(&paygate_core::TradeRef::of(&order))
                    .await?;
                if let Err(mismatch) = confirmed.check_payment(&order, provider.merchant()) {
                    return Ok(PaymentOutcome::Mismatch(mismatch));
                }
                let event = OrderEvent::LatePaymentConfirmed;
                match transition_to_paid(store, &order, event, &confirmed, None).await? {
                    Transition::Applied(paid) => {
                        record_late_payment(store, &paid, provider.merchant()).await?;
                        return Ok(PaymentOutcome::PaidAfterClose(Box::new(paid)));
                    }
                    Transition::Lost(current) => order = current,
                }
            }
            OrderStatus::Paid | OrderStatus::PartiallyRefunded | OrderStatus::Refunded => {
                return Ok(PaymentOutcome::AlreadyPaid(Box::new(order)));
            }
        }
    }
    Ok(PaymentOutcome::AlreadyPaid(Box::new(order)))
}

async fn transition_to_paid(
    store: &Store,
    order: &Order,
    event: OrderEvent,
    facts: &TradeFacts,
    callback: Option<JudgedCallback>,
) -> Result<Transition, StoreError> {
    let changes = OrderChanges {
        provider_trade_no: facts.provider_trade_no.clone(),
        payer_id: facts.payer_id.clone(),
        paid_at: Some(facts.paid_at.unwrap_or_else(Utc::now)),
        ..OrderChanges::default()
    };
    let event_row = crate::events::order_event(EventKind::OrderPaid, order);
    let (id, status, outbox) = (&order.id, order.status, Some(event_row));
    store
        .transition_order_for_callback(id, status, event, changes, outbox, callback)
        .await
}

async fn record_late_payment(
    store: &Store,
    order: &Order,
    merchant: &MerchantIdentity,
) -> Result<(), StoreError> {
    let detail = format!(
        "payment for closed order {} confirmed by {} query (app {}); order marked paid",
        order.out_trade_no, order.provider, merchant.app_id
    );
    record_anomaly(
        store,
        order.provider,
        order.app.as_str(),
        Some(order),
        AnomalyKind::LatePayment,
        detail,
        None,
    )
    .await
    .map(|_| ())
}

/// Records an anomaly for finance and, when it concerns an order, tells the merchant's backend
/// with an `anomaly.detected` event. Every anomaly paygate raises goes through here.
pub async fn record_anomaly(
    store: &Store,
    provider: paygate_core::ProviderKind,
    app: &str,
    order: Option<&Order>,
    kind: AnomalyKind,
    detail: String,
    callback_id: Option<paygate_store::CallbackId>,
) -> Result<paygate_store::AnomalyId, StoreError> {
    let anomaly = store
        .record_anomaly(NewAnomaly {
            order_id: order.map(|o| o.id.clone()),
            provider,
            app: app.to_owned(),
            kind,
            detail: detail.clone(),
            callback_id,
            created_at: Utc::now(),
        })
        .await?;
    if let Some(order) = order {
        let mut event = crate::events::order_event(EventKind::AnomalyDetected, order);
        event.payload["anomaly"] = serde_json::json!({
            "id": anomaly.as_str(),
            "kind": kind.as_str(),
            "detail": detail,
        });
        store.insert_outbox_event(event).await?;
    }
    Ok(anomaly)
}
