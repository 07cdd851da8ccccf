//! `verify.json`: the verdict of every response signature, with the clock pinned to each
//! case's `verify_at`, in public-key, certificate and combined key modes.

use paygate_wechat_v3::keys::VerifyingKey;
use paygate_wechat_v3::verify::{
    PlatformCertificate, SignatureHeaders, VerifyError, WechatpayKeys,
};
use serde_json::Value;

use crate::vectors::{cases, load, name, read, text};

/// The key file for each key id, from the file's `source.keys`.
fn key_file(id: &str) -> String {
    let doc = load("verify.json");
    doc["source"]["keys"][id]
        .as_str()
        .unwrap_or_else(|| panic!("no key file for {id}"))
        .to_owned()
}

/// A client holding exactly the keys a case lists.
pub fn client_keys(ids: &[&str], files: impl Fn(&str) -> String) -> WechatpayKeys {
    let mut keys = WechatpayKeys::new();
    for id in ids {
        let pem = read(&files(id));
        if id.starts_with("PUB_KEY_ID_") {
            keys = keys.with_public_key(*id, VerifyingKey::from_pem(&pem).unwrap());
        } else {
            keys.add_certificates([PlatformCertificate::from_pem(&pem).unwrap()]);
        }
    }
    keys
}

fn header_pairs(headers: &Value) -> Vec<(&str, &str)> {
    headers
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
        .collect()
}

fn verify(keys: &WechatpayKeys, headers: &Value, body: &str, now: i64) -> Result<(), VerifyError> {
    let headers = SignatureHeaders::from_pairs(header_pairs(headers))?;
    keys.verify(&headers, body.as_bytes(), now)
}

#[test]
fn every_verdict_and_its_reason_is_reproduced() {
    for case in cases("verify.json") {
        let ids: Vec<&str> = case["client_keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let keys = client_keys(&ids, key_file);
        let now = case["verify_at"].as_i64().unwrap();
        let headers = SignatureHeaders::from_pairs(header_pairs(&case["headers"])).unwrap();
        assert_eq!(
            String::from_utf8(headers.message(text(&case, "body").as_bytes())).unwrap(),
            text(&case, "message"),
            "{}",
            name(&case)
        );
        let got = verify(&keys, &case["headers"], text(&case, "body"), now);
        let expected = &case["expected"];
        let reasons = expected["reasons"].to_string();
        match expected["verdict"].as_str().unwrap() {
            "accept" => assert_eq!(got, Ok(()), "{}", name(&case)),
            "reject" => {
                let err = got.expect_err(name(&case));
                let fits = match &err {
                    VerifyError::Probe => reasons.contains("SIGNTEST"),
                    VerifyError::StaleTimestamp { .. } => reasons.contains("300 s"),
                    VerifyError::UnknownSerial(_) => reasons.contains("unknown Wechatpay-Serial"),
                    VerifyError::BadSignature => reasons.contains("does not verify"),
                    _ => false,
                };
                assert!(fits, "{}: {err:?} is not among {reasons}", name(&case));
            }
            other => panic!("verdict {other}"),
        }
        // After downloading the rotated certificate, the same message verifies.
        if let Some(after) = case.get("after_refresh") {
            keys.add_certificates([
                PlatformCertificate::from_pem(&read(text(after, "key"))).unwrap()
            ]);
            assert_eq!(
                verify(&keys, &case["headers"], text(&case, "body"), now),
                Ok(()),
                "{} after refresh",
                name(&case)
            );
        }
    }
}

#[test]
fn the_divergences_get_paygates_documented_choices() {
    let doc = load("verify.json");
    let keys = client_keys(
        &[
            "3A414D8EE28675E1BDBF02E87A0B7F366202CC00",
            "PUB_KEY_ID_0112300001092025010100000000000001",
        ],
        key_file,
    );
    for divergence in doc["divergences"].as_array().unwrap() {
        let now = divergence["verify_at"].as_i64().unwrap();
        let got = verify(&keys, &divergence["headers"], text(divergence, "body"), now);
        match text(divergence, "name") {
            // |skew| > 300 rejects, so exactly 300 s passes (PHP, axios); 301 s fails above.
            "timestamp_exactly_300s_old" => assert_eq!(got, Ok(())),
            // Certificate serials are normalised to upper case.
            "serial_in_lowercase" => assert_eq!(got, Ok(())),
            // A missing Signature-Type is the only scheme there is; another value is refused.
            "missing_signature_type_header" => assert_eq!(got, Ok(())),
            other => panic!("unreviewed divergence {other}"),
        }
    }
}

#[test]
fn a_public_key_only_client_rejects_certificate_signed_messages_and_a_combined_one_accepts() {
    let case = cases("verify.json")
        .into_iter()
        .find(|c| name(c) == "pubkey_only_client_gets_cert_signed_message")
        .unwrap();
    let now = case["verify_at"].as_i64().unwrap();
    let combined = client_keys(
        &[
            "PUB_KEY_ID_0112300001092025010100000000000001",
            "3A414D8EE28675E1BDBF02E87A0B7F366202CC00",
        ],
        key_file,
    );
    assert_eq!(
        verify(&combined, &case["headers"], text(&case, "body"), now),
        Ok(())
    );
    let wrong_clock = verify(&combined, &case["headers"], text(&case, "body"), now + 301);
    assert!(matches!(
        wrong_clock,
        Err(VerifyError::StaleTimestamp { .. })
    ));
}
