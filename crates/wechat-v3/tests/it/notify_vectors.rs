//! `notify.json`: whole notifies (headers and raw body) through verification, decryption and
//! parsing, with the verdict and the HTTP status of the reply; and the decryption inputs alone.

use paygate_core::{Notice, RefundState, TradeState};
use paygate_wechat_v3::aead::{ALGORITHM, ApiV3Key, DecryptError, EncryptedResource};
use paygate_wechat_v3::notify::verify_notify;
use serde_json::Value;

use crate::vectors::{cases, load, name, read, text};
use crate::verify_vectors::client_keys;

const MCHID: &str = "1230000109";

fn apiv3_key() -> ApiV3Key {
    ApiV3Key::new(&read("keys/apiv3_key.txt")).unwrap()
}

fn keys() -> paygate_wechat_v3::verify::WechatpayKeys {
    let doc = load("notify.json");
    let files = doc["source"]["keys"].clone();
    let ids: Vec<String> = files.as_object().unwrap().keys().cloned().collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    client_keys(&ids, |id| files[id].as_str().unwrap().to_owned())
}

fn pairs(case: &Value) -> Vec<(&str, &str)> {
    case["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
        .collect()
}

#[test]
fn every_notify_gets_its_verdict_reply_status_and_facts() {
    let keys = keys();
    let apiv3 = apiv3_key();
    for case in cases("notify.json") {
        let now = case["verify_at"].as_i64().unwrap();
        let got = verify_notify(
            pairs(&case),
            text(&case, "body").as_bytes(),
            &keys,
            &apiv3,
            MCHID,
            now,
        );
        let expected = &case["expected"];
        match expected["verdict"].as_str().unwrap() {
            "accept" => {
                let notify = got.unwrap_or_else(|e| panic!("{}: {e}", name(&case)));
                assert_eq!(notify.event_type, text(&case, "event_type"));
                let plain = &case["plaintext_object"];
                match notify.notice {
                    Notice::Payment(facts) => {
                        assert_eq!(facts.out_trade_no, text(plain, "out_trade_no"));
                        assert_eq!(
                            facts.amount.map(|f| f.get()),
                            plain["amount"]["total"].as_i64()
                        );
                        assert_eq!(facts.app_id.as_deref(), plain["appid"].as_str());
                        assert_eq!(facts.merchant_id.as_deref(), plain["mchid"].as_str());
                        assert_eq!(
                            facts.provider_trade_no.as_deref(),
                            plain["transaction_id"].as_str()
                        );
                        assert_eq!(facts.payer_id.as_deref(), plain["payer"]["openid"].as_str());
                        assert_eq!(facts.state, TradeState::Paid, "{}", name(&case));
                        let paid =
                            chrono::DateTime::parse_from_rfc3339(text(plain, "success_time"))
                                .unwrap();
                        assert_eq!(facts.paid_at.map(|t| t.timestamp()), Some(paid.timestamp()));
                    }
                    Notice::Refund(facts) => {
                        assert_eq!(facts.out_refund_no, text(plain, "out_refund_no"));
                        assert_eq!(facts.out_trade_no, text(plain, "out_trade_no"));
                        assert_eq!(
                            facts.provider_refund_id.as_deref(),
                            plain["refund_id"].as_str()
                        );
                        assert_eq!(
                            facts.amount.map(|f| f.get()),
                            plain["amount"]["refund"].as_i64()
                        );
                        let state = match text(plain, "refund_status") {
                            "SUCCESS" => RefundState::Succeeded,
                            "ABNORMAL" => RefundState::Processing,
                            "CLOSED" => RefundState::Failed,
                            other => panic!("{other}"),
                        };
                        assert_eq!(facts.state, state, "{}", name(&case));
                        assert_eq!(
                            facts.succeeded_at.is_some(),
                            state == RefundState::Succeeded
                        );
                    }
                }
            }
            "reject" => {
                let err = got.expect_err(name(&case));
                assert_eq!(
                    u64::from(err.status()),
                    expected["reply"]["status"].as_u64().unwrap(),
                    "{}: {err}",
                    name(&case)
                );
            }
            other => panic!("verdict {other}"),
        }
    }
}

#[test]
fn every_decryption_input_decrypts_to_the_plaintext_or_fails_authentication() {
    let apiv3 = apiv3_key();
    for case in cases("notify.json") {
        let decrypt = &case["decrypt"];
        let resource = EncryptedResource {
            algorithm: text(decrypt, "algorithm").to_owned(),
            ciphertext: text(decrypt, "ciphertext").to_owned(),
            associated_data: text(decrypt, "associated_data").to_owned(),
            nonce: text(decrypt, "nonce").to_owned(),
            original_type: None,
        };
        assert_eq!(resource.algorithm, ALGORITHM);
        let got = apiv3.decrypt(&resource);
        if case["expected"]["decrypt_ok"].as_bool().unwrap() {
            assert_eq!(
                got.as_deref(),
                Ok(text(&case, "plaintext")),
                "{}",
                name(&case)
            );
        } else {
            assert_eq!(got, Err(DecryptError::Authentication), "{}", name(&case));
        }
    }
}

#[test]
fn a_wrong_apiv3_key_fails_every_notify() {
    let keys = keys();
    let wrong = ApiV3Key::new("0123456789abcdef0123456789abcdef").unwrap();
    let case = cases("notify.json").into_iter().next().unwrap();
    let now = case["verify_at"].as_i64().unwrap();
    let err = verify_notify(
        pairs(&case),
        text(&case, "body").as_bytes(),
        &keys,
        &wrong,
        MCHID,
        now,
    )
    .unwrap_err();
    assert_eq!(err.status(), 500, "{err}");
}

#[test]
fn a_refund_notify_for_another_merchant_is_refused() {
    let keys = keys();
    let case = cases("notify.json")
        .into_iter()
        .find(|c| name(c) == "refund_success")
        .unwrap();
    let now = case["verify_at"].as_i64().unwrap();
    let err = verify_notify(
        pairs(&case),
        text(&case, "body").as_bytes(),
        &keys,
        &apiv3_key(),
        "1900000000",
        now,
    )
    .unwrap_err();
    assert_eq!(err.status(), 400, "{err}");
}
