use crate::helpers::{TestApp, spawn_app};

#[tokio::test]
async fn a_request_without_a_key_is_401() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(format!("{}/v1/orders", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = spawn_app().await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let response = app
            .http
            .get(format!("{}/v1/orders", app.address))
            .header("Authorization", format!("{scheme} {}", app.merchant_key))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{scheme}");
    }
    let response = app
        .http
        .get(format!("{}/v1/orders", app.address))
        .header("Authorization", format!("Basic {}", app.merchant_key))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "another scheme is not a bearer key");
}

#[tokio::test]
async fn an_unknown_key_is_401() {
    let app = spawn_app().await;
    let response = app.get_as("pgm_not_a_real_key", "/v1/orders").await;
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn a_finance_key_cannot_create_orders() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(format!("{}/v1/orders", app.address))
        .bearer_auth(&app.finance_key)
        .json(&TestApp::order_body("alipay", "app", "finance_try_1", 100))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let listed = app.get_json("/v1/orders").await;
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        0,
        "nothing was created"
    );
}

#[tokio::test]
async fn a_merchant_key_cannot_read_finance_reports() {
    let app = spawn_app().await;
    for path in [
        "/v1/reports/summary?from=2020-01-01&to=2030-01-01",
        "/v1/anomalies",
        "/v1/orders/export.csv",
    ] {
        let response = app.get_as(&app.merchant_key, path).await;
        assert_eq!(response.status(), 403, "{path}");
    }
}

#[tokio::test]
async fn health_endpoints_need_no_key() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let response = app
            .http
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let metrics = app.metrics_text().await;
    assert!(metrics.contains("paygate_http_requests_total"), "{metrics}");
}

#[tokio::test]
async fn wrong_keys_from_one_source_are_throttled_without_locking_out_valid_keys() {
    let app = spawn_app().await;
    // A key used before the flood is cached and keeps working through it.
    assert_eq!(
        app.get_as(&app.merchant_key, "/v1/orders").await.status(),
        200
    );

    let mut statuses = Vec::new();
    for n in 0..40 {
        let response = app.get_as(&format!("pgm_guess_{n}"), "/v1/orders").await;
        if response.status() == 429 {
            assert_eq!(response.headers()["retry-after"], "1");
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "too_many_failed_authentications");
            statuses.push(429);
        } else {
            statuses.push(response.status().as_u16());
        }
    }
    let unauthorized = statuses.iter().filter(|s| **s == 401).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert!(
        (30..=32).contains(&unauthorized) && unauthorized + throttled == 40,
        "a burst of 30 looked up, the rest refused unlooked: {statuses:?}"
    );
    assert_eq!(
        app.get_as(&app.merchant_key, "/v1/orders").await.status(),
        200
    );

    let metrics = app
        .http
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "paygate_failed_authentications_total{{outcome=\"throttled\"}} {throttled}"
        )),
        "{metrics}"
    );

    // The budget refills at five a second.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    assert_eq!(
        app.get_as("pgm_guess_again", "/v1/orders").await.status(),
        401
    );
}
