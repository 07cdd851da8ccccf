//! Statement reconciliation end to end: orders paid through the sandbox, one notify dropped,
//! the day's bill fetched from the sandbox (the real formats at the real endpoints) and
//! reconciled through the finance API; the lost payment is queried and marked paid, once,
//! through the same trade-facts check as a notify; a rerun replaces the day's result.

use chrono::Utc;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with, spawn_app_with_faults};
use crate::reliability::sandbox_json;

/// A gateway whose reconciler stays out of the way (the daily job is off in tests): only the
/// finance API acts.
async fn quiet_app() -> TestApp {
    spawn_app_with(|s| s.reconciler.enabled = false).await
}

/// Today in Beijing, the bill day of what a test pays now.
fn beijing_today() -> String {
    Utc::now()
        .with_timezone(&paygate_core::bill::BEIJING)
        .format("%Y-%m-%d")
        .to_string()
}

async fn reconcile(app: &TestApp, provider: &str, day: &str) -> (u16, Value) {
    reconcile_app(app, "sandbox", provider, day).await
}

async fn reconcile_app(app: &TestApp, name: &str, provider: &str, day: &str) -> (u16, Value) {
    let response = app
        .http
        .post(format!("{}/v1/reconciliation/runs", app.address))
        .bearer_auth(&app.finance_key)
        .json(&json!({"app": name, "provider": provider, "day": day}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn finance_json(app: &TestApp, path: &str) -> Value {
    let response = app.get_as(&app.finance_key, path).await;
    assert_eq!(response.status(), 200, "GET {path}");
    response.json().await.unwrap()
}

/// The order's status now.
async fn status_of(app: &TestApp, id: &str) -> Value {
    app.get_json(&format!("/v1/orders/{id}")).await["status"].clone()
}

/// The raw bill file of `run`, as finance downloads it.
async fn raw_file(app: &TestApp, run: &Value) -> Vec<u8> {
    let id = run["bill_file_id"].as_str().unwrap();
    let file = app
        .get_as(&app.finance_key, &format!("/v1/reconciliation/files/{id}"))
        .await;
    assert_eq!(file.status(), 200);
    file.bytes().await.unwrap().to_vec()
}

async fn paid_events(app: &TestApp, order_id: &str) -> usize {
    finance_json(app, &format!("/v1/events?order_id={order_id}")).await["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "order.paid")
        .count()
}

/// Pays `no` through the sandbox; with `drop_notify` the notify never reaches the gateway.
async fn paid_order(
    app: &TestApp,
    provider: &str,
    channel: &str,
    no: &str,
    fen: i64,
    drop_notify: bool,
) -> Value {
    if drop_notify {
        app.fault(json!({"fault": "drop_notify", "out_trade_no": no, "times": "always"}))
            .await;
    }
    let order = app
        .create_order(TestApp::order_body(provider, channel, no, fen))
        .await;
    app.pay(&order).await;
    if !drop_notify {
        app.wait_for_status(order["id"].as_str().unwrap(), "paid")
            .await;
    }
    order
}

#[tokio::test]
async fn a_wechat_day_is_reconciled_the_lost_payment_is_paid_after_a_query_and_a_rerun_replaces_it()
{
    let app = quiet_app().await;
    let day = beijing_today();
    let kept = paid_order(&app, "wechat", "native", "st_wx_kept", 1999, false).await;
    let lost = paid_order(&app, "wechat", "native", "st_wx_lost", 2500, true).await;
    // Paid and notified, but the bill will leave one out and misprint the other.
    paid_order(&app, "wechat", "native", "st_wx_omit", 1000, false).await;
    paid_order(&app, "wechat", "native", "st_wx_shift", 1500, false).await;
    // Paid through the APIv3 app of the same merchant: the same bill, so matched, not a
    // payment missing from our books.
    let mut v3 = TestApp::order_body("wechat", "native", "st_wx_v3", 800);
    v3["app"] = json!("sandbox-v3");
    let v3 = app.create_order(v3).await;
    app.pay(&v3).await;
    app.wait_for_status(v3["id"].as_str().unwrap(), "paid")
        .await;
    // Never paid: in no bill, and not a difference.
    app.create_order(TestApp::order_body("wechat", "native", "st_wx_unpaid", 700))
        .await;
    let api = "/pay/downloadbill";
    for rule in [
        json!({"fault": "bill_omit_trade", "api": api, "out_trade_no": "st_wx_omit"}),
        json!({"fault": "bill_amount_delta", "fen": 100, "api": api, "out_trade_no": "st_wx_shift"}),
        json!({"fault": "bill_foreign_trade", "fen": 1234, "api": api, "out_trade_no": "st_other_sys"}),
    ] {
        app.fault(rule).await;
    }
    let kept_id = kept["id"].as_str().unwrap();
    let lost_id = lost["id"].as_str().unwrap();
    let refund = app
        .post(
            &format!("/v1/orders/{kept_id}/refunds"),
            &json!({"amount": 500, "out_refund_no": "st_wx_kept_r1", "reason": "test"}),
        )
        .await;
    assert!(
        refund.status().is_success(),
        "{}",
        refund.text().await.unwrap()
    );
    assert_eq!(
        status_of(&app, lost_id).await,
        "pending",
        "the notify was dropped"
    );

    let (status, first) = reconcile(&app, "wechat", &day).await;
    assert_eq!(status, 200, "{first}");
    let run = &first["run"];
    assert_eq!(run["status"], "differences", "{first}");
    // kept, lost, shift (+1.00), the v3 app's and the other system's; omit left out.
    assert_eq!(run["bill"]["payments_count"], 5);
    assert_eq!(run["bill"]["gross"], 1999 + 2500 + 1600 + 800 + 1234);
    assert_eq!(run["bill"]["refunds_count"], 1);
    assert_eq!(run["bill"]["refunds"], 500);
    assert_eq!(
        run["local"]["payments_count"], 4,
        "kept, omit, shift and the v3 app's; the lost one was pending"
    );
    assert_eq!(run["local"]["refunds_count"], 1);
    assert_eq!(run["differences_count"], 4);
    assert_eq!(first["paid"], json!(["st_wx_lost"]));

    // Each injected difference once, in its category; nothing about the untouched trades.
    let listed = finance_json(
        &app,
        &format!("/v1/reconciliation/differences?app=sandbox&provider=wechat&day={day}"),
    )
    .await;
    let differences = listed["data"].as_array().unwrap();
    let mut found: Vec<(&str, &str)> = differences
        .iter()
        .map(|d| {
            (
                d["out_trade_no"].as_str().unwrap(),
                d["category"].as_str().unwrap(),
            )
        })
        .collect();
    found.sort_unstable();
    assert_eq!(
        found,
        [
            ("st_other_sys", "missing_local"),
            ("st_wx_lost", "status_mismatch"),
            ("st_wx_omit", "missing_in_bill"),
            ("st_wx_shift", "amount_mismatch"),
        ],
        "{listed}"
    );
    let shifted = differences
        .iter()
        .find(|d| d["out_trade_no"] == "st_wx_shift")
        .unwrap();
    assert_eq!(
        (
            shifted["bill_amount"].clone(),
            shifted["local_amount"].clone()
        ),
        (json!(1600), json!(1500))
    );

    // The same list as a CSV for Excel: a BOM, a header, one line per difference.
    let csv = app
        .get_as(
            &app.finance_key,
            &format!("/v1/reconciliation/differences.csv?app=sandbox&provider=wechat&day={day}"),
        )
        .await;
    assert_eq!(csv.status(), 200);
    let csv = csv.bytes().await.unwrap();
    assert!(csv.starts_with("\u{feff}category,kind,out_trade_no,".as_bytes()));
    let text = String::from_utf8(csv.to_vec()).unwrap();
    assert_eq!(text.lines().count(), 1 + 4, "{text}");
    assert!(
        text.contains("\r\namount_mismatch,payment,st_wx_shift,"),
        "{text}"
    );

    // Finance explains the other system's trade.
    let foreign = differences
        .iter()
        .find(|d| d["out_trade_no"] == "st_other_sys")
        .unwrap();
    let resolved = app
        .http
        .put(format!(
            "{}/v1/reconciliation/differences/{}/resolution",
            app.address,
            foreign["id"].as_str().unwrap()
        ))
        .bearer_auth(&app.finance_key)
        .json(&json!({"note": "sold at the shop's own till"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resolved.status(), 200);
    let resolved: Value = resolved.json().await.unwrap();
    assert_eq!(
        resolved["resolution"]["note"],
        "sold at the shop's own till"
    );
    assert!(
        resolved["resolution"]["by"]
            .as_str()
            .unwrap()
            .starts_with("key ")
    );

    let d = differences
        .iter()
        .find(|d| d["out_trade_no"] == "st_wx_lost")
        .unwrap();
    assert_eq!(d["category"], "status_mismatch");
    assert_eq!(d["out_trade_no"], "st_wx_lost");
    assert_eq!(d["bill_status"], "SUCCESS");
    assert_eq!(d["local_status"], "pending");
    assert_eq!(d["bill_amount"], 2500);
    assert_eq!(d["resolution"]["by"], "paygate reconciliation");

    // Paid through the provider query, with one webhook event, like any other path.
    let order = app.get_json(&format!("/v1/orders/{lost_id}")).await;
    assert_eq!(order["status"], "paid");
    assert_eq!(paid_events(&app, lost_id).await, 1);

    // The raw file, byte for byte as WeChat sends it (gzip).
    assert_eq!(&raw_file(&app, run).await[..2], &[0x1f, 0x8b]);
    // Merchant keys cannot read it.
    let file_id = run["bill_file_id"].as_str().unwrap();
    let refused = app
        .get_as(
            &app.merchant_key,
            &format!("/v1/reconciliation/files/{file_id}"),
        )
        .await;
    assert_eq!(refused.status(), 403);

    // A rerun replaces the day's result: the bill is honest again (the faults fired once),
    // the lost payment is paid, everything agrees, and nothing is paid twice.
    let (status, second) = reconcile(&app, "wechat", &day).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["run"]["status"], "matched", "{second}");
    assert_eq!(second["run"]["local"]["payments_count"], 5);
    assert_eq!(second["run"]["bill"]["payments_count"], 5);
    assert_eq!(second["paid"], json!([]));
    assert_ne!(second["run"]["id"], first["run"]["id"]);
    assert_eq!(paid_events(&app, lost_id).await, 1);
    let runs = finance_json(
        &app,
        &format!("/v1/reconciliation/runs?from={day}&to={day}&app=sandbox"),
    )
    .await;
    let wechat_runs: Vec<&Value> = runs["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["provider"] == "wechat")
        .collect();
    assert_eq!(wechat_runs.len(), 1, "one run per day: {runs}");
    assert_eq!(wechat_runs[0]["id"], second["run"]["id"]);
}

/// Pays `no` through the sandbox's APIv3 merchant (the `sandbox-v3` app); with `drop_notify`
/// the notify never reaches the gateway.
async fn paid_v3_order(app: &TestApp, no: &str, fen: i64, drop_notify: bool) -> Value {
    if drop_notify {
        app.fault(json!({"fault": "drop_notify", "out_trade_no": no, "times": "always"}))
            .await;
    }
    let mut body = TestApp::order_body("wechat", "native", no, fen);
    body["app"] = json!("sandbox-v3");
    let order = app.create_order(body).await;
    app.pay(&order).await;
    if !drop_notify {
        app.wait_for_status(order["id"].as_str().unwrap(), "paid")
            .await;
    }
    order
}

/// The sorted (out_trade_no or out_refund_no, category) pairs of a day's differences.
async fn difference_keys(
    app: &TestApp,
    name: &str,
    provider: &str,
    day: &str,
) -> Vec<(String, String)> {
    let listed = finance_json(
        app,
        &format!("/v1/reconciliation/differences?app={name}&provider={provider}&day={day}"),
    )
    .await;
    let mut found: Vec<(String, String)> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let key = d["out_refund_no"]
                .as_str()
                .unwrap_or_else(|| d["out_trade_no"].as_str().unwrap());
            (key.to_owned(), d["category"].as_str().unwrap().to_owned())
        })
        .collect();
    found.sort_unstable();
    found
}

#[tokio::test]
async fn a_v3_day_with_every_bill_fault_reports_each_difference_once_and_pays_the_lost_payment() {
    let app = quiet_app().await;
    let day = beijing_today();
    let api = "/v3/bill/tradebill";
    // Untouched trades: three v3 payments (one partly refunded) and a v2 payment of the same
    // merchant, which the same bill carries.
    let refunded = paid_v3_order(&app, "st3_refunded", 3000, false).await;
    for (no, fen) in [("st3_plain_a", 1100), ("st3_plain_b", 2200)] {
        paid_v3_order(&app, no, fen, false).await;
    }
    paid_order(&app, "wechat", "native", "st3_v2_same_mch", 990, false).await;
    let refund = app
        .post(
            &format!("/v1/orders/{}/refunds", refunded["id"].as_str().unwrap()),
            &json!({"amount": 700, "out_refund_no": "st3_refunded_r1", "reason": "test"}),
        )
        .await;
    assert!(
        refund.status().is_success(),
        "{}",
        refund.text().await.unwrap()
    );
    // The faulted ones.
    let lost = paid_v3_order(&app, "st3_lost", 2500, true).await;
    let lost_id = lost["id"].as_str().unwrap();
    paid_v3_order(&app, "st3_omit", 1000, false).await;
    paid_v3_order(&app, "st3_shift", 1500, false).await;
    // Never paid: in no bill, and not a difference.
    let mut unpaid = TestApp::order_body("wechat", "native", "st3_unpaid", 700);
    unpaid["app"] = json!("sandbox-v3");
    app.create_order(unpaid).await;

    // Not ready, then "no bill" while our books have business (a missing bill): nothing
    // stored for either. Then a file cut mid-download, whose SHA1 cannot match the signed
    // answer's: kept as evidence, its run failed, no order changed.
    app.fault(json!({"fault": "bill_not_ready", "api": api}))
        .await;
    let (status, body) = reconcile_app(&app, "sandbox-v3", "wechat", &day).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("bill_not_ready")),
        "{body}"
    );
    app.fault(json!({"fault": "no_bill", "api": api})).await;
    let (status, body) = reconcile_app(&app, "sandbox-v3", "wechat", &day).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("bill_missing")),
        "{body}"
    );
    app.fault(json!({"fault": "truncated_body", "api": api}))
        .await;
    let runs = finance_json(
        &app,
        &format!("/v1/reconciliation/runs?from={day}&to={day}&app=sandbox-v3"),
    )
    .await;
    assert_eq!(runs["data"], json!([]), "nothing stored yet: {runs}");
    let (status, body) = reconcile_app(&app, "sandbox-v3", "wechat", &day).await;
    assert_eq!(status, 200, "{body}");
    let run = &body["run"];
    assert_eq!(
        run["status"], "failed",
        "a file cut in half fails its run: {body}"
    );
    assert!(
        run["failure_reason"]
            .as_str()
            .unwrap()
            .contains("corrupt gzip"),
        "{body}"
    );
    assert_eq!(run["differences_count"], 0);
    assert_eq!(body["paid"], json!([]));
    // The half file is kept, byte for byte, for finance.
    assert_eq!(&raw_file(&app, run).await[..2], &[0x1f, 0x8b]);
    assert_eq!(status_of(&app, lost_id).await, "pending");

    // The bill itself: one payment left out, one misprinted, one from another system.
    for rule in [
        json!({"fault": "bill_omit_trade", "api": api, "out_trade_no": "st3_omit"}),
        json!({"fault": "bill_amount_delta", "fen": -100, "api": api, "out_trade_no": "st3_shift"}),
        json!({"fault": "bill_foreign_trade", "fen": 4321, "api": api, "out_trade_no": "st3_other_sys"}),
    ] {
        app.fault(rule).await;
    }
    let (status, first) = reconcile_app(&app, "sandbox-v3", "wechat", &day).await;
    assert_eq!(status, 200, "{first}");
    let run = &first["run"];
    assert_eq!(run["status"], "differences", "{first}");
    // refunded, plain a/b, v2, lost, shift (−1.00), other system; omit left out.
    assert_eq!(run["bill"]["payments_count"], 7, "{first}");
    assert_eq!(
        run["bill"]["gross"],
        3000 + 1100 + 2200 + 990 + 2500 + 1400 + 4321
    );
    assert_eq!(run["bill"]["refunds_count"], 1);
    assert_eq!(run["bill"]["refunds"], 700);
    assert_eq!(
        run["local"]["payments_count"], 6,
        "the lost one was pending"
    );
    assert_eq!(run["differences_count"], 4, "{first}");
    assert_eq!(first["paid"], json!(["st3_lost"]));
    // Each injected difference exactly once, in its category; none about untouched trades.
    assert_eq!(
        difference_keys(&app, "sandbox-v3", "wechat", &day).await,
        [
            ("st3_lost".to_owned(), "status_mismatch".to_owned()),
            ("st3_omit".to_owned(), "missing_in_bill".to_owned()),
            ("st3_other_sys".to_owned(), "missing_local".to_owned()),
            ("st3_shift".to_owned(), "amount_mismatch".to_owned()),
        ]
    );
    // The pending-but-paid order ends paid, with exactly one webhook event.
    assert_eq!(status_of(&app, lost_id).await, "paid");
    assert_eq!(paid_events(&app, lost_id).await, 1);
    // The file as downloaded from the URL (gzip), kept byte for byte.
    assert_eq!(&raw_file(&app, run).await[..2], &[0x1f, 0x8b]);

    // A rerun: the faults are spent, the lost payment is paid, everything agrees.
    let (status, second) = reconcile_app(&app, "sandbox-v3", "wechat", &day).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["run"]["status"], "matched", "{second}");
    assert_eq!(second["run"]["bill"]["payments_count"], 7);
    assert_eq!(second["run"]["local"]["payments_count"], 7);
    assert_eq!(second["paid"], json!([]));
    assert_eq!(paid_events(&app, lost_id).await, 1);
    assert!(
        difference_keys(&app, "sandbox-v3", "wechat", &day)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn an_alipay_day_with_every_bill_fault_is_reconciled_from_the_gbk_zip_and_the_lost_payment_is_paid()
 {
    let app = quiet_app().await;
    let day = beijing_today();
    let method = "alipay.data.dataservice.bill.downloadurl.query";
    let kept = paid_order(&app, "alipay", "precreate", "st_ali_kept", 1200, false).await;
    let lost = paid_order(&app, "alipay", "precreate", "st_ali_lost", 3300, true).await;
    let lost_id = lost["id"].as_str().unwrap();
    paid_order(&app, "alipay", "precreate", "st_ali_omit", 800, false).await;
    paid_order(&app, "alipay", "precreate", "st_ali_shift", 900, false).await;
    let refund = app
        .post(
            &format!("/v1/orders/{}/refunds", kept["id"].as_str().unwrap()),
            &json!({"amount": 200, "out_refund_no": "st_ali_kept_r1", "reason": "test"}),
        )
        .await;
    assert!(
        refund.status().is_success(),
        "{}",
        refund.text().await.unwrap()
    );

    // Not ready three times (Alipay answers a missing bill for it): three 409s, nothing stored.
    app.fault(json!({"fault": "bill_not_ready", "api": method, "times": 3}))
        .await;
    for _ in 0..3 {
        let (status, body) = reconcile(&app, "alipay", &day).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (409, &json!("bill_missing")),
            "{body}"
        );
    }
    for rule in [
        json!({"fault": "bill_omit_trade", "api": method, "out_trade_no": "st_ali_omit"}),
        json!({"fault": "bill_amount_delta", "fen": 50, "api": method, "out_trade_no": "st_ali_shift"}),
        json!({"fault": "bill_foreign_trade", "fen": 777, "api": method, "out_trade_no": "st_ali_other_sys"}),
    ] {
        app.fault(rule).await;
    }
    let (status, body) = reconcile(&app, "alipay", &day).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["run"]["status"], "differences", "{body}");
    // kept, lost, shift (+0.50) and the other system's; omit left out.
    assert_eq!(body["run"]["bill"]["payments_count"], 4);
    assert_eq!(body["run"]["bill"]["gross"], 1200 + 3300 + 950 + 777);
    assert_eq!(body["run"]["bill"]["refunds_count"], 1);
    assert_eq!(body["run"]["bill"]["refunds"], 200);
    assert_eq!(body["run"]["differences_count"], 4, "{body}");
    let found = difference_keys(&app, "sandbox", "alipay", &day).await;
    let found: Vec<(&str, &str)> = found
        .iter()
        .map(|(k, c)| (k.as_str(), c.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("st_ali_lost", "status_mismatch"),
            ("st_ali_omit", "missing_in_bill"),
            ("st_ali_other_sys", "missing_local"),
            ("st_ali_shift", "amount_mismatch"),
        ]
    );
    assert_eq!(body["paid"], json!(["st_ali_lost"]));
    assert_eq!(status_of(&app, lost_id).await, "paid");
    assert_eq!(paid_events(&app, lost_id).await, 1);
    assert_eq!(&raw_file(&app, &body["run"]).await[..4], b"PK\x03\x04");

    // A rerun agrees on everything and pays nothing twice.
    let (status, again) = reconcile(&app, "alipay", &day).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["run"]["status"], "matched", "{again}");
    assert_eq!(again["paid"], json!([]));
    assert_eq!(paid_events(&app, lost_id).await, 1);
}

#[tokio::test]
async fn not_ready_and_missing_bills_are_retried_and_an_empty_day_is_verified() {
    let app = quiet_app().await;
    let day = beijing_today();

    // No trade yet today: the sandbox has no bill, our books are empty: a verified empty day.
    let (status, empty) = reconcile(&app, "wechat", &day).await;
    assert_eq!(status, 200, "{empty}");
    assert_eq!(empty["run"]["status"], "matched");
    assert_eq!(empty["run"]["bill_file_id"], Value::Null);

    paid_order(&app, "wechat", "native", "st_wx_fault", 990, false).await;
    app.fault(json!({"fault": "bill_not_ready", "api": "/pay/downloadbill"}))
        .await;
    let (status, body) = reconcile(&app, "wechat", &day).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "bill_not_ready");

    // "No bill" while our books have a payment that day: the bill is missing, not empty.
    app.fault(json!({"fault": "no_bill", "api": "/pay/downloadbill"}))
        .await;
    let (status, body) = reconcile(&app, "wechat", &day).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "bill_missing");
    // Nothing replaced the earlier run.
    let runs = finance_json(
        &app,
        &format!("/v1/reconciliation/runs?from={day}&to={day}"),
    )
    .await;
    assert_eq!(runs["data"][0]["id"], empty["run"]["id"]);

    // The faults are spent: the bill is there now.
    let (status, body) = reconcile(&app, "wechat", &day).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["run"]["status"], "matched", "{body}");
    assert_eq!(body["run"]["bill"]["payments_count"], 1);

    // Alipay cannot tell "not ready" from "no bill": both are a missing bill while our books
    // have business that day.
    paid_order(&app, "alipay", "precreate", "st_ali_fault", 990, false).await;
    app.fault(
        json!({"fault": "bill_not_ready", "api": "alipay.data.dataservice.bill.downloadurl.query"}),
    )
    .await;
    let (status, body) = reconcile(&app, "alipay", &day).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "bill_missing");
}

#[tokio::test]
async fn a_corrupt_bill_is_kept_as_evidence_stored_as_failed_and_changes_no_order() {
    let app = quiet_app().await;
    let day = beijing_today();
    let lost = paid_order(&app, "wechat", "native", "st_wx_corrupt", 4200, true).await;
    let lost_id = lost["id"].as_str().unwrap();
    app.fault(json!({"fault": "truncated_body", "api": "/pay/downloadbill"}))
        .await;

    let (status, body) = reconcile(&app, "wechat", &day).await;
    assert_eq!(status, 200, "{body}");
    let run = &body["run"];
    assert_eq!(run["status"], "failed", "{body}");
    assert!(
        run["failure_reason"].as_str().unwrap().contains("gzip"),
        "{body}"
    );
    assert_eq!(run["differences_count"], 0);
    assert_eq!(body["paid"], json!([]));
    // The half file is kept, byte for byte, for finance.
    assert_eq!(&raw_file(&app, run).await[..2], &[0x1f, 0x8b]);
    assert_eq!(
        status_of(&app, lost_id).await,
        "pending",
        "a bill that did not parse changes no order"
    );

    // The next (whole) bill replaces the failed run and settles the order.
    let (status, body) = reconcile(&app, "wechat", &day).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["run"]["status"], "differences");
    assert_eq!(body["paid"], json!(["st_wx_corrupt"]));
}

#[tokio::test]
async fn the_daily_job_reconciles_yesterday_for_every_app_under_its_lease() {
    let app = spawn_app_with(|s| {
        s.reconciler.enabled = false;
        s.statements.enabled = true;
        // Always past the run time, so the job works at once.
        s.statements.run_at = "00:00".into();
        s.statements.interval_ms = 100;
    })
    .await;
    let yesterday = (Utc::now().with_timezone(&paygate_core::bill::BEIJING)
        - chrono::Duration::days(1))
    .format("%Y-%m-%d")
    .to_string();
    // The v2 WeChat and the Alipay app are both called `sandbox`; the APIv3 one is
    // `sandbox-v3`, and its bill comes through `GET /v3/bill/tradebill`.
    let path = format!("/v1/reconciliation/runs?from={yesterday}&to={yesterday}");
    let mut runs = Value::Null;
    for _ in 0..100 {
        runs = finance_json(&app, &path).await;
        if runs["data"].as_array().unwrap().len() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The sandbox had no trade yesterday and neither had we: three verified empty days.
    let data = runs["data"].as_array().unwrap();
    assert_eq!(data.len(), 3, "{runs}");
    let mut apps: Vec<(&str, &str)> = data
        .iter()
        .map(|r| (r["app"].as_str().unwrap(), r["provider"].as_str().unwrap()))
        .collect();
    apps.sort_unstable();
    assert_eq!(
        apps,
        [
            ("sandbox", "alipay"),
            ("sandbox", "wechat"),
            ("sandbox-v3", "wechat")
        ]
    );
    assert!(data.iter().all(|r| r["status"] == "matched"), "{runs}");
    // Done days are not fetched again: the runs stay the same ones.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(finance_json(&app, &path).await, runs);
}

/// The `paygate_statement_overdue` value of one app, if the series exists.
fn overdue_gauge(metrics: &str, app: &str, provider: &str) -> Option<i64> {
    let (app, provider) = (format!("app=\"{app}\""), format!("provider=\"{provider}\""));
    metrics
        .lines()
        .find(|l| {
            l.starts_with("paygate_statement_overdue{") && l.contains(&app) && l.contains(&provider)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn the_daily_job_alerts_past_the_deadline_while_a_bill_is_not_ready_and_waits_its_retry_interval()
 {
    let api = "/pay/downloadbill";
    // WeChat answers "Bill Creating" twice; the rules are in place before the job's first pass.
    let app = spawn_app_with_faults(
        |s| {
            s.reconciler.enabled = false;
            s.statements.enabled = true;
            // Always past both the run time and the alert deadline.
            s.statements.run_at = "00:00".into();
            s.statements.alert_after = "00:00".into();
            s.statements.interval_ms = 100;
        },
        vec![json!({"fault": "bill_not_ready", "api": api, "times": 2})],
    )
    .await;
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = app.metrics_text().await;
        if overdue_gauge(&metrics, "sandbox", "wechat") == Some(1)
            && overdue_gauge(&metrics, "sandbox", "alipay") == Some(0)
            && overdue_gauge(&metrics, "sandbox-v3", "wechat") == Some(0)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        overdue_gauge(&metrics, "sandbox", "wechat"),
        Some(1),
        "{metrics}"
    );
    // The apps whose bills were there are reconciled and not alerted.
    assert_eq!(
        overdue_gauge(&metrics, "sandbox", "alipay"),
        Some(0),
        "{metrics}"
    );
    assert_eq!(
        overdue_gauge(&metrics, "sandbox-v3", "wechat"),
        Some(0),
        "{metrics}"
    );

    // Many passes later the second "not ready" is still unused: the job waits retry_minutes
    // (30) between attempts rather than asking at every pass.
    tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
    let faults: Vec<Value> = sandbox_json(&app, "/sandbox/faults").await;
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert_eq!(
        overdue_gauge(&app.metrics_text().await, "sandbox", "wechat"),
        Some(1)
    );

    // Finance reconciles the day by hand (the first try still gets "not ready"): the alert
    // clears at the next pass, without waiting for the job's own retry.
    let yesterday = (Utc::now().with_timezone(&paygate_core::bill::BEIJING)
        - chrono::Duration::days(1))
    .format("%Y-%m-%d")
    .to_string();
    let (status, body) = reconcile(&app, "wechat", &yesterday).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("bill_not_ready")),
        "{body}"
    );
    let (status, body) = reconcile(&app, "wechat", &yesterday).await;
    assert_eq!(status, 200, "{body}");
    let mut cleared = None;
    for _ in 0..100 {
        cleared = overdue_gauge(&app.metrics_text().await, "sandbox", "wechat");
        if cleared == Some(0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(cleared, Some(0));
}

#[tokio::test]
async fn the_cli_reconciles_a_file_finance_downloaded_by_hand_and_refuses_another_merchants() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("paygate.db").display());
    let config = dir.path().join("paygate.toml");
    std::fs::write(
        &config,
        format!(
            "database_url = \"{database_url}\"\n[sandbox]\nkeys_file = \"{}\"\n",
            dir.path().join("sandbox-keys.json").display()
        ),
    )
    .unwrap();
    // The vendored WeChat bill is merchant 10000100's, not the sandbox's.
    let bill = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/vectors/bills/wechat-v2-ALL.csv");
    paygate_gateway::cli::reconcile(
        Some(&config),
        paygate_gateway::cli::ReconcileCommand {
            app: "sandbox".into(),
            provider: Some("wechat".into()),
            day: "2024-01-15".into(),
            file: Some(bill.clone()),
        },
    )
    .await
    .unwrap();

    let store = paygate_store::Store::connect(&database_url, paygate_store::PoolOptions::sized(2))
        .await
        .unwrap();
    let key = paygate_store::BillDayKey {
        app: paygate_core::AppName::parse("sandbox").unwrap(),
        provider: paygate_core::ProviderKind::WECHAT,
        bill_day: chrono::NaiveDate::from_ymd_opt(2024, 1, 15).unwrap(),
    };
    let run = store.reconciliation_run(&key).await.unwrap().unwrap();
    assert_eq!(run.status, paygate_store::RunStatus::Failed);
    let reason = run.failure_reason.unwrap();
    assert!(reason.contains("10000100"), "{reason}");
    // The file is kept all the same, byte for byte.
    let kept = store
        .bill_file_body(&run.bill_file_id.unwrap())
        .await
        .unwrap();
    assert_eq!(kept, std::fs::read(&bill).unwrap());
    store.close().await.unwrap();
}
