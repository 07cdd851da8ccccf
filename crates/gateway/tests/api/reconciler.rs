//! The reconciler's queues under load: a backlog of pending orders must not keep a newer
//! order's payment from being found, and orders that can never be settled (their app left the
//! configuration) must not keep other apps' orders from being closed. See docs/reliability.md.

use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::{StreamExt, stream};
use paygate_core::{AppName, Channel, Currency, Fen, OutTradeNo, ProviderKind};
use paygate_gateway::config::Settings;
use paygate_store::{NewOrder, Store};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};
use crate::reliability::{events, eventually};

/// Stores `count` pending WeChat NATIVE orders of `app` behind the gateway's back, the way the
/// create handler stores them, created `age` ago and expiring `expires_in` after now. The
/// sandbox holds no trade under their numbers, so a query is answered ORDERNOTEXIST and a
/// close "not found": to the reconciler they are unpaid orders, backed off like any other.
async fn insert_pending(
    app: &TestApp,
    app_name: &str,
    prefix: &str,
    count: usize,
    age: chrono::Duration,
    expires_in: chrono::Duration,
) {
    let store = Store::connect(&app.database_url, paygate_store::PoolOptions::sized(8))
        .await
        .unwrap();
    let now = Utc::now();
    let inserted = stream::iter(0..count)
        .map(|n| {
            let store = store.clone();
            let new = NewOrder {
                provider: ProviderKind::WECHAT,
                app: AppName::parse(app_name).unwrap(),
                channel: Channel::Native,
                out_trade_no: OutTradeNo::parse(format!("{prefix}{n:05}")).unwrap(),
                amount: Fen::new(100).unwrap(),
                currency: Currency::Cny,
                subject: "Oolong tea".to_owned(),
                description: None,
                payer_id: None,
                pay_params: None,
                metadata: None,
                request_hash: format!("backlog-{n}"),
                created_at: now - age,
                expires_at: now + expires_in,
            };
            async move { store.insert_order(new).await.map(|_| ()) }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    assert!(inserted.iter().all(Result::is_ok), "backlog inserted");
}

async fn status_of(app: &TestApp, id: &str) -> String {
    app.get_json(&format!("/v1/orders/{id}")).await["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The reconciler's pass interval in the starvation test: long enough that a pass (twenty
/// sandbox queries) fits well inside it even on a loaded CI machine, short enough to keep the
/// test quick.
const PASS_INTERVAL: Duration = Duration::from_millis(3_000);

/// How old an order must be before its first query in the starvation test: time enough to
/// create and pay it first.
const FIRST_QUERY_AFTER: Duration = Duration::from_secs(2);

#[tokio::test]
async fn a_paid_order_behind_ten_thousand_pending_ones_is_found_within_two_intervals() {
    // 20 queries a pass and at most a second of back-off: on the old oldest-first queue the
    // 20 oldest orders took every pass; 10,000 is 500 times that.
    let app = spawn_app_with(|s: &mut Settings| {
        s.reconciler.interval_ms = PASS_INTERVAL.as_millis() as u64;
        s.reconciler.batch_size = 20;
        s.reconciler.query_pending_after_seconds = FIRST_QUERY_AFTER.as_secs();
        s.reconciler.query_backoff_ms = 200;
        s.reconciler.query_backoff_max_ms = 1_000;
    })
    .await;
    let started = Instant::now();
    insert_pending(
        &app,
        "sandbox",
        "rc_backlog_",
        10_000,
        chrono::Duration::minutes(10),
        chrono::Duration::hours(2),
    )
    .await;
    eprintln!("10,000 pending orders inserted in {:?}", started.elapsed());
    app.fault(json!({"fault": "drop_notify", "out_trade_no": "rc_starved_1", "times": "always"}))
        .await;

    let created = Instant::now();
    let order = app
        .create_order(TestApp::order_body("wechat", "native", "rc_starved_1", 990))
        .await;
    let id = order["id"].as_str().unwrap();
    app.pay(&order).await;
    assert_eq!(
        status_of(&app, id).await,
        "pending",
        "paid at the provider, the notify dropped, not yet queried"
    );

    // Due for its first query FIRST_QUERY_AFTER after creation; two pass intervals after that
    // it must have been queried and found paid, whatever the backlog.
    let deadline = created + FIRST_QUERY_AFTER + 2 * PASS_INTERVAL;
    let mut status = status_of(&app, id).await;
    while status != "paid" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        status = status_of(&app, id).await;
    }
    assert_eq!(
        status,
        "paid",
        "not found paid within two intervals of becoming due ({:?} after creation)",
        created.elapsed()
    );
    eprintln!("found paid {:?} after creation", created.elapsed());
    assert!(app.callbacks(id).await.is_empty(), "the query paid it");
    let events = events(&app, id).await;
    assert_eq!(
        events.iter().filter(|e| e["type"] == "order.paid").count(),
        1,
        "{events:?}"
    );
}

#[tokio::test]
async fn expired_orders_of_a_removed_app_are_parked_once_and_do_not_block_other_apps() {
    let app = spawn_app_with(|s: &mut Settings| {
        s.reconciler.interval_ms = 100;
        s.reconciler.batch_size = 5;
        // Only the expiry path settles orders here; a 60-second order expires 2 s after
        // creation.
        s.reconciler.query_pending_after_seconds = 3_600;
        s.reconciler.expiry_grace_seconds = -58;
    })
    .await;
    // Twice a batch of orders of an app no longer configured, expired long before the one
    // that can be closed: oldest-expired-first, they would fill every batch.
    insert_pending(
        &app,
        "retired",
        "rc_retired_",
        10,
        chrono::Duration::hours(3),
        chrono::Duration::hours(-1),
    )
    .await;
    let mut body = TestApp::order_body("wechat", "native", "rc_expire_other", 500);
    body["expires_in_seconds"] = json!(60);
    let order = app.create_order(body).await;
    let id = order["id"].as_str().unwrap().to_owned();

    eventually("the configured app's expired order closed", async || {
        (status_of(&app, &id).await == "closed").then_some(())
    })
    .await;
    assert_eq!(
        app.sandbox_trade("rc_expire_other").await["status"],
        "closed"
    );

    // Several more passes: each parked order is reported once, never again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let anomalies = app.anomalies().await;
    let parked: Vec<&Value> = anomalies
        .iter()
        .filter(|a| a["kind"] == "app_unconfigured")
        .collect();
    assert_eq!(
        parked.len(),
        10,
        "one anomaly per parked order: {anomalies:?}"
    );
    let orders: std::collections::BTreeSet<&str> = parked
        .iter()
        .map(|a| a["order_id"].as_str().unwrap())
        .collect();
    assert_eq!(orders.len(), 10, "{parked:?}");
    for anomaly in &parked {
        assert_eq!(anomaly["app"], "retired", "{anomaly}");
        let order = app
            .get_as(
                &app.finance_key,
                &format!("/v1/orders/{}", anomaly["order_id"].as_str().unwrap()),
            )
            .await;
        let order: Value = order.json().await.unwrap();
        assert_eq!(
            order["status"], "pending",
            "nothing closes it here: {order}"
        );
    }
}
