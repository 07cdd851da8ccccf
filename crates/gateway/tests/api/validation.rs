//! Input validation at the API edge: text the providers or the database cannot carry is a 422
//! naming the field, on every backend, and nothing is stored for it.

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

/// Posts `body` to `path` and returns the status and the error code.
async fn refused(app: &TestApp, path: &str, body: &Value) -> (u16, Value) {
    let response = app.post(path, body).await;
    let status = response.status().as_u16();
    let json: Value = response.json().await.expect("json");
    (status, json)
}

#[tokio::test]
async fn nul_and_other_xml_forbidden_characters_are_a_422_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        ("wechat", "native", "subject", "tea\u{0}", "invalid_subject"),
        (
            "alipay",
            "precreate",
            "subject",
            "tea\u{1b}",
            "invalid_subject",
        ),
        (
            "wechat",
            "native",
            "description",
            "a\u{0}b",
            "invalid_description",
        ),
        (
            "alipay",
            "app",
            "description",
            "\u{FFFE}",
            "invalid_description",
        ),
        ("wechat", "jsapi", "openid", "o_test\u{0}", "invalid_openid"),
        (
            "wechat",
            "mini_program",
            "openid",
            "o test",
            "invalid_openid",
        ),
        (
            "alipay",
            "mini_program",
            "buyer_id",
            "2088\u{0}",
            "invalid_buyer_id",
        ),
        (
            "alipay",
            "mini_program",
            "buyer_id",
            "1234",
            "invalid_buyer_id",
        ),
        (
            "alipay",
            "wap",
            "return_url",
            "javascript:alert(1)",
            "invalid_return_url",
        ),
        (
            "alipay",
            "page",
            "return_url",
            "https://shop.example/\u{0}",
            "invalid_return_url",
        ),
        (
            "alipay",
            "page",
            "return_url",
            "ftp://shop.example/",
            "invalid_return_url",
        ),
    ];
    for (i, (provider, channel, field, value, code)) in cases.into_iter().enumerate() {
        let no = format!("bad_text_{i:03}");
        let mut body = TestApp::order_body(provider, channel, &no, 100);
        body[field] = json!(value);
        let (status, json) = refused(&app, "/v1/orders", &body).await;
        assert_eq!(status, 422, "{field}={value:?}: {json}");
        assert_eq!(json["error"]["code"], code, "{json}");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(field),
            "the message names {field}: {message}"
        );
        // Nothing was stored: the number is still free.
        let listed = app.get_json(&format!("/v1/orders?out_trade_no={no}")).await;
        assert_eq!(listed["data"].as_array().unwrap().len(), 0, "{listed}");
    }
    // Tab, newline and any other character XML carries are kept as given.
    let mut body = TestApp::order_body("wechat", "native", "good_text_01", 100);
    body["subject"] = json!("乌龙茶\t🍵");
    body["description"] = json!("line one\nline two");
    let order = app.create_order(body).await;
    assert_eq!(order["subject"], "乌龙茶\t🍵");
    assert_eq!(order["description"], "line one\nline two");
}

#[tokio::test]
async fn a_refund_reason_with_a_nul_is_a_422_and_no_refund_is_made() {
    let app = spawn_app().await;
    let order = app
        .create_order(TestApp::order_body("wechat", "native", "reason_nul_1", 500))
        .await;
    app.pay(&order).await;
    let id = order["id"].as_str().unwrap();
    app.wait_for_status(id, "paid").await;
    let path = format!("/v1/orders/{id}/refunds");
    for reason in ["broken\u{0}", "bell\u{7}"] {
        let body = json!({"amount": 100, "reason": reason, "out_refund_no": "reason_nul_r1"});
        let (status, json) = refused(&app, &path, &body).await;
        assert_eq!(status, 422, "{json}");
        assert_eq!(json["error"]["code"], "invalid_reason", "{json}");
    }
    let refunds = app.get_json(&path).await;
    assert_eq!(refunds["data"].as_array().unwrap().len(), 0, "{refunds}");
    let body = json!({"amount": 100, "reason": "broken", "out_refund_no": "reason_nul_r1"});
    let response = app.post(&path, &body).await;
    assert_eq!(response.status(), 201, "the corrected refund is made");
}
