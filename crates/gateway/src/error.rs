//! `ApiError`: the only place an error becomes an HTTP status. Every response body is
//! `{"error":{"code","message"}}`, with a stable machine-readable `code` merchants can switch
//! on and a message for people. Internal details (SQL, provider bodies, keys) stay in the logs.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use paygate_core::ProviderError;
use serde::Serialize;

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
        code: &'static str,
        /// What is wrong, for people.
        message: String,
    },
    /// The request is well-formed but a value is missing, unknown or out of range.
    #[error("{message}")]
    Invalid {
        /// Stable error code, e.g. `invalid_amount`.
        code: &'static str,
        /// What is wrong, for people.
        message: String,
    },
    /// The request conflicts with existing state (idempotency key reused with another body,
    /// order not refundable, …).
    #[error("{message}")]
    Conflict {
        /// Stable error code.
        code: &'static str,
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

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: String,
}

impl ApiError {
    /// Shorthand for a 400/422 with a code.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            code,
            message: message.into(),
        }
    }

    /// Shorthand for a 409 with a code.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Conflict {
            code,
            message: message.into(),
        }
    }

    /// The stable code in the response body.
    pub fn code(&self) -> &str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::BadRequest { code, .. }
            | ApiError::Invalid { code, .. }
            | ApiError::Conflict { code, .. } => code,
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::ProviderRefused { .. } => "provider_refused",
            ApiError::ProviderTimeout => "provider_timeout",
            ApiError::ProviderBadGateway(_) => "provider_bad_gateway",
            ApiError::TooManyFailedAuthentications => "too_many_failed_authentications",
            ApiError::Unavailable => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::ProviderRefused { .. } => StatusCode::BAD_GATEWAY,
            ApiError::ProviderTimeout => StatusCode::GATEWAY_TIMEOUT,
            ApiError::ProviderBadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::TooManyFailedAuthentications => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(detail) = self {
            tracing::error!(%detail, "internal error");
        }
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::TooManyFailedAuthentications) {
            response.insert_header((actix_web::http::header::RETRY_AFTER, "1"));
        }
        response.json(ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
            },
        })
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
            ProviderError::AlreadyPaid => {
                ApiError::conflict("already_paid", "the trade is already paid at the provider")
            }
            ProviderError::AlreadyClosed => {
                ApiError::conflict("already_closed", "the trade is closed at the provider")
            }
            ProviderError::NotFound => {
                ApiError::NotFound("the provider does not know this trade".to_owned())
            }
            ProviderError::InvalidRequest(message) => ApiError::invalid("invalid_request", message),
            ProviderError::Configuration(detail) => {
                ApiError::Internal(format!("provider configuration: {detail}"))
            }
        }
    }
}

impl From<paygate_core::DomainError> for ApiError {
    fn from(error: paygate_core::DomainError) -> Self {
        ApiError::invalid("invalid_value", error.to_string())
    }
}

impl From<paygate_core::TextError> for ApiError {
    fn from(error: paygate_core::TextError) -> Self {
        let code = match error.field() {
            "subject" => "invalid_subject",
            "description" => "invalid_description",
            "openid" => "invalid_openid",
            "buyer_id" => "invalid_buyer_id",
            "reason" => "invalid_reason",
            "return_url" => "invalid_return_url",
            _ => "invalid_field",
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
