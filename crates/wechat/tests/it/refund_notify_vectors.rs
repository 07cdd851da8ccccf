//! refund_notify.json: req_info decryption and encryption byte for byte, the wrong-key case,
//! and the two library divergences, where strict PKCS#7 (the protocol's rule) applies.

use paygate_core::{NotifyError, RefundState};
use paygate_wechat::refund_notify::{self, DecryptError};
use paygate_wechat::sign::ApiKey;

use crate::vectors::{id, list, load, string_map, text};

#[test]
fn every_refund_notify_case_decrypts_or_is_refused_as_recorded() {
    let doc = load("refund_notify.json");
    let cases = list(&doc, "cases");
    for case in &cases {
        let key = ApiKey::new(text(case, "api_key"));
        let req_info = text(case, "req_info_b64");
        if case.get("expected_verdict").and_then(|v| v.as_str()) == Some("reject") {
            assert!(
                refund_notify::decrypt_req_info(req_info, &key).is_err(),
                "{}",
                id(case)
            );
            continue;
        }
        assert_eq!(
            refund_notify::req_info_key(&key).as_slice(),
            text(case, "aes_key_ascii").as_bytes()
        );
        let plaintext = text(case, "plaintext_xml");
        assert_eq!(
            refund_notify::decrypt_req_info(req_info, &key).as_deref(),
            Ok(plaintext)
        );
        assert_eq!(
            plaintext.len() as u64,
            case["plaintext_utf8_len"].as_u64().unwrap()
        );
        assert_eq!(
            refund_notify::encrypt_req_info(plaintext, &key),
            req_info,
            "{}",
            id(case)
        );

        let notice =
            refund_notify::verify_refund_notify(text(case, "outer_notify_xml").as_bytes(), &key)
                .unwrap_or_else(|e| panic!("{}: {e}", id(case)));
        let expected = string_map(&case["expected_fields"]);
        assert_eq!(notice.fields, expected, "{}", id(case));
        assert_eq!(notice.facts.out_refund_no, expected["out_refund_no"]);
        assert_eq!(
            notice.facts.amount.map(|f| f.get().to_string()).as_deref(),
            Some(expected["refund_fee"].as_str())
        );
        let state = match expected["refund_status"].as_str() {
            "SUCCESS" => RefundState::Succeeded,
            _ => RefundState::Failed,
        };
        assert_eq!(notice.facts.state, state, "{}", id(case));
        assert_eq!(notice.appid.as_deref(), Some("wx2421b1c4370ec43b"));
        assert_eq!(notice.mch_id.as_deref(), Some("10000100"));
    }
    assert_eq!(cases.len(), 4);
}

#[test]
fn the_refund_success_time_is_read_as_beijing_time() {
    let doc = load("refund_notify.json");
    let f01 = &list(&doc, "cases")[0];
    let key = ApiKey::new(text(f01, "api_key"));
    let notice =
        refund_notify::verify_refund_notify(text(f01, "outer_notify_xml").as_bytes(), &key)
            .unwrap();
    // 2018-11-19 16:24:13 in Beijing is 08:24:13 UTC.
    assert_eq!(
        notice.facts.succeeded_at.map(|t| t.to_rfc3339()),
        Some("2018-11-19T08:24:13+00:00".to_owned())
    );
}

#[test]
fn a_notify_with_the_wrong_key_is_a_decrypt_error() {
    let doc = load("refund_notify.json");
    let f01 = &list(&doc, "cases")[0];
    let other = ApiKey::new("Abcdefghijklmnopqrstuvwxyz012345");
    assert!(matches!(
        refund_notify::verify_refund_notify(text(f01, "outer_notify_xml").as_bytes(), &other),
        Err(NotifyError::Decrypt(_))
    ));
}

#[test]
fn lenient_library_ciphertexts_fail_strict_padding() {
    let doc = load("refund_notify.json");
    let key = ApiKey::new("192006250b4c09247ec02edce69f6a2d");
    let divergences = list(&doc, "divergences");
    for case in &divergences {
        match id(case) {
            "X01_axios_plugin_encrypt_omits_full_padding_block" => {
                let standard = text(case, "standard_pkcs7_req_info");
                let plain = refund_notify::decrypt_req_info(standard, &key).unwrap();
                assert_eq!(
                    plain.len() as u64,
                    case["plaintext_utf8_len"].as_u64().unwrap()
                );
                assert_eq!(refund_notify::encrypt_req_info(&plain, &key), standard);
                assert_eq!(
                    refund_notify::decrypt_req_info(text(case, "axios_plugin_req_info"), &key),
                    Err(DecryptError::BadPadding)
                );
            }
            "X02_wechatpy_RefundCrypto_encrypt_uses_32_byte_padding" => {
                assert_eq!(
                    refund_notify::decrypt_req_info(text(case, "wechatpy_req_info"), &key),
                    Err(DecryptError::BadPadding)
                );
            }
            other => panic!("unhandled divergence {other}"),
        }
    }
    assert_eq!(divergences.len(), 2);
}
