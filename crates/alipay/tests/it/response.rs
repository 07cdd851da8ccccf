use paygate_alipay::AlipayError;
use paygate_alipay::response::{extract_response, response_key, sign_response_body};
use serde_json::Value;

use crate::support::{alipay_signing_key, alipay_verifying_key, case_where, cases, str_field};

const FILE: &str = "sync_response.json";

/// The provider rule we implement: raw-substring verification, then the Java/PHP SDKs' single
/// `\/`→`/` retry (recommended in alipay-pitfalls.md §10).
fn expected_verdict(case: &Value) -> bool {
    match &case["recommended_verdict"] {
        Value::Bool(verdict) => *verdict,
        Value::String(text) if text.contains("Java/PHP SDKs accept via their '\\/'->'/' retry") => {
            true
        }
        other => panic!(
            "case {} has a verdict this test does not understand: {other}",
            case["name"]
        ),
    }
}

#[test]
fn every_response_case_gets_the_verdict_of_the_java_rule() {
    let key = alipay_verifying_key();
    for case in cases(FILE) {
        let name = str_field(&case, "name");
        let method = str_field(&case, "method");
        assert_eq!(
            response_key(method),
            str_field(&case, "response_key"),
            "{name}"
        );
        let extracted = extract_response(str_field(&case, "raw_body"), method)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            extracted.sign.as_deref(),
            Some(str_field(&case, "sign")),
            "{name}"
        );
        let verdict = extracted.verify(&key);
        assert_eq!(
            verdict.is_ok(),
            expected_verdict(&case),
            "{name}: {verdict:?}"
        );
    }
}

#[test]
fn the_extracted_text_is_the_signed_substring_whenever_it_was_signed_raw() {
    for case in cases(FILE) {
        let name = str_field(&case, "name");
        let extracted =
            extract_response(str_field(&case, "raw_body"), str_field(&case, "method")).unwrap();
        let raw_equals_signed = extracted.content == str_field(&case, "signed_substring");
        let signed_raw = case["recommended_verdict"] == true;
        assert_eq!(raw_equals_signed, signed_raw, "{name}");
    }
}

#[test]
fn escapes_are_kept_as_sent() {
    let case = case_where(FILE, "name", "query_escaped_unicode_and_slashes");
    let extracted = extract_response(str_field(&case, "raw_body"), "alipay.trade.query").unwrap();
    assert!(extracted.content.contains("\\u6d4b\\u8bd5"));
    assert!(extracted.content.contains("https:\\/\\/qr.alipay.com"));
    let fields = extracted.fields().unwrap();
    assert_eq!(fields["store_name"], "测试门店");
    assert_eq!(fields["qr_code"], "https://qr.alipay.com/bax01234");
}

#[test]
fn certificate_mode_responses_expose_the_signing_certificate_sn() {
    let case = case_where(FILE, "name", "query_cert_mode_alipay_cert_sn");
    let extracted = extract_response(str_field(&case, "raw_body"), "alipay.trade.query").unwrap();
    assert_eq!(
        extracted.alipay_cert_sn.as_deref(),
        Some("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
    );
}

#[test]
fn a_response_we_sign_verifies_and_a_forged_one_does_not() {
    let content = r#"{"code":"10000","msg":"Success","qr_code":"https:\/\/qr.alipay.com\/x"}"#;
    let body = sign_response_body(
        "alipay.trade.precreate",
        content,
        &alipay_signing_key(),
        Some("abc"),
    )
    .unwrap();
    let extracted = extract_response(&body, "alipay.trade.precreate").unwrap();
    assert_eq!(extracted.content, content);
    assert_eq!(extracted.alipay_cert_sn.as_deref(), Some("abc"));
    extracted.verify(&alipay_verifying_key()).unwrap();
    let forged = body.replace("\"10000\"", "\"10001\"");
    let extracted = extract_response(&forged, "alipay.trade.precreate").unwrap();
    assert_eq!(
        extracted.verify(&alipay_verifying_key()),
        Err(AlipayError::BadSignature)
    );
}

#[test]
fn a_response_without_sign_is_not_verified() {
    let body = r#"{"alipay_trade_query_response":{"code":"10000","msg":"Success"}}"#;
    let extracted = extract_response(body, "alipay.trade.query").unwrap();
    assert_eq!(
        extracted.verify(&alipay_verifying_key()),
        Err(AlipayError::MissingSignature)
    );
}
