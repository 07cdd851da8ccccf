//! Operators' view of merchant webhooks: which events exist, whether and how they were
//! delivered, and a way to send one again.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use paygate_core::OrderId;
use paygate_core::RefundId;
use paygate_store::{EventFilter, EventId, OutboxEvent, StoreError, WebhookAttempt};
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventsQuery), responses((status = 200, body = EventList, description = "Events, each with its delivery attempts"), (status = 422, description = "Unknown status or malformed order id")), security(("bearer" = [])))]
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
    Ok(HttpResponse::Ok().json(EventList { data }))
}

/// `POST /v1/events/{id}/redeliver`: sends the event again to every endpoint of its app, as a
/// new delivery round (merchant keys, for their apps).
#[utoipa::path(post, path = "/v1/events/{id}/redeliver", tag = "events", params(("id" = String, Path, description = "Event id")), responses((status = 202, body = EventView, description = "Queued for delivery"), (status = 404, description = "No such event for this key")), security(("bearer" = [])))]
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

/// `GET /v1/events` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventList {
    /// Newest first.
    pub data: Vec<EventView>,
}

/// A webhook event with its delivery state and attempts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventView {
    /// The event id, also sent as `Paygate-Event-Id`.
    pub id: String,
    /// `order.paid`, `order.closed`, `refund.succeeded`, `refund.failed`, `anomaly.detected`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The order it is about.
    #[schema(value_type = String)]
    pub order_id: OrderId,
    /// The refund it is about, for refund events.
    #[schema(value_type = Option<String>)]
    pub refund_id: Option<RefundId>,
    /// When it was written (with the change it reports).
    pub created_at: DateTime<Utc>,
    /// `pending` or `delivered`.
    pub status: &'static str,
    /// When every endpoint had acknowledged it.
    pub delivered_at: Option<DateTime<Utc>>,
    /// Delivery rounds that failed so far.
    pub failed_rounds: i64,
    /// When the next round is due.
    pub next_attempt_at: DateTime<Utc>,
    /// The last failure, for people.
    pub last_error: Option<String>,
    /// The current delivery round (redelivery starts a new one).
    pub round: i64,
    /// The webhook body's `data`.
    #[schema(value_type = Object)]
    pub data: Value,
    /// Every delivery attempt, oldest first.
    pub attempts: Vec<AttemptView>,
}

/// One delivery attempt to one endpoint.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    /// The endpoint URL.
    pub endpoint: String,
    /// The delivery round it belonged to.
    pub round: i64,
    /// When it was made.
    pub attempted_at: DateTime<Utc>,
    /// The endpoint's HTTP status, when it answered.
    pub response_status: Option<u16>,
    /// The transport error or refusal, when it failed.
    pub error: Option<String>,
}

fn event_view(event: OutboxEvent, attempts: &[WebhookAttempt]) -> EventView {
    EventView {
        id: event.id.to_string(),
        kind: event.kind.as_str(),
        order_id: event.order_id,
        refund_id: event.refund_id,
        created_at: event.created_at,
        status: if event.delivered_at.is_some() {
            "delivered"
        } else {
            "pending"
        },
        delivered_at: event.delivered_at,
        failed_rounds: event.attempts,
        next_attempt_at: event.next_attempt_at,
        last_error: event.last_error,
        round: event.delivery_round,
        data: event.payload,
        attempts: attempts
            .iter()
            .map(|a| AttemptView {
                endpoint: a.endpoint.clone(),
                round: a.delivery_round,
                attempted_at: a.attempted_at,
                response_status: a.response_status,
                error: a.error.clone(),
            })
            .collect(),
    }
}
