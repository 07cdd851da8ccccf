//! Refunds: reserve the amount in the store (which refuses to over-refund, even under
//! concurrent requests), ask the provider, and record what it says. Only a definite refusal
//! ([`ProviderError::is_definite_refusal`]) fails a refund; any other error (no answer, an
//! unusable answer, "try again") leaves it `processing`, and the refund notify, `sync` or the
//! reconciler settles it later with the same `out_refund_no`, never a new one.

use chrono::Utc;
use paygate_core::{
    Order, OrderId, OutRefundNo, ProviderError, RefundFacts, RefundQuery, RefundRequest,
    RefundState, RefundStatus,
};
use paygate_store::{AnomalyKind, EventKind, NewRefund, Refund, RefundCompletion, StoreError};

use crate::error::{ApiError, ErrorCode};
use crate::registry::ProviderApp;
use crate::state::AppState;

/// Records a provider's word on a refund. Returns whether anything changed.
pub async fn apply_refund_facts(
    state: &AppState,
    refund: &Refund,
    facts: &RefundFacts,
) -> Result<bool, StoreError> {
    settle(
        state,
        refund,
        facts,
        "the provider reports the refund failed",
    )
    .await
}

/// Records that the provider definitely refused `refund` (see
/// [`ProviderError::is_definite_refusal`]): the amount is released, `refund.failed` is emitted
/// and a `refund_failed` anomaly is raised. Returns whether anything changed.
pub async fn fail_refund(
    state: &AppState,
    order: &Order,
    refund: &Refund,
    refusal: &ProviderError,
) -> Result<bool, StoreError> {
    let failed = RefundFacts {
        out_trade_no: order.out_trade_no.to_string(),
        out_refund_no: refund.out_refund_no.to_string(),
        provider_refund_id: None,
        amount: Some(refund.amount),
        state: RefundState::Failed,
        succeeded_at: None,
    };
    settle(
        state,
        refund,
        &failed,
        &format!("the provider refused: {refusal}"),
    )
    .await
}

/// Moves a processing refund to the final state `facts` report, with its event; a failure
/// also raises a `refund_failed` anomaly so finance sees every refund that did not happen.
async fn settle(
    state: &AppState,
    refund: &Refund,
    facts: &RefundFacts,
    failure: &str,
) -> Result<bool, StoreError> {
    if refund.status != RefundStatus::Processing {
        return Ok(false);
    }
    let (status, event) = match facts.state {
        RefundState::Succeeded => (RefundStatus::Succeeded, EventKind::RefundSucceeded),
        RefundState::Failed => (RefundStatus::Failed, EventKind::RefundFailed),
        RefundState::Processing | RefundState::NotFound => return Ok(false),
    };
    let order = state.store.order(&refund.order_id).await?;
    let event = crate::events::refund_event(event, &order, refund);
    let completed = state
        .store
        .complete_refund(
            &refund.id,
            status,
            facts.provider_refund_id.clone(),
            facts.succeeded_at.unwrap_or_else(Utc::now),
            Some(event),
        )
        .await?;
    // `Lost`: another copy of the notify (or the reconciler) settled it first.
    let applied = matches!(completed, RefundCompletion::Applied { .. });
    if applied && status == RefundStatus::Failed {
        crate::payments::record_anomaly(
            &state.store,
            order.provider,
            order.app.as_str(),
            Some(&order),
            AnomalyKind::RefundFailed,
            format!(
                "refund {} of {} fen: {failure}",
                refund.out_refund_no,
                refund.amount.get()
            ),
            None,
        )
        .await?;
    }
    Ok(applied)
}

/// The refunds whose first provider call is under way in this process. The reconciler never
/// re-sends one of them: a query during that call finds no refund at the provider yet, and a
/// re-send racing a refusal would carry out a refund the API is about to record as failed.
/// (Across replicas, `query_pending_after_seconds` — a minute by default, far beyond any
/// provider call's timeout — keeps the reconciler away from refunds that young.)
#[derive(Debug, Default)]
pub struct RefundsInFlight {
    refunds: std::sync::Mutex<std::collections::HashSet<(OrderId, String)>>,
}

impl RefundsInFlight {
    /// Marks `out_refund_no` of `order` in flight until the returned guard is dropped.
    fn begin(&self, order: &OrderId, out_refund_no: &OutRefundNo) -> InFlight<'_> {
        let key = (order.clone(), out_refund_no.to_string());
        self.lock().insert(key.clone());
        InFlight { set: self, key }
    }

    /// Whether `refund`'s first provider call is still under way here.
    pub fn contains(&self, refund: &Refund) -> bool {
        self.lock()
            .contains(&(refund.order_id.clone(), refund.out_refund_no.to_string()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<(OrderId, String)>> {
        // A panic while holding this lock leaves a plain set behind; it stays usable.
        self.refunds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Removes its refund from [`RefundsInFlight`] when the call is over, however it ended.
struct InFlight<'a> {
    set: &'a RefundsInFlight,
    key: (OrderId, String),
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.set.lock().remove(&self.key);
    }
}

/// Reserves and sends a refund for `order`.
pub async fn start_refund(
    state: &AppState,
    app: &ProviderApp,
    order: &Order,
    out_refund_no: OutRefundNo,
    amount: paygate_core::Fen,
    reason: Option<String>,
) -> Result<(Refund, bool), ApiError> {
    // Marked before the reservation commits, so no reconciler pass sees it unmarked.
    let _in_flight = state.refunds_in_flight.begin(&order.id, &out_refund_no);
    let reserved = state
        .store
        .create_refund(NewRefund {
            order_id: order.id.clone(),
            out_refund_no: out_refund_no.clone(),
            amount,
            reason: reason.clone(),
            created_at: Utc::now(),
        })
        .await;
    let refund = match reserved {
        Ok(refund) => refund,
        Err(StoreError::DuplicateRefund(existing)) => {
            if existing.order_id == order.id && existing.amount == amount {
                return Ok((*existing, false));
            }
            return Err(ApiError::conflict(
                ErrorCode::OutRefundNoReused,
                "out_refund_no was already used for a different refund",
            ));
        }
        Err(StoreError::RefundExceedsPaid { refundable }) => {
            return Err(ApiError::conflict(
                ErrorCode::RefundExceedsPaid,
                format!("at most {} fen can still be refunded", refundable.get()),
            ));
        }
        Err(StoreError::NotRefundable { .. }) => {
            return Err(ApiError::conflict(
                ErrorCode::NotRefundable,
                "only paid orders can be refunded",
            ));
        }
        Err(error) => return Err(error.into()),
    };
    let request = RefundRequest {
        out_trade_no: order.out_trade_no.clone(),
        provider_trade_no: order.provider_trade_no.clone(),
        out_refund_no,
        refund_amount: amount,
        order_amount: order.amount,
        reason,
        notify_url: Some(state.refund_notify_url(app)),
    };
    match app.provider.refund(&request).await {
        Ok(facts) => {
            apply_refund_facts(state, &refund, &facts).await?;
        }
        Err(error) if error.is_definite_refusal() => {
            state
                .metrics
                .provider_errors
                .with_label_values(&[app.kind().as_str(), "refund", "refused"])
                .inc();
            fail_refund(state, order, &refund, &error).await?;
            return Err(error.into());
        }
        Err(error) => {
            // No answer, an unusable one or "try again": the provider may have refunded. The
            // refund stays processing; the refund notify, `sync` or the reconciler settles it
            // by refund query, re-sending the same out_refund_no if the provider never got it.
            tracing::warn!(%error, refund = %refund.id, "refund outcome unknown; left processing");
            state
                .metrics
                .provider_errors
                .with_label_values(&[app.kind().as_str(), "refund", "unknown"])
                .inc();
            if let ProviderError::UntrustedResponse(detail) = &error {
                // Not a passing timeout: a broken proxy, an attack or a wrong provider key.
                // Until the query settles it, our books may disagree with the provider's.
                crate::payments::record_anomaly(
                    &state.store,
                    order.provider,
                    order.app.as_str(),
                    Some(order),
                    AnomalyKind::StateDisagreement,
                    format!(
                        "refund {} of {} fen: the provider's answer was unusable ({detail}); \
                         left processing until a refund query settles it",
                        refund.out_refund_no,
                        amount.get()
                    ),
                    None,
                )
                .await?;
            }
        }
    }
    Ok((state.store.refund(&refund.id).await?, true))
}

/// Asks the provider about a processing refund and records the answer.
pub async fn sync_refund(
    state: &AppState,
    app: &ProviderApp,
    order: &Order,
    refund: &Refund,
) -> Result<Refund, ApiError> {
    if refund.status == RefundStatus::Processing {
        let facts = app
            .provider
            .query_refund(&RefundQuery {
                out_trade_no: order.out_trade_no.clone(),
                out_refund_no: refund.out_refund_no.clone(),
            })
            .await?;
        apply_refund_facts(state, refund, &facts).await?;
    }
    Ok(state.store.refund(&refund.id).await?)
}
