//! Getting the buyer's openid for JSAPI orders, and the JS-SDK signature official-account pages
//! need (protocol notes §8).
//!
//! * Mini-programs: `wx.login()` gives a one-time code; `jscode2session` turns it into the
//!   openid (and unionid). The `session_key` it also returns must never reach the client, so it
//!   is dropped unless the caller explicitly asks for it, and is redacted from Debug.
//! * Official accounts: the buyer's WeChat browser opens the authorize URL
//!   (`open.weixin.qq.com/connect/oauth2/authorize`, scope `snsapi_base` or `snsapi_userinfo`),
//!   WeChat redirects back with a one-time `code`, and `sns/oauth2/access_token` turns that code
//!   into the openid under the official account's appid.
//! * JS-SDK: `wx.config` needs a SHA1 signature over the `jsapi_ticket`, which needs an
//!   `access_token`; both live 7200 s and are rate-limited, so they are cached until shortly
//!   before they expire.

use std::fmt;
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::config::{
    ConfigError, DEFAULT_LOGIN_BASE, DEFAULT_OAUTH_BASE, DEFAULT_TIMEOUT, WechatConfig,
};
use crate::pay_params::nonce_str;

/// Cached tokens are refreshed this long before WeChat says they expire.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Why a login or token call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// The app has no AppSecret configured.
    #[error("this app has no app_secret configured")]
    MissingAppSecret,
    /// No answer in time.
    #[error("WeChat did not answer in time")]
    Timeout,
    /// The connection failed.
    #[error("transport error: {0}")]
    Transport(String),
    /// A non-200 HTTP status.
    #[error("HTTP status {0}")]
    HttpStatus(u16),
    /// The body is not the expected JSON.
    #[error("unexpected response: {0}")]
    Decode(String),
    /// 40029 / 40163: the code is invalid, already used, or from another appid. Do not retry.
    #[error("invalid or already used code")]
    InvalidCode,
    /// 45011: more than 100 logins per user per minute. Do not retry at once.
    #[error("login rate limit reached (45011)")]
    RateLimited,
    /// 40226: WeChat blocked this high-risk user.
    #[error("high-risk user blocked (40226)")]
    HighRiskUser,
    /// -1: WeChat is busy; retry with backoff.
    #[error("WeChat is busy (-1)")]
    Busy,
    /// Any other `errcode`.
    #[error("WeChat error {code}: {message}")]
    Api {
        /// `errcode`.
        code: i64,
        /// `errmsg`.
        message: String,
    },
}

impl LoginError {
    /// Whether the same call may be retried (with backoff).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            LoginError::Busy | LoginError::Timeout | LoginError::Transport(_)
        ) || matches!(self, LoginError::HttpStatus(status) if *status >= 500)
    }

    fn from_errcode(code: i64, message: String) -> LoginError {
        match code {
            // 40163 is "code been used": as final as an invalid code, and the caller's fault.
            40029 | 40163 => LoginError::InvalidCode,
            45011 => LoginError::RateLimited,
            40226 => LoginError::HighRiskUser,
            -1 => LoginError::Busy,
            _ => LoginError::Api { code, message },
        }
    }
}

/// The mini-program session key, for decrypting `wx.getUserInfo` data on the server. Never send
/// it to the client.
#[derive(Clone)]
pub struct SessionKey(SecretString);

impl SessionKey {
    /// The key's base64 text.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey([REDACTED])")
    }
}

/// Whether `jscode2session` should hand back the session key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKeyUse {
    /// Drop it (the default for login: only the openid is needed to pay).
    Discard,
    /// Return it, for servers that decrypt user data.
    Keep,
}

/// Who logged in to the mini-program.
#[derive(Debug, Clone)]
pub struct MiniProgramLogin {
    /// The user's openid under this appid: what a JSAPI order needs.
    pub openid: String,
    /// The Open Platform unionid, when the app is bound to one.
    pub unionid: Option<String>,
    /// The session key, only with [`SessionKeyUse::Keep`].
    pub session_key: Option<SessionKey>,
}

/// Who authorised the official-account OAuth redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthIdentity {
    /// The user's openid under this appid.
    pub openid: String,
    /// The unionid, when available.
    pub unionid: Option<String>,
    /// The granted scope (`snsapi_base` / `snsapi_userinfo`).
    pub scope: Option<String>,
}

/// What the official-account OAuth redirect asks the buyer to grant (a closed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OAuthScope {
    /// `snsapi_base`: silent, gives the openid only; enough to pay.
    #[default]
    Base,
    /// `snsapi_userinfo`: asks the buyer's consent, also allows reading the profile.
    UserInfo,
}

impl OAuthScope {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthScope::Base => "snsapi_base",
            OAuthScope::UserInfo => "snsapi_userinfo",
        }
    }

    /// Parses the wire value; anything else is `None`.
    pub fn parse(value: &str) -> Option<OAuthScope> {
        match value {
            "snsapi_base" => Some(OAuthScope::Base),
            "snsapi_userinfo" => Some(OAuthScope::UserInfo),
            _ => None,
        }
    }
}

/// The longest `redirect_uri` accepted: the authorize URL carries it encoded, and browsers
/// and WeChat truncate long URLs.
pub const MAX_REDIRECT_URI_LEN: usize = 1024;
/// WeChat's documented bound on `state`: at most 128 bytes of `a-zA-Z0-9`.
pub const MAX_OAUTH_STATE_LEN: usize = 128;

/// Why an authorize request was refused; each names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizeRequestError {
    /// `redirect_uri` is not an absolute http(s) URL without fragment, or too long.
    #[error("redirect_uri {0}")]
    RedirectUri(&'static str),
    /// `scope` is not one of the two WeChat defines.
    #[error("scope must be snsapi_base or snsapi_userinfo")]
    Scope,
    /// `state` is not at most 128 letters and digits.
    #[error("state must be at most 128 characters of a-z, A-Z, 0-9")]
    State,
}

impl AuthorizeRequestError {
    /// The request field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            AuthorizeRequestError::RedirectUri(_) => "redirect_uri",
            AuthorizeRequestError::Scope => "scope",
            AuthorizeRequestError::State => "state",
        }
    }
}

/// A checked official-account authorize request: where WeChat sends the buyer back, what is
/// asked, and the caller's opaque `state` echoed back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizeRequest {
    redirect_uri: String,
    scope: OAuthScope,
    state: String,
}

impl AuthorizeRequest {
    /// Checks the three parameters: `redirect_uri` an absolute http/https URL with a host, no
    /// fragment (WeChat appends `code` and `state` to the query) and no whitespace or control
    /// characters (the URL parser would silently drop them), at most
    /// [`MAX_REDIRECT_URI_LEN`] bytes; `scope` from the closed set (default `snsapi_base`);
    /// `state` at most [`MAX_OAUTH_STATE_LEN`] ASCII letters and digits.
    pub fn new(
        redirect_uri: &str,
        scope: Option<&str>,
        state: Option<&str>,
    ) -> Result<AuthorizeRequest, AuthorizeRequestError> {
        use AuthorizeRequestError::RedirectUri;
        if redirect_uri.len() > MAX_REDIRECT_URI_LEN {
            return Err(RedirectUri("must be at most 1024 bytes"));
        }
        if redirect_uri
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(RedirectUri(
                "must not contain whitespace or control characters",
            ));
        }
        let parsed =
            url::Url::parse(redirect_uri).map_err(|_| RedirectUri("must be an absolute URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(RedirectUri("must be an http or https URL with a host"));
        }
        if parsed.fragment().is_some() {
            return Err(RedirectUri(
                "must not have a #fragment (WeChat appends code and state to the query)",
            ));
        }
        let scope = match scope {
            None => OAuthScope::default(),
            Some(value) => OAuthScope::parse(value).ok_or(AuthorizeRequestError::Scope)?,
        };
        let state = state.unwrap_or_default();
        if state.len() > MAX_OAUTH_STATE_LEN || !state.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(AuthorizeRequestError::State);
        }
        Ok(AuthorizeRequest {
            redirect_uri: redirect_uri.to_owned(),
            scope,
            state: state.to_owned(),
        })
    }

    /// The granted scope asked for.
    pub fn scope(&self) -> OAuthScope {
        self.scope
    }
}

/// The official-account authorize URL, parameters in the order WeChat's documentation
/// gives them (it refuses some reorderings) and `#wechat_redirect` at the end.
pub fn oauth_authorize_url(oauth_base: &str, appid: &str, request: &AuthorizeRequest) -> String {
    let encode =
        |value: &str| url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>();
    format!(
        "{}/connect/oauth2/authorize?appid={}&redirect_uri={}&response_type=code&scope={}&state={}#wechat_redirect",
        oauth_base.trim_end_matches('/'),
        encode(appid),
        encode(&request.redirect_uri),
        request.scope.as_str(),
        request.state,
    )
}

/// The `wx.config` fields for one page (besides `jsApiList`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JsSdkConfig {
    /// The official account's appid.
    pub app_id: String,
    /// Unix seconds.
    pub timestamp: i64,
    /// Random string.
    pub nonce_str: String,
    /// SHA1 signature over ticket, nonce, timestamp and URL.
    pub signature: String,
}

/// Computes the JS-SDK signature: lowercase hex SHA1 of
/// `jsapi_ticket=…&noncestr=…&timestamp=…&url=…`, with the URL's `#fragment` removed.
pub fn js_sdk_signature(ticket: &str, nonce: &str, timestamp: i64, url: &str) -> String {
    let page = url.split('#').next().unwrap_or(url);
    let text = format!("jsapi_ticket={ticket}&noncestr={nonce}&timestamp={timestamp}&url={page}");
    hex::encode(digest::digest(
        &digest::SHA1_FOR_LEGACY_USE_ONLY,
        text.as_bytes(),
    ))
}

#[derive(Debug, Default, Deserialize)]
struct WireResponse {
    errcode: Option<i64>,
    errmsg: Option<String>,
    openid: Option<String>,
    unionid: Option<String>,
    session_key: Option<String>,
    scope: Option<String>,
    access_token: Option<String>,
    ticket: Option<String>,
    expires_in: Option<u64>,
}

#[derive(Debug)]
struct Cached {
    value: SecretString,
    refresh_at: Instant,
}

/// What the login client needs of an app. WeChat login (`sns/…`, `cgi-bin/…`) is not part of
/// WeChat Pay: it takes the appid and its AppSecret whichever pay API version the app uses, so
/// a v2 and a v3 app give the same settings and share this client.
#[derive(Clone)]
pub struct LoginSettings {
    /// The appid the openids are issued under.
    pub appid: String,
    /// The AppSecret; without it every exchange answers [`LoginError::MissingAppSecret`].
    pub app_secret: Option<SecretString>,
    /// The login / token API base (`{login_base}/sns/jscode2session`).
    pub login_base: String,
    /// The official-account OAuth authorize page base (`{oauth_base}/connect/oauth2/authorize`).
    pub oauth_base: String,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// CA certificates (PEM) to trust besides the system's, for a test server with its own TLS.
    pub extra_root_certificates_pem: Option<String>,
}

impl LoginSettings {
    /// The real WeChat hosts and the default timeout for `appid`, with no AppSecret yet.
    pub fn new(appid: impl Into<String>) -> Self {
        Self {
            appid: appid.into(),
            app_secret: None,
            login_base: DEFAULT_LOGIN_BASE.to_owned(),
            oauth_base: DEFAULT_OAUTH_BASE.to_owned(),
            request_timeout: DEFAULT_TIMEOUT,
            extra_root_certificates_pem: None,
        }
    }

    /// The login settings of a v2 app.
    pub fn of(config: &WechatConfig) -> Self {
        Self {
            appid: config.appid.clone(),
            app_secret: config.app_secret.clone(),
            login_base: config.login_base.clone(),
            oauth_base: config.oauth_base.clone(),
            request_timeout: config.request_timeout(),
            extra_root_certificates_pem: config.extra_root_certificates_pem.clone(),
        }
    }
}

impl fmt::Debug for LoginSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginSettings")
            .field("appid", &self.appid)
            .field(
                "app_secret",
                &self.app_secret.as_ref().map(|_| "[REDACTED]"),
            )
            .field("login_base", &self.login_base)
            .field("oauth_base", &self.oauth_base)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

/// Calls the login / token APIs of one app and caches its tokens.
#[derive(Debug)]
pub struct LoginClient {
    http: reqwest::Client,
    base: String,
    oauth_base: String,
    appid: String,
    secret: Option<SecretString>,
    access_token: Mutex<Option<Cached>>,
    jsapi_ticket: Mutex<Option<Cached>>,
}

impl LoginClient {
    /// Builds the client from a v2 app's configuration.
    pub fn new(config: &WechatConfig) -> Result<Self, ConfigError> {
        Self::from_settings(&LoginSettings::of(config))
    }

    /// Builds the client from login settings, whichever pay API the app uses; the base URLs
    /// must parse.
    pub fn from_settings(settings: &LoginSettings) -> Result<Self, ConfigError> {
        crate::config::check_urls(&[
            ("login_base", &settings.login_base),
            ("oauth_base", &settings.oauth_base),
        ])?;
        Ok(Self {
            http: crate::client::build_http_client(
                settings.request_timeout,
                settings.extra_root_certificates_pem.as_deref(),
                None,
            )?,
            base: settings.login_base.trim_end_matches('/').to_owned(),
            oauth_base: settings.oauth_base.clone(),
            appid: settings.appid.clone(),
            secret: settings.app_secret.clone(),
            access_token: Mutex::new(None),
            jsapi_ticket: Mutex::new(None),
        })
    }

    /// Whether an AppSecret is configured, so the OAuth and login exchanges can work at all.
    pub fn has_app_secret(&self) -> bool {
        self.secret.is_some()
    }

    fn secret(&self) -> Result<&str, LoginError> {
        self.secret
            .as_ref()
            .map(|s| s.expose_secret())
            .ok_or(LoginError::MissingAppSecret)
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<WireResponse, LoginError> {
        let response = self
            .http
            .get(format!("{}{}", self.base, path))
            .query(query)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    LoginError::Timeout
                } else {
                    LoginError::Transport(e.without_url().to_string())
                }
            })?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(LoginError::HttpStatus(response.status().as_u16()));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| LoginError::Transport(e.without_url().to_string()))?;
        let wire: WireResponse =
            serde_json::from_slice(&body).map_err(|e| LoginError::Decode(e.to_string()))?;
        match wire.errcode {
            Some(code) if code != 0 => Err(LoginError::from_errcode(
                code,
                wire.errmsg.clone().unwrap_or_default(),
            )),
            _ => Ok(wire),
        }
    }

    /// `sns/jscode2session`: the mini-program login code to the user's openid.
    pub async fn jscode2session(
        &self,
        code: &str,
        session_key: SessionKeyUse,
    ) -> Result<MiniProgramLogin, LoginError> {
        let secret = self.secret()?;
        let wire = self
            .get(
                "/sns/jscode2session",
                &[
                    ("appid", self.appid.as_str()),
                    ("secret", secret),
                    ("js_code", code),
                    ("grant_type", "authorization_code"),
                ],
            )
            .await?;
        Ok(MiniProgramLogin {
            openid: non_empty(wire.openid, "openid")?,
            unionid: wire.unionid.filter(|u| !u.is_empty()),
            session_key: match session_key {
                SessionKeyUse::Keep => wire.session_key.map(|k| SessionKey(SecretString::from(k))),
                SessionKeyUse::Discard => None,
            },
        })
    }

    /// The URL the buyer's WeChat browser opens to start the official-account OAuth flow for
    /// this app; WeChat redirects back with the `code` [`LoginClient::oauth_openid`] takes.
    pub fn oauth_authorize_url(&self, request: &AuthorizeRequest) -> String {
        oauth_authorize_url(&self.oauth_base, &self.appid, request)
    }

    /// `sns/oauth2/access_token`: the official-account OAuth code to the user's openid. The
    /// user access token in the answer is not kept.
    pub async fn oauth_openid(&self, code: &str) -> Result<OAuthIdentity, LoginError> {
        let secret = self.secret()?;
        let wire = self
            .get(
                "/sns/oauth2/access_token",
                &[
                    ("appid", self.appid.as_str()),
                    ("secret", secret),
                    ("code", code),
                    ("grant_type", "authorization_code"),
                ],
            )
            .await?;
        Ok(OAuthIdentity {
            openid: non_empty(wire.openid, "openid")?,
            unionid: wire.unionid.filter(|u| !u.is_empty()),
            scope: wire.scope,
        })
    }

    /// The app's `access_token` (`cgi-bin/token`), from the cache while it is fresh.
    pub async fn access_token(&self) -> Result<SecretString, LoginError> {
        let mut cache = self.access_token.lock().await;
        if let Some(fresh) = fresh(&cache) {
            return Ok(fresh);
        }
        let secret = self.secret()?;
        let wire = self
            .get(
                "/cgi-bin/token",
                &[
                    ("grant_type", "client_credential"),
                    ("appid", self.appid.as_str()),
                    ("secret", secret),
                ],
            )
            .await?;
        let token = non_empty(wire.access_token, "access_token")?;
        Ok(store(&mut cache, token, wire.expires_in))
    }

    /// The JS-SDK `jsapi_ticket` (`cgi-bin/ticket/getticket`), from the cache while fresh.
    pub async fn jsapi_ticket(&self) -> Result<SecretString, LoginError> {
        let mut cache = self.jsapi_ticket.lock().await;
        if let Some(fresh) = fresh(&cache) {
            return Ok(fresh);
        }
        let token = self.access_token().await?;
        let wire = self
            .get(
                "/cgi-bin/ticket/getticket",
                &[("access_token", token.expose_secret()), ("type", "jsapi")],
            )
            .await?;
        let ticket = non_empty(wire.ticket, "ticket")?;
        Ok(store(&mut cache, ticket, wire.expires_in))
    }

    /// The signed `wx.config` fields for the page at `url`.
    pub async fn js_sdk_config(&self, url: &str) -> Result<JsSdkConfig, LoginError> {
        let ticket = self.jsapi_ticket().await?;
        let nonce = nonce_str();
        let timestamp = chrono::Utc::now().timestamp();
        Ok(JsSdkConfig {
            app_id: self.appid.clone(),
            timestamp,
            signature: js_sdk_signature(ticket.expose_secret(), &nonce, timestamp, url),
            nonce_str: nonce,
        })
    }
}

fn non_empty(value: Option<String>, field: &str) -> Result<String, LoginError> {
    value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| LoginError::Decode(format!("{field} missing")))
}

fn fresh(cache: &Option<Cached>) -> Option<SecretString> {
    cache
        .as_ref()
        .filter(|c| Instant::now() < c.refresh_at)
        .map(|c| c.value.clone())
}

fn store(cache: &mut Option<Cached>, value: String, expires_in: Option<u64>) -> SecretString {
    let lifetime = Duration::from_secs(expires_in.unwrap_or(0));
    let value = SecretString::from(value);
    *cache = lifetime.checked_sub(REFRESH_MARGIN).map(|keep| Cached {
        value: value.clone(),
        refresh_at: Instant::now() + keep,
    });
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_official_js_sdk_example_signs_to_its_documented_value() {
        // JS-SDK doc, appendix 1 (signature algorithm); the value was also recomputed with
        // Python's hashlib.
        let ticket = "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg";
        let url = "http://mp.weixin.qq.com?params=value";
        let expected = "0f9de62fce790f9a083d5c99e95740ceb90c27ed";
        assert_eq!(
            js_sdk_signature(ticket, "Wm3WZYTPz0wzccnW", 1414587457, url),
            expected
        );
        let with_fragment = format!("{url}#section");
        assert_eq!(
            js_sdk_signature(ticket, "Wm3WZYTPz0wzccnW", 1414587457, &with_fragment),
            expected
        );
    }

    #[test]
    fn errcodes_map_to_their_meaning_and_retry_policy() {
        assert_eq!(
            LoginError::from_errcode(40029, String::new()),
            LoginError::InvalidCode
        );
        assert_eq!(
            LoginError::from_errcode(45011, String::new()),
            LoginError::RateLimited
        );
        assert_eq!(
            LoginError::from_errcode(40226, String::new()),
            LoginError::HighRiskUser
        );
        assert!(LoginError::from_errcode(-1, String::new()).retryable());
        assert!(!LoginError::InvalidCode.retryable());
        assert!(!LoginError::RateLimited.retryable());
    }

    #[test]
    fn a_reused_code_is_an_invalid_code_not_a_provider_failure() {
        assert_eq!(
            LoginError::from_errcode(40163, "code been used".to_owned()),
            LoginError::InvalidCode
        );
        assert!(!LoginError::InvalidCode.retryable());
    }

    #[test]
    fn the_authorize_url_has_the_documented_shape_and_encoding() {
        let request = AuthorizeRequest::new(
            "https://shop.example/cb?x=1&y=2",
            Some("snsapi_userinfo"),
            Some("abc123"),
        )
        .unwrap();
        assert_eq!(
            oauth_authorize_url(
                "https://open.weixin.qq.com/",
                "wx520c15f417810387",
                &request
            ),
            "https://open.weixin.qq.com/connect/oauth2/authorize?appid=wx520c15f417810387\
             &redirect_uri=https%3A%2F%2Fshop.example%2Fcb%3Fx%3D1%26y%3D2&response_type=code\
             &scope=snsapi_userinfo&state=abc123#wechat_redirect"
        );
        let default = AuthorizeRequest::new("http://shop.example/cb", None, None).unwrap();
        assert_eq!(default.scope(), OAuthScope::Base);
        assert!(
            oauth_authorize_url("https://o", "wx1", &default)
                .ends_with("&scope=snsapi_base&state=#wechat_redirect")
        );
    }

    #[test]
    fn authorize_requests_outside_the_rules_name_their_field() {
        let field = |uri: &str, scope: Option<&str>, state: Option<&str>| {
            AuthorizeRequest::new(uri, scope, state)
                .unwrap_err()
                .field()
        };
        for uri in [
            "ftp://shop.example/cb",
            "javascript:alert(1)",
            "/relative",
            "https://shop.example/cb#frag",
            "https://shop.example/c b",
            "https://shop.example/\tcb",
            &format!("https://shop.example/{}", "a".repeat(MAX_REDIRECT_URI_LEN)),
        ] {
            assert_eq!(field(uri, None, None), "redirect_uri", "{uri}");
        }
        for scope in ["snsapi_login", "", "SNSAPI_BASE"] {
            assert_eq!(field("https://s.example/", Some(scope), None), "scope");
        }
        let long = "a".repeat(MAX_OAUTH_STATE_LEN + 1);
        for state in ["a-b", "a&b=c", "\u{0}", long.as_str()] {
            assert_eq!(field("https://s.example/", None, Some(state)), "state");
        }
        let longest = "Z9".repeat(MAX_OAUTH_STATE_LEN / 2);
        assert!(AuthorizeRequest::new("https://s.example/", None, Some(&longest)).is_ok());
    }

    #[test]
    fn the_session_key_is_redacted() {
        let key = SessionKey(SecretString::from("tiihtNczf5v6AKRyjwEUhQ==".to_owned()));
        assert!(!format!("{key:?}").contains("tiih"));
    }
}
