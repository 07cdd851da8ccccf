//! The common request parameters and the `biz_content` of the trade APIs, shared by the app-pay
//! orderString, the wap/page redirect URL and the `gateway.do` calls.

use chrono::{DateTime, Utc};
use paygate_core::Fen;
use serde::Serialize;

use crate::AlipayError;
use crate::form::encode_form;
use crate::keys::SigningKey;
use crate::sign::{Params, RSA2, SIGN_TYPE, SignScope, sign_params};
use crate::time::format_china_time;

/// The protocol parameters every request carries besides `biz_content`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommonParams {
    /// The app's APPID.
    pub app_id: String,
    /// The API name, e.g. `alipay.trade.app.pay`.
    pub method: String,
    /// When the request was made; written in China time.
    pub timestamp: DateTime<Utc>,
    /// Where Alipay posts the async notify, if anywhere.
    pub notify_url: Option<String>,
    /// Where the browser returns after wap/page pay.
    pub return_url: Option<String>,
    /// Certificate mode: the SN of the app certificate.
    pub app_cert_sn: Option<String>,
    /// Certificate mode: the SNs of Alipay's RSA root certificates.
    pub alipay_root_cert_sn: Option<String>,
}

impl CommonParams {
    /// The unsigned parameter map for this request with `biz_content`, including
    /// `sign_type=RSA2` (which is signed), `charset=utf-8`, `format=JSON` and `version=1.0`.
    pub fn to_params(&self, biz_content: &str) -> Params {
        let mut params = Params::new();
        let mut put = |key: &str, value: &str| {
            params.insert(key.to_owned(), value.to_owned());
        };
        put("app_id", &self.app_id);
        put("method", &self.method);
        put("format", "JSON");
        put("charset", "utf-8");
        put(SIGN_TYPE, RSA2);
        put("timestamp", &format_china_time(self.timestamp));
        put("version", "1.0");
        put("biz_content", biz_content);
        let optional = [
            ("notify_url", &self.notify_url),
            ("return_url", &self.return_url),
            ("app_cert_sn", &self.app_cert_sn),
            ("alipay_root_cert_sn", &self.alipay_root_cert_sn),
        ];
        for (key, value) in optional {
            if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                put(key, value);
            }
        }
        params
    }

    /// The signed parameter map for this request with `biz_content`.
    pub fn signed_params(
        &self,
        biz_content: &str,
        key: &SigningKey,
    ) -> Result<Params, AlipayError> {
        let mut params = self.to_params(biz_content);
        sign_params(&mut params, SignScope::Request, key)?;
        Ok(params)
    }
}

/// The `biz_content` of the trade-creating APIs (app, wap, page, precreate, create). Absent
/// optional fields are left out of the JSON rather than sent empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TradeBizContent {
    /// The merchant's order number.
    pub out_trade_no: String,
    /// The amount in yuan with two decimals, from [`Fen::to_yuan_string`].
    pub total_amount: String,
    /// Item name (≤256 chars).
    pub subject: String,
    /// Optional description (≤128 chars).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The product code of the channel (`QUICK_MSECURITY_PAY`, `QUICK_WAP_WAY`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_code: Option<String>,
    /// Absolute expiry in China time (`yyyy-MM-dd HH:mm:ss`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_expire: Option<String>,
    /// Relative expiry (`30m`, `2h`, `1d`, `1c`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_express: Option<String>,
    /// Echoed verbatim in the notify.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passback_params: Option<String>,
    /// The paying buyer's 2088… user id (mini program).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buyer_id: Option<String>,
    /// The paying buyer's open id (mini program, newer apps).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buyer_open_id: Option<String>,
    /// Where the wap cashier's "back" button goes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quit_url: Option<String>,
}

impl TradeBizContent {
    /// A trade with the required fields; the amount is converted to yuan here, at the edge.
    pub fn new(out_trade_no: &str, amount: Fen, subject: &str) -> TradeBizContent {
        TradeBizContent {
            out_trade_no: out_trade_no.to_owned(),
            total_amount: amount.to_yuan_string(),
            subject: subject.to_owned(),
            body: None,
            product_code: None,
            time_expire: None,
            timeout_express: None,
            passback_params: None,
            buyer_id: None,
            buyer_open_id: None,
            quit_url: None,
        }
    }

    /// The JSON text that goes in `biz_content` (UTF-8, not ASCII-escaped, compact).
    pub fn to_json(&self) -> Result<String, AlipayError> {
        to_biz_json(self)
    }
}

/// Serialises any `biz_content` value; the error only happens for maps with non-string keys.
pub fn to_biz_json<T: Serialize>(value: &T) -> Result<String, AlipayError> {
    serde_json::to_string(value).map_err(|e| AlipayError::BadField {
        field: "biz_content",
        reason: e.to_string(),
    })
}

/// The signed `gateway.do?…` GET URL for `alipay.trade.wap.pay` / `alipay.trade.page.pay`
/// (Java SDK `pageExecute(request, "GET")`): no HTTP call, the browser is sent there.
pub fn redirect_url(gateway_url: &str, signed: &Params) -> String {
    let separator = if gateway_url.contains('?') { '&' } else { '?' };
    let query = encode_form(signed.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    format!("{gateway_url}{separator}{query}")
}
