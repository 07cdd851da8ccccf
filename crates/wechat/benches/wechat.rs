//! Criterion benchmarks of the WeChat hot paths, comparable with `shared/perf/BASELINES.md` §C:
//! MD5 and HMAC-SHA256 signing of a notify-sized map, the full notify check (parse + verify +
//! typed facts) on the N01 vector, the XML codec alone, and pay-param building.
// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use paygate_wechat::notify::verify_payment_notify;
use paygate_wechat::pay_params;
use paygate_wechat::sign::{self, ApiKey, SignType};
use paygate_wechat::xml;

/// A notify body and its key from the vendored vectors: N01 (17 fields, 752 B) or N02 (22
/// fields with coupons, close to the 21-field, 958 B notify of BASELINES §C).
fn vector_notify(index: usize) -> (String, String) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/vectors/wechat/notify.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let case = &doc["cases"][index];
    (
        case["notify_xml"].as_str().unwrap_or_default().to_owned(),
        case["api_key"].as_str().unwrap_or_default().to_owned(),
    )
}

fn benches(c: &mut Criterion) {
    let (notify_xml, api_key) = vector_notify(0);
    let (coupon_notify_xml, _) = vector_notify(1);
    assert!(!notify_xml.is_empty(), "notify.json vector missing");
    let key = ApiKey::new(api_key);
    let fields = xml::parse(notify_xml.as_bytes()).unwrap_or_default();
    for body in [&notify_xml, &coupon_notify_xml] {
        assert!(
            verify_payment_notify(body.as_bytes(), &key, SignType::Md5).is_ok(),
            "the N01 and N02 vectors must verify"
        );
    }

    c.bench_function("sign_md5_notify_map", |b| {
        b.iter(|| sign::sign(black_box(&fields), &key, SignType::Md5))
    });
    c.bench_function("sign_hmac_sha256_notify_map", |b| {
        b.iter(|| sign::sign(black_box(&fields), &key, SignType::HmacSha256))
    });
    c.bench_function("xml_parse_notify", |b| {
        b.iter(|| xml::parse(black_box(notify_xml.as_bytes())))
    });
    c.bench_function("xml_write_notify", |b| {
        b.iter(|| xml::write(black_box(&fields)))
    });
    c.bench_function("notify_parse_verify_e2e", |b| {
        b.iter(|| verify_payment_notify(black_box(notify_xml.as_bytes()), &key, SignType::Md5))
    });
    c.bench_function("notify_parse_verify_e2e_22_fields", |b| {
        b.iter(|| {
            verify_payment_notify(black_box(coupon_notify_xml.as_bytes()), &key, SignType::Md5)
        })
    });
    c.bench_function("pay_params_jsapi_md5", |b| {
        b.iter(|| {
            pay_params::jsapi(
                "wxd930ea5d5a258f4f",
                black_box("wx201410272009395522657a690389285100"),
                &key,
                SignType::Md5,
                1_700_000_000,
                "ibuaiVcKdpRxkhJA",
            )
        })
    });
    c.bench_function("pay_params_jsapi_with_fresh_nonce", |b| {
        b.iter(|| {
            pay_params::jsapi(
                "wxd930ea5d5a258f4f",
                black_box("wx201410272009395522657a690389285100"),
                &key,
                SignType::Md5,
                1_700_000_000,
                &pay_params::nonce_str(),
            )
        })
    });
}

criterion_group!(wechat, benches);
criterion_main!(wechat);
