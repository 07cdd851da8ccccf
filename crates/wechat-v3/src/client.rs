//! The APIv3 HTTP client (protocol §5): orders, queries, close, refunds and the platform
//! certificates, each request signed and each answer verified before it is parsed.
//!
//! * A 2xx answer is used only after its signature verifies over the raw bytes; one without
//!   the signature headers is forged. An unusable answer (too large, not JSON, missing fields,
//!   unverifiable) is an unknown outcome, never a failure: the caller queries before anything.
//! * A non-2xx answer carrying signature headers is verified too; one without them (WeChat and
//!   the SDKs do not always sign errors) is read for its `code` only, over TLS. Codes map to
//!   the retry table (§5.6): `SYSTEM_ERROR`/`BANK_ERROR`/5xx leave the outcome unknown,
//!   `FREQUENCY_LIMITED` may be retried later, `ORDERPAID` means "query and mark paid",
//!   `ORDER_CLOSED`, `SIGN_ERROR`, `PARAM_ERROR`, `NOT_ENOUGH` are definite.
//! * In platform-certificate mode the certificates are downloaded on first use, again every
//!   12 hours (WeChat lists a new one 24 h before using it) by a background task
//!   ([`ApiClient::spawn_certificate_refresh`]) or, failing that, by the next call, and on an
//!   unknown `Wechatpay-Serial` at most once a minute (anyone can name a made-up serial); a
//!   failed download is retried after a minute. A certificate is
//!   kept until it expires (its listed `expire_time` or its own `notAfter`, the earlier), even
//!   when WeChat no longer lists it, so notifies signed during a rotation still verify; after
//!   that it verifies nothing. A refresh that fails leaves the held certificates in use.

pub mod bill;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use paygate_core::{
    Channel, CreatePayment, CreatedPayment, Currency, ErrorDetail, PayParams, ProviderError,
    RefundFacts, RefundRequest, RefundState, TradeFacts,
};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::certificates::{CertificatesError, decrypt_certificates};
use crate::config::WechatV3App;
use crate::notify::{NotifyRejection, VerifiedNotify, verify_notify};
use crate::sign::nonce;
use crate::verify::{SignatureHeaders, VerifyError, header};
use crate::wire::{FieldError, Refund, Transaction, format_time};

/// The largest response body read.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// The User-Agent WeChat requires on every request.
pub const USER_AGENT: &str = concat!("paygate/", env!("CARGO_PKG_VERSION"), " (rust)");
/// The longest `description` WeChat takes, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 127;
/// How often platform certificates are downloaded again.
pub const CERTIFICATE_REFRESH: chrono::TimeDelta = chrono::TimeDelta::hours(12);
/// The least time between two downloads for an unknown serial (a forged notify can name any),
/// and between a failed download and the next scheduled attempt: WeChat is not hammered.
pub const MIN_DOWNLOAD_GAP: chrono::TimeDelta = chrono::TimeDelta::minutes(1);
/// How often the background refresh wakes to check whether a download is due.
pub const CERTIFICATE_CHECK_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// The source of "now" in Unix seconds, injectable so tests pin the clock.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Why an API call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Refused locally before sending (missing openid, channel not configured, …).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// No answer in time: the outcome is unknown.
    #[error("WeChat Pay did not answer in time")]
    Timeout,
    /// The connection failed or broke: the outcome is unknown.
    #[error("transport error: {0}")]
    Transport(ErrorDetail),
    /// The answer's signature did not verify (or was absent on a 2xx).
    #[error("response verification failed: {0}")]
    Unverified(#[from] VerifyError),
    /// The (verified) answer is not usable: too large, not JSON, missing a field.
    #[error("unusable response: {0}")]
    Unusable(String),
    /// WeChat answered with an error code.
    #[error("WeChat Pay error {status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// `code`.
        code: String,
        /// `message`.
        message: String,
    },
    /// Signing the request failed, or the certificates could not be used.
    #[error("configuration: {0}")]
    Configuration(String),
}

impl From<FieldError> for ApiError {
    fn from(error: FieldError) -> Self {
        ApiError::Unusable(error.to_string())
    }
}

impl From<ApiError> for ProviderError {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::InvalidRequest(reason) => ProviderError::InvalidRequest(reason),
            ApiError::Transport(detail) => ProviderError::OutcomeUnknown(detail),
            ApiError::Timeout => ProviderError::OutcomeUnknown(ErrorDetail::from_error(error)),
            ApiError::Unverified(_) | ApiError::Unusable(_) => {
                ProviderError::UntrustedResponse(ErrorDetail::from_error(error))
            }
            ApiError::Configuration(reason) => ProviderError::Configuration(reason.into()),
            ApiError::Api {
                status,
                code,
                message,
            } => match code.as_str() {
                "ORDERPAID" | "TRADE_PAID" => ProviderError::AlreadyPaid,
                "ORDER_CLOSED" | "ORDERCLOSED" => ProviderError::AlreadyClosed,
                "ORDER_NOT_EXIST" | "ORDERNOTEXIST" | "RESOURCE_NOT_EXISTS" => {
                    ProviderError::NotFound
                }
                "SIGN_ERROR" | "NO_AUTH" | "APPID_MCHID_NOT_MATCH" | "MCH_NOT_EXISTS" => {
                    ProviderError::Configuration(format!("{code}: {message}").into())
                }
                "FREQUENCY_LIMITED" | "RATELIMIT_EXCEEDED" => ProviderError::Refused {
                    code,
                    message,
                    retryable: true,
                },
                "SYSTEM_ERROR" | "BANK_ERROR" | "SERVICE_UNAVAILABLE" => {
                    ProviderError::OutcomeUnknown(format!("{code}: {message}").into())
                }
                _ if status >= 500 => {
                    ProviderError::OutcomeUnknown(format!("{code}: {message}").into())
                }
                _ => ProviderError::Refused {
                    code,
                    message,
                    retryable: false,
                },
            },
        }
    }
}

/// The order endpoint of each product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    /// JSAPI and mini-program (`payer.openid` required).
    Jsapi,
    /// APP.
    App,
    /// H5 in a mobile browser (`scene_info.h5_info` required).
    H5,
    /// Native QR code.
    Native,
}

impl Product {
    /// The product of a paygate channel.
    pub fn for_channel(channel: Channel) -> Option<Product> {
        match channel {
            Channel::MiniProgram | Channel::Jsapi => Some(Product::Jsapi),
            Channel::App => Some(Product::App),
            Channel::H5 => Some(Product::H5),
            Channel::Native => Some(Product::Native),
            _ => None,
        }
    }

    /// The path segment after `/v3/pay/transactions/`.
    pub const fn path(self) -> &'static str {
        match self {
            Product::Jsapi => "jsapi",
            Product::App => "app",
            Product::H5 => "h5",
            Product::Native => "native",
        }
    }
}

#[derive(Debug, Deserialize)]
struct PrepayAnswer {
    prepay_id: Option<String>,
    code_url: Option<String>,
    h5_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorAnswer {
    code: String,
    #[serde(default)]
    message: String,
}

/// A verified answer.
struct Answer {
    status: StatusCode,
    body: Vec<u8>,
}

/// When platform certificates were last downloaded, and last tried.
#[derive(Debug, Default)]
struct Downloads {
    last_success: Option<DateTime<Utc>>,
    last_attempt: Option<DateTime<Utc>>,
    last_for_unknown_serial: Option<DateTime<Utc>>,
}

impl Downloads {
    /// Whether a scheduled attempt now would come within [`MIN_DOWNLOAD_GAP`] of the last
    /// attempt of any kind (after a failure, the next waits a minute).
    fn too_soon(&self, now: DateTime<Utc>) -> bool {
        self.last_attempt
            .is_some_and(|at| now - at < MIN_DOWNLOAD_GAP)
    }

    /// Whether a scheduled download is due: none yet, or the last is [`CERTIFICATE_REFRESH`]
    /// old, and the last attempt was not too recent.
    fn due(&self, now: DateTime<Utc>) -> bool {
        self.last_success
            .is_none_or(|at| now - at >= CERTIFICATE_REFRESH)
            && !self.too_soon(now)
    }
}

/// A configured APIv3 client for one app.
pub struct ApiClient {
    http: reqwest::Client,
    app: WechatV3App,
    clock: Clock,
    // Held across a download, so concurrent triggers wait for it and then see it done.
    downloads: tokio::sync::Mutex<Downloads>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("app", &self.app)
            .finish_non_exhaustive()
    }
}

/// Percent-encodes a path segment: everything but unreserved characters, upper-case hex.
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn transport_error(error: reqwest::Error) -> ApiError {
    if error.is_timeout() {
        ApiError::Timeout
    } else {
        ApiError::Transport(ErrorDetail::from_error(error))
    }
}

impl ApiClient {
    /// A client for `app` using the system clock.
    pub fn new(app: WechatV3App) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .timeout(app.request_timeout)
            .connect_timeout(app.request_timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| ApiError::Configuration(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            app,
            clock: Arc::new(|| Utc::now().timestamp()),
            downloads: tokio::sync::Mutex::new(Downloads::default()),
        })
    }

    /// Replaces the clock (tests pin it to the vectors' times).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The app this client serves.
    pub fn app(&self) -> &WechatV3App {
        &self.app
    }

    /// Now in Unix seconds by the client's clock (the one answers and notifies are checked at).
    pub fn now(&self) -> i64 {
        (self.clock)()
    }

    fn now_utc(&self) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(self.now(), 0).unwrap_or_else(Utc::now)
    }

    /// Signs and sends one request; returns the verified answer of any status.
    async fn send(
        &self,
        method: reqwest::Method,
        target: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, ApiError> {
        if self.app.platform_certificates {
            // With a key held, a download already running (the background refresh, up to the
            // request timeout) is not waited for: the held certificates still verify.
            let wait = self.app.keys.is_empty();
            match self.refresh_if_due(wait).await {
                // Without any key the answer could not be verified: do not send.
                Err(error) if self.app.keys.is_empty() => return Err(error),
                Err(error) => {
                    tracing::warn!(%error, "platform certificate refresh failed; the held certificates stay in use");
                }
                Ok(_) if self.app.keys.is_empty() => {
                    return Err(ApiError::Transport(
                        "no platform certificate held yet (the last download failed); retry later"
                            .into(),
                    ));
                }
                Ok(_) => {}
            }
        }
        let answer = self.send_once(method.clone(), target, body).await;
        match answer {
            Err(ApiError::Unverified(ref e))
                if e.wants_certificate_refresh() && self.app.platform_certificates =>
            {
                if self.refresh_after_unknown_serial().await? {
                    self.send_once(method, target, body).await
                } else {
                    answer
                }
            }
            other => other,
        }
    }

    async fn send_once(
        &self,
        method: reqwest::Method,
        target: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, ApiError> {
        let (headers, (status, body)) = self.exchange(method, target, body).await?;
        let signature = SignatureHeaders::from_pairs(
            headers
                .iter()
                .filter_map(|(name, value)| value.to_str().ok().map(|v| (name.as_str(), v))),
        );
        match signature {
            Ok(signature) => self.app.keys.verify(&signature, &body, self.now())?,
            // A 2xx without signature headers is forged; an error answer may be unsigned.
            Err(e) if status.is_success() => return Err(e.into()),
            Err(_) => {}
        }
        Ok(Answer { status, body })
    }

    /// Sends one signed request and reads the bounded answer, unverified.
    async fn exchange(
        &self,
        method: reqwest::Method,
        target: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(reqwest::header::HeaderMap, (StatusCode, Vec<u8>)), ApiError> {
        // Serialise once: these exact bytes are signed and sent.
        let body_bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let authorization = self
            .app
            .signer
            .authorization(method.as_str(), target, self.now(), &nonce(), &body_bytes)
            .map_err(|e| ApiError::Configuration(e.to_string()))?;
        let mut request = self
            .http
            .request(method, format!("{}{target}", self.app.api_base))
            .header(reqwest::header::AUTHORIZATION, authorization)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::USER_AGENT, USER_AGENT);
        // In public-key mode this makes WeChat sign the answer with the public key (§2.4).
        if let Some(id) = self.app.keys.public_key_id() {
            request = request.header(header::SERIAL, id);
        }
        if body.is_some() {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body_bytes);
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let headers = response.headers().clone();
        if response
            .content_length()
            .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
        {
            return Err(ApiError::Unusable("response body exceeds the limit".into()));
        }
        let mut response = response;
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ApiError::Unusable("response body exceeds the limit".into()));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok((headers, (status, bytes)))
    }

    /// Turns a non-2xx answer into its error; a 2xx passes through.
    fn check_status(answer: Answer) -> Result<Answer, ApiError> {
        if answer.status.is_success() {
            return Ok(answer);
        }
        let status = answer.status.as_u16();
        match serde_json::from_slice::<ErrorAnswer>(&answer.body) {
            Ok(error) => Err(ApiError::Api {
                status,
                code: error.code.chars().take(64).collect(),
                message: error.message.chars().take(256).collect(),
            }),
            // No code to act on: a 5xx is WeChat's trouble (unknown outcome), anything else
            // an unusable answer; neither is a definite refusal.
            Err(_) if status >= 500 => Err(ApiError::Api {
                status,
                code: "SYSTEM_ERROR".into(),
                message: format!("HTTP {status} without an error body"),
            }),
            Err(e) => Err(ApiError::Unusable(format!("HTTP {status}: {e}"))),
        }
    }

    fn parse<T: for<'de> Deserialize<'de>>(answer: &Answer, what: &str) -> Result<T, ApiError> {
        serde_json::from_slice(&answer.body).map_err(|e| ApiError::Unusable(format!("{what}: {e}")))
    }

    /// The order body for a paygate payment, or why it cannot be placed.
    pub fn prepay_body(
        &self,
        request: &CreatePayment,
    ) -> Result<(Product, serde_json::Value), ApiError> {
        if !self.app.channels.contains(&request.channel) {
            return Err(ApiError::InvalidRequest(format!(
                "channel {} is not configured for this WeChat app",
                request.channel
            )));
        }
        let product = Product::for_channel(request.channel).ok_or_else(|| {
            ApiError::InvalidRequest(format!("WeChat Pay has no {} channel", request.channel))
        })?;
        if request.currency != Currency::Cny {
            return Err(ApiError::InvalidRequest(format!(
                "currency {} is not supported",
                request.currency
            )));
        }
        let total = request.amount.get();
        if total <= 0 || request.amount > crate::MAX_ORDER {
            return Err(ApiError::InvalidRequest(format!(
                "amount.total must be 1..={} fen, got {total}",
                crate::MAX_ORDER.get()
            )));
        }
        let description = request.description.as_deref().unwrap_or(&request.subject);
        if description.is_empty() || description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(ApiError::InvalidRequest(format!(
                "description must be 1..={MAX_DESCRIPTION_CHARS} characters"
            )));
        }
        let mut body = json!({
            "appid": self.app.appid,
            "mchid": self.app.mchid,
            "description": description,
            "out_trade_no": request.out_trade_no.as_str(),
            "time_expire": format_time(request.expires_at),
            "notify_url": request.notify_url,
            "amount": {"total": total, "currency": "CNY"},
        });
        match product {
            Product::Jsapi => {
                let openid = request
                    .payer_id
                    .as_deref()
                    .filter(|o| !o.is_empty())
                    .ok_or_else(|| {
                        ApiError::InvalidRequest("JSAPI orders need the payer's openid".into())
                    })?;
                body["payer"] = json!({"openid": openid});
            }
            Product::H5 => {
                let ip = request.client_ip.ok_or_else(|| {
                    ApiError::InvalidRequest("H5 orders need the buyer's IP".into())
                })?;
                let h5 = self.app.h5_info.as_ref().ok_or_else(|| {
                    ApiError::Configuration("the h5 channel needs h5_info".into())
                })?;
                let mut h5_info = json!({"type": h5.kind});
                if let Some(name) = &h5.app_name {
                    h5_info["app_name"] = json!(name);
                }
                if let Some(url) = &h5.app_url {
                    h5_info["app_url"] = json!(url);
                }
                body["scene_info"] = json!({"payer_client_ip": ip.to_string(), "h5_info": h5_info});
            }
            Product::App | Product::Native => {
                if let Some(ip) = request.client_ip {
                    body["scene_info"] = json!({"payer_client_ip": ip.to_string()});
                }
            }
        }
        Ok((product, body))
    }

    /// Places the order and returns what the buyer's client needs.
    pub async fn create_payment(
        &self,
        request: &CreatePayment,
    ) -> Result<CreatedPayment, ApiError> {
        let (product, body) = self.prepay_body(request)?;
        let target = format!("/v3/pay/transactions/{}", product.path());
        let answer = Self::check_status(
            self.send(reqwest::Method::POST, &target, Some(&body))
                .await?,
        )?;
        let prepay: PrepayAnswer = Self::parse(&answer, "prepay")?;
        let missing = |field: &str| ApiError::Unusable(format!("prepay answer lacks {field}"));
        let sign_error = |e: crate::keys::KeyError| ApiError::Configuration(e.to_string());
        let pay_params = match product {
            Product::Jsapi | Product::App => {
                let prepay_id = prepay
                    .prepay_id
                    .filter(|p| !p.is_empty())
                    .ok_or_else(|| missing("prepay_id"))?;
                let (now, nonce) = (self.now(), nonce());
                if product == Product::Jsapi {
                    self.app
                        .signer
                        .jsapi_pay_params(&self.app.appid, &prepay_id, now, &nonce)
                } else {
                    self.app
                        .signer
                        .app_pay_params(&self.app.appid, &prepay_id, now, &nonce)
                }
                .map_err(sign_error)?
            }
            Product::Native => {
                let code_url = prepay
                    .code_url
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| missing("code_url"))?;
                PayParams::CodeUrl { code_url }
            }
            Product::H5 => {
                let h5_url = prepay
                    .h5_url
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| missing("h5_url"))?;
                PayParams::MwebUrl { mweb_url: h5_url }
            }
        };
        Ok(CreatedPayment {
            pay_params,
            // A prepay id is no trade number: the transaction_id arrives with the payment.
            provider_trade_no: None,
        })
    }

    /// The trade's facts, by the merchant's order number.
    pub async fn query_by_out_trade_no(&self, out_trade_no: &str) -> Result<TradeFacts, ApiError> {
        let target = format!(
            "/v3/pay/transactions/out-trade-no/{}?mchid={}",
            encode_segment(out_trade_no),
            encode_segment(&self.app.mchid)
        );
        self.query(&target).await
    }

    /// The trade's facts, by WeChat's transaction id.
    pub async fn query_by_transaction_id(
        &self,
        transaction_id: &str,
    ) -> Result<TradeFacts, ApiError> {
        let target = format!(
            "/v3/pay/transactions/id/{}?mchid={}",
            encode_segment(transaction_id),
            encode_segment(&self.app.mchid)
        );
        self.query(&target).await
    }

    async fn query(&self, target: &str) -> Result<TradeFacts, ApiError> {
        let answer = Self::check_status(self.send(reqwest::Method::GET, target, None).await?)?;
        let transaction: Transaction = Self::parse(&answer, "transaction")?;
        Ok(transaction.to_facts()?)
    }

    /// Closes an unpaid trade; success is a signed 204.
    pub async fn close(&self, out_trade_no: &str) -> Result<(), ApiError> {
        let target = format!(
            "/v3/pay/transactions/out-trade-no/{}/close",
            encode_segment(out_trade_no)
        );
        let body = json!({"mchid": self.app.mchid});
        Self::check_status(
            self.send(reqwest::Method::POST, &target, Some(&body))
                .await?,
        )
        .map(drop)
    }

    /// Sends a refund; success means accepted (usually `PROCESSING`), not refunded yet.
    pub async fn refund(&self, request: &RefundRequest) -> Result<RefundFacts, ApiError> {
        let mut body = json!({
            "out_refund_no": request.out_refund_no.as_str(),
            "amount": {
                "refund": request.refund_amount.get(),
                "total": request.order_amount.get(),
                "currency": "CNY",
            },
        });
        match &request.provider_trade_no {
            Some(id) if !id.is_empty() => body["transaction_id"] = json!(id),
            _ => body["out_trade_no"] = json!(request.out_trade_no.as_str()),
        }
        if let Some(reason) = request.reason.as_ref().filter(|r| !r.is_empty()) {
            body["reason"] = json!(reason);
        }
        if let Some(url) = request.notify_url.as_ref().filter(|u| !u.is_empty()) {
            body["notify_url"] = json!(url);
        }
        let answer = Self::check_status(
            self.send(
                reqwest::Method::POST,
                "/v3/refund/domestic/refunds",
                Some(&body),
            )
            .await?,
        )?;
        let refund: Refund = Self::parse(&answer, "refund")?;
        Ok(refund.to_facts()?)
    }

    /// A refund's facts by its number; a refund WeChat does not know is `NotFound`.
    pub async fn query_refund(
        &self,
        out_trade_no: &str,
        out_refund_no: &str,
    ) -> Result<RefundFacts, ApiError> {
        let target = format!(
            "/v3/refund/domestic/refunds/{}",
            encode_segment(out_refund_no)
        );
        match Self::check_status(self.send(reqwest::Method::GET, &target, None).await?) {
            Ok(answer) => {
                let refund: Refund = Self::parse(&answer, "refund")?;
                Ok(refund.to_facts()?)
            }
            Err(ApiError::Api { code, .. }) if code == "RESOURCE_NOT_EXISTS" => Ok(RefundFacts {
                out_trade_no: out_trade_no.to_owned(),
                out_refund_no: out_refund_no.to_owned(),
                provider_refund_id: None,
                amount: None,
                state: RefundState::NotFound,
                succeeded_at: None,
            }),
            Err(other) => Err(other),
        }
    }

    /// Verifies, decrypts and parses a notify for this app at the client's clock. In
    /// certificate mode a notify under a serial not held yet (a rotation, or the first notify
    /// before any call) downloads the certificates once, rate-limited, and is checked again.
    pub async fn verify_notify(
        &self,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<VerifiedNotify, NotifyRejection> {
        let app = &self.app;
        let check = || {
            verify_notify(
                headers.iter().copied(),
                body,
                &app.keys,
                &app.apiv3_key,
                &app.mchid,
                self.now(),
            )
        };
        match check() {
            Err(NotifyRejection::Verify(ref e))
                if e.wants_certificate_refresh() && app.platform_certificates =>
            {
                // Rate-limited: within a minute of the last download this checks the same
                // keys again and the notify is refused, so WeChat retries it later.
                if let Err(error) = self.refresh_after_unknown_serial().await {
                    tracing::warn!(%error, "platform certificate download failed");
                }
                check()
            }
            other => other,
        }
    }

    /// Downloads `/v3/certificates` now (unless another download is running, which this then
    /// waits for and repeats), decrypts and adds them, and drops expired ones; returns how many
    /// were listed.
    pub async fn refresh_certificates(&self) -> Result<usize, ApiError> {
        let mut downloads = self.downloads.lock().await;
        self.download_certificates(&mut downloads).await
    }

    /// Downloads the certificates if none was downloaded yet or the last download is
    /// [`CERTIFICATE_REFRESH`] old (and the last attempt is over [`MIN_DOWNLOAD_GAP`] ago);
    /// drops expired ones in any case. Returns whether a download happened.
    pub async fn refresh_certificates_if_due(&self) -> Result<bool, ApiError> {
        self.refresh_if_due(true).await
    }

    /// [`ApiClient::refresh_certificates_if_due`]; when a download is already running, waits
    /// for it only if `wait`, and otherwise returns `Ok(false)` at once.
    async fn refresh_if_due(&self, wait: bool) -> Result<bool, ApiError> {
        let mut downloads = match self.downloads.try_lock() {
            Ok(downloads) => downloads,
            Err(_) if !wait => return Ok(false),
            Err(_) => self.downloads.lock().await,
        };
        let now = self.now_utc();
        self.app.keys.drop_expired(now);
        if !downloads.due(now) {
            return Ok(false);
        }
        self.download_certificates(&mut downloads)
            .await
            .map(|_| true)
    }

    /// One download after an unknown serial, unless another unknown serial caused one within
    /// [`MIN_DOWNLOAD_GAP`]: anyone can send a notify naming a made-up serial. A scheduled
    /// download just before does not count, since the serial may be one listed since.
    pub(crate) async fn refresh_after_unknown_serial(&self) -> Result<bool, ApiError> {
        let mut downloads = self.downloads.lock().await;
        let now = self.now_utc();
        if downloads
            .last_for_unknown_serial
            .is_some_and(|at| now - at < MIN_DOWNLOAD_GAP)
        {
            return Ok(false);
        }
        downloads.last_for_unknown_serial = Some(now);
        self.download_certificates(&mut downloads)
            .await
            .map(|_| true)
    }

    /// Keeps the platform certificates fresh from a background task that wakes every `every`
    /// and downloads when [`ApiClient::refresh_certificates_if_due`] says so: at once, then
    /// every [`CERTIFICATE_REFRESH`], and a failed download again at the next wake. The task
    /// holds the client weakly and ends when the client is dropped. `None` when the app is not
    /// in certificate mode or no tokio runtime is running.
    pub fn spawn_certificate_refresh(
        self: &Arc<Self>,
        every: Duration,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if !self.app.platform_certificates {
            return None;
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let weak = Arc::downgrade(self);
        Some(runtime.spawn(async move {
            while let Some(client) = weak.upgrade() {
                match client.refresh_certificates_if_due().await {
                    Ok(true) => tracing::info!(
                        appid = %client.app.appid,
                        held = client.app.keys.certificate_expiries().len(),
                        "platform certificates refreshed"
                    ),
                    Ok(false) => {}
                    Err(error) => tracing::warn!(
                        appid = %client.app.appid,
                        %error,
                        "platform certificate download failed; retrying at the next check"
                    ),
                }
                drop(client);
                tokio::time::sleep(every).await;
            }
        }))
    }

    /// The download itself, under the downloads lock.
    ///
    /// The list is authenticated by its AES-GCM decryption with the APIv3 key; the answer's
    /// signature is checked with a certificate already held or, on the very first download,
    /// with the certificate the answer itself names (integrity on first use, §2.3). A
    /// certificate is held until the earlier of its listed `expire_time` and its `notAfter`;
    /// one no longer listed stays until then. Its `effective_time` is not waited for: WeChat
    /// lists a certificate a day before signing with it, only WeChat holds its key, and
    /// refusing a signature a little early would only lose a notify to clock skew.
    async fn download_certificates(&self, downloads: &mut Downloads) -> Result<usize, ApiError> {
        downloads.last_attempt = Some(self.now_utc());
        let (headers, (status, body)) = self
            .exchange(reqwest::Method::GET, "/v3/certificates", None)
            .await?;
        let answer = Self::check_status(Answer { status, body })?;
        // Only WeChat and the merchant hold the APIv3 key, so a list that decrypts is theirs.
        let downloaded = decrypt_certificates(&answer.body, &self.app.apiv3_key)
            .map_err(|e: CertificatesError| ApiError::Unusable(e.to_string()))?;
        let signature = SignatureHeaders::from_pairs(
            headers
                .iter()
                .filter_map(|(name, value)| value.to_str().ok().map(|v| (name.as_str(), v))),
        )?;
        let now = self.now();
        let candidate = crate::verify::WechatpayKeys::new();
        match self.app.keys.verify(&signature, &answer.body, now) {
            Err(VerifyError::UnknownSerial(_)) => {
                candidate.add_certificates(
                    downloaded
                        .iter()
                        .filter_map(|d| crate::verify::PlatformCertificate::from_pem(&d.pem).ok()),
                );
                candidate.verify(&signature, &answer.body, now)?;
            }
            other => other?,
        }
        let count = downloaded.len();
        self.app
            .keys
            .add_certificates(downloaded.into_iter().map(|d| {
                let mut certificate = d.certificate;
                if let Some(expire) = d.expire_time {
                    certificate.not_after = certificate.not_after.min(expire);
                }
                certificate
            }));
        let now_utc = self.now_utc();
        self.app.keys.drop_expired(now_utc);
        downloads.last_success = Some(now_utc);
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded_with_upper_case_hex() {
        assert_eq!(encode_segment("order_0001-a"), "order_0001-a");
        assert_eq!(encode_segment("a|b*c@d"), "a%7Cb%2Ac%40d");
        assert_eq!(encode_segment("测"), "%E6%B5%8B");
    }

    #[test]
    fn the_retry_table_is_followed() {
        let api = |status: u16, code: &str| {
            ProviderError::from(ApiError::Api {
                status,
                code: code.into(),
                message: String::new(),
            })
        };
        assert!(api(500, "SYSTEM_ERROR").outcome_unknown());
        assert!(api(502, "WHATEVER").outcome_unknown());
        assert!(!api(500, "SYSTEM_ERROR").is_definite_refusal());
        let throttled = api(429, "FREQUENCY_LIMITED");
        assert!(matches!(
            throttled,
            ProviderError::Refused {
                retryable: true,
                ..
            }
        ));
        assert!(!throttled.is_definite_refusal());
        assert_eq!(api(400, "ORDERPAID"), ProviderError::AlreadyPaid);
        assert_eq!(api(400, "ORDER_CLOSED"), ProviderError::AlreadyClosed);
        assert_eq!(api(404, "ORDER_NOT_EXIST"), ProviderError::NotFound);
        assert!(matches!(
            api(401, "SIGN_ERROR"),
            ProviderError::Configuration(_)
        ));
        for definite in ["PARAM_ERROR", "NOT_ENOUGH", "OUT_TRADE_NO_USED"] {
            let error = api(403, definite);
            assert!(
                matches!(
                    error,
                    ProviderError::Refused {
                        retryable: false,
                        ..
                    }
                ),
                "{definite}"
            );
            assert!(error.is_definite_refusal(), "{definite}");
        }
        for unusable in [
            ApiError::Unusable("not JSON".into()),
            ApiError::Unverified(VerifyError::BadSignature),
            ApiError::Timeout,
        ] {
            assert!(!ProviderError::from(unusable).is_definite_refusal());
        }
    }
}
