//! `ApiError`: the only place an error becomes an HTTP status. Every response body is
//! `{"error":{"code","message"}}`, with a stable machine-readable `code` merchants can switch
//! on and a message for people. Internal details (SQL, provider bodies, keys) stay in the logs.
//!
//! Every code the API can emit is a variant of [`ErrorCode`], which carries its HTTP status and
//! what the caller should do. `/openapi.json` and the table in docs/api.md are rendered from it,
//! so a code cannot be emitted without being documented.

use std::borrow::Cow;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use paygate_core::ProviderError;
use serde::Serialize;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{RefOr, schema::SchemaType};

/// Declares [`ErrorCode`] with its wire name, HTTP status and advice in one table, so the list
/// of codes, their statuses and their documentation cannot disagree.
macro_rules! error_codes {
    ($($(#[doc = $doc:literal])+ $variant:ident = $code:literal, $status:ident, $action:literal;)+) => {
        /// A stable error code of the API: what `error.code` in an error body can be.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl ErrorCode {
            /// Every code, in the order the documentation lists them.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            /// The code as it appears in the response body.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)+
                }
            }

            /// The HTTP status every response with this code has.
            pub const fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status,)+
                }
            }

            /// What the code means, from its doc comment.
            pub fn meaning(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => concat!($($doc),+).trim(),)+
                }
            }

            /// What the caller should do about it.
            pub const fn action(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $action,)+
                }
            }
        }
    };
}

error_codes! {
    /// The body is not JSON at all (broken syntax, truncated).
    InvalidJson = "invalid_json", BAD_REQUEST,
        "Fix the request body; do not retry it unchanged.";
    /// No `Authorization: Bearer` header, or the key is unknown or revoked.
    Unauthorized = "unauthorized", UNAUTHORIZED,
        "Send a valid API key; do not retry with the same key.";
    /// The key's role or app scope does not allow this call, or WeChat blocked the user as
    /// high-risk (login).
    Forbidden = "forbidden", FORBIDDEN,
        "Use a key with the right role and app scope (see Roles); not retryable.";
    /// No such order, refund, event, app, bill or endpoint — or it is not visible to this key.
    NotFound = "not_found", NOT_FOUND,
        "Check the id or path and the key's app scope.";
    /// The request body did not arrive within the server's body timeout.
    RequestTimeout = "request_timeout", REQUEST_TIMEOUT,
        "Send the request again; nothing was done.";
    /// `out_trade_no` already names an order created with different parameters.
    OutTradeNoReused = "out_trade_no_reused", CONFLICT,
        "Use a new out_trade_no for a new order, or resend the original body unchanged.";
    /// `out_refund_no` was already used for a different refund of this order.
    OutRefundNoReused = "out_refund_no_reused", CONFLICT,
        "Use a new out_refund_no, or resend the original refund unchanged.";
    /// The refund would take the order's refunds above what was paid.
    RefundExceedsPaid = "refund_exceeds_paid", CONFLICT,
        "Refund at most the remaining amount the message names.";
    /// Only paid (or partially refunded) orders can be refunded.
    NotRefundable = "not_refundable", CONFLICT,
        "Check the order's status; wait for `paid` before refunding.";
    /// The order is not pending, so it cannot be closed.
    NotClosable = "not_closable", CONFLICT,
        "Read the order: it is already paid, closed or refunded.";
    /// The buyer paid before the close reached the provider; the order is now paid.
    AlreadyPaid = "already_paid", CONFLICT,
        "Treat the order as paid (fulfil or refund it); do not close again.";
    /// The provider already closed the trade.
    AlreadyClosed = "already_closed", CONFLICT,
        "Treat the order as closed; create a new order to charge again.";
    /// The order's app is no longer in the configuration.
    AppNotConfigured = "app_not_configured", CONFLICT,
        "Ask the operator to restore the app's configuration.";
    /// The provider's record of the trade disagrees with ours (amount, appid, merchant).
    ProviderMismatch = "provider_mismatch", CONFLICT,
        "Do not fulfil; raise it with the operator (it is kept as an anomaly).";
    /// WeChat's login rate limit was reached.
    RateLimited = "rate_limited", CONFLICT,
        "Retry the login later with a fresh `wx.login` code.";
    /// The WeChat app has no `app_secret`, which login and OAuth need.
    AppSecretMissing = "app_secret_missing", CONFLICT,
        "Ask the operator to configure the app's app_secret.";
    /// The app does not serve the channel this call is for (OAuth is for `jsapi`).
    ChannelNotEnabled = "channel_not_enabled", CONFLICT,
        "Use the app that serves the channel (see docs/config.md, appids per channel).";
    /// The provider is still producing the day's bill.
    BillNotReady = "bill_not_ready", CONFLICT,
        "Retry later (WeChat and Alipay publish the bill after 09:00 Beijing time the next day).";
    /// The provider has no bill for a day our books show payments or refunds on.
    BillMissing = "bill_missing", CONFLICT,
        "Check the app's credentials and the day; raise it with the provider.";
    /// The app's provider offers no bill download.
    BillUnsupported = "bill_unsupported", CONFLICT,
        "Reconcile this app with an uploaded bill file instead.";
    /// The request body exceeds the configured limit.
    PayloadTooLarge = "payload_too_large", PAYLOAD_TOO_LARGE,
        "Send a smaller body (metadata is at most 4096 bytes).";
    /// The body is not sent as `application/json`.
    InvalidContentType = "invalid_content_type", UNPROCESSABLE_ENTITY,
        "Send `Content-Type: application/json`.";
    /// A body field has the wrong type, is unknown or is missing.
    InvalidField = "invalid_field", UNPROCESSABLE_ENTITY,
        "Fix the field the message names.";
    /// A query parameter cannot be parsed.
    InvalidQuery = "invalid_query", UNPROCESSABLE_ENTITY,
        "Fix the query parameter the message names.";
    /// A list or report filter is out of range (dates, amounts, limit, tz, group_by, app).
    InvalidFilter = "invalid_filter", UNPROCESSABLE_ENTITY,
        "Fix the filter the message names.";
    /// The events filter `status` is not `pending` or `delivered`.
    InvalidStatus = "invalid_status", UNPROCESSABLE_ENTITY,
        "Use `pending` or `delivered`.";
    /// The `order_id` filter is not an order id (`ord_…`).
    InvalidOrderId = "invalid_order_id", UNPROCESSABLE_ENTITY,
        "Pass the `id` paygate returned for the order.";
    /// No app of this provider has the given name.
    UnknownApp = "unknown_app", UNPROCESSABLE_ENTITY,
        "Use an app name from the configuration (`[[wechat.apps]]`/`[[alipay.apps]]` `name`).";
    /// The provider has several apps (or none) and the request did not name one.
    AppRequired = "app_required", UNPROCESSABLE_ENTITY,
        "Send `app` with the app's name.";
    /// The app does not offer the requested channel.
    UnsupportedChannel = "unsupported_channel", UNPROCESSABLE_ENTITY,
        "Use a channel the app lists in `channels`, or the app configured for it.";
    /// The amount is not a whole number of fen of at least 1.
    InvalidAmount = "invalid_amount", UNPROCESSABLE_ENTITY,
        "Send the amount as an integer number of fen, at least 1.";
    /// The amount exceeds what the provider accepts per order.
    AmountTooLarge = "amount_too_large", UNPROCESSABLE_ENTITY,
        "Split the charge or lower the amount below the limit the message names.";
    /// The currency is not one paygate supports (CNY).
    UnsupportedCurrency = "unsupported_currency", UNPROCESSABLE_ENTITY,
        "Omit `currency` or send `CNY`.";
    /// `expires_in_seconds` is out of range.
    InvalidExpiry = "invalid_expiry", UNPROCESSABLE_ENTITY,
        "Use the range the message names.";
    /// `metadata` is not a JSON object or exceeds 4 KiB.
    InvalidMetadata = "invalid_metadata", UNPROCESSABLE_ENTITY,
        "Send a JSON object of at most 4096 bytes.";
    /// `out_trade_no` is empty, too long or uses characters the provider refuses.
    InvalidOutTradeNo = "invalid_out_trade_no", UNPROCESSABLE_ENTITY,
        "Follow the provider's rule the message names: WeChat 6–32 letters, digits and `_-|*`; Alipay 1–64 letters, digits and `_`.";
    /// A JSAPI or mini-program order without the buyer's `openid`.
    OpenidRequired = "openid_required", UNPROCESSABLE_ENTITY,
        "Get the openid first (mini-program login or official-account OAuth) and send it.";
    /// An Alipay order whose channel needs the buyer's `buyer_id` without it.
    BuyerIdRequired = "buyer_id_required", UNPROCESSABLE_ENTITY,
        "Send the buyer's Alipay user id as `buyer_id`.";
    /// A WeChat order whose channel needs the buyer's IP without `client_ip`.
    ClientIpRequired = "client_ip_required", UNPROCESSABLE_ENTITY,
        "Send the buyer's IP as `client_ip` (NATIVE on a v2 app also needs `server_ip` configured to omit it).";
    /// `subject` is empty, too long or has control characters.
    InvalidSubject = "invalid_subject", UNPROCESSABLE_ENTITY,
        "Fix `subject` as the message says.";
    /// `description` is too long or has control characters.
    InvalidDescription = "invalid_description", UNPROCESSABLE_ENTITY,
        "Fix `description` as the message says.";
    /// `openid` is not a well-formed openid.
    InvalidOpenid = "invalid_openid", UNPROCESSABLE_ENTITY,
        "Send the openid exactly as login or OAuth returned it.";
    /// `buyer_id` is not a well-formed Alipay user id.
    InvalidBuyerId = "invalid_buyer_id", UNPROCESSABLE_ENTITY,
        "Send the buyer's Alipay user id: `2088` and 12 more digits.";
    /// The refund `reason` is too long or has control characters.
    InvalidReason = "invalid_reason", UNPROCESSABLE_ENTITY,
        "Fix `reason` as the message says.";
    /// `return_url` is not an absolute http(s) URL.
    InvalidReturnUrl = "invalid_return_url", UNPROCESSABLE_ENTITY,
        "Send an absolute http(s) URL with a host, at most 256 bytes.";
    /// A value breaks a domain rule (an identifier, provider, channel, status or money value).
    InvalidValue = "invalid_value", UNPROCESSABLE_ENTITY,
        "Fix the value the message names.";
    /// The `code` from `wx.login` or OAuth is malformed, invalid or already used.
    InvalidCode = "invalid_code", UNPROCESSABLE_ENTITY,
        "Call `wx.login` (or redirect through OAuth) again for a fresh code; codes are single-use.";
    /// The OAuth `redirect_uri` is not an absolute http(s) URL without fragment, or too long.
    InvalidRedirectUri = "invalid_redirect_uri", UNPROCESSABLE_ENTITY,
        "Send the page's absolute URL on the official account's authorised domain.";
    /// The OAuth `scope` is not `snsapi_base` or `snsapi_userinfo`.
    InvalidScope = "invalid_scope", UNPROCESSABLE_ENTITY,
        "Use `snsapi_base` (or `snsapi_userinfo`).";
    /// The OAuth `state` is too long or has characters WeChat refuses.
    InvalidState = "invalid_state", UNPROCESSABLE_ENTITY,
        "Use at most 128 characters of a-z, A-Z, 0-9.";
    /// The JS-SDK config `url` is not the page's http(s) URL.
    InvalidUrl = "invalid_url", UNPROCESSABLE_ENTITY,
        "Send `location.href.split('#')[0]` of the page.";
    /// The provider refused the request as invalid (the message has its reason).
    InvalidRequest = "invalid_request", UNPROCESSABLE_ENTITY,
        "Fix the request as the message says; not retryable unchanged.";
    /// Too many unknown API keys from this address lately (`Retry-After: 1`).
    TooManyFailedAuthentications = "too_many_failed_authentications", TOO_MANY_REQUESTS,
        "Fix the key, then retry after the Retry-After seconds.";
    /// A bug or an unexpected failure; the details are in the server log.
    Internal = "internal", INTERNAL_SERVER_ERROR,
        "Retry the identical request (same out_trade_no or out_refund_no); tell the operator the time and path if it persists (details are in the log).";
    /// The provider refused the request (its code and message are in `message`).
    ProviderRefused = "provider_refused", BAD_GATEWAY,
        "Read the provider's code in the message; fix the configuration or request.";
    /// The provider answered with something paygate cannot trust or use.
    ProviderBadGateway = "provider_bad_gateway", BAD_GATEWAY,
        "Retry the identical request later, or sync the order to learn its state.";
    /// The database is unreachable.
    Unavailable = "unavailable", SERVICE_UNAVAILABLE,
        "Retry the identical request later.";
    /// The provider did not answer definitively; the outcome is unknown.
    ProviderTimeout = "provider_timeout", GATEWAY_TIMEOUT,
        "Retry the identical request (same out_trade_no or out_refund_no: nothing is duplicated), or sync the order.";
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ErrorCode {
    /// The Markdown table of every code that docs/api.md carries (a test keeps them equal).
    pub fn markdown_table() -> String {
        let mut table = String::from("| Code | HTTP | Meaning | What to do |\n|---|---|---|---|\n");
        for code in Self::ALL {
            table.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                code.as_str(),
                code.status().as_u16(),
                code.meaning().replace('\n', " ").replace("  ", " "),
                code.action()
            ));
        }
        table
    }
}

impl ErrorCode {
    /// The code for a create request that lacks the buyer field its channel needs.
    pub const fn missing(field: paygate_core::BuyerField) -> Self {
        match field {
            paygate_core::BuyerField::OpenId => ErrorCode::OpenidRequired,
            paygate_core::BuyerField::BuyerId => ErrorCode::BuyerIdRequired,
            paygate_core::BuyerField::ClientIp => ErrorCode::ClientIpRequired,
        }
    }
}

impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> RefOr<Schema> {
        let description = Self::ALL
            .iter()
            .map(|c| {
                format!(
                    "- `{}` ({}): {}",
                    c.as_str(),
                    c.status().as_u16(),
                    c.action()
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .enum_values(Some(Self::ALL.iter().map(|c| c.as_str())))
            .description(Some(format!(
                "A stable error code; each has one HTTP status.\n\n{description}"
            )))
            .into()
    }
}

impl utoipa::ToSchema for ErrorCode {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ErrorCode")
    }
}

/// The body of every error response.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorResponse {
    /// The failure.
    pub error: ErrorDetail,
}

/// What failed and why.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs to switch on.
    pub code: ErrorCode,
    /// For people; wording may change.
    pub message: String,
}

impl ErrorResponse {
    /// An error body with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorResponse {
            error: ErrorDetail {
                code,
                message: message.into(),
            },
        }
    }

    /// The HTTP response for this body, with the code's status.
    pub fn into_response(self) -> HttpResponse {
        HttpResponse::build(self.error.code.status()).json(self)
    }
}

/// An API failure, with the status and stable code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or unknown API key.
    #[error("a valid API key is required: send `Authorization: Bearer <key>`")]
    Unauthorized,
    /// The key's role or app scope does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// No such resource (or not visible to this key).
    #[error("{0}")]
    NotFound(String),
    /// The body is not parsable at all (broken JSON).
    #[error("{message}")]
    BadRequest {
        /// Stable error code, e.g. `invalid_json`.
        code: ErrorCode,
        /// What is wrong, for people.
        message: String,
    },
    /// The request is well-formed but a value is missing, unknown or out of range.
    #[error("{message}")]
    Invalid {
        /// Stable error code, e.g. `invalid_amount`.
        code: ErrorCode,
        /// What is wrong, for people.
        message: String,
    },
    /// The request conflicts with existing state (idempotency key reused with another body,
    /// order not refundable, …).
    #[error("{message}")]
    Conflict {
        /// Stable error code.
        code: ErrorCode,
        /// What conflicts.
        message: String,
    },
    /// The body is larger than allowed.
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The provider refused the request.
    #[error("provider refused ({code}): {message}")]
    ProviderRefused {
        /// The provider's code.
        code: String,
        /// The provider's message.
        message: String,
    },
    /// The provider did not answer definitively; the request may be retried with the same
    /// idempotency key.
    #[error("the provider did not answer in time; retry with the same key, nothing is duplicated")]
    ProviderTimeout,
    /// The provider answered with something paygate cannot trust or use.
    #[error("the provider's answer could not be used: {0}")]
    ProviderBadGateway(String),
    /// This source sent too many unknown API keys lately; it may try again shortly.
    #[error("too many failed authentications from this address; retry in a second")]
    TooManyFailedAuthentications,
    /// The database is unreachable.
    #[error("the service is temporarily unavailable")]
    Unavailable,
    /// A bug or an unexpected failure; details are in the logs under the request id.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// A request the code refuses as invalid (the status comes from the code, 422 for all of
    /// the `invalid_*` family).
    pub fn invalid(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            code,
            message: message.into(),
        }
    }

    /// A request that conflicts with existing state (the code's status is 409).
    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError::Conflict {
            code,
            message: message.into(),
        }
    }

    /// The stable code in the response body; it also decides the HTTP status.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Unauthorized => ErrorCode::Unauthorized,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::BadRequest { code, .. }
            | ApiError::Invalid { code, .. }
            | ApiError::Conflict { code, .. } => *code,
            ApiError::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            ApiError::ProviderRefused { .. } => ErrorCode::ProviderRefused,
            ApiError::ProviderTimeout => ErrorCode::ProviderTimeout,
            ApiError::ProviderBadGateway(_) => ErrorCode::ProviderBadGateway,
            ApiError::TooManyFailedAuthentications => ErrorCode::TooManyFailedAuthentications,
            ApiError::Unavailable => ErrorCode::Unavailable,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code().status()
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(detail) = self {
            tracing::error!(%detail, "internal error");
        }
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::TooManyFailedAuthentications) {
            response.insert_header((actix_web::http::header::RETRY_AFTER, "1"));
        }
        response.json(ErrorResponse::new(self.code(), self.to_string()))
    }
}

impl From<ProviderError> for ApiError {
    fn from(error: ProviderError) -> Self {
        match error {
            ProviderError::OutcomeUnknown(detail) => {
                tracing::warn!(%detail, "provider outcome unknown");
                ApiError::ProviderTimeout
            }
            ProviderError::UntrustedResponse(detail) => {
                tracing::error!(%detail, "provider response failed verification");
                ApiError::ProviderBadGateway("response signature did not verify".to_owned())
            }
            ProviderError::Refused { code, message, .. } => {
                ApiError::ProviderRefused { code, message }
            }
            ProviderError::AlreadyPaid => ApiError::conflict(
                ErrorCode::AlreadyPaid,
                "the trade is already paid at the provider",
            ),
            ProviderError::AlreadyClosed => ApiError::conflict(
                ErrorCode::AlreadyClosed,
                "the trade is closed at the provider",
            ),
            ProviderError::NotFound => {
                ApiError::NotFound("the provider does not know this trade".to_owned())
            }
            ProviderError::InvalidRequest(message) => {
                ApiError::invalid(ErrorCode::InvalidRequest, message)
            }
            ProviderError::Configuration(detail) => {
                ApiError::Internal(format!("provider configuration: {detail}"))
            }
        }
    }
}

impl From<paygate_core::DomainError> for ApiError {
    fn from(error: paygate_core::DomainError) -> Self {
        ApiError::invalid(ErrorCode::InvalidValue, error.to_string())
    }
}

impl From<paygate_core::TextError> for ApiError {
    fn from(error: paygate_core::TextError) -> Self {
        let code = match error.field() {
            "subject" => ErrorCode::InvalidSubject,
            "description" => ErrorCode::InvalidDescription,
            "openid" => ErrorCode::InvalidOpenid,
            "buyer_id" => ErrorCode::InvalidBuyerId,
            "reason" => ErrorCode::InvalidReason,
            "return_url" => ErrorCode::InvalidReturnUrl,
            _ => ErrorCode::InvalidField,
        };
        ApiError::invalid(code, error.to_string())
    }
}

impl From<paygate_store::StoreError> for ApiError {
    fn from(error: paygate_store::StoreError) -> Self {
        use paygate_store::StoreError as E;
        match error {
            E::NotFound { entity, key } => ApiError::NotFound(format!("no {entity} {key}")),
            E::Unavailable(detail) => {
                tracing::error!(%detail, "database unavailable");
                ApiError::Unavailable
            }
            E::Connect { .. } => ApiError::Unavailable,
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<crate::payments::ApplyError> for ApiError {
    fn from(error: crate::payments::ApplyError) -> Self {
        match error {
            crate::payments::ApplyError::Store(e) => e.into(),
            crate::payments::ApplyError::Provider(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_errors() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "{code} twice");
            assert!(
                code.as_str()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_'),
                "{code}"
            );
            assert!(
                code.status().is_client_error() || code.status().is_server_error(),
                "{code}"
            );
            assert!(
                !code.meaning().is_empty() && !code.action().is_empty(),
                "{code}"
            );
        }
    }

    #[test]
    fn every_variant_reports_the_status_of_its_code() {
        let errors = [
            ApiError::Unauthorized,
            ApiError::Forbidden(String::new()),
            ApiError::NotFound(String::new()),
            ApiError::PayloadTooLarge { limit: 1 },
            ApiError::ProviderTimeout,
            ApiError::TooManyFailedAuthentications,
            ApiError::Unavailable,
            ApiError::Internal(String::new()),
            ApiError::invalid(ErrorCode::InvalidAmount, "x"),
            ApiError::conflict(ErrorCode::NotRefundable, "x"),
        ];
        let expected = [401, 403, 404, 413, 504, 429, 503, 500, 422, 409];
        for (error, status) in errors.iter().zip(expected) {
            assert_eq!(error.status_code().as_u16(), status, "{error:?}");
            let body: serde_json::Value =
                serde_json::to_value(ErrorResponse::new(error.code(), error.to_string()))
                    .expect("serializable");
            assert_eq!(body["error"]["code"], error.code().as_str());
        }
    }

    /// docs/api.md carries the table rendered from `ErrorCode`: a new code (or a changed status
    /// or advice) fails here until the document is regenerated.
    #[test]
    fn api_md_lists_every_code_with_its_status_and_advice() {
        crate::generated_docs::assert_block_fresh(
            "api.md",
            "error-codes",
            &ErrorCode::markdown_table(),
        );
    }
}
