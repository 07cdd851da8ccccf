//! The v2 API client: builds and signs each request, posts it as XML and trusts nothing in
//! the answer until its signature verifies (protocol notes §2–§3, §6).
//!
//! A `return_code=SUCCESS` response without a valid signature is an error, never a prepay_id
//! (vector U05): wechatpy does not check this by itself. Errors keep WeChat's codes and say
//! whether the same request may be sent again (§9): `SYSTEMERROR` and timeouts leave the
//! outcome unknown (query, or retry with identical parameters), `ORDERPAID` means query and mark
//! paid, and caller or configuration errors are final.

use std::time::Duration;

use chrono::{DateTime, Utc};
use paygate_core::{
    ErrorDetail, Fen, ProviderError, ProviderKind, RefundFacts, RefundQuery, RefundRequest,
    RefundState, TradeFacts, TradeState,
};
use secrecy::ExposeSecret;

use crate::config::{ConfigError, WechatConfig};
use crate::fields::{FieldError, currency, optional, optional_fen, optional_time, required};
use crate::pay_params::nonce_str;
use crate::sign::{self, ApiKey, Params, SignType, verify_received};
use crate::time;
use crate::xml::{self, XmlError};

/// The largest response body read; refundquery with many refunds is the biggest answer.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Why an API call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The request was refused locally before sending (missing openid, amount over the cap).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Refunds need the merchant certificate and none is configured.
    #[error("this call needs the merchant API certificate, which is not configured")]
    MissingCertificate,
    /// No answer in time: the outcome is unknown.
    #[error("WeChat did not answer in time")]
    Timeout,
    /// The connection failed or broke: the outcome is unknown.
    #[error("transport error: {0}")]
    Transport(ErrorDetail),
    /// A non-200 HTTP status (WeChat answers 200 even for errors).
    #[error("HTTP status {0}")]
    HttpStatus(u16),
    /// The body is not an acceptable XML document.
    #[error("response is not acceptable XML: {0}")]
    Xml(#[from] XmlError),
    /// `return_code=FAIL`: the request was refused at the protocol level.
    #[error("WeChat refused the request: {0}")]
    ReturnFail(String),
    /// The response's signature is missing or wrong: forged or corrupted.
    #[error("response signature does not verify")]
    BadSignature,
    /// The response names another appid or mch_id.
    #[error("response {field} is {got:?}, not ours")]
    WrongMerchant {
        /// `appid` or `mch_id`.
        field: &'static str,
        /// What the response said.
        got: String,
    },
    /// `result_code=FAIL` with WeChat's `err_code` and description.
    #[error("WeChat error {code}: {description}")]
    Business {
        /// `err_code`.
        code: String,
        /// `err_code_des`.
        description: String,
    },
    /// A verified response lacks a field or has one that does not parse.
    #[error("unexpected response: {0}")]
    UnexpectedField(#[from] FieldError),
}

impl ApiError {
    /// Whether sending the identical request again is the right move (§9): timeouts,
    /// `SYSTEMERROR`, `BIZERR_NEED_RETRY` and rate limits (after backing off).
    pub fn retryable(&self) -> bool {
        match self {
            ApiError::Timeout | ApiError::Transport(_) => true,
            ApiError::HttpStatus(status) => *status >= 500,
            ApiError::Business { code, .. } => matches!(
                code.as_str(),
                "SYSTEMERROR"
                    | "BIZERR_NEED_RETRY"
                    | "FREQUENCY_LIMITED"
                    | "INVALID_REQ_TOO_MUCH"
                    | "USERPAYING"
            ),
            _ => false,
        }
    }
}

impl From<ApiError> for ProviderError {
    fn from(error: ApiError) -> Self {
        let retryable = error.retryable();
        match error {
            ApiError::InvalidRequest(reason) => ProviderError::InvalidRequest(reason),
            ApiError::MissingCertificate => {
                ProviderError::Configuration(ErrorDetail::from_error(error))
            }
            ApiError::Transport(detail) => ProviderError::OutcomeUnknown(detail),
            ApiError::Timeout | ApiError::HttpStatus(_) => {
                ProviderError::OutcomeUnknown(ErrorDetail::from_error(error))
            }
            ApiError::Xml(_)
            | ApiError::BadSignature
            | ApiError::WrongMerchant { .. }
            | ApiError::UnexpectedField(_) => {
                ProviderError::UntrustedResponse(ErrorDetail::from_error(error))
            }
            ApiError::ReturnFail(message) => ProviderError::Refused {
                code: "FAIL".into(),
                message,
                retryable: false,
            },
            ApiError::Business { code, description } => match code.as_str() {
                "SYSTEMERROR" => {
                    ProviderError::OutcomeUnknown(format!("{code}: {description}").into())
                }
                "ORDERPAID" => ProviderError::AlreadyPaid,
                "ORDERCLOSED" => ProviderError::AlreadyClosed,
                "ORDERNOTEXIST" | "REFUNDNOTEXIST" => ProviderError::NotFound,
                "SIGNERROR"
                | "NOAUTH"
                | "APPID_NOT_EXIST"
                | "MCHID_NOT_EXIST"
                | "APPID_MCHID_NOT_MATCH" => {
                    ProviderError::Configuration(format!("{code}: {description}").into())
                }
                _ => ProviderError::Refused {
                    code,
                    message: description,
                    retryable,
                },
            },
        }
    }
}

/// The `trade_type` of a unified order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeType {
    /// Mini-program and official-account pay (`openid` required).
    Jsapi,
    /// QR code (`code_url`).
    Native,
    /// Native app SDK.
    App,
    /// H5 in a mobile browser (`scene_info` required).
    Mweb,
}

impl TradeType {
    /// The wire value.
    pub const fn as_str(self) -> &'static str {
        match self {
            TradeType::Jsapi => "JSAPI",
            TradeType::Native => "NATIVE",
            TradeType::App => "APP",
            TradeType::Mweb => "MWEB",
        }
    }
}

/// A `unifiedorder` request's business fields (appid, mch_id, nonce and sign are added by the
/// client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnifiedOrder {
    /// The payment product.
    pub trade_type: TradeType,
    /// Item description (`body`), at most 127 bytes.
    pub body: String,
    /// The merchant's order number.
    pub out_trade_no: String,
    /// The amount; at most `i32::MAX` fen since `total_fee` is an `Int`.
    pub total_fee: Fen,
    /// `fee_type`, sent only when given (CNY is the default).
    pub fee_type: Option<String>,
    /// The buyer's IP (or the server's for NATIVE).
    pub spbill_create_ip: String,
    /// Where the payment notify goes.
    pub notify_url: String,
    /// The buyer's openid under this appid (JSAPI).
    pub openid: Option<String>,
    /// The product id (NATIVE).
    pub product_id: Option<String>,
    /// H5 scene JSON (MWEB).
    pub scene_info: Option<String>,
    /// Returned unchanged in the notify and query.
    pub attach: Option<String>,
    /// When the order was placed.
    pub time_start: Option<DateTime<Utc>>,
    /// When the order stops being payable.
    pub time_expire: Option<DateTime<Utc>>,
}

/// The longest `body` sent; the current doc says String(127) (notes §10).
pub const MAX_BODY_BYTES: usize = 127;

impl UnifiedOrder {
    /// The request's fields, after the checks WeChat would otherwise fail on.
    pub fn to_params(&self) -> Result<Params, ApiError> {
        let total_fee = self.total_fee.get();
        if total_fee <= 0 || total_fee > i64::from(i32::MAX) {
            return Err(ApiError::InvalidRequest(format!(
                "total_fee must be 1..={} fen, got {total_fee}",
                i32::MAX
            )));
        }
        if self.body.is_empty() || self.body.len() > MAX_BODY_BYTES {
            return Err(ApiError::InvalidRequest(format!(
                "body must be 1..={MAX_BODY_BYTES} bytes"
            )));
        }
        let need = |field: &Option<String>, name: &str| match field {
            Some(value) if !value.is_empty() => Ok(()),
            _ => Err(ApiError::InvalidRequest(format!(
                "{} orders need {name}",
                self.trade_type.as_str()
            ))),
        };
        match self.trade_type {
            TradeType::Jsapi => need(&self.openid, "openid")?,
            TradeType::Native => need(&self.product_id, "product_id")?,
            TradeType::Mweb => need(&self.scene_info, "scene_info")?,
            TradeType::App => {}
        }
        let mut params = Params::new();
        let mut put = |name: &str, value: Option<String>| {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                params.insert(name.to_owned(), value);
            }
        };
        put("trade_type", Some(self.trade_type.as_str().to_owned()));
        put("body", Some(self.body.clone()));
        put("out_trade_no", Some(self.out_trade_no.clone()));
        put("total_fee", Some(total_fee.to_string()));
        put("fee_type", self.fee_type.clone());
        put("spbill_create_ip", Some(self.spbill_create_ip.clone()));
        put("notify_url", Some(self.notify_url.clone()));
        put("openid", self.openid.clone());
        put("product_id", self.product_id.clone());
        put("scene_info", self.scene_info.clone());
        put("attach", self.attach.clone());
        put("time_start", self.time_start.map(time::to_china_compact));
        put("time_expire", self.time_expire.map(time::to_china_compact));
        Ok(params)
    }
}

/// What a successful `unifiedorder` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepayResult {
    /// The prepay id (valid 2 hours).
    pub prepay_id: String,
    /// The QR content (NATIVE).
    pub code_url: Option<String>,
    /// The H5 URL (MWEB).
    pub mweb_url: Option<String>,
}

/// Which trade an orderquery names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeRef<'a> {
    /// By WeChat's `transaction_id` (preferred by WeChat).
    TransactionId(&'a str),
    /// By the merchant's `out_trade_no`.
    OutTradeNo(&'a str),
}

/// A configured v2 API client for one merchant app.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    cert_http: Option<reqwest::Client>,
    api_base: String,
    appid: String,
    mch_id: String,
    key: ApiKey,
    sign_type: SignType,
}

/// Builds a reqwest client with the app's timeout, extra trusted roots and, for `secapi`
/// calls, the merchant certificate. Shared with the login client.
pub(crate) fn http_client(
    config: &WechatConfig,
    identity: Option<reqwest::Identity>,
) -> Result<reqwest::Client, ConfigError> {
    build_http_client(
        config.request_timeout(),
        config.extra_root_certificates_pem.as_deref(),
        identity,
    )
}

/// An HTTP client with the app's timeout, extra trusted roots and, for `secapi`, its identity.
pub(crate) fn build_http_client(
    timeout: Duration,
    extra_root_certificates_pem: Option<&str>,
    identity: Option<reqwest::Identity>,
) -> Result<reqwest::Client, ConfigError> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)));
    if let Some(pem) = extra_root_certificates_pem {
        let roots = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| ConfigError::Certificate(format!("extra root certificates: {e}")))?;
        builder = builder.tls_certs_merge(roots);
    }
    if let Some(identity) = identity {
        builder = builder.identity(identity);
    }
    builder
        .build()
        .map_err(|e| ConfigError::HttpClient(e.to_string()))
}

impl ApiClient {
    /// Builds the client (and, with a merchant certificate, the mutual-TLS client for refunds).
    pub fn new(config: &WechatConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let cert_http = match &config.merchant_certificate {
            None => None,
            Some(certificate) => {
                let bundle = certificate.to_pem_bundle()?;
                let identity = reqwest::Identity::from_pem(bundle.expose_secret().as_bytes())
                    .map_err(|e| ConfigError::Certificate(e.to_string()))?;
                Some(http_client(config, Some(identity))?)
            }
        };
        Ok(Self {
            http: http_client(config, None)?,
            cert_http,
            api_base: config.api_base.trim_end_matches('/').to_owned(),
            appid: config.appid.clone(),
            mch_id: config.mch_id.clone(),
            key: ApiKey::from(config.api_key.clone()),
            sign_type: config.sign_type,
        })
    }

    /// The plain (no client certificate) HTTP client, for calls whose answer is not the
    /// usual signed XML (`downloadbill`).
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The full URL of an API path.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.api_base, path)
    }

    /// The algorithm requests (and so their responses and notifies) are signed with.
    pub fn sign_type(&self) -> SignType {
        self.sign_type
    }

    /// Adds appid, mch_id and `nonce` to `params` and signs them, as sent on the wire.
    pub fn sign_request(&self, mut params: Params, nonce: &str) -> Params {
        params.insert("appid".into(), self.appid.clone());
        params.insert("mch_id".into(), self.mch_id.clone());
        params.insert("nonce_str".into(), nonce.to_owned());
        sign::sign_in_place(&mut params, &self.key, self.sign_type);
        params
    }

    /// Checks a parsed response: `return_code`, the signature, that it names our merchant, and
    /// `result_code`. Returns the verified fields.
    pub fn check_response(&self, fields: Params) -> Result<Params, ApiError> {
        match fields.get("return_code").map(String::as_str) {
            Some("SUCCESS") => {}
            Some(_) => {
                return Err(ApiError::ReturnFail(
                    fields.get("return_msg").cloned().unwrap_or_default(),
                ));
            }
            None => return Err(FieldError::new("return_code", "missing").into()),
        }
        if verify_received(&fields, &self.key, self.sign_type).is_none() {
            return Err(ApiError::BadSignature);
        }
        for (field, ours) in [("appid", &self.appid), ("mch_id", &self.mch_id)] {
            if let Some(got) = fields.get(field).filter(|got| *got != ours) {
                return Err(ApiError::WrongMerchant {
                    field,
                    got: got.clone(),
                });
            }
        }
        match fields.get("result_code").map(String::as_str) {
            Some("SUCCESS") | None => Ok(fields),
            Some(_) => Err(ApiError::Business {
                code: fields.get("err_code").cloned().unwrap_or_default(),
                description: fields.get("err_code_des").cloned().unwrap_or_default(),
            }),
        }
    }

    /// Signs `params`, posts them to `path` (with the merchant certificate when `secure`), and
    /// returns the verified response fields. Usable for endpoints this crate has no method for.
    pub async fn call(&self, path: &str, params: Params, secure: bool) -> Result<Params, ApiError> {
        let http = if secure {
            self.cert_http
                .as_ref()
                .ok_or(ApiError::MissingCertificate)?
        } else {
            &self.http
        };
        let signed = self.sign_request(params, &nonce_str());
        let body = xml::write(&signed)?;
        let url = format!("{}{}", self.api_base, path);
        let response = http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .body(body)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(ApiError::HttpStatus(status.as_u16()));
        }
        // Refuse an announced oversized body before reading it; the parser re-checks the
        // actual length for bodies sent without Content-Length.
        if let Some(size) = response.content_length() {
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            if size > MAX_RESPONSE_BYTES {
                return Err(XmlError::TooLarge {
                    size,
                    limit: MAX_RESPONSE_BYTES,
                }
                .into());
            }
        }
        let bytes = response.bytes().await.map_err(transport_error)?;
        let fields = xml::parse_with_root(&bytes, "xml", MAX_RESPONSE_BYTES)?;
        self.check_response(fields)
    }

    /// `pay/unifiedorder`: creates the trade and returns the prepay id (and QR / H5 URL).
    pub async fn unified_order(&self, order: &UnifiedOrder) -> Result<PrepayResult, ApiError> {
        let fields = self
            .call("/pay/unifiedorder", order.to_params()?, false)
            .await?;
        let result = PrepayResult {
            prepay_id: required(&fields, "prepay_id")?.to_owned(),
            code_url: optional(&fields, "code_url"),
            mweb_url: optional(&fields, "mweb_url"),
        };
        match order.trade_type {
            TradeType::Native if result.code_url.is_none() => {
                Err(FieldError::new("code_url", "missing").into())
            }
            TradeType::Mweb if result.mweb_url.is_none() => {
                Err(FieldError::new("mweb_url", "missing").into())
            }
            _ => Ok(result),
        }
    }

    /// `pay/orderquery`: the trade's current facts.
    pub async fn order_query(&self, trade: TradeRef<'_>) -> Result<TradeFacts, ApiError> {
        let mut params = Params::new();
        match trade {
            TradeRef::TransactionId(id) => params.insert("transaction_id".into(), id.to_owned()),
            TradeRef::OutTradeNo(no) => params.insert("out_trade_no".into(), no.to_owned()),
        };
        let fields = self.call("/pay/orderquery", params, false).await?;
        trade_facts_from_query(&fields)
    }

    /// `pay/closeorder`: closes an unpaid trade. `ORDERPAID` comes back as a business error.
    pub async fn close_order(&self, out_trade_no: &str) -> Result<(), ApiError> {
        let params = Params::from([("out_trade_no".to_owned(), out_trade_no.to_owned())]);
        self.call("/pay/closeorder", params, false).await.map(drop)
    }

    /// `secapi/pay/refund` over mutual TLS. Success means accepted, not refunded yet.
    pub async fn refund(&self, request: &RefundRequest) -> Result<RefundFacts, ApiError> {
        let mut params = Params::new();
        match &request.provider_trade_no {
            Some(id) => params.insert("transaction_id".into(), id.clone()),
            None => params.insert("out_trade_no".into(), request.out_trade_no.to_string()),
        };
        params.insert("out_refund_no".into(), request.out_refund_no.to_string());
        params.insert("total_fee".into(), int_fee(request.order_amount)?);
        params.insert("refund_fee".into(), int_fee(request.refund_amount)?);
        if let Some(reason) = request.reason.as_ref().filter(|r| !r.is_empty()) {
            params.insert("refund_desc".into(), reason.clone());
        }
        if let Some(url) = request.notify_url.as_ref().filter(|u| !u.is_empty()) {
            params.insert("notify_url".into(), url.clone());
        }
        let fields = self.call("/secapi/pay/refund", params, true).await?;
        Ok(RefundFacts {
            out_trade_no: required(&fields, "out_trade_no")?.to_owned(),
            out_refund_no: required(&fields, "out_refund_no")?.to_owned(),
            provider_refund_id: optional(&fields, "refund_id"),
            amount: optional_fen(&fields, "refund_fee")?,
            state: RefundState::Processing,
            succeeded_at: None,
        })
    }

    /// `pay/refundquery` by `out_refund_no`. A refund WeChat does not know is reported as
    /// `RefundState::NotFound` rather than an error.
    pub async fn refund_query(&self, query: &RefundQuery) -> Result<RefundFacts, ApiError> {
        let params = Params::from([("out_refund_no".to_owned(), query.out_refund_no.to_string())]);
        match self.call("/pay/refundquery", params, false).await {
            Ok(fields) => refund_facts_from_query(&fields, query.out_refund_no.as_str()),
            Err(ApiError::Business { code, .. }) if code == "REFUNDNOTEXIST" => Ok(RefundFacts {
                out_trade_no: query.out_trade_no.to_string(),
                out_refund_no: query.out_refund_no.to_string(),
                provider_refund_id: None,
                amount: None,
                state: RefundState::NotFound,
                succeeded_at: None,
            }),
            Err(other) => Err(other),
        }
    }
}

fn transport_error(error: reqwest::Error) -> ApiError {
    if error.is_timeout() {
        ApiError::Timeout
    } else {
        ApiError::Transport(ErrorDetail::from_error(error))
    }
}

/// A fen amount as WeChat's `Int`.
fn int_fee(amount: Fen) -> Result<String, ApiError> {
    i32::try_from(amount.get())
        .map(|fee| fee.to_string())
        .map_err(|_| ApiError::InvalidRequest(format!("{amount} exceeds WeChat's Int")))
}

/// Reads an orderquery response (notes §6) into trade facts.
pub fn trade_facts_from_query(fields: &Params) -> Result<TradeFacts, ApiError> {
    let state = match required(fields, "trade_state")? {
        "SUCCESS" => TradeState::Paid,
        "REFUND" => TradeState::Refunded,
        "NOTPAY" | "USERPAYING" => TradeState::AwaitingPayment,
        "CLOSED" => TradeState::Closed,
        "REVOKED" | "PAYERROR" => TradeState::Failed,
        other => {
            return Err(FieldError::new("trade_state", format!("unknown value {other:?}")).into());
        }
    };
    Ok(TradeFacts {
        provider: ProviderKind::WECHAT,
        out_trade_no: required(fields, "out_trade_no")?.to_owned(),
        provider_trade_no: optional(fields, "transaction_id"),
        state,
        amount: optional_fen(fields, "total_fee")?,
        currency: currency(fields, "fee_type")?,
        app_id: optional(fields, "appid"),
        merchant_id: optional(fields, "mch_id"),
        payer_id: optional(fields, "openid"),
        paid_at: optional_time(fields, "time_end", time::parse_china_compact)?,
    })
}

/// Reads the refund named `out_refund_no` out of a refundquery response's indexed fields
/// (`out_refund_no_$n`, `refund_status_$n`, …).
pub fn refund_facts_from_query(
    fields: &Params,
    out_refund_no: &str,
) -> Result<RefundFacts, ApiError> {
    let count: usize = required(fields, "refund_count")?
        .parse()
        .map_err(|_| FieldError::new("refund_count", "not a number"))?;
    let index = (0..count)
        .find(|n| {
            fields
                .get(&format!("out_refund_no_{n}"))
                .map(String::as_str)
                == Some(out_refund_no)
        })
        .ok_or_else(|| {
            FieldError::new("out_refund_no_$n", format!("{out_refund_no} not listed"))
        })?;
    let indexed = |name: &str| {
        fields
            .get(&format!("{name}_{index}"))
            .filter(|v| !v.is_empty())
    };
    let state = match indexed("refund_status").map(String::as_str) {
        Some("SUCCESS") => RefundState::Succeeded,
        Some("PROCESSING") => RefundState::Processing,
        Some("REFUNDCLOSE" | "CHANGE") => RefundState::Failed,
        other => {
            return Err(
                FieldError::new("refund_status_$n", format!("unknown value {other:?}")).into(),
            );
        }
    };
    let amount = match indexed("refund_fee") {
        None => None,
        Some(text) => Some(
            crate::fields::parse_fen(text)
                .ok_or_else(|| FieldError::new("refund_fee_$n", format!("{text:?} is not fen")))?,
        ),
    };
    let succeeded_at = match indexed("refund_success_time") {
        None => None,
        Some(text) => Some(
            time::parse_china_dashed(text)
                .map_err(|e| FieldError::new("refund_success_time_$n", e.to_string()))?,
        ),
    };
    Ok(RefundFacts {
        out_trade_no: required(fields, "out_trade_no")?.to_owned(),
        out_refund_no: out_refund_no.to_owned(),
        provider_refund_id: indexed("refund_id").cloned(),
        amount,
        state,
        succeeded_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> UnifiedOrder {
        UnifiedOrder {
            trade_type: TradeType::Jsapi,
            body: "tea".into(),
            out_trade_no: "order_0001".into(),
            total_fee: Fen::new(1).unwrap(),
            fee_type: None,
            spbill_create_ip: "127.0.0.1".into(),
            notify_url: "https://example.com/n".into(),
            openid: Some("o1".into()),
            product_id: None,
            scene_info: None,
            attach: None,
            time_start: None,
            time_expire: None,
        }
    }

    #[test]
    fn amounts_beyond_the_wire_int_are_refused_before_sending() {
        let mut too_big = order();
        too_big.total_fee = Fen::new(i64::from(i32::MAX) + 1).unwrap();
        assert!(matches!(
            too_big.to_params(),
            Err(ApiError::InvalidRequest(_))
        ));
        let mut max = order();
        max.total_fee = Fen::new(i64::from(i32::MAX)).unwrap();
        assert_eq!(max.to_params().unwrap()["total_fee"], "2147483647");
        let mut zero = order();
        zero.total_fee = Fen::ZERO;
        assert!(zero.to_params().is_err());
    }

    #[test]
    fn each_trade_type_requires_its_own_field() {
        let mut jsapi = order();
        jsapi.openid = None;
        assert!(jsapi.to_params().is_err());
        let mut native = order();
        native.trade_type = TradeType::Native;
        assert!(native.to_params().is_err());
        native.product_id = Some("p".into());
        assert!(native.to_params().is_ok());
        let mut mweb = order();
        mweb.trade_type = TradeType::Mweb;
        assert!(mweb.to_params().is_err());
        let mut long = order();
        long.body = "茶".repeat(43);
        assert!(long.to_params().is_err());
    }

    #[test]
    fn the_retry_table_of_the_notes_is_followed() {
        let business = |code: &str| ApiError::Business {
            code: code.into(),
            description: String::new(),
        };
        assert!(ProviderError::from(business("SYSTEMERROR")).outcome_unknown());
        assert!(ProviderError::from(ApiError::Timeout).outcome_unknown());
        assert_eq!(
            ProviderError::from(business("ORDERPAID")),
            ProviderError::AlreadyPaid
        );
        assert_eq!(
            ProviderError::from(business("ORDERCLOSED")),
            ProviderError::AlreadyClosed
        );
        assert!(matches!(
            ProviderError::from(business("BIZERR_NEED_RETRY")),
            ProviderError::Refused {
                retryable: true,
                ..
            }
        ));
        assert!(matches!(
            ProviderError::from(business("OUT_TRADE_NO_USED")),
            ProviderError::Refused {
                retryable: false,
                ..
            }
        ));
        assert!(matches!(
            ProviderError::from(business("SIGNERROR")),
            ProviderError::Configuration(_)
        ));
        assert!(matches!(
            ProviderError::from(ApiError::BadSignature),
            ProviderError::UntrustedResponse(_)
        ));
    }

    #[test]
    fn answers_that_may_hide_a_carried_out_refund_are_never_definite_refusals() {
        let business = |code: &str| ApiError::Business {
            code: code.into(),
            description: String::new(),
        };
        let empty_body = ApiError::from(xml::parse_with_root(b"", "xml", 1024).unwrap_err());
        let truncated = ApiError::from(
            xml::parse_with_root(b"<xml><return_code>SUC", "xml", 1024).unwrap_err(),
        );
        for in_flight in [
            business("SYSTEMERROR"),
            business("BIZERR_NEED_RETRY"),
            business("FREQUENCY_LIMITED"),
            ApiError::Timeout,
            ApiError::HttpStatus(502),
            ApiError::BadSignature,
            empty_body,
            truncated,
        ] {
            let error = ProviderError::from(in_flight);
            assert!(!error.is_definite_refusal(), "{error:?}");
        }
        for definite in [
            business("NOTENOUGH"),
            business("REFUNDNOTEXIST"),
            ApiError::ReturnFail("签名错误".into()),
        ] {
            let error = ProviderError::from(definite);
            assert!(error.is_definite_refusal(), "{error:?}");
        }
    }

    #[test]
    fn refundquery_reads_the_indexed_entry_of_our_refund() {
        let fields: Params = [
            ("out_trade_no", "order_0001"),
            ("refund_count", "2"),
            ("out_refund_no_0", "refund_a"),
            ("refund_status_0", "PROCESSING"),
            ("out_refund_no_1", "refund_b"),
            ("refund_status_1", "SUCCESS"),
            ("refund_fee_1", "50"),
            ("refund_id_1", "5030"),
            ("refund_success_time_1", "2024-01-01 12:00:00"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let facts = refund_facts_from_query(&fields, "refund_b").unwrap();
        assert_eq!(facts.state, RefundState::Succeeded);
        assert_eq!(facts.amount, Some(Fen::new(50).unwrap()));
        assert_eq!(facts.provider_refund_id.as_deref(), Some("5030"));
        assert_eq!(
            facts.succeeded_at.map(|t| t.to_rfc3339()),
            Some("2024-01-01T04:00:00+00:00".to_owned())
        );
        assert_eq!(
            refund_facts_from_query(&fields, "refund_a").unwrap().state,
            RefundState::Processing
        );
        assert!(refund_facts_from_query(&fields, "refund_c").is_err());
    }
}
