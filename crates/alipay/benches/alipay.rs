//! The RSA hot paths, to compare with `openssl speed rsa2048` on the same machine: the
//! app-pay orderString (JSON, sort, sign, base64, form-encode), notify verification (decode,
//! sort, verify) and response verification (raw extraction, verify). The bare sign and verify
//! are measured beside them so the overhead of everything around RSA is visible.

use std::hint::black_box;
use std::path::PathBuf;

use chrono::{TimeZone, Utc};
use criterion::{Criterion, criterion_main};
use paygate_alipay::keys::{SigningKey, VerifyingKey};
use paygate_alipay::notify::verify_trade_notify;
use paygate_alipay::order_string::{APP_PAY_METHOD, APP_PAY_PRODUCT_CODE, build_order_string};
use paygate_alipay::request::{CommonParams, TradeBizContent};
use paygate_alipay::response::extract_response;
use paygate_alipay::sign::{SignScope, verify_form_body};
use paygate_core::Fen;
use serde_json::Value;

fn vector_text(relative: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/vectors/alipay")
        .join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn vector_case(file: &str, name: &str) -> Value {
    let json: Value =
        serde_json::from_str(&vector_text(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    json["cases"]
        .as_array()
        .and_then(|cases| cases.iter().find(|c| c["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("{file}: no case {name}"))
}

fn text_of<'a>(case: &'a Value, field: &str) -> &'a str {
    case[field].as_str().unwrap_or_else(|| panic!("no {field}"))
}

fn signing(c: &mut Criterion) {
    let key = SigningKey::parse(&vector_text("keys/app_private_pkcs1.b64"))
        .unwrap_or_else(|e| panic!("{e}"));
    let common = CommonParams {
        app_id: "2021000000000001".into(),
        method: APP_PAY_METHOD.into(),
        timestamp: Utc
            .with_ymd_and_hms(2024, 1, 1, 19, 4, 5)
            .single()
            .unwrap_or_else(|| panic!("time")),
        notify_url: Some("https://merchant.example.com/alipay/notify".into()),
        return_url: None,
        app_cert_sn: None,
        alipay_root_cert_sn: None,
    };
    let vectors: Value = serde_json::from_str(&vector_text("app_pay_order_string.json"))
        .unwrap_or_else(|e| panic!("{e}"));
    let string_to_sign = text_of(&vectors, "expected_string_to_sign").to_owned();
    c.bench_function("rsa2048_sign_bare", |b| {
        b.iter(|| key.sign_base64(black_box(string_to_sign.as_bytes())))
    });
    c.bench_function("app_pay_order_string", |b| {
        b.iter(|| {
            let mut biz = TradeBizContent::new(
                "ORDER_20240102_0001",
                Fen::new(8888).unwrap_or_default(),
                "测试商品 Test+1 & 2=2 /x",
            );
            biz.body = Some("a+b & c=d / e ~*!'()".into());
            biz.product_code = Some(APP_PAY_PRODUCT_CODE.into());
            biz.timeout_express = Some("30m".into());
            biz.passback_params = Some("k1=v1&k2=a b+c/d".into());
            let json = biz.to_json().unwrap_or_default();
            build_order_string(black_box(&common), &json, &key)
        })
    });
}

fn verifying(c: &mut Criterion) {
    let key = VerifyingKey::parse(&vector_text("keys/alipay_public.pem"))
        .unwrap_or_else(|e| panic!("{e}"));
    let notify = vector_case("notify.json", "valid_trade_success");
    let body = text_of(&notify, "form_body").to_owned();
    let string_to_sign = text_of(&notify, "string_to_sign").to_owned();
    let sign = text_of(&notify["params"], "sign").to_owned();
    c.bench_function("rsa2048_verify_bare", |b| {
        b.iter(|| key.verify_base64(black_box(string_to_sign.as_bytes()), &sign))
    });
    c.bench_function("notify_verify", |b| {
        b.iter(|| verify_trade_notify(black_box(body.as_bytes()), &key))
    });
    // Everything around RSA: the same body with a `sign` that is not base64, so verification
    // stops right before the RSA operation after decoding, sorting and joining.
    let sign_param = format!("sign={}", paygate_alipay::form::encode_component(&sign));
    let no_rsa_body = body.replace(&sign_param, "sign=not-base64");
    assert_ne!(no_rsa_body, body, "the notify body must carry its sign");
    c.bench_function("notify_overhead_without_rsa", |b| {
        b.iter(|| verify_form_body(black_box(no_rsa_body.as_bytes()), SignScope::NotifyV1, &key))
    });
    c.bench_function("notify_signature_only", |b| {
        b.iter(|| verify_form_body(black_box(body.as_bytes()), SignScope::NotifyV1, &key))
    });
    let response = vector_case("sync_response.json", "query_success_plain");
    let raw = text_of(&response, "raw_body").to_owned();
    c.bench_function("response_verify", |b| {
        b.iter(|| {
            extract_response(black_box(&raw), "alipay.trade.query")
                .and_then(|extracted| extracted.verify(&key).and_then(|()| extracted.fields()))
        })
    });
}

mod harness {
    // criterion's macro generates an undocumented function.
    #![allow(missing_docs)]
    use super::{signing, verifying};
    criterion::criterion_group!(benches, signing, verifying);
}
criterion_main!(harness::benches);
