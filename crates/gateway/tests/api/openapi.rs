use serde_json::Value;

use crate::helpers::{TestApp, spawn_app};

async fn openapi_document(app: &TestApp) -> Value {
    let response = app.http.get(format!("{}/openapi.json", app.address)).send();
    response.await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn every_documented_operation_is_served() {
    let app = spawn_app().await;
    let doc = openapi_document(&app).await;
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

/// A client generator gets the error codes as an enum, the one error body on every `/v1`
/// operation, and an operation id for every operation.
#[tokio::test]
async fn the_document_lists_every_error_code_and_error_body() {
    use paygate_gateway::error::ErrorCode;
    let app = spawn_app().await;
    let doc = openapi_document(&app).await;
    let documented: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("ErrorCode enum")
        .iter()
        .map(|v| v.as_str().expect("string"))
        .collect();
    let emitted: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(documented, emitted);
    for code in [
        "not_refundable",
        "not_closable",
        "openid_required",
        "client_ip_required",
    ] {
        assert!(documented.contains(&code), "{code}");
    }
    assert_eq!(
        doc["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["$ref"],
        "#/components/schemas/ErrorCode"
    );
    // Every JSON answer of the API is a described body.
    for (path, method) in [
        ("/v1/orders", "post"),
        ("/v1/orders", "get"),
        ("/v1/orders/{id}", "get"),
        ("/v1/orders/{id}/sync", "post"),
        ("/v1/orders/{id}/close", "post"),
        ("/v1/orders/{id}/refunds", "post"),
        ("/v1/orders/{id}/refunds", "get"),
        ("/v1/wechat/{app}/login", "post"),
        ("/v1/wechat/{app}/oauth/authorize-url", "post"),
        ("/v1/wechat/{app}/oauth/openid", "post"),
        ("/v1/wechat/{app}/jsapi-config", "post"),
        ("/v1/reports/summary", "get"),
        ("/v1/anomalies", "get"),
        ("/v1/callbacks", "get"),
        ("/v1/events", "get"),
        ("/v1/events/{id}/redeliver", "post"),
        ("/v1/reconciliation/runs", "get"),
        ("/v1/reconciliation/runs", "post"),
        ("/v1/reconciliation/differences", "get"),
        ("/v1/reconciliation/differences/{id}/resolution", "put"),
    ] {
        let responses = &doc["paths"][path][method]["responses"];
        let ok = ["200", "201", "202"].iter().find_map(|s| responses.get(*s));
        let schema = &ok.expect("a 2xx answer")["content"]["application/json"]["schema"];
        assert!(schema.is_object(), "{method} {path} has no 2xx schema");
    }
    let login = &doc["components"]["schemas"]["LoginResponse"]["properties"];
    assert!(
        login["openid"].is_object() && login["unionid"].is_object(),
        "{login}"
    );
    let mut ids = std::collections::HashSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let id = operation["operationId"].as_str().unwrap_or_default();
            assert!(!id.is_empty(), "{method} {path} has no operationId");
            assert!(ids.insert(id.to_owned()), "operationId {id} twice");
            if !path.starts_with("/v1/") {
                continue;
            }
            for (status, response) in operation["responses"].as_object().expect("responses") {
                if status == "default" || status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorResponse",
                        "{method} {path} {status}"
                    );
                }
            }
            assert!(
                operation["responses"].get("default").is_some(),
                "{method} {path}"
            );
        }
    }
}

/// Errors the server really sends carry codes of the enum with the enum's status.
#[tokio::test]
async fn served_errors_use_documented_codes_and_statuses() {
    use paygate_gateway::error::ErrorCode;
    let app = spawn_app().await;
    let cases = [
        (
            app.http.post(format!("{}/v1/orders", app.address)).bearer_auth(&app.merchant_key)
                .header("Content-Type", "application/json")
                .body(r#"{"provider":"wechat","channel":"jsapi","amount":1,"subject":"t","client_ip":"203.0.113.7"}"#),
            "openid_required",
        ),
        (app.http.get(format!("{}/v1/orders", app.address)), "unauthorized"),
        (app.http.get(format!("{}/v1/nowhere", app.address)).bearer_auth(&app.merchant_key), "not_found"),
    ];
    for (request, expected) in cases {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        let code = body["error"]["code"].as_str().unwrap_or_default();
        assert_eq!(code, expected, "{body}");
        let known = ErrorCode::ALL
            .iter()
            .find(|c| c.as_str() == code)
            .expect("documented");
        assert_eq!(known.status().as_u16(), status, "{code}");
    }
}
