//! `pay_sign.json`: JSAPI / mini-program `paySign` and APP `sign`, with the whole client
//! parameter object, and the usual mistakes producing other signatures.

use paygate_wechat_v3::keys::MerchantKey;
use paygate_wechat_v3::sign::MerchantSigner;
use serde_json::Value;

use crate::vectors::{cases, load, name, read, text};

fn client_params(case: &Value) -> Value {
    let inputs = &case["inputs"];
    let key = MerchantKey::from_pem(&read(text(case, "key"))).unwrap();
    let signer = MerchantSigner::new(text(inputs, "mchid"), "SERIAL", key);
    let timestamp: i64 = text(inputs, "timestamp").parse().unwrap();
    let (appid, prepay_id, nonce) = (
        text(inputs, "appid"),
        text(inputs, "prepay_id"),
        text(inputs, "nonce"),
    );
    let params = match text(case, "kind") {
        "jsapi" => signer.jsapi_pay_params(appid, prepay_id, timestamp, nonce),
        "app" => signer.app_pay_params(appid, prepay_id, timestamp, nonce),
        other => panic!("unknown kind {other}"),
    }
    .unwrap();
    let mut json = serde_json::to_value(params).unwrap();
    // paygate's own tag, not part of what the client SDK receives.
    json.as_object_mut().unwrap().remove("type");
    json
}

#[test]
fn every_client_parameter_object_is_reproduced() {
    for case in cases("pay_sign.json") {
        assert_eq!(
            client_params(&case),
            case["client_params"],
            "{}",
            name(&case)
        );
        if let Some(documented) = case["documented_signature"].as_str() {
            assert_eq!(
                client_params(&case)["paySign"],
                documented,
                "{}",
                name(&case)
            );
        }
    }
}

#[test]
fn the_documented_mistakes_give_signatures_we_never_produce() {
    let doc = load("pay_sign.json");
    let jsapi = cases("pay_sign.json")
        .into_iter()
        .find(|c| name(c) == "jsapi_paysign")
        .unwrap();
    let ours = client_params(&jsapi)["paySign"].clone();
    let negatives = doc["negative_cases"].as_array().unwrap();
    assert_eq!(negatives.len(), 3);
    for negative in negatives {
        assert_ne!(ours, negative["signature"], "{}", negative["name"]);
    }
}
