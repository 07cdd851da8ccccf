//! notify.json: all sixteen payment notifies with their verdicts. Business verdicts (amount,
//! appid, result) go through `TradeFacts::check_payment`, the check the gateway runs.

use chrono::Utc;
use paygate_core::{
    AppName, Channel, Currency, Fen, MerchantIdentity, NotifyError, Order, OrderId, OrderStatus,
    OutTradeNo, PaymentMismatch, ProviderKind, TradeState,
};
use paygate_wechat::notify::{self, PaymentNotice};
use paygate_wechat::sign::{self, ApiKey, SignType};
use serde_json::Value;

use crate::vectors::{id, list, load, text};

fn merchant(case: &Value) -> MerchantIdentity {
    MerchantIdentity {
        app_id: text(&case["merchant_config"], "appid").to_owned(),
        merchant_id: text(&case["merchant_config"], "mch_id").to_owned(),
    }
}

/// The stored order the case's `order_context` describes.
fn order(case: &Value) -> Order {
    let context = &case["order_context"];
    let fen = context["total_fee"]
        .as_i64()
        .unwrap_or_else(|| panic!("{}", id(case)));
    stored_order(text(context, "out_trade_no"), fen)
}

fn stored_order(out_trade_no: &str, fen: i64) -> Order {
    Order {
        id: OrderId::generate(),
        provider: ProviderKind::WECHAT,
        app: AppName::parse("shop").unwrap(),
        channel: Channel::Jsapi,
        out_trade_no: OutTradeNo::parse(out_trade_no).unwrap(),
        amount: Fen::new(fen).unwrap(),
        currency: Currency::Cny,
        subject: "test".into(),
        description: None,
        status: OrderStatus::Pending,
        provider_trade_no: None,
        payer_id: None,
        pay_params: None,
        refunded_amount: Fen::ZERO,
        metadata: None,
        created_at: Utc::now(),
        paid_at: None,
        closed_at: None,
        expires_at: Utc::now(),
        version: 0,
    }
}

fn verify(case: &Value, sign_type: SignType) -> Result<PaymentNotice, NotifyError> {
    let key = ApiKey::new(text(case, "api_key"));
    notify::verify_payment_notify(text(case, "notify_xml").as_bytes(), &key, sign_type)
}

#[test]
fn every_notify_case_gets_its_expected_verdict() {
    let doc = load("notify.json");
    let cases = list(&doc, "cases");
    for case in &cases {
        let verdict = text(case, "expected_verdict");
        let business_accept = case["expected_business_accept"].as_bool().unwrap();
        match verdict {
            "valid" | "valid_signature_idempotent_business" => {
                let notice =
                    verify(case, SignType::Md5).unwrap_or_else(|e| panic!("{}: {e}", id(case)));
                assert_eq!(
                    notice.facts.check_payment(&order(case), &merchant(case)),
                    Ok(())
                );
                assert!(business_accept);
                assert_eq!(notice.facts.state, TradeState::Paid);
                // A second delivery reads identically; applying it once is the gateway's job.
                assert_eq!(verify(case, SignType::Md5).unwrap(), notice, "{}", id(case));
            }
            "invalid" => {
                assert_eq!(
                    verify(case, SignType::Md5),
                    Err(NotifyError::BadSignature),
                    "{}",
                    id(case)
                );
                assert!(!business_accept);
            }
            "reject_before_verification" => {
                assert_eq!(
                    verify(case, SignType::Md5),
                    Err(NotifyError::ForbiddenDtd),
                    "{}",
                    id(case)
                );
            }
            "valid_if_order_used_HMAC-SHA256" => {
                // The order's algorithm verifies it; plain MD5 does not; the length fallback
                // (notes §5) also picks HMAC for an app configured with MD5.
                let notice = verify(case, SignType::HmacSha256).unwrap();
                assert_eq!(notice.sign_type, SignType::HmacSha256);
                assert_eq!(
                    notice.facts.check_payment(&order(case), &merchant(case)),
                    Ok(())
                );
                let fields = &notice.fields;
                assert!(!sign::verify(
                    fields,
                    &ApiKey::new(text(case, "api_key")),
                    SignType::Md5,
                    &fields["sign"]
                ));
                assert_eq!(
                    verify(case, SignType::Md5).unwrap().sign_type,
                    SignType::HmacSha256
                );
            }
            "valid_signature_business_reject" => {
                let notice = verify(case, SignType::Md5).unwrap();
                let mismatch = notice
                    .facts
                    .check_payment(&order(case), &merchant(case))
                    .unwrap_err();
                match id(case) {
                    "N14_amount_differs_from_order" => {
                        assert!(
                            matches!(mismatch, PaymentMismatch::Amount { .. }),
                            "{mismatch}"
                        )
                    }
                    "N15_appid_mismatch_validly_signed" => {
                        assert!(
                            matches!(mismatch, PaymentMismatch::AppId { .. }),
                            "{mismatch}"
                        )
                    }
                    other => panic!("unhandled business case {other}"),
                }
            }
            "valid_signature_not_paid" => {
                let notice = verify(case, SignType::Md5).unwrap();
                assert_eq!(notice.facts.state, TradeState::Failed);
                assert_eq!(notice.err_code.as_deref(), Some("SYSTEMERROR"));
                // The case has no order context; the order it would have paid is the N01 one.
                assert!(matches!(
                    notice
                        .facts
                        .check_payment(&stored_order("1409811653", 1), &merchant(case)),
                    Err(PaymentMismatch::NotPaid {
                        got: TradeState::Failed
                    })
                ));
            }
            other => panic!("{}: unhandled verdict {other}", id(case)),
        }
    }
    assert_eq!(cases.len(), 16);
}

#[test]
fn the_first_notify_carries_every_field_the_gateway_needs() {
    let doc = load("notify.json");
    let n01 = &list(&doc, "cases")[0];
    assert_eq!(id(n01), "N01_valid_md5");
    let notice = verify(n01, SignType::Md5).unwrap();
    assert_eq!(notice.facts.out_trade_no, "1409811653");
    assert_eq!(
        notice.facts.provider_trade_no.as_deref(),
        Some("1004400740201409030005092168")
    );
    assert_eq!(
        notice.facts.payer_id.as_deref(),
        Some("oUpF8uMEb4qRXf22hE3X68TekukE")
    );
    assert_eq!(notice.facts.app_id.as_deref(), Some("wx2421b1c4370ec43b"));
    assert_eq!(notice.facts.merchant_id.as_deref(), Some("10000100"));
    assert_eq!(notice.trade_type.as_deref(), Some("JSAPI"));
    assert_eq!(notice.attach.as_deref(), Some("支付测试"));
    // time_end 2014-09-03 13:15:40 in Beijing is 05:15:40 UTC.
    assert_eq!(
        notice.facts.paid_at.map(|t| t.to_rfc3339()),
        Some("2014-09-03T05:15:40+00:00".to_owned())
    );
}

#[test]
fn the_success_reply_is_byte_identical_to_the_documented_one() {
    let doc = load("notify.json");
    assert_eq!(notify::SUCCESS_ACK, text(&doc, "success_reply_xml"));
}
