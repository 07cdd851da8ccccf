//! The APIv3 RSA hot paths, to compare with `openssl speed rsa2048` on the same machine (issue
//! 15's targets: notify verify + decrypt ≥ 0.8× openssl verify/s, request signing ≥ 0.95×
//! openssl sign/s, per core):
//!
//! * `v3_notify_verify_decrypt`: a genuine payment notify from the vendored vectors (its
//!   `Wechatpay-*` headers and raw body) through `notify::verify_notify`, the function the
//!   gateway's callback route runs: headers read, signature verified over the raw bytes with
//!   the WeChat Pay public key, envelope parsed, AES-256-GCM resource decrypted, transaction
//!   parsed into trade facts;
//! * `v3_request_authorization`: the `Authorization` header of a JSAPI order (message built,
//!   signed with the merchant key, base64, header formatted), as every API call makes it.
//!
//! The bare RSA operations and the work around them are measured beside them, so the overhead
//! of everything but RSA is visible.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_main};
use paygate_wechat_v3::aead::ApiV3Key;
use paygate_wechat_v3::keys::{MerchantKey, VerifyingKey};
use paygate_wechat_v3::notify::{Envelope, verify_notify};
use paygate_wechat_v3::sign::{MerchantSigner, request_message};
use paygate_wechat_v3::verify::{SignatureHeaders, WechatpayKeys};
use paygate_wechat_v3::wire::Transaction;
use serde_json::Value;

const MCHID: &str = "1230000109";
const PUBLIC_KEY_ID: &str = "PUB_KEY_ID_0112300001092025010100000000000001";
const MERCHANT_SERIAL: &str = "7383B331C603DA9DB202271FB5A8FFACC2B4B7DE";

fn vector_text(relative: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/vectors/wechat-v3")
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
    case[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string {field}"))
}

fn notify(c: &mut Criterion) {
    let case = vector_case("notify.json", "transaction_success_jsapi");
    let headers: Vec<(String, String)> = case["headers"]
        .as_object()
        .unwrap_or_else(|| panic!("headers"))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let body = text_of(&case, "body").as_bytes().to_vec();
    let now = case["verify_at"]
        .as_i64()
        .unwrap_or_else(|| panic!("verify_at"));
    let public_key = VerifyingKey::from_pem(&vector_text("keys/wechatpay_pub_key.pem"))
        .unwrap_or_else(|e| panic!("{e}"));
    let keys = WechatpayKeys::new().with_public_key(PUBLIC_KEY_ID, public_key);
    let apiv3 = ApiV3Key::new(&vector_text("keys/apiv3_key.txt")).unwrap_or_else(|e| panic!("{e}"));

    // The bench measures the accepting path: a notify that failed early would look fast.
    let verified = verify_notify(pairs.iter().copied(), &body, &keys, &apiv3, MCHID, now)
        .unwrap_or_else(|e| panic!("the vector notify must verify: {e}"));
    assert_eq!(verified.event_type, "TRANSACTION.SUCCESS");

    c.bench_function("v3_notify_verify_decrypt", |b| {
        b.iter(|| {
            verify_notify(
                black_box(pairs.iter().copied()),
                black_box(&body),
                &keys,
                &apiv3,
                MCHID,
                now,
            )
        })
    });
    let signature =
        SignatureHeaders::from_pairs(pairs.iter().copied()).unwrap_or_else(|e| panic!("{e}"));
    c.bench_function("v3_notify_signature_only", |b| {
        b.iter(|| keys.verify(black_box(&signature), black_box(&body), now))
    });
    // Everything after the signature: envelope JSON, AES-256-GCM, transaction JSON, facts.
    c.bench_function("v3_notify_decrypt_parse_only", |b| {
        b.iter(|| {
            let envelope: Envelope =
                serde_json::from_slice(black_box(&body)).unwrap_or_else(|e| panic!("{e}"));
            let plaintext = apiv3
                .decrypt(&envelope.resource)
                .unwrap_or_else(|e| panic!("{e}"));
            let transaction: Transaction =
                serde_json::from_str(&plaintext).unwrap_or_else(|e| panic!("{e}"));
            transaction.to_facts()
        })
    });
}

fn signing(c: &mut Criterion) {
    let key = MerchantKey::from_pem(&vector_text("keys/merchant_apiclient_key.pem"))
        .unwrap_or_else(|e| panic!("{e}"));
    let case = vector_case("request_sign.json", "post_jsapi_cjk_compact");
    let url = text_of(&case, "url").to_owned();
    let body = text_of(&case, "body").as_bytes().to_vec();
    let timestamp: i64 = text_of(&case, "timestamp")
        .parse()
        .unwrap_or_else(|e| panic!("timestamp: {e}"));
    let nonce = text_of(&case, "nonce").to_owned();
    let message = request_message("POST", &url, timestamp, &nonce, &body);
    c.bench_function("v3_rsa2048_sign_bare", |b| {
        b.iter(|| key.sign_base64(black_box(&message)))
    });
    let signer = MerchantSigner::new(MCHID, MERCHANT_SERIAL, key);
    let expected = text_of(&case, "authorization");
    let made = signer
        .authorization("POST", &url, timestamp, &nonce, &body)
        .unwrap_or_else(|e| panic!("{e}"));
    // PKCS#1 v1.5 is deterministic: the bench signs exactly what the SDKs sign.
    assert_eq!(
        made, expected,
        "the vector Authorization must be reproduced"
    );
    c.bench_function("v3_request_authorization", |b| {
        b.iter(|| {
            signer.authorization(
                "POST",
                black_box(&url),
                timestamp,
                black_box(&nonce),
                black_box(&body),
            )
        })
    });
}

mod harness {
    // criterion's macro generates an undocumented function.
    #![allow(missing_docs)]
    use super::{notify, signing};
    criterion::criterion_group!(benches, notify, signing);
}
criterion_main!(harness::benches);
