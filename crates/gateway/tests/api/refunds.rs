use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

async fn paid_order(app: &TestApp, provider: &str, no: &str, amount: i64) -> Value {
    let channel = if provider == "wechat" {
        "native"
    } else {
        "precreate"
    };
    let order = app
        .create_order(TestApp::order_body(provider, channel, no, amount))
        .await;
    app.pay(&order).await;
    app.wait_for_status(order["id"].as_str().unwrap(), "paid")
        .await
}

async fn refund_status_eventually(app: &TestApp, order_id: &str, status: &str) -> Vec<Value> {
    for _ in 0..200 {
        let refunds = app
            .get_json(&format!("/v1/orders/{order_id}/refunds"))
            .await;
        let list = refunds["data"].as_array().unwrap().clone();
        if !list.is_empty() && list.iter().all(|r| r["status"] == status) {
            return list;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("refunds of {order_id} never all {status}");
}

#[tokio::test]
async fn partial_then_full_refunds_move_the_order_for_both_providers() {
    for provider in ["wechat", "alipay"] {
        let app = spawn_app().await;
        let order = paid_order(&app, provider, &format!("refund_{provider}_1"), 1000).await;
        let id = order["id"].as_str().unwrap();
        let first = app
            .post(
                &format!("/v1/orders/{id}/refunds"),
                &json!({"amount": 300, "out_refund_no": "rf_part_0001"}),
            )
            .await;
        assert_eq!(first.status(), 201, "{provider}");
        refund_status_eventually(&app, id, "succeeded").await;
        let partially = app.wait_for_status(id, "partially_refunded").await;
        assert_eq!(partially["refunded_amount"], 300);
        let second = app
            .post(
                &format!("/v1/orders/{id}/refunds"),
                &json!({"amount": 700, "out_refund_no": "rf_rest_0001"}),
            )
            .await;
        assert_eq!(second.status(), 201);
        refund_status_eventually(&app, id, "succeeded").await;
        let refunded = app.wait_for_status(id, "refunded").await;
        assert_eq!(refunded["refunded_amount"], 1000);
        let more = app
            .post(&format!("/v1/orders/{id}/refunds"), &json!({"amount": 1}))
            .await;
        assert_eq!(more.status(), 409, "{provider}");
    }
}

#[tokio::test]
async fn a_refund_retry_with_the_same_out_refund_no_does_not_refund_twice() {
    let app = spawn_app().await;
    let order = paid_order(&app, "alipay", "refund_idem_1", 1000).await;
    let id = order["id"].as_str().unwrap();
    let body = json!({"amount": 400, "out_refund_no": "rf_idem_0001"});
    assert_eq!(
        app.post(&format!("/v1/orders/{id}/refunds"), &body)
            .await
            .status(),
        201
    );
    assert_eq!(
        app.post(&format!("/v1/orders/{id}/refunds"), &body)
            .await
            .status(),
        200
    );
    let other = app
        .post(
            &format!("/v1/orders/{id}/refunds"),
            &json!({"amount": 401, "out_refund_no": "rf_idem_0001"}),
        )
        .await;
    assert_eq!(other.status(), 409);
    let refunds = refund_status_eventually(&app, id, "succeeded").await;
    assert_eq!(refunds.len(), 1);
}

#[tokio::test]
async fn concurrent_refunds_never_exceed_the_paid_amount() {
    let app = spawn_app().await;
    let order = paid_order(&app, "wechat", "refund_race_1", 1000).await;
    let id = order["id"].as_str().unwrap().to_owned();
    let mut tasks = Vec::new();
    for i in 0..100 {
        let http = app.http.clone();
        let url = format!("{}/v1/orders/{id}/refunds", app.address);
        let key = app.merchant_key.clone();
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .bearer_auth(key)
                .json(&json!({"amount": 300, "out_refund_no": format!("rf_race_{i:04}")}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    let mut created = 0;
    for task in tasks {
        match task.await.unwrap().unwrap() {
            201 => created += 1,
            409 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(created, 3, "3 × 300 fits in 1000, a 4th would not");
    let refunds = app.get_json(&format!("/v1/orders/{id}/refunds")).await;
    let total: i64 = refunds["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["amount"].as_i64().unwrap())
        .sum();
    assert!(total <= 1000, "{total}");
}

#[tokio::test]
async fn an_unpaid_order_cannot_be_refunded() {
    let app = spawn_app().await;
    let order = app
        .create_order(TestApp::order_body(
            "alipay",
            "precreate",
            "refund_unpaid",
            100,
        ))
        .await;
    let id = order["id"].as_str().unwrap();
    let response = app
        .post(&format!("/v1/orders/{id}/refunds"), &json!({"amount": 1}))
        .await;
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_refundable");
}
