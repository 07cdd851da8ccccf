//! The finance summary over HTTP: report days are Beijing days unless `tz` says otherwise.

use chrono::{TimeZone, Utc};
use serde_json::Value;

use crate::helpers::{TestApp, spawn_app};

/// Creates an order over HTTP and marks it paid at `paid_at` behind the gateway's back (the
/// sandbox can only pay "now").
async fn paid_at(app: &TestApp, out_trade_no: &str, amount: i64, at: chrono::DateTime<Utc>) {
    let order = app
        .create_order(TestApp::order_body(
            "wechat",
            "native",
            out_trade_no,
            amount,
        ))
        .await;
    let store =
        paygate_store::Store::connect(&app.database_url, paygate_store::PoolOptions::sized(1))
            .await
            .unwrap();
    let id = paygate_core::OrderId::parse(order["id"].as_str().unwrap()).unwrap();
    let paid = store
        .transition_order(
            &id,
            paygate_core::OrderStatus::Pending,
            paygate_core::OrderEvent::PaymentConfirmed,
            paygate_store::OrderChanges {
                paid_at: Some(at),
                ..paygate_store::OrderChanges::default()
            },
            None,
        )
        .await
        .unwrap();
    assert!(matches!(paid, paygate_store::Transition::Applied(_)));
}

async fn summary(app: &TestApp, query: &str) -> (u16, Value) {
    let response = app
        .get_as(&app.finance_key, &format!("/v1/reports/summary?{query}"))
        .await;
    (response.status().as_u16(), response.json().await.unwrap())
}

fn day_keys(summary: &Value) -> Vec<(String, i64)> {
    summary["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["key"].as_str().unwrap().to_owned(),
                row["paid_amount"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn summary_days_are_beijing_days_unless_tz_says_otherwise() {
    let app = spawn_app().await;
    // 07:07 on 12-02 in Beijing is still 12-01 in UTC.
    paid_at(
        &app,
        "TZMORNING1",
        990,
        Utc.with_ymd_and_hms(2026, 12, 1, 23, 7, 0).unwrap(),
    )
    .await;
    paid_at(
        &app,
        "TZNOON0001",
        100,
        Utc.with_ymd_and_hms(2026, 12, 2, 4, 0, 0).unwrap(),
    )
    .await;

    let (status, beijing) = summary(&app, "from=2026-12-01&to=2026-12-04&group_by=day").await;
    assert_eq!(status, 200, "{beijing}");
    assert_eq!(day_keys(&beijing), vec![("2026-12-02".to_owned(), 1090)]);
    assert_eq!(beijing["tz"], "Asia/Shanghai");

    let (_, explicit) = summary(&app, "from=2026-12-01&to=2026-12-04&tz=Asia/Shanghai").await;
    assert_eq!(day_keys(&explicit), day_keys(&beijing));
    let (_, offset) = summary(&app, "from=2026-12-01&to=2026-12-04&tz=%2B08:00").await;
    assert_eq!(
        (offset["tz"].as_str(), day_keys(&offset)),
        (Some("+08:00"), day_keys(&beijing))
    );

    let (status, utc) = summary(&app, "from=2026-12-01&to=2026-12-04&group_by=day&tz=UTC").await;
    assert_eq!(status, 200, "{utc}");
    assert_eq!(
        day_keys(&utc),
        vec![
            ("2026-12-01".to_owned(), 990),
            ("2026-12-02".to_owned(), 100)
        ]
    );

    // Plain dates in from/to are midnights in the same zone: Beijing's 12-02 holds both.
    let (_, one_day) = summary(&app, "from=2026-12-02&to=2026-12-03").await;
    assert_eq!(day_keys(&one_day), vec![("2026-12-02".to_owned(), 1090)]);
    let (_, utc_day) = summary(&app, "from=2026-12-02&to=2026-12-03&tz=UTC").await;
    assert_eq!(day_keys(&utc_day), vec![("2026-12-02".to_owned(), 100)]);

    for refused in ["Asia/Tokyo", "utc", "%2B8", "%2B15:00", ""] {
        let (status, answer) =
            summary(&app, &format!("from=2026-12-01&to=2026-12-04&tz={refused}")).await;
        assert_eq!(status, 422, "tz={refused}: {answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains("tz"),
            "{answer}"
        );
    }
}
