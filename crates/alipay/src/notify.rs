//! Asynchronous trade notifies (`notify_type=trade_status_sync`), verified like Java's
//! `rsaCheckV1`, and the bodies that acknowledge them.
//!
//! The body is form-decoded exactly once; `sign` and `sign_type` are left out of the signed
//! content; the algorithm is RSA2 from our configuration whatever `sign_type` says (changing
//! only `sign_type` therefore still verifies, which is what the notify vectors record for a
//! strict V1 verifier). Every received field is signed and checked, never a whitelist.
//! Amounts stay strings until the signature passed, then become exact [`Fen`].

use chrono::{DateTime, Utc};
use paygate_core::{Currency, Fen, ProviderKind, ReportedYuan, TradeFacts, TradeState};

use crate::AlipayError;
use crate::form::{decode_unique_form, encode_form};
use crate::keys::{SigningKey, VerifyingKey};
use crate::sign::{Params, SignScope, sign_params, verify_form_body, verify_params};
use crate::time::parse_china_time;

/// The reply body that stops Alipay's retries: exactly these 7 ASCII bytes.
pub const ACK_SUCCESS: &str = "success";
/// The reply body that makes Alipay retry later (anything but `success` does).
pub const ACK_FAILURE: &str = "failure";

/// Alipay's `trade_status` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlipayTradeStatus {
    /// Created, awaiting payment.
    WaitBuyerPay,
    /// Unpaid and timed out, or fully refunded.
    TradeClosed,
    /// Paid and still refundable.
    TradeSuccess,
    /// Paid, no longer refundable.
    TradeFinished,
}

impl AlipayTradeStatus {
    /// Parses the wire value; anything else is an error rather than a guess.
    pub fn parse(text: &str) -> Result<AlipayTradeStatus, AlipayError> {
        match text {
            "WAIT_BUYER_PAY" => Ok(AlipayTradeStatus::WaitBuyerPay),
            "TRADE_CLOSED" => Ok(AlipayTradeStatus::TradeClosed),
            "TRADE_SUCCESS" => Ok(AlipayTradeStatus::TradeSuccess),
            "TRADE_FINISHED" => Ok(AlipayTradeStatus::TradeFinished),
            other => Err(AlipayError::BadField {
                field: "trade_status",
                reason: format!("unknown value {other:?}"),
            }),
        }
    }
}

impl From<AlipayTradeStatus> for TradeState {
    fn from(status: AlipayTradeStatus) -> TradeState {
        match status {
            AlipayTradeStatus::WaitBuyerPay => TradeState::AwaitingPayment,
            AlipayTradeStatus::TradeSuccess | AlipayTradeStatus::TradeFinished => TradeState::Paid,
            AlipayTradeStatus::TradeClosed => TradeState::Closed,
        }
    }
}

/// A verified trade notify with its fields typed. Only built after the signature passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeNotify {
    /// `notify_id`, for de-duplication.
    pub notify_id: Option<String>,
    /// `app_id` as sent; the gateway compares it with ours.
    pub app_id: Option<String>,
    /// `seller_id` (2088…) as sent; the gateway compares it with ours.
    pub seller_id: Option<String>,
    /// The merchant's order number.
    pub out_trade_no: String,
    /// Alipay's trade number.
    pub trade_no: Option<String>,
    /// The trade's status.
    pub trade_status: AlipayTradeStatus,
    /// The order total, by value: `"88.880"` is 8888 fen, and a value between two fen
    /// amounts (`"88.881"`) matches no order.
    pub total_amount: ReportedYuan,
    /// What the merchant actually received.
    pub receipt_amount: Option<Fen>,
    /// What the buyer paid out of pocket.
    pub buyer_pay_amount: Option<Fen>,
    /// Cumulative refunded amount (refund notifies).
    pub refund_fee: Option<Fen>,
    /// The refund's `out_request_no` (refund notifies).
    pub out_biz_no: Option<String>,
    /// The buyer's 2088… id or open id.
    pub buyer_id: Option<String>,
    /// When the buyer paid.
    pub gmt_payment: Option<DateTime<Utc>>,
    /// When the refund went through.
    pub gmt_refund: Option<DateTime<Utc>>,
    /// The merchant's `passback_params`, verbatim.
    pub passback_params: Option<String>,
}

/// Reads fields of a verified notify; empty values count as absent, as they are unsigned.
struct Fields<F>(F);

impl<'a, F: Fn(&str) -> Option<&'a str>> Fields<F> {
    fn optional(&self, key: &str) -> Option<&'a str> {
        (self.0)(key).filter(|v| !v.is_empty())
    }

    fn owned(&self, key: &str) -> Option<String> {
        self.optional(key).map(str::to_owned)
    }

    fn required(&self, field: &'static str) -> Result<&'a str, AlipayError> {
        self.optional(field).ok_or(AlipayError::BadField {
            field,
            reason: "missing".to_owned(),
        })
    }

    /// A yuan amount read by value (`"19.90"` = `"19.900"`); see [`Fen::parse_reported_yuan`].
    fn reported_yuan(&self, field: &'static str) -> Result<Option<ReportedYuan>, AlipayError> {
        self.optional(field)
            .map(|text| {
                Fen::parse_reported_yuan(text).map_err(|e| AlipayError::BadField {
                    field,
                    reason: e.to_string(),
                })
            })
            .transpose()
    }

    /// An informational amount: one between two fen amounts is as good as absent.
    fn yuan(&self, field: &'static str) -> Result<Option<Fen>, AlipayError> {
        Ok(self.reported_yuan(field)?.and_then(ReportedYuan::fen))
    }

    fn time(&self, field: &'static str) -> Result<Option<DateTime<Utc>>, AlipayError> {
        self.optional(field)
            .map(|text| parse_china_time(field, text))
            .transpose()
    }
}

impl TradeNotify {
    /// Types the fields of an already verified notify, looked up with `get`.
    pub fn from_verified<'a>(
        get: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<TradeNotify, AlipayError> {
        let fields = Fields(get);
        let total_amount = fields
            .reported_yuan("total_amount")?
            .ok_or(AlipayError::BadField {
                field: "total_amount",
                reason: "missing".to_owned(),
            })?;
        Ok(TradeNotify {
            notify_id: fields.owned("notify_id"),
            app_id: fields.owned("app_id"),
            seller_id: fields.owned("seller_id"),
            out_trade_no: fields.required("out_trade_no")?.to_owned(),
            trade_no: fields.owned("trade_no"),
            trade_status: AlipayTradeStatus::parse(fields.required("trade_status")?)?,
            total_amount,
            receipt_amount: fields.yuan("receipt_amount")?,
            buyer_pay_amount: fields.yuan("buyer_pay_amount")?,
            refund_fee: fields.yuan("refund_fee")?,
            out_biz_no: fields.owned("out_biz_no"),
            buyer_id: fields
                .owned("buyer_id")
                .or_else(|| fields.owned("buyer_open_id")),
            gmt_payment: fields.time("gmt_payment")?,
            gmt_refund: fields.time("gmt_refund")?,
            passback_params: fields.owned("passback_params"),
        })
    }

    /// Types the fields of an already verified parameter map.
    pub fn from_verified_params(params: &Params) -> Result<TradeNotify, AlipayError> {
        TradeNotify::from_verified(|key| params.get(key).map(String::as_str))
    }

    /// The provider-neutral facts the gateway cross-checks against the order.
    pub fn to_trade_facts(&self) -> TradeFacts {
        TradeFacts {
            provider: ProviderKind::ALIPAY,
            out_trade_no: self.out_trade_no.clone(),
            provider_trade_no: self.trade_no.clone(),
            state: self.trade_status.into(),
            amount: self.total_amount.fen(),
            currency: Currency::Cny,
            app_id: self.app_id.clone(),
            merchant_id: self.seller_id.clone(),
            payer_id: self.buyer_id.clone(),
            paid_at: self.gmt_payment,
        }
    }
}

/// Decodes a notify body once and checks its `rsaCheckV1` signature with Alipay's key; returns
/// every parameter. Nothing in an unverified body is looked at beyond the signature.
pub fn verify_notify_body(body: &[u8], alipay_key: &VerifyingKey) -> Result<Params, AlipayError> {
    let params = decode_unique_form(body)?;
    verify_params(&params, SignScope::NotifyV1, alipay_key)?;
    Ok(params)
}

/// Verifies and types a trade notify body. The body is decoded straight into the string-to-sign
/// and fields are read from it, so the check costs little more than the RSA verification.
pub fn verify_trade_notify(
    body: &[u8],
    alipay_key: &VerifyingKey,
) -> Result<TradeNotify, AlipayError> {
    let form = verify_form_body(body, SignScope::NotifyV1, alipay_key)?;
    TradeNotify::from_verified(|key| form.get(key))
}

/// Builds the form body Alipay would POST for `params`, signed with Alipay's key under
/// `rsaCheckV1` rules (`sign_type` is kept in the body but not signed). For the sandbox.
pub fn build_notify_body(
    mut params: Params,
    alipay_key: &SigningKey,
) -> Result<String, AlipayError> {
    sign_params(&mut params, SignScope::NotifyV1, alipay_key)?;
    Ok(encode_form(
        params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    ))
}
