//! WeChat-only helpers for merchant front-ends: mini-program login (`code` → `openid`) and
//! the JS-SDK `wx.config` signature. `session_key` never leaves the server.

use actix_web::{HttpResponse, web};
use paygate_core::{AppName, ProviderKind};
use paygate_wechat::login::{LoginError, SessionKeyUse};
use serde::Deserialize;

use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::state::AppState;

/// `POST /v1/wechat/{app}/login` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The code from `wx.login`.
    pub code: String,
}

/// `POST /v1/wechat/{app}/jsapi-config` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JsapiConfigRequest {
    /// The page URL `wx.config` runs on (the fragment is ignored).
    pub url: String,
}

fn wechat_app<'a>(
    state: &'a AppState,
    principal: &Principal,
    app: &str,
) -> Result<&'a paygate_wechat::WechatPay, ApiError> {
    principal.require(Role::Merchant)?;
    let name =
        AppName::parse(app).map_err(|_| ApiError::NotFound(format!("no WeChat app {app}")))?;
    principal.require_app(&name)?;
    state
        .registry
        .get(ProviderKind::Wechat, &name)
        .and_then(|a| a.wechat.as_deref())
        .ok_or_else(|| ApiError::NotFound(format!("no WeChat app {app}")))
}

fn login_error(error: LoginError) -> ApiError {
    match error {
        LoginError::InvalidCode => {
            ApiError::invalid("invalid_code", "the login code is invalid or already used")
        }
        LoginError::RateLimited => ApiError::conflict(
            "rate_limited",
            "WeChat's login rate limit was reached; retry later",
        ),
        LoginError::HighRiskUser => {
            ApiError::Forbidden("WeChat blocked this user as high-risk".to_owned())
        }
        LoginError::MissingAppSecret => ApiError::conflict(
            "app_secret_missing",
            "this app has no app_secret configured",
        ),
        LoginError::Timeout | LoginError::Busy => ApiError::ProviderTimeout,
        other => ApiError::ProviderBadGateway(other.to_string()),
    }
}

/// `POST /v1/wechat/{app}/login`: `code` → `openid` (and `unionid`).
#[utoipa::path(post, path = "/v1/wechat/{app}/login", tag = "wechat", params(("app" = String, Path)), request_body = LoginRequest, responses((status = 200, description = "`{openid, unionid}`; session_key is never returned"), (status = 422, description = "Invalid code")), security(("bearer" = [])))]
pub async fn login(
    state: web::Data<AppState>,
    principal: Principal,
    app: web::Path<String>,
    body: web::Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let wechat = wechat_app(&state, &principal, &app)?;
    if body.code.is_empty() || body.code.len() > 128 {
        return Err(ApiError::invalid(
            "invalid_code",
            "code must be 1–128 characters",
        ));
    }
    let login = wechat
        .login()
        .jscode2session(&body.code, SessionKeyUse::Discard)
        .await
        .map_err(login_error)?;
    Ok(HttpResponse::Ok()
        .json(serde_json::json!({ "openid": login.openid, "unionid": login.unionid })))
}

/// `POST /v1/wechat/{app}/jsapi-config`: the `wx.config` fields for a page URL.
#[utoipa::path(post, path = "/v1/wechat/{app}/jsapi-config", tag = "wechat", params(("app" = String, Path)), request_body = JsapiConfigRequest, responses((status = 200, description = "`{appId, timestamp, nonceStr, signature}` for wx.config")), security(("bearer" = [])))]
pub async fn jsapi_config(
    state: web::Data<AppState>,
    principal: Principal,
    app: web::Path<String>,
    body: web::Json<JsapiConfigRequest>,
) -> Result<HttpResponse, ApiError> {
    let wechat = wechat_app(&state, &principal, &app)?;
    if !(body.url.starts_with("http://") || body.url.starts_with("https://")) {
        return Err(ApiError::invalid(
            "invalid_url",
            "url must be the page's http(s) URL",
        ));
    }
    let config = wechat
        .login()
        .js_sdk_config(&body.url)
        .await
        .map_err(login_error)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "appId": config.app_id,
        "timestamp": config.timestamp,
        "nonceStr": config.nonce_str,
        "signature": config.signature,
    })))
}
