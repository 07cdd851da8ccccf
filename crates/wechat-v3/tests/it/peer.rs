//! WeChat Pay's side (what the sandbox uses) agrees with the merchant side on every vector:
//! requests the vectors signed pass the check, and what it seals and signs verifies.

use paygate_core::{Notice, RefundState};
use paygate_wechat_v3::aead::ApiV3Key;
use paygate_wechat_v3::certificates::decrypt_certificates;
use paygate_wechat_v3::keys::{MerchantKey, VerifyingKey};
use paygate_wechat_v3::notify::verify_notify;
use paygate_wechat_v3::peer::{
    ListedCertificate, RequestAuthError, RequestingMerchant, check_request, seal_certificates,
    seal_notify, signature_headers,
};
use paygate_wechat_v3::verify::WechatpayKeys;

use crate::fake_wechat::PUB_KEY_ID;
use crate::vectors::{cases, read, text};

fn pairs<'a>(headers: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    headers.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

const SERIAL: &str = "7383B331C603DA9DB202271FB5A8FFACC2B4B7DE";

#[test]
fn requests_signed_as_the_vectors_pass_and_any_change_is_sign_error() {
    let public = VerifyingKey::from_pem(&read("keys/merchant_public.pem")).unwrap();
    let merchant = RequestingMerchant {
        mchid: "1230000109",
        serial_no: SERIAL,
        public_key: &public,
    };
    let mut checked = 0;
    for case in cases("request_sign.json") {
        if text(&case, "serial_no") != SERIAL {
            continue;
        }
        let now: i64 = text(&case, "timestamp").parse().unwrap();
        let (auth, method, url, body) = (
            text(&case, "authorization"),
            text(&case, "method"),
            text(&case, "url"),
            text(&case, "body").as_bytes(),
        );
        let axios = text(&case, "authorization_axios_field_order");
        assert_eq!(
            check_request(Some(auth), method, url, body, &merchant, now),
            Ok(())
        );
        assert_eq!(
            check_request(Some(axios), method, url, body, &merchant, now),
            Ok(())
        );
        let tampered = [body, b" "].concat();
        assert_eq!(
            check_request(Some(auth), method, url, &tampered, &merchant, now),
            Err(RequestAuthError::BadSignature)
        );
        assert_eq!(
            check_request(Some(auth), method, &format!("{url}x"), body, &merchant, now),
            Err(RequestAuthError::BadSignature)
        );
        assert_eq!(
            check_request(Some(auth), method, url, body, &merchant, now + 301),
            Err(RequestAuthError::StaleTimestamp)
        );
        assert_eq!(
            check_request(None, method, url, body, &merchant, now),
            Err(RequestAuthError::Malformed)
        );
        checked += 1;
    }
    assert!(checked >= 15, "{checked}");
    let other = RequestingMerchant {
        serial_no: "3A414D8EE28675E1BDBF02E87A0B7F366202CC00",
        ..merchant
    };
    let case = &cases("request_sign.json")[3];
    let now: i64 = text(case, "timestamp").parse().unwrap();
    assert_eq!(
        check_request(
            Some(text(case, "authorization")),
            "GET",
            text(case, "url"),
            b"",
            &other,
            now
        ),
        Err(RequestAuthError::WrongSerial)
    );
}

#[test]
fn sealed_and_signed_notifies_verify_and_decrypt_and_tampering_fails() {
    let apiv3 = ApiV3Key::new(&read("keys/apiv3_key.txt")).unwrap();
    let wechat = MerchantKey::from_pem(&read("keys/wechatpay_pub_key_private.pem")).unwrap();
    let keys = WechatpayKeys::new().with_public_key(
        PUB_KEY_ID,
        VerifyingKey::from_pem(&read("keys/wechatpay_pub_key.pem")).unwrap(),
    );
    let refund = r#"{"mchid":"1230000109","out_trade_no":"o_1","transaction_id":"42","out_refund_no":"r_1","refund_id":"503","refund_status":"SUCCESS","success_time":"2025-01-01T13:00:05+08:00","amount":{"total":100,"refund":100,"payer_total":100,"payer_refund":100}}"#;
    let body = seal_notify(
        &apiv3,
        "EV-1",
        "2025-01-01T13:00:05+08:00",
        "REFUND.SUCCESS",
        "refund",
        refund,
        "RefundNonce1",
    )
    .unwrap();
    let now = 1_735_707_605;
    let headers = signature_headers(&wechat, PUB_KEY_ID, body.as_bytes(), now, "n1").unwrap();
    let notify = verify_notify(
        pairs(&headers),
        body.as_bytes(),
        &keys,
        &apiv3,
        "1230000109",
        now,
    )
    .unwrap();
    assert!(
        matches!(notify.notice, Notice::Refund(ref f) if f.state == RefundState::Succeeded && f.out_refund_no == "r_1")
    );

    // A flipped ciphertext byte under a valid signature: decryption fails, 500.
    let mut envelope: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ciphertext = envelope["resource"]["ciphertext"]
        .as_str()
        .unwrap()
        .to_owned();
    let flipped = if ciphertext.starts_with('A') {
        "B"
    } else {
        "A"
    };
    envelope["resource"]["ciphertext"] = format!("{flipped}{}", &ciphertext[1..]).into();
    let tampered = envelope.to_string();
    let headers = signature_headers(&wechat, PUB_KEY_ID, tampered.as_bytes(), now, "n2").unwrap();
    let err = verify_notify(
        pairs(&headers),
        tampered.as_bytes(),
        &keys,
        &apiv3,
        "1230000109",
        now,
    )
    .unwrap_err();
    assert_eq!(err.status(), 500, "{err}");
}

#[test]
fn a_sealed_certificate_list_decrypts_to_the_listed_certificates() {
    let apiv3 = ApiV3Key::new(&read("keys/apiv3_key.txt")).unwrap();
    let (old, new) = (
        read("keys/platform_cert.pem"),
        read("keys/platform_cert_new.pem"),
    );
    let body = seal_certificates(
        &apiv3,
        &[
            ListedCertificate {
                serial_no: "3A414D8EE28675E1BDBF02E87A0B7F366202CC00",
                pem: &old,
                effective_time: "2025-01-01T08:00:00+08:00",
                expire_time: "2030-01-01T08:00:00+08:00",
                nonce: "CertNonce001",
            },
            ListedCertificate {
                serial_no: "78807E4FFB6ACC9303C16DDC7182294E37BEA45C",
                pem: &new,
                effective_time: "2029-12-31T08:00:00+08:00",
                expire_time: "2035-01-01T08:00:00+08:00",
                nonce: "CertNonce002",
            },
        ],
    )
    .unwrap();
    let listed = decrypt_certificates(body.as_bytes(), &apiv3).unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].pem, old);
    assert_eq!(
        listed[1].certificate.serial,
        "78807E4FFB6ACC9303C16DDC7182294E37BEA45C"
    );
}
