//! Operators' view of merchant webhooks: which events exist, whether and how they were
//! delivered, and a way to send one again.

use actix_web::{HttpResponse, web};
use paygate_core::OrderId;
use paygate_store::{EventFilter, EventId, OutboxEvent, StoreError, WebhookAttempt};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Principal, Role};
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// `GET /v1/events` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only this order's events.
    pub order_id: Option<String>,
    /// `pending` (not yet acknowledged by every endpoint) or `delivered`.
    pub status: Option<String>,
    /// At most this many, newest first (default 50, at most 500).
    pub limit: Option<u32>,
}

/// `GET /v1/events`: finance sees every event; a merchant key sees those of its apps.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventsQuery), responses((status = 200, description = "`{data: [Event]}`, each with its delivery attempts"), (status = 422, description = "Unknown status or malformed order id")), security(("bearer" = [])))]
pub async fn list_events(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let delivered = match query.status.as_deref() {
        None => None,
        Some("pending") => Some(false),
        Some("delivered") => Some(true),
        Some(other) => {
            return Err(ApiError::invalid(
                ErrorCode::InvalidStatus,
                format!("status must be pending or delivered, not {other:?}"),
            ));
        }
    };
    let order_id = query
        .order_id
        .as_deref()
        .map(OrderId::parse)
        .transpose()
        .map_err(|e| ApiError::invalid(ErrorCode::InvalidOrderId, e.to_string()))?;
    let apps = match principal.role {
        Role::Merchant if !principal.apps.is_empty() => Some(principal.apps.clone()),
        _ => None,
    };
    let events = state
        .store
        .list_outbox_events(EventFilter {
            order_id,
            delivered,
            apps,
            limit: query.limit.unwrap_or(50).clamp(1, 500),
        })
        .await?;
    let mut data = Vec::with_capacity(events.len());
    for event in events {
        let attempts = state.store.webhook_attempts(&event.id).await?;
        data.push(event_view(event, &attempts));
    }
    Ok(HttpResponse::Ok().json(json!({ "data": data })))
}

/// `POST /v1/events/{id}/redeliver`: sends the event again to every endpoint of its app, as a
/// new delivery round (merchant keys, for their apps).
#[utoipa::path(post, path = "/v1/events/{id}/redeliver", tag = "events", params(("id" = String, Path, description = "Event id")), responses((status = 202, description = "Queued for delivery"), (status = 404, description = "No such event for this key")), security(("bearer" = [])))]
pub async fn redeliver_event(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Role::Merchant)?;
    let not_found = || ApiError::NotFound(format!("no event {id}"));
    let event_id = EventId::parse(&id).map_err(|_| not_found())?;
    let event = match state.store.outbox_event(&event_id).await {
        Err(StoreError::NotFound { .. }) => return Err(not_found()),
        other => other?,
    };
    let order = state.store.order(&event.order_id).await?;
    if !principal.can_see(&order.app) {
        return Err(not_found());
    }
    let event = state.store.redeliver_event(&event_id).await?;
    let attempts = state.store.webhook_attempts(&event_id).await?;
    Ok(HttpResponse::Accepted().json(event_view(event, &attempts)))
}

fn event_view(event: OutboxEvent, attempts: &[WebhookAttempt]) -> Value {
    let attempts: Vec<Value> = attempts
        .iter()
        .map(|a| {
            json!({
                "endpoint": a.endpoint,
                "round": a.delivery_round,
                "attempted_at": a.attempted_at,
                "response_status": a.response_status,
                "error": a.error,
            })
        })
        .collect();
    json!({
        "id": event.id.to_string(),
        "type": event.kind.as_str(),
        "order_id": event.order_id,
        "refund_id": event.refund_id,
        "created_at": event.created_at,
        "status": if event.delivered_at.is_some() { "delivered" } else { "pending" },
        "delivered_at": event.delivered_at,
        "failed_rounds": event.attempts,
        "next_attempt_at": event.next_attempt_at,
        "last_error": event.last_error,
        "round": event.delivery_round,
        "data": event.payload,
        "attempts": attempts,
    })
}
