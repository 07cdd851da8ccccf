//! Getting the buyer's openid for JSAPI orders, and the JS-SDK signature official-account pages
//! need (protocol notes §8).
//!
//! * Mini-programs: `wx.login()` gives a one-time code; `jscode2session` turns it into the
//!   openid (and unionid). The `session_key` it also returns must never reach the client, so it
//!   is dropped unless the caller explicitly asks for it, and is redacted from Debug.
//! * Official accounts: the OAuth `code` from the redirect becomes the openid.
//! * JS-SDK: `wx.config` needs a SHA1 signature over the `jsapi_ticket`, which needs an
//!   `access_token`; both live 7200 s and are rate-limited, so they are cached until shortly
//!   before they expire.

use std::fmt;
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::config::{ConfigError, WechatConfig};
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
    /// 40029: the code is invalid, already used, or from another appid. Do not retry.
    #[error("invalid login code (40029)")]
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
            40029 => LoginError::InvalidCode,
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

/// Calls the login / token APIs of one app and caches its tokens.
#[derive(Debug)]
pub struct LoginClient {
    http: reqwest::Client,
    base: String,
    appid: String,
    secret: Option<SecretString>,
    access_token: Mutex<Option<Cached>>,
    jsapi_ticket: Mutex<Option<Cached>>,
}

impl LoginClient {
    /// Builds the client from the app's configuration.
    pub fn new(config: &WechatConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            http: crate::client::http_client(config, None)?,
            base: config.login_base.trim_end_matches('/').to_owned(),
            appid: config.appid.clone(),
            secret: config.app_secret.clone(),
            access_token: Mutex::new(None),
            jsapi_ticket: Mutex::new(None),
        })
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
    fn the_session_key_is_redacted() {
        let key = SessionKey(SecretString::from("tiihtNczf5v6AKRyjwEUhQ==".to_owned()));
        assert!(!format!("{key:?}").contains("tiih"));
    }
}
