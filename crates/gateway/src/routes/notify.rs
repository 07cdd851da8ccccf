//! Provider callback endpoints: `POST /notify/{provider}/{app}` and the further routes a
//! provider declares (`POST /notify/wechat/{app}/refund`). Which routes exist, how a callback
//! is authenticated and how it is answered (status, content type, body) are the provider's
//! (its `Capabilities::callback_routes`, `verify_callback` and `acknowledge`); this module
//! knows no provider by name.
//!
//! Fixed steps, hyperswitch-style: verify → find the order → check the facts against it →
//! compare-and-set → store the raw body with its verdict → acknowledge. Nothing is acknowledged
//! before the raw body is stored; a genuine payment stores it in the same transaction as the
//! compare-and-set, so the common notify costs one read and one write. A bad signature is
//! answered with the provider's failure body and changes nothing but the audit trail. A genuine callback that does not match our
//! order (amount, app, seller, …) changes nothing, is recorded as an anomaly for finance, and
//! is acknowledged so the provider stops retrying something that will never match. When the
//! database is down the failure body is sent, so the provider retries later.

use std::net::IpAddr;

use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use paygate_core::{
    AppName, CallbackAck, CallbackOutcome, CallbackPurpose, InboundCallback, Notice, NotifyError,
    OutRefundNo, OutTradeNo, ProviderKind, RefundFacts, TradeFacts,
};
use paygate_store::{
    AnomalyKind, CallbackId, CallbackKind, CallbackVerdict, JudgedCallback, NewCallback, StoreError,
};

use crate::payments::{ApplyError, PaymentOutcome, apply_trade_facts};
use crate::registry::ProviderApp;
use crate::state::AppState;
use crate::throttle::{Admission, Rate, SourceThrottle};

/// `POST /notify/{provider}/{app}`: the provider's main callback route.
#[utoipa::path(post, path = "/notify/{provider}/{app}", tag = "callbacks", params(("provider" = String, Path, description = "wechat or alipay"), ("app" = String, Path)), request_body(content = String, description = "WeChat XML or Alipay form, exactly as the provider sends it"), responses((status = 200, description = "The provider's acknowledgement (WeChat SUCCESS/FAIL XML, Alipay `success`/`failure`)"), (status = 413, description = "Body over the limit"), (status = 503, description = "Database unavailable: failure acknowledgement so the provider retries")))]
pub async fn payment_notify(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    request: HttpRequest,
    body: web::Payload,
) -> HttpResponse {
    let (provider, app) = path.into_inner();
    receive(&state, &provider, &app, "", &request, body).await
}

/// `POST /notify/{provider}/{app}/{route}`: a further route the provider declares (WeChat's
/// `refund`).
#[utoipa::path(post, path = "/notify/{provider}/{app}/{route}", tag = "callbacks", params(("provider" = String, Path), ("app" = String, Path), ("route" = String, Path, description = "a route the provider declares, e.g. `refund` for WeChat refund notifies")), request_body(content = String, description = "e.g. WeChat refund notify XML with encrypted req_info"), responses((status = 200, description = "The provider's acknowledgement"), (status = 404, description = "No such provider, app or route")))]
pub async fn routed_notify(
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
    request: HttpRequest,
    body: web::Payload,
) -> HttpResponse {
    let (provider, app, route) = path.into_inner();
    let suffix = format!("/{route}");
    receive(&state, &provider, &app, &suffix, &request, body).await
}

/// The verdict of one callback and what to answer.
struct Handled {
    verdict: CallbackVerdict,
    reason: Option<String>,
    order_id: Option<paygate_core::OrderId>,
    /// How it was taken, for the provider's acknowledgement.
    outcome: CallbackOutcome,
    /// Whether the callback row is already written (with the transition or an anomaly).
    stored: bool,
}

impl Handled {
    fn new(verdict: CallbackVerdict, accepted: bool) -> Self {
        Handled {
            verdict,
            reason: None,
            order_id: None,
            outcome: if accepted {
                CallbackOutcome::Accepted
            } else {
                CallbackOutcome::Rejected
            },
            stored: false,
        }
    }
    fn because(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
    fn for_order(mut self, id: &paygate_core::OrderId) -> Self {
        self.order_id = Some(id.clone());
        self
    }
    fn already_stored(mut self) -> Self {
        self.stored = true;
        self
    }
    /// Genuine but not matching our books: the provider chooses whether to stop or resend it.
    fn unmatched(mut self) -> Self {
        self.outcome = CallbackOutcome::Unmatched;
        self
    }
}

/// The callback being handled, kept in memory until its verdict is known.
struct Arrived {
    id: CallbackId,
    callback: NewCallback,
}

impl Arrived {
    /// The row to store for this callback with `handled`'s verdict.
    fn judged(&self, handled: &Handled) -> JudgedCallback {
        JudgedCallback {
            id: self.id.clone(),
            callback: self.callback.clone(),
            verdict: handled.verdict,
            reason: handled.reason.clone(),
            order_id: handled.order_id.clone(),
        }
    }
}

async fn receive(
    state: &AppState,
    provider: &str,
    app: &str,
    route: &str,
    request: &HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let Ok(provider) = ProviderKind::parse(provider) else {
        return HttpResponse::NotFound().finish();
    };
    let configured = AppName::parse(app)
        .ok()
        .and_then(|name| state.registry.get(provider, &name));
    let Some(app) = configured.cloned() else {
        return HttpResponse::NotFound().finish();
    };
    let Some(route) = app.provider.capabilities().callback_route(route) else {
        return HttpResponse::NotFound().finish();
    };
    let kind = match route.purpose {
        CallbackPurpose::Payment => CallbackKind::Payment,
        CallbackPurpose::Refund => CallbackKind::Refund,
    };
    let limit = state.limits.notify_body_bytes;
    let (body, too_large) = match read_limited(request, payload, limit).await {
        Ok(body) => (body, None),
        Err(BodyError::TooLarge { read, reason }) => (read, Some(reason)),
        Err(BodyError::Unreadable(error)) => {
            // A stalled or broken body: nothing a provider sent, nothing to record (the body
            // deadline turns this answer into 408).
            tracing::debug!(%error, "callback body unreadable");
            return HttpResponse::BadRequest().finish();
        }
    };
    let body = &body[..];
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok());
    let arrived = Arrived {
        id: CallbackId::generate(),
        callback: NewCallback {
            provider,
            app: app.name.to_string(),
            kind,
            received_at: chrono::Utc::now(),
            body: body.to_vec(),
            content_type: content_type.map(str::to_owned),
        },
    };

    let handled = if let Some(reason) = too_large {
        let mut h = Handled::new(CallbackVerdict::TooLarge, false).because(reason);
        h.outcome = CallbackOutcome::TooLarge;
        h
    } else {
        let headers: Vec<(&str, &str)> = request
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
            .collect();
        let inbound = InboundCallback {
            method: request.method().as_str(),
            purpose: route.purpose,
            query: request.query_string(),
            headers: &headers,
            body,
        };
        match app.provider.verify_callback(&inbound) {
            Err(error) => rejected(&error),
            Ok(notice) => match handle_notice(state, &app, kind, notice, &arrived).await {
                Ok(handled) => handled,
                Err(HandleError::Store(error)) => return store_down(state, &app, &error),
                Err(HandleError::Provider(detail)) => {
                    Handled::new(CallbackVerdict::Error, false).because(detail)
                }
            },
        }
    };

    state
        .metrics
        .callbacks
        .with_label_values(&[provider.as_str(), handled.verdict.as_str()])
        .inc();
    if !handled.stored {
        if handled.verdict.is_unverified() {
            // Anyone can send these: a budget per source keeps the audit rows and warnings
            // they cost bounded (every one is still counted and answered).
            let source = request
                .peer_addr()
                .map_or(IpAddr::from([0, 0, 0, 0]), |peer| peer.ip());
            match state.unverified_callbacks.admit(source) {
                Admission::Suppress => {
                    state
                        .metrics
                        .callbacks_unrecorded
                        .with_label_values(&[provider.as_str(), handled.verdict.as_str()])
                        .inc();
                    return ack(&app, handled.outcome);
                }
                Admission::Admit { suppressed } => tracing::warn!(
                    %source,
                    verdict = handled.verdict.as_str(),
                    reason = handled.reason.as_deref().unwrap_or_default(),
                    suppressed_since_last = suppressed,
                    "callback rejected"
                ),
            }
        }
        // Every other callback, and unverifiable ones within budget, leaves an audit row
        // before it is answered.
        let judged = arrived.judged(&handled);
        if let Err(error) = state.store.record_judged_callback(judged).await {
            return store_down(state, &app, &error);
        }
    }
    ack(&app, handled.outcome)
}

/// Why a callback body was not read whole.
enum BodyError {
    /// Over the limit: what was read of it (at most the limit) and why it was refused.
    TooLarge { read: Bytes, reason: String },
    /// The connection failed or the body deadline passed.
    Unreadable(PayloadError),
}

/// Reads the body up to `limit` bytes and never more: a declared `Content-Length` over the
/// limit is refused before any of the body is read, and a body that turns out longer (chunked,
/// or lying about its length) is cut off at the limit.
async fn read_limited(
    request: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, BodyError> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(declared) = declared.filter(|&d| d > limit as u64) {
        return Err(BodyError::TooLarge {
            read: Bytes::new(),
            reason: format!("Content-Length {declared} exceeds the {limit}-byte limit"),
        });
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(BodyError::Unreadable)?;
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Err(BodyError::TooLarge {
                read: body.freeze(),
                reason: format!("body exceeds the {limit}-byte limit"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The budget of audit rows and warnings for unverifiable callbacks: per source a burst of 20,
/// then one a second; all sources together a burst of 100, then ten a second; at most 10,000
/// sources tracked. A flood of garbage thus stores at most about 2.5 MB a minute, however many
/// addresses it comes from.
pub fn unverified_callback_throttle() -> SourceThrottle {
    SourceThrottle::new(
        Rate {
            burst: 20.0,
            per_second: 1.0,
        },
        Rate {
            burst: 100.0,
            per_second: 10.0,
        },
        10_000,
    )
}

fn rejected(error: &NotifyError) -> Handled {
    let verdict = match error {
        NotifyError::BadSignature | NotifyError::Decrypt(_) => CallbackVerdict::BadSignature,
        NotifyError::TooLarge(_) => CallbackVerdict::TooLarge,
        NotifyError::Malformed(_)
        | NotifyError::ForbiddenDtd
        | NotifyError::BadField { .. }
        | NotifyError::ProviderFailure(_) => CallbackVerdict::Malformed,
    };
    Handled::new(verdict, false).because(error.to_string())
}

enum HandleError {
    Store(StoreError),
    Provider(String),
}

impl From<StoreError> for HandleError {
    fn from(error: StoreError) -> Self {
        HandleError::Store(error)
    }
}

impl From<ApplyError> for HandleError {
    fn from(error: ApplyError) -> Self {
        match error {
            ApplyError::Store(e) => HandleError::Store(e),
            ApplyError::Provider(e) => HandleError::Provider(e.to_string()),
        }
    }
}

async fn handle_notice(
    state: &AppState,
    app: &ProviderApp,
    kind: CallbackKind,
    notice: Notice,
    arrived: &Arrived,
) -> Result<Handled, HandleError> {
    match (kind, notice) {
        (CallbackKind::Payment, Notice::Payment(facts)) => {
            handle_trade(state, app, facts, arrived).await
        }
        (CallbackKind::Refund, Notice::Refund(facts)) => {
            handle_refund(state, app, facts, arrived).await
        }
        (_, _) => Ok(Handled::new(CallbackVerdict::Malformed, false)
            .because("notice kind does not match the endpoint")),
    }
}

async fn handle_trade(
    state: &AppState,
    app: &ProviderApp,
    facts: TradeFacts,
    arrived: &Arrived,
) -> Result<Handled, HandleError> {
    let order = match OutTradeNo::parse(facts.out_trade_no.as_str()) {
        Ok(no) => found(state.store.order_by_out_trade_no(&app.name, &no).await)?,
        Err(_) => None,
    };
    let Some(order) = order else {
        let handled = Handled::new(CallbackVerdict::UnknownOrder, true)
            .unmatched()
            .because(format!(
                "no order {:?} for app {}",
                facts.out_trade_no, app.name
            ));
        let detail = format!(
            "signed notify for unknown out_trade_no {:?}",
            facts.out_trade_no
        );
        anomaly(
            state,
            app,
            None,
            AnomalyKind::UnknownOrder,
            detail,
            arrived,
            &handled,
        )
        .await?;
        return Ok(handled.already_stored());
    };
    let order_id = order.id.clone();
    // Stored with the compare-and-set if this notify is the one that marks the order paid.
    let accepted =
        arrived.judged(&Handled::new(CallbackVerdict::Accepted, true).for_order(&order_id));
    let outcome = apply_trade_facts(
        &state.store,
        app.provider.as_ref(),
        order,
        &facts,
        Some(accepted),
    )
    .await?;
    let handled = match outcome {
        PaymentOutcome::Paid(_) => {
            state
                .metrics
                .transitions
                .with_label_values(&["payment_confirmed"])
                .inc();
            Handled::new(CallbackVerdict::Accepted, true).already_stored()
        }
        PaymentOutcome::PaidAfterClose(_) => {
            state
                .metrics
                .transitions
                .with_label_values(&["late_payment_confirmed"])
                .inc();
            Handled::new(CallbackVerdict::Accepted, true)
                .because("closed order confirmed paid by provider query")
        }
        PaymentOutcome::AlreadyPaid(_) => {
            Handled::new(CallbackVerdict::Duplicate, true).because("order already paid")
        }
        PaymentOutcome::Mismatch(mismatch) => {
            let handled = Handled::new(CallbackVerdict::Mismatch, true)
                .unmatched()
                .because(mismatch.to_string())
                .for_order(&order_id);
            anomaly(
                state,
                app,
                Some(&order_id),
                AnomalyKind::PaymentMismatch,
                mismatch.to_string(),
                arrived,
                &handled,
            )
            .await?;
            handled.already_stored()
        }
        PaymentOutcome::NotPaid(trade_state) => Handled::new(CallbackVerdict::Accepted, true)
            .because(format!("trade state {trade_state:?}: nothing to apply")),
    };
    Ok(handled.for_order(&order_id))
}

async fn handle_refund(
    state: &AppState,
    app: &ProviderApp,
    facts: RefundFacts,
    arrived: &Arrived,
) -> Result<Handled, HandleError> {
    let refund = match OutRefundNo::parse(facts.out_refund_no.as_str()) {
        Ok(no) => found(state.store.refund_by_out_refund_no(&no).await)?,
        Err(_) => None,
    };
    let Some(refund) = refund else {
        let handled = Handled::new(CallbackVerdict::UnknownOrder, true)
            .unmatched()
            .because("unknown out_refund_no");
        let detail = format!(
            "signed refund notify for unknown out_refund_no {:?}",
            facts.out_refund_no
        );
        anomaly(
            state,
            app,
            None,
            AnomalyKind::UnknownOrder,
            detail,
            arrived,
            &handled,
        )
        .await?;
        return Ok(handled.already_stored());
    };
    let order = found(state.store.order(&refund.order_id).await)?;
    let Some(order) =
        order.filter(|o| o.app == app.name && o.out_trade_no.as_str() == facts.out_trade_no)
    else {
        let handled = Handled::new(CallbackVerdict::Mismatch, true)
            .unmatched()
            .because("refund belongs to another order");
        let detail = "refund notify names another order or app".to_owned();
        let kind = AnomalyKind::StateDisagreement;
        anomaly(
            state,
            app,
            Some(&refund.order_id),
            kind,
            detail,
            arrived,
            &handled,
        )
        .await?;
        return Ok(handled.already_stored());
    };
    if facts.amount.is_some_and(|amount| amount != refund.amount) {
        let handled = Handled::new(CallbackVerdict::Mismatch, true)
            .unmatched()
            .because("refund amount differs")
            .for_order(&order.id);
        let detail = format!(
            "refund amount {:?} differs from requested {}",
            facts.amount, refund.amount
        );
        let kind = AnomalyKind::StateDisagreement;
        anomaly(state, app, Some(&order.id), kind, detail, arrived, &handled).await?;
        return Ok(handled.already_stored());
    }
    let outcome = crate::refunds::apply_refund_facts(state, &refund, &facts).await?;
    let verdict = if outcome {
        CallbackVerdict::Accepted
    } else {
        CallbackVerdict::Duplicate
    };
    Ok(Handled::new(verdict, true).for_order(&order.id))
}

/// `NotFound` as `None`, so "no such order" is a verdict rather than an error.
fn found<T>(result: Result<T, StoreError>) -> Result<Option<T>, StoreError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Stores the callback with its verdict, then the anomaly it revealed (which points at it).
async fn anomaly(
    state: &AppState,
    app: &ProviderApp,
    order_id: Option<&paygate_core::OrderId>,
    kind: AnomalyKind,
    detail: String,
    arrived: &Arrived,
    handled: &Handled,
) -> Result<(), StoreError> {
    tracing::warn!(app = %app.name, kind = kind.as_str(), %detail, "callback anomaly");
    let callback_id = state
        .store
        .record_judged_callback(arrived.judged(handled))
        .await?;
    let order = match order_id {
        Some(id) => Some(state.store.order(id).await?),
        None => None,
    };
    crate::payments::record_anomaly(
        &state.store,
        app.kind(),
        app.name.as_str(),
        order.as_ref(),
        kind,
        detail,
        Some(callback_id),
    )
    .await
    .map(|_| ())
}

fn store_down(state: &AppState, app: &ProviderApp, error: &StoreError) -> HttpResponse {
    tracing::error!(%error, app = %app.name, "database unavailable while handling a callback");
    state
        .metrics
        .callbacks
        .with_label_values(&[app.kind().as_str(), "error"])
        .inc();
    ack(app, CallbackOutcome::RetryLater)
}

fn ack(app: &ProviderApp, outcome: CallbackOutcome) -> HttpResponse {
    let CallbackAck {
        status,
        content_type,
        body,
    } = app.provider.acknowledge(outcome);
    // A provider's status is taken as given; one that is no HTTP status is a bug there,
    // answered as 500 so that the provider retries.
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status)
        .content_type(content_type)
        .body(body)
}
