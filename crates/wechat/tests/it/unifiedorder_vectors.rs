//! unifiedorder.json: the request each library builds (our builder must sign the same fields to
//! the same value), and the success, tampered and FAIL responses.

use chrono::{TimeZone, Utc};
use paygate_core::Fen;
use paygate_wechat::client::{ApiClient, ApiError, TradeType, UnifiedOrder};
use paygate_wechat::config::WechatConfig;
use paygate_wechat::sign::{self, ApiKey, SignType};
use paygate_wechat::xml;

use crate::vectors::{id, list, load, string_map, text};

fn client(api_key: &str) -> ApiClient {
    ApiClient::new(&WechatConfig::new(
        "wxd930ea5d5a258f4f",
        "10000100",
        api_key,
    ))
    .unwrap()
}

/// The U01 order as paygate's builder would describe it: 12:00–14:00 Beijing time is
/// 04:00–06:00 UTC.
fn u01_order() -> UnifiedOrder {
    UnifiedOrder {
        trade_type: TradeType::Jsapi,
        body: "腾讯充值中心-QQ会员充值".into(),
        out_trade_no: "20150806125346".into(),
        total_fee: Fen::new(888).unwrap(),
        fee_type: Some("CNY".into()),
        spbill_create_ip: "123.12.12.123".into(),
        notify_url: "https://example.com/wxpay/notify".into(),
        openid: Some("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".into()),
        product_id: None,
        scene_info: None,
        attach: Some("深圳分店".into()),
        time_start: Some(Utc.with_ymd_and_hms(2024, 1, 1, 4, 0, 0).unwrap()),
        time_expire: Some(Utc.with_ymd_and_hms(2024, 1, 1, 6, 0, 0).unwrap()),
    }
}

#[test]
fn every_unifiedorder_case_is_built_or_judged_as_recorded() {
    let doc = load("unifiedorder.json");
    let api_key = text(&doc, "api_key");
    let key = ApiKey::new(api_key);
    let client = client(api_key);
    let cases = list(&doc, "cases");
    for case in &cases {
        match id(case) {
            "U01_wechatpy_request" => {
                let expected = string_map(&case["request_fields"]);
                let built =
                    client.sign_request(u01_order().to_params().unwrap(), &expected["nonce_str"]);
                assert_eq!(built, expected);
                assert_eq!(built["sign"], text(case, "expected_sign_MD5"));
                // The library's XML reads back to the same fields.
                assert_eq!(
                    xml::parse(text(case, "request_xml").as_bytes()).unwrap(),
                    expected
                );
            }
            "U02_wechatpy_axios_plugin_same_fields" | "U03_tenpay_request" => {
                // Other builders' documents: parse them and verify their signatures.
                let fields = xml::parse(text(case, "request_xml").as_bytes()).unwrap();
                let field_key = if case.get("signed_fields").is_some() {
                    "signed_fields"
                } else {
                    "request_fields"
                };
                assert_eq!(fields, string_map(&case[field_key]), "{}", id(case));
                assert_eq!(fields["sign"], text(case, "expected_sign_MD5"));
                assert!(
                    sign::verify(&fields, &key, SignType::Md5, &fields["sign"]),
                    "{}",
                    id(case)
                );
            }
            "U04_success_response" => {
                let fields = xml::parse(text(case, "response_xml").as_bytes()).unwrap();
                let mut without_sign = fields.clone();
                without_sign.remove("sign");
                assert_eq!(without_sign, string_map(&case["response_fields"]));
                let checked = client.check_response(fields).unwrap();
                assert_eq!(checked["prepay_id"], "wx201410272009395522657a690389285100");
            }
            "U05_tampered_response_prepay_id" => {
                let fields = xml::parse(text(case, "response_xml").as_bytes()).unwrap();
                assert_eq!(client.check_response(fields), Err(ApiError::BadSignature));
            }
            "U06_return_code_FAIL" => {
                let fields = xml::parse(text(case, "response_xml").as_bytes()).unwrap();
                assert_eq!(
                    client.check_response(fields),
                    Err(ApiError::ReturnFail("签名错误".into()))
                );
            }
            other => panic!("unhandled unifiedorder case {other}"),
        }
    }
    assert_eq!(cases.len(), 6);
}

#[test]
fn a_validly_signed_response_for_another_merchant_is_refused() {
    let doc = load("unifiedorder.json");
    let u04 = &list(&doc, "cases")[3];
    let fields = xml::parse(text(u04, "response_xml").as_bytes()).unwrap();
    let other = ApiClient::new(&WechatConfig::new(
        "wxd930ea5d5a258f4f",
        "99999999",
        text(&doc, "api_key"),
    ))
    .unwrap();
    assert!(matches!(
        other.check_response(fields),
        Err(ApiError::WrongMerchant {
            field: "mch_id",
            ..
        })
    ));
}
