//! paysign.json: JSAPI/mini-program paySign (MD5 and HMAC, the official 7_7 example), the
//! lowercase-timestamp mistake, and the APP params.

use paygate_core::PayParams;
use paygate_wechat::pay_params;
use paygate_wechat::sign::{self, ApiKey, SignType};
use serde_json::Value;

use crate::vectors::{id, list, load, string_map, text};

fn prepay_id_of(params: &Value) -> String {
    text(params, "package")
        .strip_prefix("prepay_id=")
        .unwrap()
        .to_owned()
}

#[test]
fn every_paysign_case_matches_the_libraries() {
    let doc = load("paysign.json");
    let cases = list(&doc, "cases");
    for case in &cases {
        let key = ApiKey::new(text(case, "api_key"));
        let params = &case["params"];
        match id(case) {
            "P01_official_miniprogram_example"
            | "P02_jsapi_md5_wechatpy"
            | "P03_jsapi_hmac_sha256" => {
                let sign_type = SignType::parse(text(params, "signType")).unwrap();
                let built = pay_params::jsapi(
                    text(params, "appId"),
                    &prepay_id_of(params),
                    &key,
                    sign_type,
                    text(params, "timeStamp").parse().unwrap(),
                    text(params, "nonceStr"),
                );
                let expected = text(case, "expected_paySign");
                let PayParams::WechatJsapi {
                    pay_sign,
                    package,
                    time_stamp,
                    ..
                } = &built
                else {
                    panic!("{}: {built:?}", id(case));
                };
                assert_eq!(pay_sign, expected, "{}", id(case));
                assert_eq!(package, text(params, "package"));
                assert_eq!(time_stamp, text(params, "timeStamp"));
                // The serialised params use the client's field names.
                let json = serde_json::to_value(&built).unwrap();
                assert_eq!(json["paySign"], expected);
                assert_eq!(json["signType"], text(params, "signType"));
            }
            "P04_negative_lowercase_timestamp" => {
                let fields = string_map(params);
                assert_eq!(
                    sign::sign(&fields, &key, SignType::Md5),
                    text(case, "wrong_paySign")
                );
                let built = pay_params::jsapi(
                    text(params, "appId"),
                    &prepay_id_of(params),
                    &key,
                    SignType::Md5,
                    text(params, "timestamp").parse().unwrap(),
                    text(params, "nonceStr"),
                );
                let PayParams::WechatJsapi { pay_sign, .. } = built else {
                    panic!()
                };
                assert_eq!(pay_sign, text(case, "correct_paySign_for_same_values"));
                assert_ne!(pay_sign, text(case, "wrong_paySign"));
            }
            "A01_app_params_md5_wechatpy" | "A02_app_params_hmac_sha256" => {
                let sign_type = if id(case).contains("hmac") {
                    SignType::HmacSha256
                } else {
                    SignType::Md5
                };
                let built = pay_params::app(
                    text(params, "appid"),
                    text(params, "partnerid"),
                    text(params, "prepayid"),
                    &key,
                    sign_type,
                    text(params, "timestamp").parse().unwrap(),
                    text(params, "noncestr"),
                );
                // Every field the vector lists comes out under the same name and value.
                let json = serde_json::to_value(&built).unwrap();
                for (name, value) in string_map(params) {
                    assert_eq!(json[&name], value.as_str(), "{} {name}", id(case));
                }
                assert_eq!(json["sign"], text(case, "expected_sign"), "{}", id(case));
            }
            other => panic!("unhandled paysign case {other}"),
        }
    }
    assert_eq!(cases.len(), 6);
}
