//! WeChat-only helpers for merchant front-ends, two separate ways to get the buyer's openid
//! plus the JS-SDK signature:
//! * mini-program login: the `wx.login()` code → `sns/jscode2session` → openid
//!   (`session_key` never leaves the server);
//! * official-account OAuth: the authorize URL the buyer's WeChat browser opens, then the
//!   `code` WeChat redirects back with → `sns/oauth2/access_token` → openid, for `jsapi` orders
//!   paid inside official-account pages;
//! * the JS-SDK `wx.config` signature.
//!
//! All three are WeChat's login API (appid + AppSecret), not WeChat Pay's, so they serve a v2
//! and a v3 app alike through the app's login client.

use actix_web::{HttpResponse, web};
use paygate_core::{AppName, Channel, ProviderKind};
use paygate_wechat::login::{
    AuthorizeRequest, AuthorizeRequestError, LoginClient, LoginError, SessionKeyUse,
};
use serde::{Deserialize, Serialize};

use crate::auth::{Principal, Role};
use crate::error::{ApiError, ErrorCode};
use crate::registry::ProviderApp;
use crate::state::AppState;

/// `POST /v1/wechat/{app}/login` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The code from `wx.login`.
    pub code: String,
}

/// `POST /v1/wechat/{app}/login` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoginResponse {
    /// The buyer's openid under this app's appid: send it with `mini_program` orders.
    pub openid: String,
    /// The buyer's unionid, when the appid is bound to an Open Platform account.
    pub unionid: Option<String>,
}

/// `POST /v1/wechat/{app}/oauth/authorize-url` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OAuthAuthorizeUrlResponse {
    /// Open it in the buyer's WeChat browser; WeChat redirects to `redirect_uri?code=…&state=…`.
    pub url: String,
    /// The scope asked for: `snsapi_base` or `snsapi_userinfo`.
    pub scope: &'static str,
}

/// `POST /v1/wechat/{app}/oauth/openid` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OAuthOpenidResponse {
    /// The buyer's openid under the official account's appid: send it with `jsapi` orders.
    pub openid: String,
    /// The buyer's unionid, when WeChat gives it.
    pub unionid: Option<String>,
    /// The scope the buyer granted.
    pub scope: Option<String>,
}

/// `POST /v1/wechat/{app}/jsapi-config` answer: the `wx.config` fields (with `jsApiList`
/// added by the page).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JsapiConfigResponse {
    /// The official account's appid.
    #[serde(rename = "appId")]
    pub app_id: String,
    /// Unix seconds the signature was made at.
    pub timestamp: i64,
    /// The random string signed.
    #[serde(rename = "nonceStr")]
    pub nonce_str: String,
    /// SHA-1 over the jsapi_ticket, nonce, timestamp and URL.
    pub signature: String,
}

/// `POST /v1/wechat/{app}/jsapi-config` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JsapiConfigRequest {
    /// The page URL `wx.config` runs on (the fragment is ignored).
    pub url: String,
}

/// `POST /v1/wechat/{app}/oauth/authorize-url` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuthAuthorizeUrlRequest {
    /// Where WeChat sends the buyer back with `code` and `state`: an absolute http(s) URL on
    /// the official account's authorised domain, no `#fragment`, at most 1024 bytes.
    pub redirect_uri: String,
    /// `snsapi_base` (default: silent, openid only) or `snsapi_userinfo` (asks consent).
    pub scope: Option<String>,
    /// Opaque value echoed back on the redirect (use it against CSRF): at most 128 of
    /// `a-zA-Z0-9`.
    pub state: Option<String>,
}

/// `POST /v1/wechat/{app}/oauth/openid` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuthOpenidRequest {
    /// The `code` WeChat appended to `redirect_uri` (single use, valid 5 minutes).
    pub code: String,
}

/// The WeChat app `app` (v2 or v3) and its login client.
fn wechat_app<'a>(
    state: &'a AppState,
    principal: &Principal,
    app: &str,
) -> Result<(&'a ProviderApp, &'a LoginClient), ApiError> {
    principal.require(Role::Merchant)?;
    let name =
        AppName::parse(app).map_err(|_| ApiError::NotFound(format!("no WeChat app {app}")))?;
    principal.require_app(&name)?;
    state
        .registry
        .get(ProviderKind::WECHAT, &name)
        .and_then(|a| Some((a, a.wechat.as_deref()?)))
        .ok_or_else(|| ApiError::NotFound(format!("no WeChat app {app}")))
}

fn login_error(error: LoginError) -> ApiError {
    match error {
        LoginError::InvalidCode => ApiError::invalid(
            ErrorCode::InvalidCode,
            "the code is invalid or already used",
        ),
        LoginError::RateLimited => ApiError::conflict(
            ErrorCode::RateLimited,
            "WeChat's login rate limit was reached; retry later",
        ),
        LoginError::HighRiskUser => {
            ApiError::Forbidden("WeChat blocked this user as high-risk".to_owned())
        }
        LoginError::MissingAppSecret => ApiError::conflict(
            ErrorCode::AppSecretMissing,
            "this app has no app_secret configured",
        ),
        LoginError::Timeout | LoginError::Busy => ApiError::ProviderTimeout,
        other => ApiError::ProviderBadGateway(other.to_string()),
    }
}

/// `POST /v1/wechat/{app}/login`: `code` → `openid` (and `unionid`), for a v2 or v3 app.
#[utoipa::path(post, path = "/v1/wechat/{app}/login", tag = "wechat", params(("app" = String, Path)), request_body = LoginRequest, responses((status = 200, body = LoginResponse, description = "The openid; session_key is never returned"), (status = 422, description = "Invalid code")), security(("bearer" = [])))]
pub async fn login(
    state: web::Data<AppState>,
    principal: Principal,
    app: web::Path<String>,
    body: web::Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let (_, login) = wechat_app(&state, &principal, &app)?;
    check_code(&body.code)?;
    let login = login
        .jscode2session(&body.code, SessionKeyUse::Discard)
        .await
        .map_err(login_error)?;
    Ok(HttpResponse::Ok().json(LoginResponse {
        openid: login.openid,
        unionid: login.unionid,
    }))
}

fn check_code(code: &str) -> Result<(), ApiError> {
    if code.is_empty() || code.len() > 128 {
        return Err(ApiError::invalid(
            ErrorCode::InvalidCode,
            "code must be 1–128 characters",
        ));
    }
    Ok(())
}

/// The app, if it can run the official-account OAuth flow: it pays `jsapi` orders (the
/// openid is only valid under its own appid) and has the AppSecret the exchange needs.
fn oauth_app<'a>(
    state: &'a AppState,
    principal: &Principal,
    app: &str,
) -> Result<&'a LoginClient, ApiError> {
    let (wechat, login) = wechat_app(state, principal, app)?;
    if !wechat.offers(Channel::Jsapi) {
        return Err(ApiError::conflict(
            ErrorCode::ChannelNotEnabled,
            format!("app {app} does not serve the jsapi channel the OAuth openid is for"),
        ));
    }
    if !login.has_app_secret() {
        return Err(login_error(LoginError::MissingAppSecret));
    }
    Ok(login)
}

/// `POST /v1/wechat/{app}/oauth/authorize-url`: the official-account authorize URL for the
/// buyer's WeChat browser.
#[utoipa::path(post, path = "/v1/wechat/{app}/oauth/authorize-url", tag = "wechat", params(("app" = String, Path)), request_body = OAuthAuthorizeUrlRequest, responses((status = 200, body = OAuthAuthorizeUrlResponse, description = "Open `url` in the buyer's WeChat browser"), (status = 409, description = "The app does not serve jsapi or has no app_secret"), (status = 422, description = "redirect_uri, scope or state out of bounds (the code names the field)")), security(("bearer" = [])))]
pub async fn oauth_authorize_url(
    state: web::Data<AppState>,
    principal: Principal,
    app: web::Path<String>,
    body: web::Json<OAuthAuthorizeUrlRequest>,
) -> Result<HttpResponse, ApiError> {
    let login = oauth_app(&state, &principal, &app)?;
    let request = AuthorizeRequest::new(
        &body.redirect_uri,
        body.scope.as_deref(),
        body.state.as_deref(),
    )
    .map_err(|e| {
        let code = match e {
            AuthorizeRequestError::RedirectUri(_) => ErrorCode::InvalidRedirectUri,
            AuthorizeRequestError::Scope => ErrorCode::InvalidScope,
            AuthorizeRequestError::State => ErrorCode::InvalidState,
        };
        ApiError::invalid(code, e.to_string())
    })?;
    Ok(HttpResponse::Ok().json(OAuthAuthorizeUrlResponse {
        url: login.oauth_authorize_url(&request),
        scope: request.scope().as_str(),
    }))
}

/// `POST /v1/wechat/{app}/oauth/openid`: the official-account OAuth `code` → `openid`.
#[utoipa::path(post, path = "/v1/wechat/{app}/oauth/openid", tag = "wechat", params(("app" = String, Path)), request_body = OAuthOpenidRequest, responses((status = 200, body = OAuthOpenidResponse, description = "The openid; WeChat's user access token is never returned"), (status = 422, description = "Invalid or already used code (40029/40163)"), (status = 502, description = "WeChat's answer was unusable"), (status = 504, description = "WeChat did not answer in time or was busy")), security(("bearer" = [])))]
pub async fn oauth_openid(
    state: web::Data<AppState>,
    principal: Principal,
    app: web::Path<String>,
    body: web::Json<OAuthOpenidRequest>,
) -> Result<HttpResponse, ApiError> {
    let login = oauth_app(&state, &principal, &app)?;
    check_code(&body.code)?;
    let identity = login.oauth_openid(&body.code).await.map_err(login_error)?;
    Ok(HttpResponse::Ok().json(OAuthOpenidResponse {
        openid: identity.openid,
        unionid: identity.unionid,
        scope: identity.scope,
    }))
}

/// `POST /v1/wechat/{app}/jsapi-config`: the `wx.config` fields for a page URL.
#[utoipa::path(post, path = "/v1/wechat/{app}/jsapi-config", tag = "wechat", params(("app" = String, Path)), request_body = JsapiConfigRequest, responses((status = 200, body = JsapiConfigResponse, description = "The fields for wx.config")), security(("bearer" = [])))]
pub async fn jsapi_config(
    state: web::Data<AppState>,
    principal: Principal,
    app: web::Path<String>,
    body: web::Json<JsapiConfigRequest>,
) -> Result<HttpResponse, ApiError> {
    let (_, login) = wechat_app(&state, &principal, &app)?;
    if !(body.url.starts_with("http://") || body.url.starts_with("https://")) {
        return Err(ApiError::invalid(
            ErrorCode::InvalidUrl,
            "url must be the page's http(s) URL",
        ));
    }
    let config = login.js_sdk_config(&body.url).await.map_err(login_error)?;
    Ok(HttpResponse::Ok().json(JsapiConfigResponse {
        app_id: config.app_id,
        timestamp: config.timestamp,
        nonce_str: config.nonce_str,
        signature: config.signature,
    }))
}
