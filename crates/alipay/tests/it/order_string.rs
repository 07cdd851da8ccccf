use chrono::{TimeZone, Utc};
use paygate_alipay::order_string::{
    APP_PAY_METHOD, build_order_string, parse_order_string, verify_order_string,
};
use paygate_alipay::request::{CommonParams, TradeBizContent};
use paygate_alipay::sign::{SignScope, canonical_string};
use paygate_core::Fen;

use crate::support::{app_signing_key, app_verifying_key, cases, load_json, str_field};

const FILE: &str = "app_pay_order_string.json";

fn vector_common() -> CommonParams {
    let inputs = &load_json(FILE)["inputs"];
    assert_eq!(str_field(inputs, "method"), APP_PAY_METHOD);
    assert_eq!(str_field(inputs, "timestamp"), "2024-01-02 03:04:05");
    CommonParams {
        app_id: str_field(inputs, "app_id").to_owned(),
        method: APP_PAY_METHOD.to_owned(),
        // 03:04:05 in China is 19:04:05 UTC the day before.
        timestamp: Utc.with_ymd_and_hms(2024, 1, 1, 19, 4, 5).unwrap(),
        notify_url: Some(str_field(inputs, "notify_url").to_owned()),
        return_url: None,
        app_cert_sn: None,
        alipay_root_cert_sn: None,
    }
}

/// Our orderString for the vector inputs, signed with the app key.
fn vector_order_string() -> String {
    let vectors = load_json(FILE);
    let biz_content = str_field(&vectors["inputs"], "biz_content");
    build_order_string(&vector_common(), biz_content, &app_signing_key()).unwrap()
}

#[test]
fn our_order_string_carries_the_signature_every_sdk_produced() {
    let vectors = load_json(FILE);
    let order_string = vector_order_string();
    let params = parse_order_string(&order_string).unwrap();
    assert_eq!(params["sign"], str_field(&vectors, "expected_sign"));
    assert_eq!(
        canonical_string(
            params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignScope::Request
        ),
        str_field(&vectors, "expected_string_to_sign")
    );
    verify_order_string(&order_string, &app_verifying_key()).unwrap();
}

#[test]
fn our_order_string_encodes_spaces_as_plus_and_every_value_once() {
    let order_string = vector_order_string();
    // The official Python SDK (quote_plus) encodes biz_content this way, except that it leaves
    // `~` raw and escapes `*`; Java's URLEncoder, which we follow, does the opposite.
    let python = &cases(FILE)[0];
    let python_biz = str_field(python, "order_string")
        .split('&')
        .find_map(|pair| pair.strip_prefix("biz_content="))
        .unwrap()
        .replace("~%2A", "%7E*");
    assert!(
        order_string.contains(&format!("biz_content={python_biz}")),
        "{order_string}"
    );
    assert!(
        order_string.contains("timestamp=2024-01-02+03%3A04%3A05"),
        "{order_string}"
    );
    assert!(
        !order_string.contains("%2520") && !order_string.contains("%252B"),
        "double-encoded"
    );
}

#[test]
fn every_sdk_order_string_decodes_to_the_agreed_string_to_sign_and_verifies() {
    let vectors = load_json(FILE);
    let expected_content = str_field(&vectors, "expected_string_to_sign");
    for case in cases(FILE) {
        let library = str_field(&case, "library");
        let order_string = str_field(&case, "order_string");
        let params = verify_order_string(order_string, &app_verifying_key())
            .unwrap_or_else(|e| panic!("{library}: {e}"));
        let content = canonical_string(
            params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignScope::Request,
        );
        assert_eq!(content, expected_content, "{library}");
        assert_eq!(
            content,
            str_field(&case, "string_to_sign_after_form_decode"),
            "{library}"
        );
        assert_eq!(params["sign"], str_field(&case, "sign"), "{library}");
        assert_eq!(case["sign_verifies_with_app_public_key"], true, "{library}");
        // The pitfall: a verifier that leaves '+' as '+' computes this string, which must fail.
        let pitfall = &case["PITFALL_if_plus_not_decoded_as_space"];
        let pitfall_content = str_field(pitfall, "string_to_sign");
        let verdict = app_verifying_key()
            .verify_base64(pitfall_content.as_bytes(), str_field(&case, "sign"))
            .is_ok();
        assert_eq!(verdict, pitfall["verifies"] == true, "{library} pitfall");
    }
}

#[test]
fn differently_serialised_biz_content_still_verifies_when_self_consistent() {
    let vectors = load_json(FILE);
    let informational = vectors["informational_default_serialisation"]
        .as_object()
        .unwrap();
    let mut checked = 0;
    for (name, entry) in informational {
        let Some(order_string) = entry.get("order_string").and_then(|v| v.as_str()) else {
            continue;
        };
        let verdict = verify_order_string(order_string, &app_verifying_key()).is_ok();
        let expected = entry.get("verifies").is_none_or(|v| v == true);
        assert_eq!(verdict, expected, "{name}");
        checked += 1;
    }
    assert!(checked >= 3, "informational cases went missing");
}

#[test]
fn a_tampered_order_string_does_not_verify() {
    let order_string = vector_order_string();
    let tampered = order_string.replace("88.88", "0.01");
    assert_ne!(tampered, order_string);
    assert!(verify_order_string(&tampered, &app_verifying_key()).is_err());
}

#[test]
fn biz_content_carries_the_exact_yuan_amount_and_app_pay_fields() {
    for (fen, yuan) in [
        (1, "0.01"),
        (7, "0.07"),
        (10, "0.10"),
        (100, "1.00"),
        (1999, "19.99"),
        (100_000_000, "1000000.00"),
    ] {
        let mut biz = TradeBizContent::new("ORDER_1", Fen::new(fen).unwrap(), "tea");
        biz.product_code = Some("QUICK_MSECURITY_PAY".into());
        let json: serde_json::Value = serde_json::from_str(&biz.to_json().unwrap()).unwrap();
        assert_eq!(json["total_amount"], yuan, "{fen} fen");
        assert_eq!(json["product_code"], "QUICK_MSECURITY_PAY");
        assert!(json.get("body").is_none(), "absent fields are left out");
    }
}
