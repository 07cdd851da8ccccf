//! The merchant's order API: create, read, sync, close, refund.

use std::net::IpAddr;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Duration, Utc};
use paygate_core::{
    AppName, BuyerField, BuyerId, Channel, ChannelSupport, CreatePayment, Currency, Description,
    Fen, OpenId, Order, OrderId, OrderStatus, OutRefundNo, OutTradeNo, PayParams, PayerField,
    ProviderError, ProviderKind, RefundReason, ReturnUrl, Subject,
};
use paygate_store::{NewOrder, Refund, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::auth::{Principal, Role};
use crate::error::{ApiError, ErrorCode};
use crate::payments::{PaymentOutcome, apply_trade_facts};
use crate::reconciler::CloseOutcome;
use crate::registry::ProviderApp;
use crate::state::AppState;

/// Default time an order stays payable.
const DEFAULT_EXPIRY_SECONDS: u32 = 30 * 60;
/// WeChat's shortest `time_expire` interval is one minute; Alipay's `timeout_express` one too.
const MIN_EXPIRY_SECONDS: u32 = 60;
/// Alipay's longest `timeout_express` is 15 days.
const MAX_EXPIRY_SECONDS: u32 = 15 * 24 * 3600;

/// `POST /v1/orders` body. Unknown fields are refused so a typo (`ammount`) is not silently
/// ignored.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrderRequest {
    /// `wechat` or `alipay`.
    #[schema(value_type = String)]
    pub provider: ProviderKind,
    /// Configured app name; optional when the provider has one app.
    #[schema(value_type = Option<String>)]
    pub app: Option<AppName>,
    /// Payment product.
    #[schema(value_type = String)]
    pub channel: Channel,
    /// Merchant order number; generated when absent (then retries are not idempotent).
    #[schema(value_type = Option<String>)]
    pub out_trade_no: Option<OutTradeNo>,
    /// Amount in fen, 1 … 10,000,000,000 (and the provider's own cap).
    pub amount: i64,
    /// Only `CNY`.
    pub currency: Option<String>,
    /// Item name shown to the buyer.
    pub subject: String,
    /// Longer description.
    pub description: Option<String>,
    /// WeChat openid (jsapi, mini_program).
    pub openid: Option<String>,
    /// Alipay buyer id (mini_program).
    pub buyer_id: Option<String>,
    /// The buyer's IP.
    #[schema(value_type = Option<String>)]
    pub client_ip: Option<IpAddr>,
    /// How long the order stays payable; default 1800.
    pub expires_in_seconds: Option<u32>,
    /// Browser return URL (Alipay wap/page).
    pub return_url: Option<String>,
    /// Free-form JSON object kept with the order as sent (numbers keep every digit).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Box<RawValue>>,
}

/// An order as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrderView {
    #[schema(value_type = String)]
    id: OrderId,
    #[schema(value_type = String)]
    provider: ProviderKind,
    #[schema(value_type = String)]
    app: AppName,
    #[schema(value_type = String)]
    channel: Channel,
    #[schema(value_type = String)]
    out_trade_no: OutTradeNo,
    #[schema(value_type = String)]
    status: OrderStatus,
    #[schema(value_type = i64)]
    amount: Fen,
    #[schema(value_type = String)]
    currency: Currency,
    #[schema(value_type = i64)]
    refunded_amount: Fen,
    subject: String,
    description: Option<String>,
    provider_trade_no: Option<String>,
    payer_id: Option<String>,
    /// What the buyer's client needs, tagged by `type` (`wechat_jsapi`, `wechat_app`, `code_url`,
    /// `mweb_url`, `alipay_order_string`, `redirect_url`, `qr_code`, `trade_no`). A WeChat app on
    /// API v3 signs with RSA: its `wechat_jsapi` has `signType` `RSA` and a base64 SHA256withRSA
    /// `paySign`, its `wechat_app` an RSA `sign`; a v2 app's are `MD5`/`HMAC-SHA256` hex. Pass
    /// them to the WeChat client unchanged.
    #[schema(value_type = Option<Object>)]
    pay_params: Option<PayParams>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<Box<RawValue>>,
    created_at: DateTime<Utc>,
    paid_at: Option<DateTime<Utc>>,
    closed_at: Option<DateTime<Utc>>,
    expires_at: DateTime<Utc>,
}

impl From<Order> for OrderView {
    fn from(o: Order) -> Self {
        OrderView {
            metadata: o.metadata.and_then(|m| RawValue::from_string(m).ok()),
            id: o.id,
            provider: o.provider,
            app: o.app,
            channel: o.channel,
            out_trade_no: o.out_trade_no,
            status: o.status,
            amount: o.amount,
            currency: o.currency,
            refunded_amount: o.refunded_amount,
            subject: o.subject,
            description: o.description,
            provider_trade_no: o.provider_trade_no,
            payer_id: o.payer_id,
            pay_params: o.pay_params,
            created_at: o.created_at,
            paid_at: o.paid_at,
            closed_at: o.closed_at,
            expires_at: o.expires_at,
        }
    }
}

/// A refund as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RefundView {
    #[schema(value_type = String)]
    id: paygate_core::RefundId,
    #[schema(value_type = String)]
    order_id: OrderId,
    #[schema(value_type = String)]
    out_refund_no: OutRefundNo,
    #[schema(value_type = i64)]
    amount: Fen,
    reason: Option<String>,
    #[schema(value_type = String)]
    status: paygate_core::RefundStatus,
    provider_refund_id: Option<String>,
    created_at: DateTime<Utc>,
    succeeded_at: Option<DateTime<Utc>>,
}

impl From<Refund> for RefundView {
    fn from(r: Refund) -> Self {
        RefundView {
            id: r.id,
            order_id: r.order_id,
            out_refund_no: r.out_refund_no,
            amount: r.amount,
            reason: r.reason,
            status: r.status,
            provider_refund_id: r.provider_refund_id,
            created_at: r.created_at,
            succeeded_at: r.succeeded_at,
        }
    }
}

fn validated_app<'a>(
    state: &'a AppState,
    principal: &Principal,
    provider: ProviderKind,
    app: Option<&AppName>,
) -> Result<&'a ProviderApp, ApiError> {
    let found = match app {
        Some(name) => state.registry.get(provider, name).ok_or_else(|| {
            ApiError::invalid(
                ErrorCode::UnknownApp,
                format!("no {provider} app named {name} is configured"),
            )
        })?,
        None => state.registry.sole(provider).ok_or_else(|| {
            ApiError::invalid(
                ErrorCode::AppRequired,
                format!("name the {provider} app: more or fewer than one is configured"),
            )
        })?,
    };
    principal.require_app(&found.name)?;
    Ok(found)
}

/// `POST /v1/orders`.
#[utoipa::path(post, path = "/v1/orders", tag = "orders", request_body = CreateOrderRequest, responses((status = 201, description = "Created", body = OrderView), (status = 200, description = "Idempotent retry: the same order", body = OrderView), (status = 409, description = "out_trade_no reused with another body"), (status = 422, description = "Invalid request"), (status = 502, description = "Provider refused"), (status = 504, description = "Provider outcome unknown; retry with the same out_trade_no")), security(("bearer" = [])))]
pub async fn create_order(
    state: web::Data<AppState>,
    principal: Principal,
    body: web::Json<CreateOrderRequest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Role::Merchant)?;
    let request = body.into_inner();
    let app = validated_app(&state, &principal, request.provider, request.app.as_ref())?.clone();
    let checked = check_request(&app, &request)?;

    let out_trade_no = request
        .out_trade_no
        .clone()
        .unwrap_or_else(OutTradeNo::generate);
    app.provider
        .capabilities()
        .out_trade_no
        .check(&out_trade_no)
        .map_err(|reason| ApiError::invalid(ErrorCode::InvalidOutTradeNo, reason))?;
    let request_hash = fingerprint(&app, &out_trade_no, &request, &checked)?;
    let now = Utc::now();
    let mut new_order = NewOrder {
        provider: app.kind(),
        app: app.name.clone(),
        channel: request.channel,
        out_trade_no: out_trade_no.clone(),
        amount: checked.amount,
        currency: Currency::Cny,
        subject: checked.subject.into_string(),
        description: checked.description.map(Description::into_string),
        payer_id: checked.payer_id.clone(),
        pay_params: None,
        metadata: checked.metadata.clone(),
        request_hash: request_hash.clone(),
        created_at: now,
        expires_at: now + Duration::seconds(i64::from(checked.expires_in)),
    };
    let mut payment = payment_request(&state, &app, &request, &new_order, checked.return_url);
    // What the provider would refuse without being asked is refused before anything is stored.
    app.provider
        .check_payment_request(&payment)
        .map_err(|error| provider_failed(&state, &app, error))?;
    let signs_locally = checked.channel.signs_locally;
    if signs_locally {
        // Nothing reaches the provider, so sign first and store the order with its pay params
        // in one write. A retry that finds the order stored is answered from the stored row.
        let created = app
            .provider
            .create_payment(&payment)
            .await
            .map_err(|error| provider_failed(&state, &app, error))?;
        new_order.pay_params = Some(created.pay_params);
    }
    let (order, created) = match state.store.insert_order(new_order).await {
        Ok(order) if signs_locally => {
            return Ok(HttpResponse::Created().json(OrderView::from(order)));
        }
        Ok(order) => (order, true),
        Err(StoreError::DuplicateOrder {
            existing,
            request_hash: stored_hash,
        }) => {
            if stored_hash != request_hash {
                return Err(ApiError::conflict(
                    ErrorCode::OutTradeNoReused,
                    "out_trade_no already names an order with different parameters",
                ));
            }
            let existing = *existing;
            if existing.pay_params.is_some() || existing.status != OrderStatus::Pending {
                return Ok(HttpResponse::Ok().json(OrderView::from(existing)));
            }
            // A previous attempt did not get the provider's answer: ask again with the
            // identical parameters, which both providers treat as the same trade.
            (existing, false)
        }
        Err(error) => return Err(error.into()),
    };

    // The same request (its fingerprint matched), but a retry keeps the first attempt's expiry.
    payment.expires_at = order.expires_at;
    match app.provider.create_payment(&payment).await {
        Ok(created_payment) => {
            let order = state
                .store
                .set_pay_params(
                    &order.id,
                    &created_payment.pay_params,
                    created_payment.provider_trade_no.clone(),
                )
                .await?;
            let view = OrderView::from(order);
            Ok(if created {
                HttpResponse::Created().json(view)
            } else {
                HttpResponse::Ok().json(view)
            })
        }
        Err(error) => {
            if matches!(
                error,
                ProviderError::Refused { .. } | ProviderError::AlreadyClosed
            ) {
                // A definite refusal: the order can never be paid under this number.
                crate::reconciler::close_order_locally(&state.store, &order, None).await?;
            }
            Err(provider_failed(&state, &app, error))
        }
    }
}

/// What the provider is asked for a new order, from the values about to be stored.
fn payment_request(
    state: &AppState,
    app: &ProviderApp,
    request: &CreateOrderRequest,
    order: &NewOrder,
    return_url: Option<ReturnUrl>,
) -> CreatePayment {
    CreatePayment {
        channel: order.channel,
        out_trade_no: order.out_trade_no.clone(),
        amount: order.amount,
        currency: order.currency,
        subject: order.subject.clone(),
        description: order.description.clone(),
        payer_id: order.payer_id.clone(),
        client_ip: request.client_ip,
        expires_at: order.expires_at,
        notify_url: state.notify_url(app),
        return_url: return_url.map(ReturnUrl::into_string),
    }
}

/// Counts a failed create in the metrics and turns it into the API's error.
fn provider_failed(state: &AppState, app: &ProviderApp, error: ProviderError) -> ApiError {
    let kind = if error.outcome_unknown() {
        "unknown"
    } else {
        "refused"
    };
    state
        .metrics
        .provider_errors
        .with_label_values(&[app.kind().as_str(), "create", kind])
        .inc();
    error.into()
}

/// A create request parsed into domain values: what is stored and sent to the provider.
struct CheckedRequest {
    /// What the app's channel needs and how it is created.
    channel: ChannelSupport,
    amount: Fen,
    subject: Subject,
    description: Option<Description>,
    return_url: Option<ReturnUrl>,
    payer_id: Option<String>,
    expires_in: u32,
    metadata: Option<String>,
}

fn check_request(
    app: &ProviderApp,
    request: &CreateOrderRequest,
) -> Result<CheckedRequest, ApiError> {
    let capabilities = app.provider.capabilities();
    let channel = capabilities
        .channel(request.channel)
        .cloned()
        .ok_or_else(|| {
            ApiError::invalid(
                ErrorCode::UnsupportedChannel,
                format!(
                    "{} app {} does not offer {}",
                    app.kind(),
                    app.name,
                    request.channel
                ),
            )
        })?;
    if request.amount < 1 {
        return Err(ApiError::invalid(
            ErrorCode::InvalidAmount,
            "amount is in fen and must be at least 1",
        ));
    }
    let max_amount = capabilities.max_order_amount;
    if request.amount > max_amount.get() {
        return Err(ApiError::invalid(
            ErrorCode::AmountTooLarge,
            format!("{} takes at most {max_amount} per order", app.kind()),
        ));
    }
    let amount = Fen::new(request.amount)
        .map_err(|e| ApiError::invalid(ErrorCode::InvalidAmount, e.to_string()))?;
    if let Some(currency) = &request.currency {
        Currency::parse(currency)
            .map_err(|e| ApiError::invalid(ErrorCode::UnsupportedCurrency, e.to_string()))?;
    }
    let subject = Subject::parse(request.subject.as_str())?;
    let description = request
        .description
        .as_deref()
        .map(Description::parse)
        .transpose()?;
    let return_url = request
        .return_url
        .as_deref()
        .map(ReturnUrl::parse)
        .transpose()?;
    // Checked whenever given, so a malformed id is refused even where the channel ignores it.
    let openid = request.openid.as_deref().map(OpenId::parse).transpose()?;
    let buyer_id = request
        .buyer_id
        .as_deref()
        .map(BuyerId::parse)
        .transpose()?;
    let missing = |field: BuyerField| {
        ApiError::invalid(
            ErrorCode::missing(field),
            format!(
                "{} {} orders need the buyer's {}",
                app.kind(),
                request.channel,
                field.request_field()
            ),
        )
    };
    let payer_id = match channel.payer {
        Some(PayerField::OpenId) => Some(
            openid
                .ok_or_else(|| missing(BuyerField::OpenId))?
                .into_string(),
        ),
        Some(PayerField::BuyerId) => Some(
            buyer_id
                .ok_or_else(|| missing(BuyerField::BuyerId))?
                .into_string(),
        ),
        None => None,
    };
    if channel.client_ip_required && request.client_ip.is_none() {
        return Err(missing(BuyerField::ClientIp));
    }
    let expires_in = request.expires_in_seconds.unwrap_or(DEFAULT_EXPIRY_SECONDS);
    if !(MIN_EXPIRY_SECONDS..=MAX_EXPIRY_SECONDS).contains(&expires_in) {
        return Err(ApiError::invalid(
            ErrorCode::InvalidExpiry,
            format!("expires_in_seconds must be {MIN_EXPIRY_SECONDS}–{MAX_EXPIRY_SECONDS}"),
        ));
    }
    // Kept as sent (white space between tokens aside): parsing into a `Value` would turn
    // integers beyond 64 bits into floats.
    let metadata = match request
        .metadata
        .as_deref()
        .map(|raw| compact_json(raw.get()))
    {
        None => None,
        Some(text) if !text.starts_with('{') => {
            return Err(ApiError::invalid(
                ErrorCode::InvalidMetadata,
                "metadata must be a JSON object",
            ));
        }
        Some(text) if text.len() > 4096 => {
            return Err(ApiError::invalid(
                ErrorCode::InvalidMetadata,
                "metadata must be at most 4096 bytes of JSON",
            ));
        }
        Some(text) => Some(text),
    };
    Ok(CheckedRequest {
        channel,
        amount,
        subject,
        description,
        return_url,
        payer_id,
        expires_in,
        metadata,
    })
}

/// A create request with its defaults applied: what the order is made of. Its digest is the
/// idempotency fingerprint, so a retry that spells out a default (`"currency":"CNY"`, the only
/// app's name, the default expiry) is the same request as one that leaves it out.
#[derive(Serialize)]
struct NormalisedCreate<'a> {
    provider: ProviderKind,
    app: &'a AppName,
    channel: Channel,
    out_trade_no: &'a OutTradeNo,
    amount: Fen,
    currency: Currency,
    subject: &'a str,
    description: Option<&'a str>,
    payer_id: Option<&'a str>,
    client_ip: Option<IpAddr>,
    expires_in_seconds: u32,
    return_url: Option<&'a str>,
    metadata: Option<&'a str>,
}

/// The create request's fingerprint: a retry with the same `out_trade_no` must ask for the same
/// order to be served it.
fn fingerprint(
    app: &ProviderApp,
    out_trade_no: &OutTradeNo,
    request: &CreateOrderRequest,
    checked: &CheckedRequest,
) -> Result<String, ApiError> {
    let normalised = NormalisedCreate {
        provider: app.kind(),
        app: &app.name,
        channel: request.channel,
        out_trade_no,
        amount: checked.amount,
        currency: Currency::Cny,
        subject: checked.subject.as_str(),
        description: checked.description.as_ref().map(Description::as_str),
        payer_id: checked.payer_id.as_deref(),
        client_ip: request.client_ip,
        expires_in_seconds: checked.expires_in,
        return_url: checked.return_url.as_ref().map(ReturnUrl::as_str),
        metadata: checked.metadata.as_deref(),
    };
    let canonical =
        serde_json::to_vec(&normalised).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(hex::encode(Sha256::digest(&canonical)))
}

/// JSON text without the white space between tokens; strings, numbers and key order are kept
/// exactly, so a retry serialised with other indentation is the same metadata.
fn compact_json(raw: &str) -> String {
    let mut compact = String::with_capacity(raw.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in raw.chars() {
        if in_string {
            compact.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            in_string = c == '"';
            compact.push(c);
        }
    }
    compact
}

async fn visible_order(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<Order, ApiError> {
    let not_found = || ApiError::NotFound(format!("no order {id}"));
    let id = OrderId::parse(id).map_err(|_| not_found())?;
    let order = match state.store.order(&id).await {
        Err(StoreError::NotFound { .. }) => return Err(not_found()),
        other => other?,
    };
    if !principal.can_see(&order.app) {
        return Err(not_found());
    }
    Ok(order)
}

fn app_of<'a>(state: &'a AppState, order: &Order) -> Result<&'a ProviderApp, ApiError> {
    state
        .registry
        .get(order.provider, &order.app)
        .ok_or_else(|| {
            ApiError::conflict(
                ErrorCode::AppNotConfigured,
                format!("app {} is no longer configured", order.app),
            )
        })
}

/// `GET /v1/orders/{id}`.
#[utoipa::path(get, path = "/v1/orders/{id}", tag = "orders", params(("id" = String, Path, description = "Order id (ord_…)")), responses((status = 200, body = OrderView), (status = 404, description = "No such order")), security(("bearer" = [])))]
pub async fn get_order(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let order = visible_order(&state, &principal, &id).await?;
    Ok(HttpResponse::Ok().json(OrderView::from(order)))
}

/// `POST /v1/orders/{id}/sync`: asks the provider now and applies what it says, with the
/// same checks as a notify.
#[utoipa::path(post, path = "/v1/orders/{id}/sync", tag = "orders", params(("id" = String, Path)), responses((status = 200, body = OrderView), (status = 409, description = "The provider reports facts that do not match the order")), security(("bearer" = [])))]
pub async fn sync_order(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Role::Merchant)?;
    let order = visible_order(&state, &principal, &id).await?;
    let app = app_of(&state, &order)?.clone();
    let facts = app
        .provider
        .query_payment(&paygate_core::TradeRef::of(&order))
        .await?;
    let order_id = order.id.clone();
    let outcome =
        apply_trade_facts(&state.store, app.provider.as_ref(), order, &facts, None).await?;
    if let PaymentOutcome::Mismatch(mismatch) = outcome {
        return Err(ApiError::conflict(
            ErrorCode::ProviderMismatch,
            mismatch.to_string(),
        ));
    }
    let order = state.store.order(&order_id).await?;
    Ok(HttpResponse::Ok().json(OrderView::from(order)))
}

/// `POST /v1/orders/{id}/close`: closes at the provider first, then locally. A provider that
/// says the trade is paid wins: the order becomes paid, never closed.
#[utoipa::path(post, path = "/v1/orders/{id}/close", tag = "orders", params(("id" = String, Path)), responses((status = 200, body = OrderView), (status = 409, description = "Not pending, or already paid at the provider")), security(("bearer" = [])))]
pub async fn close_order(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Role::Merchant)?;
    let order = visible_order(&state, &principal, &id).await?;
    if order.status != OrderStatus::Pending {
        return Err(ApiError::conflict(
            ErrorCode::NotClosable,
            format!("order is {}", order.status),
        ));
    }
    let app = app_of(&state, &order)?.clone();
    match crate::reconciler::close_at_provider_first(&state, &app, &order).await? {
        CloseOutcome::Closed | CloseOutcome::Lost => {}
        CloseOutcome::Paid => {
            return Err(ApiError::conflict(
                ErrorCode::AlreadyPaid,
                "the buyer has paid; the order is now paid",
            ));
        }
        CloseOutcome::Unresolved(error) => return Err(error.into()),
    }
    let order = state.store.order(&order.id).await?;
    Ok(HttpResponse::Ok().json(OrderView::from(order)))
}

/// `POST /v1/orders/{id}/refunds` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRefundRequest {
    /// Amount to refund in fen.
    pub amount: i64,
    /// Shown to the buyer.
    pub reason: Option<String>,
    /// Idempotency key; generated when absent.
    #[schema(value_type = Option<String>)]
    pub out_refund_no: Option<OutRefundNo>,
}

/// `POST /v1/orders/{id}/refunds`.
#[utoipa::path(post, path = "/v1/orders/{id}/refunds", tag = "refunds", params(("id" = String, Path)), request_body = CreateRefundRequest, responses((status = 201, body = RefundView), (status = 200, description = "Idempotent retry: the same refund", body = RefundView), (status = 409, description = "Not refundable, exceeds the paid amount, or out_refund_no reused")), security(("bearer" = [])))]
pub async fn create_refund(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: web::Json<CreateRefundRequest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Role::Merchant)?;
    let request = body.into_inner();
    let order = visible_order(&state, &principal, &id).await?;
    if request.amount < 1 {
        return Err(ApiError::invalid(
            ErrorCode::InvalidAmount,
            "refund amount is in fen and must be at least 1",
        ));
    }
    let amount = Fen::new(request.amount)
        .map_err(|e| ApiError::invalid(ErrorCode::InvalidAmount, e.to_string()))?;
    let reason = request.reason.map(RefundReason::parse).transpose()?;
    let app = app_of(&state, &order)?.clone();
    let out_refund_no = request.out_refund_no.unwrap_or_else(OutRefundNo::generate);
    let (refund, created) = crate::refunds::start_refund(
        &state,
        &app,
        &order,
        out_refund_no,
        amount,
        reason.map(RefundReason::into_string),
    )
    .await?;
    let view = RefundView::from(refund);
    Ok(if created {
        HttpResponse::Created().json(view)
    } else {
        HttpResponse::Ok().json(view)
    })
}

/// `GET /v1/orders/{id}/refunds` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RefundList {
    /// The order's refunds, oldest first.
    pub data: Vec<RefundView>,
}

/// `GET /v1/orders` answer: one page of orders.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrderList {
    /// The orders, newest first.
    pub data: Vec<OrderView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// `GET /v1/orders/{id}/refunds`.
#[utoipa::path(get, path = "/v1/orders/{id}/refunds", tag = "refunds", params(("id" = String, Path)), responses((status = 200, body = RefundList, description = "The order's refunds")), security(("bearer" = [])))]
pub async fn list_refunds(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let order = visible_order(&state, &principal, &id).await?;
    let refunds = state.store.refunds_for_order(&order.id).await?;
    let data = refunds.into_iter().map(RefundView::from).collect();
    Ok(HttpResponse::Ok().json(RefundList { data }))
}
