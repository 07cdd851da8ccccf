//! The smaller defects of the adversarial review: each test failed on the code before its fix.

use std::time::Duration;

use diesel::{Connection, RunQueryDsl};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

#[tokio::test]
async fn a_retry_that_spells_out_the_defaults_is_the_same_order() {
    let app = spawn_app().await;
    let first = app
        .create_order(TestApp::order_body("alipay", "precreate", "dflt_0001", 100))
        .await;
    let mut spelled_out = TestApp::order_body("alipay", "precreate", "dflt_0001", 100);
    spelled_out["currency"] = json!("CNY");
    spelled_out["app"] = json!("sandbox");
    spelled_out["expires_in_seconds"] = json!(1800);
    let retry = app.post("/v1/orders", &spelled_out).await;
    assert_eq!(
        retry.status(),
        200,
        "the same request, defaults spelled out"
    );
    let retried: Value = retry.json().await.unwrap();
    assert_eq!(retried["id"], first["id"]);
    // A value that differs from the default is still another request.
    spelled_out["expires_in_seconds"] = json!(1799);
    let conflict = app.post("/v1/orders", &spelled_out).await;
    assert_eq!(conflict.status(), 409);
}

#[tokio::test]
async fn metadata_keeps_large_integers_and_decimals_exactly() {
    let app = spawn_app().await;
    let metadata =
        r#"{"cart":"c-42","big":123456789012345678901234567890,"price":19.90,"n":[1e2,-0]}"#;
    let body = format!(
        r#"{{"provider":"alipay","channel":"precreate","out_trade_no":"meta_big_01","amount":100,"subject":"tea","metadata":{metadata}}}"#
    );
    let send = |body: String| {
        app.http
            .post(format!("{}/v1/orders", app.address))
            .bearer_auth(&app.merchant_key)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let created = send(body.clone()).await.unwrap();
    assert_eq!(created.status(), 201);
    let text = created.text().await.unwrap();
    assert!(text.contains(&format!("\"metadata\":{metadata}")), "{text}");
    let id = serde_json::from_str::<Value>(&text).unwrap()["id"].clone();
    let read = app
        .get_as(
            &app.merchant_key,
            &format!("/v1/orders/{}", id.as_str().unwrap()),
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(read.contains(&format!("\"metadata\":{metadata}")), "{read}");
    // The same metadata laid out differently is the same request.
    let spaced = body.replace(r#""metadata":{"#, "\"metadata\": {\n  ");
    assert_eq!(send(spaced).await.unwrap().status(), 200);
}

#[tokio::test]
async fn the_csv_export_defuses_tab_and_cr_formulas_and_has_subject_and_description() {
    let app = spawn_app().await;
    let mut body = TestApp::order_body("alipay", "precreate", "csv_tab_001", 100);
    body["subject"] = json!("\t=HYPERLINK(\"http://evil.example\")");
    body["description"] = json!("\r=1+1, green");
    app.create_order(body).await;
    let csv = app
        .get_as(&app.finance_key, "/v1/orders/export.csv")
        .await
        .text()
        .await
        .unwrap();
    let header = csv.lines().next().unwrap();
    assert!(header.ends_with(",subject,description"), "{header}");
    assert!(
        csv.contains("\"'\t=HYPERLINK(\"\"http://evil.example\"\")\""),
        "{csv}"
    );
    assert!(csv.contains("\"'\r=1+1, green\""), "{csv}");
}

#[tokio::test]
async fn every_v1_response_says_no_store() {
    let app = spawn_app().await;
    let created = app
        .post(
            "/v1/orders",
            &TestApp::order_body("alipay", "precreate", "nostore_01", 100),
        )
        .await;
    let invalid = app.post("/v1/orders", &json!({"provider": "alipay"})).await;
    let listed = app.get_as(&app.finance_key, "/v1/orders").await;
    let unauthorized = app.get_as("pgm_wrong", "/v1/orders").await;
    let missing = app
        .get_as(&app.merchant_key, "/v1/orders/ord_nothing")
        .await;
    for (what, response) in [
        ("201", created),
        ("422", invalid),
        ("200", listed),
        ("401", unauthorized),
        ("404", missing),
    ] {
        assert_eq!(
            response
                .headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok()),
            Some("no-store"),
            "{what}: {:?}",
            response.headers()
        );
    }
}

#[tokio::test]
async fn a_reused_wechat_login_code_is_a_422() {
    let app = spawn_app().await;
    let body = json!({"code": "reused_code_1"});
    let first = app.post("/v1/wechat/sandbox/login", &body).await;
    assert_eq!(first.status(), 200);
    let again = app.post("/v1/wechat/sandbox/login", &body).await;
    assert_eq!(again.status(), 422);
    let error: Value = again.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_code", "{error}");
}

/// Reads `/readyz` until it answers `status` with `reason` (any reason when `None`).
async fn readyz_becomes(app: &TestApp, status: u16, reason: Option<&str>) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        let (code, body) = app.readyz().await;
        last = body;
        if code == status && reason.is_none_or(|r| last["reason"] == r) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/readyz never answered {status} {reason:?}: {last}");
}

#[tokio::test]
async fn readyz_is_503_while_the_database_answers_reads_but_refuses_writes() {
    let app = spawn_app().await;
    readyz_becomes(&app, 200, None).await;
    let order = app
        .create_order(TestApp::order_body(
            "alipay",
            "precreate",
            "readonly_01",
            100,
        ))
        .await;
    // Writes fail, reads still work: PostgreSQL turned read-only under the gateway's feet, or
    // on SQLite another process holding the write lock.
    let _lock_holder = if app.database_url.starts_with("postgres") {
        let (admin, name) = app.database_url.rsplit_once('/').unwrap();
        let mut conn = diesel::PgConnection::establish(&format!("{admin}/postgres")).unwrap();
        diesel::sql_query(format!(
            "ALTER DATABASE \"{name}\" SET default_transaction_read_only = on"
        ))
        .execute(&mut conn)
        .unwrap();
        diesel::sql_query(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .execute(&mut conn)
        .unwrap();
        None
    } else {
        let path = app.database_url.trim_start_matches("sqlite://");
        let mut conn = diesel::SqliteConnection::establish(path).unwrap();
        // Waits its turn: the gateway's writer or its WAL checkpointer may be at work.
        diesel::connection::SimpleConnection::batch_execute(
            &mut conn,
            "PRAGMA busy_timeout = 10000; BEGIN IMMEDIATE",
        )
        .unwrap();
        Some(conn)
    };
    // Connections PostgreSQL terminated may first show as "database unreachable".
    readyz_becomes(&app, 503, Some("database refuses writes")).await;
    let read = app
        .get_as(
            &app.merchant_key,
            &format!("/v1/orders/{}", order["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(read.status(), 200, "reads still work");
}
