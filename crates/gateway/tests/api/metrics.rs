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
