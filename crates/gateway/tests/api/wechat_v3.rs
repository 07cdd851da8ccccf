//! WeChat Pay APIv3 apps end to end through the embedded sandbox's v3 merchant (`sandbox-v3`):
//! every channel created, paid, notified, refunded with its refund notify, queried and closed;
//! the reconciler settling a payment whose notify was dropped; every bad notify refused with a
//! 4xx/5xx and kept for audit with no state change; a hundred concurrent copies of one genuine
//! notify making one transition; a notify signed by a rotated platform certificate verified.

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};
use crate::reliability::{events, eventually, fast};

const V3_APP: &str = "sandbox-v3";

/// An order body for the v3 app.
fn v3_order(channel: &str, out_trade_no: &str, amount: i64) -> Value {
    let mut body = TestApp::order_body("wechat", channel, out_trade_no, amount);
    body["app"] = json!(V3_APP);
    body
}

fn verdicts(callbacks: &[Value]) -> Vec<String> {
    callbacks
        .iter()
        .map(|c| c["verdict"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn id_of(order: &Value) -> String {
    order["id"].as_str().unwrap().to_owned()
}

/// Waits until every refund of the order has `status`.
async fn refunds_eventually(app: &TestApp, order_id: &str, status: &str) -> Vec<Value> {
    eventually(&format!("refunds of {order_id} {status}"), async || {
        let refunds = app
            .get_json(&format!("/v1/orders/{order_id}/refunds"))
            .await;
        let list = refunds["data"].as_array().cloned().unwrap_or_default();
        (!list.is_empty() && list.iter().all(|r| r["status"] == status)).then_some(list)
    })
    .await
}

/// The v3 signature headers a delivery carried, by name.
fn delivery_header<'a>(delivery: &'a Value, name: &str) -> Option<&'a str> {
    delivery["headers"]
        .as_array()?
        .iter()
        .find(|pair| pair[0] == name)
        .and_then(|pair| pair[1].as_str())
}

#[tokio::test]
async fn every_channel_on_a_v3_app_is_created_paid_notified_refunded_queried_and_closed() {
    let app = spawn_app().await;
    for (channel, pay_params_type) in [
        ("mini_program", "wechat_jsapi"),
        ("jsapi", "wechat_jsapi"),
        ("app", "wechat_app"),
        ("h5", "mweb_url"),
        ("native", "code_url"),
    ] {
        let no = format!("v3_{channel}_paid");
        let order = app.create_order(v3_order(channel, &no, 1000)).await;
        assert_eq!(order["app"], V3_APP, "{order}");
        assert_eq!(order["pay_params"]["type"], pay_params_type, "{order}");
        if pay_params_type == "wechat_jsapi" {
            assert_eq!(order["pay_params"]["signType"], "RSA", "{order}");
            assert!(
                order["pay_params"]["package"]
                    .as_str()
                    .unwrap()
                    .starts_with("prepay_id=")
            );
        }
        if pay_params_type == "wechat_app" {
            assert_eq!(order["pay_params"]["package"], "Sign=WXPay", "{order}");
        }
        let id = id_of(&order);

        app.pay(&order).await;
        let paid = app.wait_for_status(&id, "paid").await;
        assert_eq!(paid["amount"], 1000);
        let delivery = app.wait_for_deliveries(&no, 1).await.remove(0);
        assert_eq!(delivery["acknowledged"], true, "{channel}: {delivery}");
        assert_eq!(
            delivery["response_status"], 204,
            "{channel}: accepted with a 204"
        );
        assert!(
            delivery_header(&delivery, "Wechatpay-Serial")
                .is_some_and(|s| s.starts_with("PUB_KEY_ID_")),
            "{delivery}"
        );
        assert!(
            delivery["body"]
                .as_str()
                .unwrap()
                .contains("\"AEAD_AES_256_GCM\"")
        );
        assert_eq!(
            verdicts(&app.callbacks(&id).await),
            ["accepted"],
            "{channel}"
        );

        // A provider query (sync) reads it paid through the v3 query.
        let synced = app.post(&format!("/v1/orders/{id}/sync"), &json!({})).await;
        assert_eq!(synced.status(), 200, "{channel}");
        let synced: Value = synced.json().await.unwrap();
        assert_eq!(synced["status"], "paid", "{channel}: {synced}");

        let refund = app
            .post(
                &format!("/v1/orders/{id}/refunds"),
                &json!({"amount": 400, "out_refund_no": format!("rf_v3_{channel}")}),
            )
            .await;
        let status = refund.status();
        let refund: Value = refund.json().await.unwrap();
        assert_eq!(status, 201, "{channel}: {refund}");
        refunds_eventually(&app, &id, "succeeded").await;
        let partly = app.wait_for_status(&id, "partially_refunded").await;
        assert_eq!(partly["refunded_amount"], 400);
        // The sandbox logs a delivery once paygate has answered it, after the state changed.
        let refund_notifies: Vec<Value> =
            eventually(&format!("{channel} refund notify"), async || {
                let taken: Vec<Value> = app
                    .deliveries()
                    .await
                    .into_iter()
                    .filter(|d| d["out_trade_no"] == no.as_str() && d["kind"] == "refund")
                    .collect();
                taken
                    .iter()
                    .any(|d| d["acknowledged"] == true)
                    .then_some(taken)
            })
            .await;
        assert!(
            refund_notifies[0]["url"]
                .as_str()
                .unwrap()
                .ends_with("/notify/wechat/sandbox-v3/refund")
        );

        // An unpaid order of the same channel closes at the provider first.
        let unpaid_no = format!("v3_{channel}_open");
        let unpaid = app.create_order(v3_order(channel, &unpaid_no, 500)).await;
        let response = app
            .post(&format!("/v1/orders/{}/close", id_of(&unpaid)), &json!({}))
            .await;
        let status = response.status();
        let closed: Value = response.json().await.unwrap();
        assert_eq!(
            (status.as_u16(), closed["status"].as_str()),
            (200, Some("closed")),
            "{channel}: {closed}"
        );
        assert_eq!(app.sandbox_trade(&unpaid_no).await["status"], "closed");
    }
}

#[tokio::test]
async fn the_reconciler_settles_a_v3_payment_whose_notify_was_dropped() {
    let app = spawn_app_with(|s| fast(s, None)).await;
    let no = "v3_dropped_01";
    app.fault(json!({"fault": "drop_notify", "provider": "wechat", "out_trade_no": no, "times": "always"}))
        .await;
    let order = app.create_order(v3_order("native", no, 990)).await;
    let id = id_of(&order);
    app.pay(&order).await;
    app.wait_for_status(&id, "paid").await;
    let deliveries = app.deliveries().await;
    assert!(
        deliveries
            .iter()
            .filter(|d| d["out_trade_no"] == no)
            .all(|d| d["dropped"] == true),
        "no notify reached paygate"
    );
    assert!(app.callbacks(&id).await.is_empty(), "the v3 query paid it");
    let events = events(&app, &id).await;
    assert_eq!(
        events.iter().filter(|e| e["type"] == "order.paid").count(),
        1,
        "{events:?}"
    );
}

/// Every stored callback row of the v3 app whose body holds `needle`, as (verdict, reason).
fn stored_with(app: &TestApp, needle: &str) -> Vec<(String, Option<String>)> {
    app.stored_callback_bodies()
        .into_iter()
        .filter(|(_, body, _)| String::from_utf8_lossy(body).contains(needle))
        .map(|(verdict, _, reason)| (verdict, reason))
        .collect()
}

#[tokio::test]
async fn every_bad_v3_notify_is_refused_with_a_4xx_or_5xx_kept_for_audit_and_changes_nothing() {
    // Real-time retries: only each first delivery falls inside the test, so the refused ones
    // stay within the per-source budget of audit rows for unverifiable callbacks (a burst of
    // 20). That a 4xx/5xx makes WeChat retry is the sandbox's own test.
    let app = spawn_app_with(|s| s.sandbox.time_scale = 1.0).await;
    for fault in [
        "tampered_body",
        "bad_signature",
        "unknown_serial",
        "probe_signature",
        "stale_timestamp",
        "missing_signature_header",
        "tampered_ciphertext",
        "future_timestamp",
        "wrong_associated_data",
        "non_json_plaintext",
    ] {
        let no = format!("v3_bad_{fault}");
        let order = app.create_order(v3_order("native", &no, 1999)).await;
        let id = id_of(&order);
        app.fault(
            json!({"fault": fault, "provider": "wechat", "out_trade_no": no, "times": "always"}),
        )
        .await;
        app.pay(&order).await;
        let deliveries = app.wait_for_deliveries(&no, 1).await;
        for delivery in &deliveries {
            let status = delivery["response_status"].as_u64().unwrap();
            assert!((400..600).contains(&status), "{fault}: {delivery}");
            assert_eq!(delivery["acknowledged"], false, "{fault}");
            let answer: Value = serde_json::from_str(delivery["response_body"].as_str().unwrap())
                .unwrap_or_else(|e| panic!("{fault}: the FAIL answer is JSON: {e}"));
            assert_eq!(answer["code"], "FAIL", "{fault}");
        }
        let current = app.get_json(&format!("/v1/orders/{id}")).await;
        assert_eq!(current["status"], "pending", "{fault}: {current}");
        // The raw notify is kept (a v3 notify is under the 2 KiB kept of a refused one).
        let first_body = deliveries[0]["body"].as_str().unwrap();
        let event_id = &first_body[first_body.find("\"id\":\"").unwrap() + 6..][..23];
        let kept = stored_with(&app, event_id);
        assert!(
            !kept.is_empty(),
            "{fault}: the refused notify is kept for audit"
        );
        assert!(
            kept.iter()
                .all(|(verdict, _)| verdict != "accepted" && verdict != "duplicate"),
            "{fault}: {kept:?}"
        );
    }
    // Missing every header, and a body that is no notify at all.
    let order = app
        .create_order(v3_order("native", "v3_bad_bare", 1999))
        .await;
    for body in [
        "{\"id\":\"EV-bare-0000000000000001\",\"event_type\":\"TRANSACTION.SUCCESS\"}",
        "not json",
    ] {
        let response = app
            .post_notify("/notify/wechat/sandbox-v3", "application/json", body)
            .await;
        let status = response.status().as_u16();
        assert!((400..600).contains(&status), "{body}: {status}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["code"], "FAIL");
    }
    assert!(!stored_with(&app, "EV-bare-0000000000000001").is_empty());
    let huge = vec![b'{'; 200 * 1024];
    let response = app
        .post_notify("/notify/wechat/sandbox-v3", "application/json", huge)
        .await;
    assert_eq!(response.status(), 413, "a body over the limit");
    assert_eq!(
        app.get_json(&format!("/v1/orders/{}", id_of(&order))).await["status"],
        "pending"
    );
}

#[tokio::test]
async fn genuine_v3_notifies_that_do_not_match_the_order_change_nothing_and_raise_anomalies() {
    let app = spawn_app().await;
    for fault in ["wrong_amount", "wrong_app_id", "wrong_merchant_id"] {
        let no = format!("v3_mm_{fault}");
        let order = app.create_order(v3_order("app", &no, 1999)).await;
        let id = id_of(&order);
        app.fault(
            json!({"fault": fault, "provider": "wechat", "out_trade_no": no, "times": "always"}),
        )
        .await;
        app.pay(&order).await;
        let delivery = app.wait_for_deliveries(&no, 1).await.remove(0);
        // Never applied, always raised as an anomaly; for APIv3 also refused with a 4xx FAIL
        // (v2 and Alipay acknowledge it), so WeChat sends it again and an app whose settings
        // were wrong can take a later retry once they are corrected.
        assert_eq!(delivery["acknowledged"], false, "{fault}: {delivery}");
        assert_eq!(delivery["response_status"], 400, "{fault}: {delivery}");
        let current = app.get_json(&format!("/v1/orders/{id}")).await;
        assert_eq!(current["status"], "pending", "{fault}");
        let seen = verdicts(&app.callbacks(&id).await);
        assert!(
            !seen.is_empty() && seen.iter().all(|v| v == "mismatch"),
            "{fault}: {seen:?}"
        );
        assert!(
            app.anomalies()
                .await
                .iter()
                .any(|a| a["order_id"] == id.as_str() && a["kind"] == "payment_mismatch"),
            "{fault}"
        );
    }
}

#[tokio::test]
async fn a_genuine_v3_notify_naming_another_out_trade_no_pays_nothing() {
    let app = spawn_app().await;
    let no = "v3_other_no_1";
    let order = app.create_order(v3_order("native", no, 1999)).await;
    let id = id_of(&order);
    app.fault(json!({"fault": "wrong_out_trade_no", "provider": "wechat", "out_trade_no": no, "times": "always"}))
        .await;
    app.pay(&order).await;
    let delivery = app.wait_for_deliveries(no, 1).await.remove(0);
    // Raised as an anomaly, never applied to another order; for APIv3 refused with a 4xx FAIL
    // so that WeChat sends it again.
    assert_eq!(delivery["acknowledged"], false, "{delivery}");
    assert_eq!(delivery["response_status"], 400, "{delivery}");
    assert!(
        app.anomalies()
            .await
            .iter()
            .any(|a| a["kind"] == "unknown_order"),
        "an unknown_order anomaly"
    );
    let current = app.get_json(&format!("/v1/orders/{id}")).await;
    assert_eq!(current["status"], "pending", "{current}");
    assert!(
        app.callbacks(&id).await.is_empty(),
        "not taken for this order"
    );
    let kept = stored_with(&app, "EV-");
    assert!(
        kept.iter().any(|(verdict, _)| verdict == "unknown_order"),
        "kept for audit as a notify for no known order: {kept:?}"
    );
}

#[tokio::test]
async fn a_hundred_concurrent_copies_of_one_genuine_v3_notify_make_one_transition() {
    let app = spawn_app().await;
    let no = "v3_conc_0001";
    let order = app.create_order(v3_order("native", no, 1999)).await;
    let id = id_of(&order);
    app.fault(json!({"fault": "concurrent_notify", "copies": 100, "provider": "wechat", "out_trade_no": no}))
        .await;
    app.pay(&order).await;
    app.wait_for_status(&id, "paid").await;
    let deliveries = app.wait_for_deliveries(no, 100).await;
    assert_eq!(deliveries.len(), 100);
    let bodies: std::collections::BTreeSet<&str> = deliveries
        .iter()
        .map(|d| d["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies.len(), 1, "one notify, a hundred copies");
    assert!(
        deliveries.iter().all(|d| d["acknowledged"] == true),
        "every copy acknowledged"
    );
    let verdicts = verdicts(&app.callbacks(&id).await);
    assert_eq!(verdicts.len(), 100, "{verdicts:?}");
    assert_eq!(
        verdicts.iter().filter(|v| *v == "accepted").count(),
        1,
        "{verdicts:?}"
    );
    assert_eq!(verdicts.iter().filter(|v| *v == "duplicate").count(), 99);
    let events = events(&app, &id).await;
    assert_eq!(
        events.iter().filter(|e| e["type"] == "order.paid").count(),
        1,
        "{events:?}"
    );
}

#[tokio::test]
async fn a_v3_notify_signed_by_a_rotated_platform_certificate_is_verified() {
    let app = spawn_app().await;
    let sandbox_post = |path: &str, body: Value| {
        app.http
            .post(format!("{}{path}", app.sandbox))
            .json(&body)
            .send()
    };
    let rotated: Value = sandbox_post("/sandbox/wechat-v3/rotate-certificate", json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let serial = rotated["serial_no"].as_str().unwrap().to_owned();
    assert_eq!(rotated["serials"].as_array().unwrap().len(), 2, "{rotated}");
    let signer = sandbox_post(
        "/sandbox/wechat-v3/notify-signer",
        json!({"signer": "certificate"}),
    )
    .await
    .unwrap();
    assert_eq!(signer.status(), 200);

    // The gateway downloads /v3/certificates when it starts, which may be before or after the
    // rotation. If before, the first notify names a serial it does not hold yet: it is refused
    // while that serial is fetched, and WeChat's next delivery verifies. Either way the payment
    // is taken once, under the new certificate.
    let no = "v3_rotated_01";
    let order = app.create_order(v3_order("native", no, 990)).await;
    let id = id_of(&order);
    app.pay(&order).await;
    app.wait_for_status(&id, "paid").await;
    let deliveries = eventually("an acknowledged delivery", async || {
        let deliveries = app.wait_for_deliveries(no, 1).await;
        deliveries
            .iter()
            .any(|d| d["acknowledged"] == true)
            .then_some(deliveries)
    })
    .await;
    for delivery in &deliveries {
        assert_eq!(
            delivery_header(delivery, "Wechatpay-Serial"),
            Some(serial.as_str()),
            "signed by the new platform certificate, not the public key"
        );
    }
    let accepted = deliveries
        .iter()
        .filter(|d| d["acknowledged"] == true)
        .count();
    assert_eq!(accepted, 1, "{deliveries:?}");
    assert_eq!(verdicts(&app.callbacks(&id).await), ["accepted"]);
}
