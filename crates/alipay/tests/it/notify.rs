use chrono::{TimeZone, Utc};
use paygate_alipay::AlipayError;
use paygate_alipay::notify::{
    AlipayTradeStatus, build_notify_body, verify_notify_body, verify_trade_notify,
};
use paygate_alipay::sign::{Params, SignScope, canonical_string, verify_form_body};
use paygate_core::{Fen, ReportedYuan, TradeState};
use serde_json::Value;

use crate::support::{
    alipay_signing_key, alipay_verifying_key, case_where, cases, load_json, str_field,
};

const FILE: &str = "notify.json";

/// What the provider's rule (strict rsaCheckV1, RSA2 from config, empty values skipped as the
/// Java SDK and Alipay's docs say) implies for each case, read from `recommended_verdict`.
fn expected_verdict(case: &Value) -> bool {
    match &case["recommended_verdict"] {
        Value::Bool(verdict) => *verdict,
        Value::String(text) if text.starts_with("accept-under-strict-V1") => true,
        // "same as above": the lowercase sign_type case follows the RSA case before it.
        Value::String(text) if text == "same as above" => true,
        // Java rsaCheckV1 skips empty values, and Alipay itself omits them.
        Value::String(text)
            if text.starts_with("DIVERGES: Java rsaCheckV1 skips empty values (=> true)") =>
        {
            true
        }
        Value::String(text) if text == "false under V1, true under V2" => false,
        other => panic!(
            "case {} has a verdict this test does not understand: {other}",
            case["name"]
        ),
    }
}

#[test]
fn the_vectors_declare_the_alipay_public_key_and_the_success_reply() {
    let vectors = load_json(FILE);
    assert_eq!(vectors["verify_key"], "keys/alipay_public.pem");
    assert_eq!(
        vectors["http"]["reply_on_success"],
        paygate_alipay::notify::ACK_SUCCESS
    );
}

#[test]
fn every_notify_case_gets_the_verdict_the_v1_rule_implies() {
    let key = alipay_verifying_key();
    for case in cases(FILE) {
        let name = str_field(&case, "name");
        let body = str_field(&case, "form_body");
        let verdict = verify_notify_body(body.as_bytes(), &key);
        assert_eq!(
            verdict.is_ok(),
            expected_verdict(&case),
            "{name}: {verdict:?}"
        );
    }
}

#[test]
fn the_zero_copy_verifier_agrees_with_the_map_verifier_on_every_case() {
    let key = alipay_verifying_key();
    for case in cases(FILE) {
        let name = str_field(&case, "name");
        let body = str_field(&case, "form_body").as_bytes();
        let by_map = verify_notify_body(body, &key);
        let by_form = verify_form_body(body, SignScope::NotifyV1, &key);
        assert_eq!(by_form.is_ok(), by_map.is_ok(), "{name}");
        if let (Ok(form), Ok(params)) = (by_form, by_map) {
            assert_eq!(form.content(), str_field(&case, "string_to_sign"), "{name}");
            for (k, v) in params
                .iter()
                .filter(|(k, v)| !v.is_empty() && *k != "sign_type" && *k != "sign")
            {
                assert_eq!(form.get(k), Some(v.as_str()), "{name}: {k}");
            }
            assert_eq!(
                form.get("sign_type"),
                None,
                "{name}: sign_type is unsigned in V1"
            );
        }
    }
}

#[test]
fn every_notify_body_decodes_once_to_the_listed_params() {
    for case in cases(FILE) {
        let name = str_field(&case, "name");
        let decoded =
            paygate_alipay::form::decode_unique_form(str_field(&case, "form_body").as_bytes())
                .unwrap();
        assert_eq!(decoded, listed_params(&case), "{name}");
    }
}

#[test]
fn the_v1_content_of_each_genuinely_signed_case_is_the_listed_string_to_sign() {
    for case in cases(FILE) {
        let name = str_field(&case, "name");
        let signed_v1 = str_field(&case, "signed_by").contains("V1 content");
        let untampered = expected_verdict(&case);
        if !(signed_v1 && untampered) {
            continue;
        }
        let params =
            paygate_alipay::form::decode_unique_form(str_field(&case, "form_body").as_bytes())
                .unwrap();
        let content = canonical_string(
            params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignScope::NotifyV1,
        );
        assert_eq!(content, str_field(&case, "string_to_sign"), "{name}");
    }
}

/// The decoded parameters a case lists next to its form body.
fn listed_params(case: &Value) -> Params {
    case["params"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

fn case_named(name: &str) -> Value {
    case_where(FILE, "name", name)
}

#[test]
fn a_trade_success_notify_becomes_exact_paid_facts() {
    let case = case_named("valid_trade_success");
    let notify = verify_trade_notify(
        str_field(&case, "form_body").as_bytes(),
        &alipay_verifying_key(),
    )
    .unwrap();
    assert_eq!(notify.trade_status, AlipayTradeStatus::TradeSuccess);
    assert_eq!(
        notify.total_amount,
        ReportedYuan::Fen(Fen::new(8888).unwrap())
    );
    assert_eq!(notify.receipt_amount, Some(Fen::new(8888).unwrap()));
    assert_eq!(notify.buyer_pay_amount, Some(Fen::new(8888).unwrap()));
    assert_eq!(notify.passback_params.as_deref(), Some("k1=v1&k2=a b+c/d"));
    let facts = notify.to_trade_facts();
    assert_eq!(facts.state, TradeState::Paid);
    assert_eq!(facts.out_trade_no, "ORDER_20240102_0001");
    assert_eq!(
        facts.provider_trade_no.as_deref(),
        Some("2024010222001446880501234567")
    );
    assert_eq!(facts.app_id.as_deref(), Some("2021000000000001"));
    assert_eq!(facts.merchant_id.as_deref(), Some("2088102177000000"));
    assert_eq!(facts.payer_id.as_deref(), Some("2088102177846880"));
    // gmt_payment 2024-01-02 03:04:11 China time.
    assert_eq!(
        facts.paid_at,
        Some(Utc.with_ymd_and_hms(2024, 1, 1, 19, 4, 11).unwrap())
    );
}

#[test]
fn refund_notifies_carry_the_cumulative_refund_and_the_request_number() {
    let key = alipay_verifying_key();
    let partial = verify_trade_notify(
        str_field(&case_named("valid_partial_refund"), "form_body").as_bytes(),
        &key,
    )
    .unwrap();
    assert_eq!(partial.trade_status, AlipayTradeStatus::TradeSuccess);
    assert_eq!(partial.refund_fee, Some(Fen::new(1000).unwrap()));
    assert_eq!(partial.out_biz_no.as_deref(), Some("REFUND_0001"));
    assert_eq!(
        partial.gmt_refund,
        Some(
            Utc.with_ymd_and_hms(2024, 1, 3, 2, 0, 0).unwrap()
                + chrono::Duration::milliseconds(123)
        )
    );
    let full = verify_trade_notify(
        str_field(&case_named("valid_full_refund_closed"), "form_body").as_bytes(),
        &key,
    )
    .unwrap();
    assert_eq!(full.to_trade_facts().state, TradeState::Closed);
    assert_eq!(full.refund_fee, Some(Fen::new(8888).unwrap()));
}

#[test]
fn a_url_encoded_passback_is_kept_as_sent_not_decoded_twice() {
    let case = case_named("percent_encoded_value_passback");
    let notify = verify_trade_notify(
        str_field(&case, "form_body").as_bytes(),
        &alipay_verifying_key(),
    )
    .unwrap();
    assert_eq!(
        notify.passback_params.as_deref(),
        Some("merchantBizType%3DpartnerA%26x%3D1+2")
    );
}

#[test]
fn missing_and_empty_signatures_are_reported_as_missing() {
    let key = alipay_verifying_key();
    for name in ["sign_removed", "sign_empty"] {
        let body = str_field(&case_named(name), "form_body").to_owned();
        assert_eq!(
            verify_notify_body(body.as_bytes(), &key),
            Err(AlipayError::MissingSignature),
            "{name}"
        );
    }
}

#[test]
fn notify_amounts_are_compared_by_decimal_value() {
    let case = case_named("valid_trade_success");
    let mut params = listed_params(&case);
    params.remove("sign");
    let order_amount = Some(Fen::new(8888).unwrap());
    for (total_amount, expected) in [
        ("88.88", order_amount),
        ("88.880", order_amount),
        ("88.8800", order_amount),
        ("88.881", None),
        ("88.8801", None),
    ] {
        params.insert("total_amount".into(), total_amount.into());
        params.insert("receipt_amount".into(), total_amount.into());
        let body = build_notify_body(params.clone(), &alipay_signing_key()).unwrap();
        let notify = verify_trade_notify(body.as_bytes(), &alipay_verifying_key())
            .unwrap_or_else(|e| panic!("{total_amount}: {e}"));
        assert_eq!(notify.to_trade_facts().amount, expected, "{total_amount}");
        assert_eq!(notify.receipt_amount, expected, "{total_amount}");
    }
    params.insert("total_amount".into(), "88.88x".into());
    let body = build_notify_body(params, &alipay_signing_key()).unwrap();
    assert!(matches!(
        verify_trade_notify(body.as_bytes(), &alipay_verifying_key()),
        Err(AlipayError::BadField {
            field: "total_amount",
            ..
        })
    ));
}

#[test]
fn a_notify_we_build_verifies_and_matches_alipays_signature() {
    let case = case_named("valid_trade_success");
    let mut params = listed_params(&case);
    let expected_sign = params.remove("sign").unwrap();
    let body = build_notify_body(params, &alipay_signing_key()).unwrap();
    let verified = verify_notify_body(body.as_bytes(), &alipay_verifying_key()).unwrap();
    assert_eq!(verified["sign"], expected_sign);
}

proptest::proptest! {
    #[test]
    fn the_notify_parser_never_panics_on_arbitrary_bytes(
        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)
    ) {
        let _ = verify_trade_notify(&body, &alipay_verifying_key());
    }

    #[test]
    fn any_notify_we_sign_verifies_and_reads_back_its_values(
        params in proptest::collection::btree_map("[a-z_]{1,10}", "[ -~测]{0,16}", 1..16)
    ) {
        let body = build_notify_body(params.clone(), &alipay_signing_key()).unwrap();
        let form = verify_form_body(body.as_bytes(), SignScope::NotifyV1, &alipay_verifying_key()).unwrap();
        for (k, v) in &params {
            let expected = (!v.is_empty() && k != "sign_type" && k != "sign").then_some(v.as_str());
            proptest::prop_assert_eq!(form.get(k), expected);
        }
    }

    #[test]
    fn the_notify_parser_never_panics_on_form_like_text(body in "[a-z_=&%+0-9A-F]{0,200}") {
        let _ = verify_trade_notify(body.as_bytes(), &alipay_verifying_key());
    }
}
