//! The `gateway.do` client: signs on the blocking pool, POSTs with the protocol parameters in
//! the query string and `biz_content` in the form body (the Java SDK's layout), verifies the
//! response signature over the raw `*_response` text, and maps Alipay's codes onto
//! [`ProviderError`] so that the gateway knows whether to query, retry or give up.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use paygate_core::{ErrorDetail, ProviderError};
use serde_json::{Map, Value};

use crate::AlipayError;
use crate::form::{encode_component, encode_form};
use crate::keys::{SigningKey, VerifyingKey};
use crate::request::{CommonParams, redirect_url};
use crate::response::{ExtractedResponse, extract_response};
use crate::sign::Params;

/// Alipay's production gateway.
pub const DEFAULT_GATEWAY_URL: &str = "https://openapi.alipay.com/gateway.do";
/// Alipay's sandbox gateway since mid-2023 (the old `openapi.alipaydev.com` is retired).
pub const SANDBOX_GATEWAY_URL: &str = "https://openapi-sandbox.dl.alipaydev.com/gateway.do";

/// The certificate-mode SNs sent with, and expected on, every call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSns {
    /// Sent as `app_cert_sn`.
    pub app_cert_sn: String,
    /// Sent as `alipay_root_cert_sn`.
    pub alipay_root_cert_sn: String,
    /// The SN of the certificate whose key we verify with.
    pub alipay_cert_sn: String,
}

/// A gateway client for one Alipay app, holding its parsed keys.
#[derive(Debug, Clone)]
pub struct GatewayClient {
    http: reqwest::Client,
    gateway_url: String,
    app_id: String,
    signing_key: Arc<SigningKey>,
    alipay_key: Arc<VerifyingKey>,
    cert_sns: Option<CertSns>,
}

fn configuration(error: AlipayError) -> ProviderError {
    ProviderError::Configuration(ErrorDetail::from_error(error))
}

impl GatewayClient {
    /// Builds a client for `gateway_url` with a per-request `timeout`.
    pub fn new(
        gateway_url: String,
        app_id: String,
        signing_key: Arc<SigningKey>,
        alipay_key: Arc<VerifyingKey>,
        cert_sns: Option<CertSns>,
        timeout: Duration,
    ) -> Result<GatewayClient, AlipayError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| AlipayError::Config(format!("HTTP client: {e}")))?;
        Ok(GatewayClient {
            http,
            gateway_url,
            app_id,
            signing_key,
            alipay_key,
            cert_sns,
        })
    }

    /// The plain HTTP client, for downloads that are not gateway calls (bill files).
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The gateway URL calls go to.
    pub fn gateway_url(&self) -> &str {
        &self.gateway_url
    }

    /// The common parameters of a request made now.
    pub fn common_params(
        &self,
        method: &str,
        notify_url: Option<String>,
        return_url: Option<String>,
    ) -> CommonParams {
        CommonParams {
            app_id: self.app_id.clone(),
            method: method.to_owned(),
            timestamp: Utc::now(),
            notify_url,
            return_url,
            app_cert_sn: self.cert_sns.as_ref().map(|c| c.app_cert_sn.clone()),
            alipay_root_cert_sn: self
                .cert_sns
                .as_ref()
                .map(|c| c.alipay_root_cert_sn.clone()),
        }
    }

    /// Signs a request on tokio's blocking pool: an RSA-2048 signature takes about 0.75 ms,
    /// which must not stall the reactor.
    pub async fn sign(
        &self,
        common: CommonParams,
        biz_content: String,
    ) -> Result<Params, ProviderError> {
        let key = Arc::clone(&self.signing_key);
        tokio::task::spawn_blocking(move || common.signed_params(&biz_content, &key))
            .await
            .map_err(|e| {
                ProviderError::Configuration(ErrorDetail::caused_by("signing task failed", e))
            })?
            .map_err(configuration)
    }

    /// The signed GET URL for `alipay.trade.wap.pay` / `alipay.trade.page.pay`.
    pub async fn redirect_url(
        &self,
        common: CommonParams,
        biz_content: String,
    ) -> Result<String, ProviderError> {
        let signed = self.sign(common, biz_content).await?;
        Ok(redirect_url(&self.gateway_url, &signed))
    }

    /// Calls `method` with `biz_content` and returns the verified members of its
    /// `*_response` when `code` is `10000`; every other outcome is a typed error.
    pub async fn execute(
        &self,
        method: &str,
        biz_content: String,
        notify_url: Option<String>,
    ) -> Result<Map<String, Value>, ProviderError> {
        let common = self.common_params(method, notify_url, None);
        let mut signed = self.sign(common, biz_content).await?;
        let biz_content = signed.remove("biz_content").unwrap_or_default();
        let separator = if self.gateway_url.contains('?') {
            '&'
        } else {
            '?'
        };
        let query = encode_form(signed.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let url = format!("{}{separator}{query}", self.gateway_url);
        let body = format!("biz_content={}", encode_component(&biz_content));
        let response = self
            .http
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded;charset=utf-8",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| ProviderError::OutcomeUnknown(ErrorDetail::caused_by(method, e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(ProviderError::OutcomeUnknown(
                format!("{method}: HTTP {status}").into(),
            ));
        }
        let text = response.text().await.map_err(|e| {
            ProviderError::OutcomeUnknown(ErrorDetail::caused_by(
                format!("{method}: reading the body"),
                e,
            ))
        })?;
        self.interpret(method, &text)
    }

    /// Verifies a raw response body and maps its code.
    pub fn interpret(&self, method: &str, body: &str) -> Result<Map<String, Value>, ProviderError> {
        let untrusted =
            |e: AlipayError| ProviderError::UntrustedResponse(ErrorDetail::caused_by(method, e));
        let extracted = extract_response(body, method).map_err(untrusted)?;
        if extracted.sign.as_deref().is_none_or(str::is_empty) {
            return Err(unsigned_outcome(method, &extracted));
        }
        if let (Some(ours), Some(theirs)) = (&self.cert_sns, &extracted.alipay_cert_sn)
            && &ours.alipay_cert_sn != theirs
        {
            return Err(ProviderError::UntrustedResponse(
                format!(
                    "{method}: signed by Alipay certificate {theirs}, configured is {}; \
                 download the new certificate",
                    ours.alipay_cert_sn
                )
                .into(),
            ));
        }
        if let Err(error) = extracted.verify(&self.alipay_key) {
            // Either an attack, a broken proxy or the wrong Alipay key in the configuration.
            tracing::warn!(method, %error, "Alipay response failed signature verification");
            return Err(untrusted(error));
        }
        let fields = extracted.fields().map_err(untrusted)?;
        outcome(method, fields)
    }
}

fn text_field<'a>(fields: &'a Map<String, Value>, key: &str) -> &'a str {
    fields.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// An unsigned response proves nothing. Gateway-level refusals (bad app id, bad signature,
/// missing permission) are sent unsigned, so they become a configuration error, which changes
/// no order; an unsigned "success" is untrusted.
fn unsigned_outcome(method: &str, extracted: &ExtractedResponse<'_>) -> ProviderError {
    let fields = extracted.fields().unwrap_or_default();
    let code = text_field(&fields, "code");
    let detail = format!(
        "{method}: unsigned response code {code} {} {}",
        text_field(&fields, "sub_code"),
        text_field(&fields, "sub_msg")
    );
    match code {
        "20000" => ProviderError::OutcomeUnknown(detail.into()),
        "20001" | "40001" | "40002" | "40006" => ProviderError::Configuration(detail.into()),
        _ => ProviderError::UntrustedResponse(detail.into()),
    }
}

/// Sub-codes after which the same request may succeed later without changes.
const RETRYABLE_SUB_CODES: [&str; 2] = [
    "ACQ.SELLER_BALANCE_NOT_ENOUGH",
    "ACQ.BUYER_BALANCE_NOT_ENOUGH",
];

/// Maps a verified response's `code` / `sub_code` onto success or a typed error.
pub fn outcome(
    method: &str,
    fields: Map<String, Value>,
) -> Result<Map<String, Value>, ProviderError> {
    let code = text_field(&fields, "code");
    // Alipay sometimes prefixes business sub-codes with the layer that raised them.
    let sub_code = text_field(&fields, "sub_code").trim_start_matches("aop.");
    let message = format!(
        "{method}: {code} {} {} {}",
        text_field(&fields, "msg"),
        sub_code,
        text_field(&fields, "sub_msg")
    );
    let creates_trade = matches!(method, "alipay.trade.create" | "alipay.trade.precreate");
    match (code, sub_code) {
        ("10000", _) => Ok(fields),
        ("20000", _) | (_, "ACQ.SYSTEM_ERROR") => {
            Err(ProviderError::OutcomeUnknown(message.into()))
        }
        ("40004", "ACQ.TRADE_NOT_EXIST") => Err(ProviderError::NotFound),
        ("40004", "ACQ.TRADE_HAS_SUCCESS") => Err(ProviderError::AlreadyPaid),
        ("40004", "ACQ.TRADE_HAS_FINISHED") if creates_trade => Err(ProviderError::AlreadyPaid),
        ("40004", "ACQ.TRADE_HAS_CLOSE") => Err(ProviderError::AlreadyClosed),
        ("40004", sub_code) => Err(ProviderError::Refused {
            code: sub_code.to_owned(),
            message: text_field(&fields, "sub_msg").to_owned(),
            retryable: RETRYABLE_SUB_CODES.contains(&sub_code),
        }),
        ("20001" | "40006", _) | ("40002", "isv.invalid-signature" | "isv.invalid-app-id") => {
            Err(ProviderError::Configuration(message.into()))
        }
        ("40001" | "40002", sub_code) => Err(ProviderError::Refused {
            code: sub_code.to_owned(),
            message: text_field(&fields, "sub_msg").to_owned(),
            retryable: false,
        }),
        // Any other code is not a definite answer: resolve by query before retrying.
        _ => Err(ProviderError::OutcomeUnknown(message.into())),
    }
}
