use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn every_documented_operation_is_served() {
    let app = spawn_app().await;
    let doc: Value = app
        .http
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 15, "{}", paths.len());
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path
            .replace("{id}", "ord_01ARZ3NDEKTSV4RRFFQ69G5FAV")
            .replace("{provider}", "wechat")
            .replace("{app}", "sandbox");
        for method in ["get", "post"] {
            if item.get(method).is_none() {
                continue;
            }
            operations += 1;
            let url = format!("{}{concrete}", app.address);
            let request = match method {
                "get" => app.http.get(url),
                _ => app
                    .http
                    .post(url)
                    .header("Content-Type", "application/json")
                    .body("{}"),
            };
            let response = request.bearer_auth(&app.merchant_key).send().await.unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            assert_ne!(status, 405, "{method} {path}");
            assert!(
                !body.contains("no such endpoint"),
                "{method} {path} is documented but not routed"
            );
        }
    }
    assert!(operations >= 18, "{operations}");
    assert!(paths["/v1/orders"].get("post").is_some() && paths["/v1/orders"].get("get").is_some());
    assert!(doc["components"]["schemas"]["CreateOrderRequest"]["properties"]["amount"].is_object());
    // WeChat v3 apps are the same provider with RSA-signed pay params; the document says so.
    let info = doc["info"]["description"].as_str().unwrap_or_default();
    assert!(info.contains("APIv3") && info.contains("RSA"), "{info}");
    let pay_params =
        doc["components"]["schemas"]["OrderView"]["properties"]["pay_params"]["description"]
            .as_str()
            .unwrap_or_default();
    assert!(
        pay_params.contains("v3") && pay_params.contains("`RSA`"),
        "{pay_params}"
    );
}
