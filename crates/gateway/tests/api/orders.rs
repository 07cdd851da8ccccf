use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

#[tokio::test]
async fn an_alipay_app_order_returns_a_signed_order_string() {
    let app = spawn_app().await;
    let order = app
        .create_order(TestApp::order_body("alipay", "app", "ali_app_0001", 1999))
        .await;
    assert_eq!(order["status"], "pending");
    assert_eq!(order["amount"], 1999);
    assert!(order["id"].as_str().unwrap().starts_with("ord_"));
    let order_string = order["pay_params"]["order_string"].as_str().unwrap();
    assert!(
        order_string.contains("method=alipay.trade.app.pay"),
        "{order_string}"
    );
    assert!(order_string.contains("sign="), "{order_string}");
    // The amount travels as yuan with two decimals inside the URL-encoded biz_content.
    assert!(order_string.contains("19.99"), "{order_string}");
}

#[tokio::test]
async fn a_wechat_mini_program_order_returns_the_request_payment_fields() {
    let app = spawn_app().await;
    let order = app
        .create_order(TestApp::order_body(
            "wechat",
            "mini_program",
            "wx_mini_0001",
            1,
        ))
        .await;
    let p = &order["pay_params"];
    for field in [
        "appId",
        "timeStamp",
        "nonceStr",
        "package",
        "signType",
        "paySign",
    ] {
        assert!(p[field].is_string(), "{field} missing in {p}");
    }
    assert!(p["package"].as_str().unwrap().starts_with("prepay_id="));
    assert_eq!(p["signType"], "HMAC-SHA256");
    assert_eq!(p["paySign"].as_str().unwrap().len(), 64);
}

#[tokio::test]
async fn every_channel_can_be_paid_once_and_refunded() {
    let app = spawn_app().await;
    let channels = [
        ("wechat", "mini_program"),
        ("wechat", "jsapi"),
        ("wechat", "app"),
        ("wechat", "native"),
        ("wechat", "h5"),
        ("alipay", "app"),
        ("alipay", "wap"),
        ("alipay", "page"),
        ("alipay", "precreate"),
        ("alipay", "mini_program"),
    ];
    for (i, (provider, channel)) in channels.iter().enumerate() {
        let no = format!("flow_{provider}_{channel}_{i}");
        let order = app
            .create_order(TestApp::order_body(provider, channel, &no, 100 + i as i64))
            .await;
        assert_eq!(order["status"], "pending", "{provider} {channel}");
        app.pay(&order).await;
        let paid = app
            .wait_for_status(order["id"].as_str().unwrap(), "paid")
            .await;
        assert!(paid["paid_at"].is_string(), "{paid}");
        assert!(paid["provider_trade_no"].is_string(), "{paid}");
        let deliveries = app.wait_for_deliveries(&no, 1).await;
        assert!(
            deliveries.iter().all(|d| d["acknowledged"] == true),
            "{deliveries:?}"
        );
        // And refunded in full through the same channel's provider.
        let id = order["id"].as_str().unwrap();
        let refund = app
            .post(
                &format!("/v1/orders/{id}/refunds"),
                &json!({"amount": 100 + i as i64}),
            )
            .await;
        assert_eq!(refund.status(), 201, "{provider} {channel}");
        app.wait_for_status(id, "refunded").await;
    }
}

#[tokio::test]
async fn retrying_with_the_same_body_returns_the_same_order_and_pay_params() {
    let app = spawn_app().await;
    let body = TestApp::order_body("wechat", "native", "idem_000001", 500);
    let first = app.create_order(body.clone()).await;
    let again = app.post("/v1/orders", &body).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["pay_params"], first["pay_params"]);
}

#[tokio::test]
async fn reusing_an_out_trade_no_with_another_body_is_409() {
    let app = spawn_app().await;
    app.create_order(TestApp::order_body(
        "alipay",
        "precreate",
        "idem_000002",
        500,
    ))
    .await;
    let response = app
        .post(
            "/v1/orders",
            &TestApp::order_body("alipay", "precreate", "idem_000002", 501),
        )
        .await;
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "out_trade_no_reused");
}

#[tokio::test]
async fn bad_amounts_are_refused_with_a_precise_code_and_nothing_is_stored() {
    let app = spawn_app().await;
    let cases = [
        ("alipay", 0, "invalid_amount"),
        ("alipay", -5, "invalid_amount"),
        ("alipay", 10_000_000_001, "amount_too_large"),
        ("wechat", 2_147_483_648, "amount_too_large"),
    ];
    for (i, (provider, amount, code)) in cases.into_iter().enumerate() {
        let channel = if provider == "wechat" {
            "native"
        } else {
            "app"
        };
        let response = app
            .post(
                "/v1/orders",
                &TestApp::order_body(provider, channel, &format!("amt_case_{i}"), amount),
            )
            .await;
        assert_eq!(response.status(), 422, "{provider} {amount}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{provider} {amount}: {body}");
    }
    let listed = app.get_json("/v1/orders").await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn the_largest_alipay_amount_is_accepted_and_written_exactly() {
    let app = spawn_app().await;
    let order = app
        .create_order(TestApp::order_body(
            "alipay",
            "app",
            "amt_max_001",
            10_000_000_000,
        ))
        .await;
    let order_string = order["pay_params"]["order_string"].as_str().unwrap();
    assert!(order_string.contains("100000000.00"), "{order_string}");
}

#[tokio::test]
async fn malformed_json_unknown_fields_and_missing_openid_are_refused() {
    let app = spawn_app().await;
    let broken = app
        .http
        .post(format!("{}/v1/orders", app.address))
        .bearer_auth(&app.merchant_key)
        .header("Content-Type", "application/json")
        .body("{\"provider\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), 400);
    let body: Value = broken.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_json");

    let mut unknown = TestApp::order_body("alipay", "app", "unknown_f_1", 100);
    unknown["ammount"] = json!(100);
    let response = app.post("/v1/orders", &unknown).await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_field");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ammount"),
        "{body}"
    );

    let mut no_openid = TestApp::order_body("wechat", "mini_program", "no_openid_1", 100);
    no_openid.as_object_mut().unwrap().remove("openid");
    let response = app.post("/v1/orders", &no_openid).await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "openid_required");

    let wrong_channel = app
        .post(
            "/v1/orders",
            &TestApp::order_body("wechat", "precreate", "bad_chan_01", 100),
        )
        .await;
    assert_eq!(wrong_channel.status(), 422);
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let app = spawn_app().await;
    let mut body = TestApp::order_body("alipay", "app", "too_big_001", 100);
    body["description"] = json!("x".repeat(100 * 1024));
    let response = app.post("/v1/orders", &body).await;
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn a_provider_outage_on_create_is_a_504_and_the_retry_succeeds_without_a_duplicate() {
    let app = spawn_app().await;
    app.fault(
        json!({"fault": "http_status", "status": 503, "api": "/pay/unifiedorder", "times": 1}),
    )
    .await;
    let body = TestApp::order_body("wechat", "native", "outage_0001", 300);
    let failed = app.post("/v1/orders", &body).await;
    assert_eq!(failed.status(), 504);
    let error: Value = failed.json().await.unwrap();
    assert_eq!(error["error"]["code"], "provider_timeout");
    let retried = app.post("/v1/orders", &body).await;
    assert_eq!(retried.status(), 200, "the retry reuses the stored order");
    let order: Value = retried.json().await.unwrap();
    assert!(order["pay_params"]["code_url"].is_string(), "{order}");
    // Exactly one trade at the provider: the retry did not create a second.
    app.sandbox_trade("outage_0001").await;
}

#[tokio::test]
async fn orders_can_be_listed_filtered_and_paged() {
    let app = spawn_app().await;
    for i in 0..5 {
        app.create_order(TestApp::order_body(
            "alipay",
            "precreate",
            &format!("list_a_{i:04}"),
            100 + i,
        ))
        .await;
    }
    for i in 0..3 {
        app.create_order(TestApp::order_body(
            "wechat",
            "native",
            &format!("list_w_{i:04}"),
            200 + i,
        ))
        .await;
    }
    let wechat = app.get_json("/v1/orders?provider=wechat").await;
    assert_eq!(wechat["data"].as_array().unwrap().len(), 3);
    let prefix = app.get_json("/v1/orders?out_trade_no_prefix=list_a_").await;
    assert_eq!(prefix["data"].as_array().unwrap().len(), 5);
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/orders?limit=3&cursor={c}"),
            None => "/v1/orders?limit=3".to_owned(),
        };
        let page = app.get_json(&path).await;
        for o in page["data"].as_array().unwrap() {
            assert!(
                seen.insert(o["id"].as_str().unwrap().to_owned()),
                "no duplicates across pages"
            );
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 8);
    let by_no = app.get_json("/v1/orders?out_trade_no=list_w_0001").await;
    assert_eq!(by_no["data"][0]["amount"], 201);
}

#[tokio::test]
async fn closing_a_pending_order_closes_it_at_the_provider_first() {
    let app = spawn_app().await;
    let order = app
        .create_order(TestApp::order_body("wechat", "native", "close_0001", 100))
        .await;
    let id = order["id"].as_str().unwrap();
    let response = app
        .post(&format!("/v1/orders/{id}/close"), &json!({}))
        .await;
    assert_eq!(response.status(), 200);
    let closed: Value = response.json().await.unwrap();
    assert_eq!(closed["status"], "closed");
    let trade = app.sandbox_trade("close_0001").await;
    assert_eq!(trade["status"], "closed", "{trade}");
}

#[tokio::test]
async fn finance_can_export_csv_and_read_the_summary() {
    let app = spawn_app().await;
    let order = app
        .create_order(TestApp::order_body(
            "alipay",
            "precreate",
            "fin_000001",
            1999,
        ))
        .await;
    app.pay(&order).await;
    app.wait_for_status(order["id"].as_str().unwrap(), "paid")
        .await;
    let csv = app.get_as(&app.finance_key, "/v1/orders/export.csv").await;
    assert_eq!(csv.status(), 200);
    let text = csv.text().await.unwrap();
    assert!(text.starts_with("id,provider,app"), "{text}");
    assert!(
        text.contains("fin_000001") && text.contains("19.99"),
        "{text}"
    );
    let summary = app
        .get_as(
            &app.finance_key,
            "/v1/reports/summary?from=2000-01-01&to=2100-01-01&group_by=provider",
        )
        .await;
    assert_eq!(summary.status(), 200);
    let summary: Value = summary.json().await.unwrap();
    let alipay = summary["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "alipay")
        .cloned()
        .unwrap();
    assert_eq!(alipay["paid_amount"], 1999, "{summary}");
}

#[tokio::test]
async fn closing_an_order_the_buyer_already_paid_makes_it_paid_not_closed() {
    let app = spawn_app().await;
    let order = app
        .create_order(TestApp::order_body("wechat", "native", "close_paid_1", 100))
        .await;
    app.fault(json!({"fault": "drop_notify", "provider": "wechat", "out_trade_no": "close_paid_1", "times": "always"})).await;
    app.pay(&order).await;
    let id = order["id"].as_str().unwrap();
    assert_eq!(
        app.get_json(&format!("/v1/orders/{id}")).await["status"],
        "pending"
    );
    let response = app
        .post(&format!("/v1/orders/{id}/close"), &json!({}))
        .await;
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "already_paid");
    assert_eq!(
        app.get_json(&format!("/v1/orders/{id}")).await["status"],
        "paid"
    );
}
