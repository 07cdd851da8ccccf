//! `/metrics` stays bounded whatever clients send.

use rand::Rng;
use rand::distr::Alphanumeric;

use crate::helpers::spawn_app;

/// The number of series on `/metrics` (sample lines, not comments).
async fn series(app: &crate::helpers::TestApp) -> usize {
    app.metrics_text()
        .await
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .count()
}

fn random_token(length: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(length)
        .map(|byte| char::from(byte).to_ascii_uppercase())
        .collect()
}

async fn made_up_request(app: &crate::helpers::TestApp) {
    let method = reqwest::Method::from_bytes(random_token(8).as_bytes()).unwrap();
    let path = format!("/{}/{}", random_token(6), random_token(10));
    let response = app
        .http
        .request(method, format!("{}{path}", app.address))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error(), "{path}");
}

#[tokio::test]
async fn made_up_methods_and_paths_do_not_add_series() {
    let app = spawn_app().await;
    // One of each first, so the series an unknown request is counted under exist.
    made_up_request(&app).await;
    let _ = series(&app).await;
    let before = series(&app).await;
    for _ in 0..100 {
        made_up_request(&app).await;
    }
    let after = series(&app).await;
    assert_eq!(before, after, "100 made-up requests added series");
}

/// The value of the sample line starting with `prefix` (name and labels).
fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test]
async fn provider_calls_are_timed_per_operation_and_outcome_and_backlog_ages_are_shown() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.reconciler.enabled = false;
        // Nothing delivers the outbox: its lag grows.
        s.webhooks.enabled = false;
    })
    .await;
    let before = app.metrics_text().await;
    assert_eq!(
        sample(&before, "paygate_oldest_pending_order_age_seconds "),
        Some(0.0)
    );
    assert_eq!(sample(&before, "paygate_outbox_lag_seconds "), Some(0.0));

    let order = app
        .create_order(crate::helpers::TestApp::order_body(
            "wechat",
            "native",
            "obs_order_1",
            100,
        ))
        .await;
    let id = order["id"].as_str().unwrap();
    // A query of the unpaid order.
    assert_eq!(
        app.post(&format!("/v1/orders/{id}/sync"), &serde_json::json!({}))
            .await
            .status(),
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;

    let metrics = app.metrics_text().await;
    let count = |operation: &str, outcome: &str| {
        sample(
            &metrics,
            &format!(
                "paygate_provider_call_duration_seconds_count{{operation=\"{operation}\",outcome=\"{outcome}\",provider=\"wechat\"}}"
            ),
        )
    };
    assert_eq!(count("create", "ok"), Some(1.0), "{metrics}");
    assert_eq!(count("query", "ok"), Some(1.0), "{metrics}");
    let pending_age = sample(&metrics, "paygate_oldest_pending_order_age_seconds ").unwrap();
    assert!((1.0..60.0).contains(&pending_age), "{pending_age}");

    // Paid: the order leaves the backlog, its order.paid event joins the outbox.
    app.pay(&order).await;
    crate::reliability::eventually("order paid", async || {
        (app.get_json(&format!("/v1/orders/{id}")).await["status"] == "paid").then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let metrics = app.metrics_text().await;
    assert_eq!(
        sample(&metrics, "paygate_oldest_pending_order_age_seconds "),
        Some(0.0)
    );
    let lag = sample(&metrics, "paygate_outbox_lag_seconds ").unwrap();
    assert!((0.5..60.0).contains(&lag), "{lag}");
}
