//! The payment-result notify WeChat posts to `notify_url` (protocol notes §5), and the exact
//! replies that stop or continue its retries.
//!
//! Verification order follows the notes: refuse any DTD while parsing, require
//! `return_code=SUCCESS`, then verify the signature over every received field. The algorithm
//! is the one the order was created with; HMAC notifies often omit `sign_type`
//! (WxJava#1585, vector N08), so when the field is absent and the signature's length does not
//! fit the configured algorithm, the length decides (32 hex = MD5, 64 = HMAC-SHA256). Both
//! need the API key, so the fallback gives an attacker nothing.
//!
//! Comparing the verified facts with the stored order (amount, appid, mch_id, result) is the
//! gateway's job through `TradeFacts::check_payment`; the notice carries everything it needs.

use paygate_core::{Fen, NotifyError, ProviderKind, TradeFacts, TradeState};

use crate::fields::{FieldError, currency, optional, optional_fen, optional_time, required};
/// Re-exported here because notify handlers (and the sandbox's tests) reach for it beside the
/// notify functions.
pub use crate::sign::verify_received;
use crate::sign::{self, ApiKey, Params, SignType};
use crate::time;
use crate::xml::{self, XmlError};

/// The exact reply that tells WeChat a notify was taken; anything else triggers retries.
pub const SUCCESS_ACK: &str = "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>";

/// The reply that tells WeChat a notify was not taken, so it retries later.
pub fn fail_ack(message: &str) -> String {
    xml::write_pairs("xml", [("return_code", "FAIL"), ("return_msg", message)])
        .unwrap_or_else(|_| FAIL_ACK_FALLBACK.to_owned())
}

/// Used only if a caller's message could not be written (it always can: CDATA holds any text).
const FAIL_ACK_FALLBACK: &str = "<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[ERROR]]></return_msg></xml>";

/// A verified payment notify: the trade facts for the gateway plus the WeChat-only fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentNotice {
    /// What the gateway checks against the stored order.
    pub facts: TradeFacts,
    /// `trade_type` (`JSAPI`, `NATIVE`, `APP`, `MWEB`).
    pub trade_type: Option<String>,
    /// `attach`, returned unchanged from the order.
    pub attach: Option<String>,
    /// `cash_fee`: what the buyer paid in cash (total minus coupons).
    pub cash_fee: Option<Fen>,
    /// `err_code` when `result_code` is FAIL.
    pub err_code: Option<String>,
    /// The algorithm the signature verified with.
    pub sign_type: SignType,
    /// Every field received, verified (including ones this crate does not interpret).
    pub fields: Params,
}

/// Maps the XML codec's refusal to the provider-neutral notify error.
pub(crate) fn notify_error_from_xml(error: XmlError) -> NotifyError {
    match error {
        XmlError::TooLarge { size, .. } => NotifyError::TooLarge(size),
        XmlError::ForbiddenDtd => NotifyError::ForbiddenDtd,
        other => NotifyError::Malformed(other.to_string()),
    }
}

/// Parses and verifies a raw payment notify body. `order_sign_type` is the algorithm orders
/// are created with (the app's configuration).
pub fn verify_payment_notify(
    body: &[u8],
    key: &ApiKey,
    order_sign_type: SignType,
) -> Result<PaymentNotice, NotifyError> {
    let fields = xml::parse(body).map_err(notify_error_from_xml)?;
    payment_notice_from_fields(fields, key, order_sign_type)
}

/// Verifies an already parsed notify and reads its facts.
pub fn payment_notice_from_fields(
    fields: Params,
    key: &ApiKey,
    order_sign_type: SignType,
) -> Result<PaymentNotice, NotifyError> {
    require_return_success(&fields)?;
    let sign_type =
        verify_received(&fields, key, order_sign_type).ok_or(NotifyError::BadSignature)?;
    let state = match required(&fields, "result_code")? {
        "SUCCESS" => TradeState::Paid,
        "FAIL" => TradeState::Failed,
        other => {
            return Err(FieldError::new("result_code", format!("unknown value {other:?}")).into());
        }
    };
    let amount = optional_fen(&fields, "total_fee")?;
    if state == TradeState::Paid && amount.is_none() {
        return Err(FieldError::new("total_fee", "missing on a successful payment").into());
    }
    let facts = TradeFacts {
        provider: ProviderKind::WECHAT,
        out_trade_no: required(&fields, "out_trade_no")?.to_owned(),
        provider_trade_no: optional(&fields, "transaction_id"),
        state,
        amount,
        currency: currency(&fields, "fee_type")?,
        app_id: optional(&fields, "appid"),
        merchant_id: optional(&fields, "mch_id"),
        payer_id: optional(&fields, "openid"),
        paid_at: optional_time(&fields, "time_end", time::parse_china_compact)?,
    };
    Ok(PaymentNotice {
        facts,
        trade_type: optional(&fields, "trade_type"),
        attach: optional(&fields, "attach"),
        cash_fee: optional_fen(&fields, "cash_fee")?,
        err_code: optional(&fields, "err_code"),
        sign_type,
        fields,
    })
}

/// Signs `fields` and writes the notify body WeChat would post; for the sandbox and tests that
/// play WeChat's side.
pub fn build_signed_xml(
    mut fields: Params,
    key: &ApiKey,
    sign_type: SignType,
) -> Result<String, XmlError> {
    sign::sign_in_place(&mut fields, key, sign_type);
    xml::write(&fields)
}

pub(crate) fn require_return_success(fields: &Params) -> Result<(), NotifyError> {
    match fields.get("return_code").map(String::as_str) {
        Some("SUCCESS") => Ok(()),
        Some(_) => Err(NotifyError::ProviderFailure(
            fields.get("return_msg").cloned().unwrap_or_default(),
        )),
        None => Err(FieldError::new("return_code", "missing").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> ApiKey {
        ApiKey::new("192006250b4c09247ec02edce69f6a2d")
    }

    fn paid_fields() -> Params {
        [
            ("return_code", "SUCCESS"),
            ("result_code", "SUCCESS"),
            ("appid", "wx1"),
            ("mch_id", "10000100"),
            ("out_trade_no", "order_0001"),
            ("transaction_id", "4200001"),
            ("total_fee", "1999"),
            ("time_end", "20240101120000"),
            ("nonce_str", "n"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn a_notify_built_here_verifies_with_either_algorithm() {
        for sign_type in [SignType::Md5, SignType::HmacSha256] {
            let body = build_signed_xml(paid_fields(), &key(), sign_type).unwrap();
            let notice = verify_payment_notify(body.as_bytes(), &key(), SignType::Md5).unwrap();
            assert_eq!(notice.sign_type, sign_type);
            assert_eq!(notice.facts.amount, Some(Fen::new(1999).unwrap()));
            assert_eq!(notice.facts.state, TradeState::Paid);
            assert_eq!(
                notice.facts.paid_at.map(|t| t.to_rfc3339()),
                Some("2024-01-01T04:00:00+00:00".to_owned())
            );
        }
    }

    #[test]
    fn return_code_fail_is_a_provider_failure_not_a_signature_question() {
        let body = b"<xml><return_code>FAIL</return_code><return_msg>busy</return_msg></xml>";
        assert_eq!(
            verify_payment_notify(body, &key(), SignType::Md5),
            Err(NotifyError::ProviderFailure("busy".into()))
        );
    }

    #[test]
    fn amounts_that_are_not_plain_integers_are_refused() {
        for bad in ["1.0", "-1", " 1", "1e3", "99999999999999999999"] {
            let mut fields = paid_fields();
            fields.insert("total_fee".into(), bad.into());
            let body = build_signed_xml(fields, &key(), SignType::Md5).unwrap();
            assert!(
                matches!(
                    verify_payment_notify(body.as_bytes(), &key(), SignType::Md5),
                    Err(NotifyError::BadField {
                        field: "total_fee",
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_unknown_declared_sign_type_does_not_verify() {
        let mut fields = paid_fields();
        sign::sign_in_place(&mut fields, &key(), SignType::Md5);
        fields.insert("sign_type".into(), "SHA1".into());
        assert_eq!(verify_received(&fields, &key(), SignType::Md5), None);
    }

    #[test]
    fn the_fail_reply_is_well_formed_whatever_the_message() {
        let reply = fail_ack("bad ]]> sign");
        assert_eq!(
            xml::parse(reply.as_bytes()).unwrap()["return_msg"],
            "bad ]]> sign"
        );
    }

    proptest! {
        #[test]
        fn any_attach_value_survives_signing_writing_and_verification(
            attach in "(\\PC|[ \\t\\n]|]]>|&|<)*",
            hmac in any::<bool>(),
        ) {
            let sign_type = if hmac { SignType::HmacSha256 } else { SignType::Md5 };
            let mut fields = paid_fields();
            fields.insert("attach".into(), attach.clone());
            let body = build_signed_xml(fields, &key(), sign_type)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let notice = verify_payment_notify(body.as_bytes(), &key(), SignType::Md5)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(notice.attach, Some(attach).filter(|a| !a.is_empty()));
        }

        #[test]
        fn notify_verification_never_panics_on_arbitrary_bytes(
            body in proptest::collection::vec(any::<u8>(), 0..1024),
        ) {
            let _ = verify_payment_notify(&body, &key(), SignType::Md5);
            let _ = crate::refund_notify::verify_refund_notify(&body, &key());
        }
    }
}
