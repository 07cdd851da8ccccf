use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

const WECHAT_SUCCESS: &str = "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>";

async fn pending_order(app: &TestApp, provider: &str, no: &str) -> Value {
    let channel = if provider == "wechat" {
        "native"
    } else {
        "precreate"
    };
    app.create_order(TestApp::order_body(provider, channel, no, 1999))
        .await
}

fn verdicts(callbacks: &[Value]) -> Vec<String> {
    callbacks
        .iter()
        .map(|c| c["verdict"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn a_notify_with_a_bad_signature_is_refused_and_the_provider_retries() {
    for provider in ["wechat", "alipay"] {
        let app = spawn_app().await;
        let no = format!("forged_{provider}_1");
        let order = pending_order(&app, provider, &no).await;
        app.fault(
            json!({"fault": "bad_signature", "provider": provider, "out_trade_no": no, "times": 1}),
        )
        .await;
        app.pay(&order).await;
        let id = order["id"].as_str().unwrap();
        // The forged first delivery is refused; the genuine retry is taken.
        app.wait_for_status(id, "paid").await;
        let deliveries = app.wait_for_deliveries(&no, 2).await;
        assert_eq!(deliveries[0]["acknowledged"], false, "{:?}", deliveries[0]);
        assert!(deliveries.last().unwrap()["acknowledged"] == true);
        let callbacks = app.callbacks(id).await;
        assert!(
            verdicts(&callbacks).contains(&"accepted".to_owned()),
            "{callbacks:?}"
        );
        let all: Vec<Value> = app.get_json("/v1/orders").await["data"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(all.len(), 1);
    }
}

#[tokio::test]
async fn genuine_notifies_that_do_not_match_the_order_change_nothing_and_raise_anomalies() {
    for (provider, fault) in [
        ("wechat", "wrong_amount"),
        ("wechat", "wrong_app_id"),
        ("wechat", "wrong_merchant_id"),
        ("alipay", "wrong_amount"),
        ("alipay", "wrong_app_id"),
        ("alipay", "wrong_merchant_id"),
    ] {
        let app = spawn_app().await;
        let no = format!("mm_{provider}_{fault}");
        let order = pending_order(&app, provider, &no).await;
        app.fault(
            json!({"fault": fault, "provider": provider, "out_trade_no": no, "times": "always"}),
        )
        .await;
        app.pay(&order).await;
        let deliveries = app.wait_for_deliveries(&no, 1).await;
        assert_eq!(
            deliveries[0]["acknowledged"], true,
            "mismatches are acknowledged: {fault}"
        );
        let id = order["id"].as_str().unwrap();
        let current = app.get_json(&format!("/v1/orders/{id}")).await;
        assert_eq!(current["status"], "pending", "{provider} {fault}");
        let anomalies = app.anomalies().await;
        assert!(
            anomalies
                .iter()
                .any(|a| a["order_id"] == id && a["kind"] == "payment_mismatch"),
            "{provider} {fault}: {anomalies:?}"
        );
        assert!(verdicts(&app.callbacks(id).await).contains(&"mismatch".to_owned()));
        let events = app
            .get_as(&app.finance_key, &format!("/v1/events?order_id={id}"))
            .await;
        assert_eq!(events.status(), 200);
        let events: Value = events.json().await.unwrap();
        assert!(
            events["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["type"] == "anomaly.detected"),
            "the merchant hears of the anomaly: {events}"
        );
    }
}

#[tokio::test]
async fn a_hundred_concurrent_copies_of_one_notify_make_one_transition() {
    for provider in ["wechat", "alipay"] {
        let app = spawn_app().await;
        let no = format!("conc_{provider}_01");
        let order = pending_order(&app, provider, &no).await;
        app.fault(json!({"fault": "concurrent_notify", "copies": 100, "provider": provider, "out_trade_no": no})).await;
        app.pay(&order).await;
        let id = order["id"].as_str().unwrap();
        app.wait_for_status(id, "paid").await;
        let deliveries = app.wait_for_deliveries(&no, 100).await;
        assert!(
            deliveries.iter().all(|d| d["acknowledged"] == true),
            "every copy acknowledged"
        );
        let callbacks = app.callbacks(id).await;
        let verdicts = verdicts(&callbacks);
        assert_eq!(
            verdicts.iter().filter(|v| *v == "accepted").count(),
            1,
            "{verdicts:?}"
        );
        assert_eq!(
            verdicts.iter().filter(|v| *v == "duplicate").count(),
            callbacks.len() - 1
        );
    }
}

#[tokio::test]
async fn a_replayed_notify_is_acknowledged_without_a_second_transition() {
    let app = spawn_app().await;
    let order = pending_order(&app, "wechat", "replay_0001").await;
    app.pay(&order).await;
    let id = order["id"].as_str().unwrap();
    app.wait_for_status(id, "paid").await;
    let delivery = app.wait_for_deliveries("replay_0001", 1).await.remove(0);
    let body = delivery["body"].as_str().unwrap().to_owned();
    let replay = app
        .post_notify("/notify/wechat/sandbox", "text/xml", body)
        .await;
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.text().await.unwrap(), WECHAT_SUCCESS);
    let verdicts = verdicts(&app.callbacks(id).await);
    assert_eq!(verdicts.iter().filter(|v| *v == "accepted").count(), 1);
    assert!(verdicts.contains(&"duplicate".to_owned()), "{verdicts:?}");
}

#[tokio::test]
async fn a_tampered_alipay_notify_is_answered_failure() {
    let app = spawn_app().await;
    let order = pending_order(&app, "alipay", "tamper_0001").await;
    app.fault(json!({"fault": "drop_notify", "provider": "alipay", "out_trade_no": "tamper_0001", "times": "always"})).await;
    app.pay(&order).await;
    let delivery = app
        .deliveries()
        .await
        .into_iter()
        .find(|d| d["out_trade_no"] == "tamper_0001")
        .expect("the sandbox recorded the dropped notify");
    let genuine = delivery["body"].as_str().unwrap();
    let tampered = genuine.replace("total_amount=19.99", "total_amount=0.01");
    assert_ne!(tampered, genuine);
    let response = app
        .post_notify(
            "/notify/alipay/sandbox",
            "application/x-www-form-urlencoded",
            tampered,
        )
        .await;
    assert_eq!(response.text().await.unwrap(), "failure");
    let id = order["id"].as_str().unwrap();
    assert_eq!(
        app.get_json(&format!("/v1/orders/{id}")).await["status"],
        "pending"
    );
    // The genuine body is still taken.
    let response = app
        .post_notify(
            "/notify/alipay/sandbox",
            "application/x-www-form-urlencoded",
            genuine.to_owned(),
        )
        .await;
    assert_eq!(response.text().await.unwrap(), "success");
    assert_eq!(
        app.get_json(&format!("/v1/orders/{id}")).await["status"],
        "paid"
    );
}

#[tokio::test]
async fn xxe_malformed_and_oversized_notifies_are_refused() {
    let app = spawn_app().await;
    let order = pending_order(&app, "wechat", "xxe_000001").await;
    let xxe = "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>\
               <xml><return_code>SUCCESS</return_code><out_trade_no>xxe_000001</out_trade_no><attach>&e;</attach></xml>";
    let response = app
        .post_notify("/notify/wechat/sandbox", "text/xml", xxe)
        .await;
    let text = response.text().await.unwrap();
    assert!(text.contains("FAIL"), "{text}");
    let response = app
        .post_notify("/notify/wechat/sandbox", "text/xml", "<xml><unclosed>")
        .await;
    assert!(response.text().await.unwrap().contains("FAIL"));
    let response = app
        .post_notify(
            "/notify/alipay/sandbox",
            "application/x-www-form-urlencoded",
            "%%%",
        )
        .await;
    assert_eq!(response.text().await.unwrap(), "failure");
    let huge = format!("<xml><pad>{}</pad></xml>", "a".repeat(200 * 1024));
    let response = app
        .post_notify("/notify/wechat/sandbox", "text/xml", huge)
        .await;
    assert_eq!(response.status(), 413);
    let unknown_app = app
        .post_notify("/notify/wechat/nope", "text/xml", "<xml></xml>")
        .await;
    assert_eq!(unknown_app.status(), 404);
    let id = order["id"].as_str().unwrap();
    assert_eq!(
        app.get_json(&format!("/v1/orders/{id}")).await["status"],
        "pending"
    );
}

#[tokio::test]
async fn a_dropped_notify_is_recovered_by_sync() {
    let app = spawn_app().await;
    let order = pending_order(&app, "alipay", "sync_00001").await;
    app.fault(json!({"fault": "drop_notify", "provider": "alipay", "out_trade_no": "sync_00001", "times": "always"})).await;
    app.pay(&order).await;
    let id = order["id"].as_str().unwrap();
    assert_eq!(
        app.get_json(&format!("/v1/orders/{id}")).await["status"],
        "pending"
    );
    let synced = app.post(&format!("/v1/orders/{id}/sync"), &json!({})).await;
    assert_eq!(synced.status(), 200);
    let synced: Value = synced.json().await.unwrap();
    assert_eq!(synced["status"], "paid", "{synced}");
}

/// The sum of `paygate_callbacks_total` over every verdict of `provider`.
async fn callbacks_counted(app: &TestApp, provider: &str) -> u64 {
    let text = app.metrics_text().await;
    let prefix = "paygate_callbacks_total{";
    text.lines()
        .filter(|line| line.starts_with(prefix))
        .filter(|line| line.contains(&format!("provider=\"{provider}\"")))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn a_rejected_notify_keeps_a_bounded_prefix_and_a_digest_but_a_genuine_one_is_kept_whole() {
    let app = spawn_app().await;
    // Oversized: refused before its body is read, so nothing of it is stored.
    let huge = vec![b'a'; 200 * 1024];
    let response = app
        .post_notify("/notify/wechat/sandbox", "text/xml", huge)
        .await;
    assert_eq!(response.status(), 413);
    // Garbage within the limit: only its first bytes are kept, with the digest of all of it.
    let garbage: Vec<u8> = (0..12 * 1024).map(|i| b'A' + (i % 26) as u8).collect();
    let response = app
        .post_notify("/notify/wechat/sandbox", "text/xml", garbage.clone())
        .await;
    assert!(response.text().await.unwrap().contains("FAIL"));
    let order = pending_order(&app, "wechat", "whole_0001").await;
    app.pay(&order).await;
    app.wait_for_status(order["id"].as_str().unwrap(), "paid")
        .await;
    let genuine = app.wait_for_deliveries("whole_0001", 1).await.remove(0);

    let rows = app.stored_callback_bodies();
    let summary: Vec<(&str, usize)> = rows.iter().map(|r| (r.0.as_str(), r.1.len())).collect();
    let too_large: Vec<_> = rows.iter().filter(|r| r.0 == "too_large").collect();
    assert_eq!(too_large.len(), 1, "{summary:?}");
    assert!(
        too_large[0].1.len() <= 2048,
        "{} bytes",
        too_large[0].1.len()
    );
    let malformed: Vec<_> = rows
        .iter()
        .filter(|r| r.0 == "malformed" || r.0 == "bad_signature")
        .collect();
    assert_eq!(malformed.len(), 1, "{summary:?}");
    assert!(
        malformed[0].1 == garbage[..2048],
        "the first 2 KiB are kept"
    );
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&garbage));
    let reason = malformed[0].2.clone().unwrap_or_default();
    assert!(
        reason.contains(&digest) && reason.contains("12288 bytes"),
        "{reason}"
    );
    let accepted: Vec<_> = rows.iter().filter(|r| r.0 == "accepted").collect();
    assert_eq!(accepted.len(), 1);
    assert!(
        accepted[0].1 == genuine["body"].as_str().unwrap().as_bytes(),
        "a genuine callback is kept byte for byte"
    );
}

#[tokio::test]
async fn a_burst_of_forged_notifies_from_one_source_stores_a_bounded_number_of_rows() {
    let app = spawn_app().await;
    let forged = "<xml><return_code>SUCCESS</return_code><result_code>SUCCESS</result_code>\
        <appid>wx0</appid><mch_id>1</mch_id><out_trade_no>nosuch_1</out_trade_no>\
        <total_fee>1</total_fee><transaction_id>4200</transaction_id><nonce_str>n</nonce_str>\
        <sign>0123456789ABCDEF0123456789ABCDEF</sign></xml>";
    for _ in 0..20 {
        let batch = (0..50).map(|_| app.post_notify("/notify/wechat/sandbox", "text/xml", forged));
        for response in futures_util::future::join_all(batch).await {
            assert_eq!(response.status(), 200);
            assert!(response.text().await.unwrap().contains("FAIL"));
        }
    }
    let rows = app.stored_callback_bodies();
    assert!(
        rows.len() <= 100,
        "1,000 forged notifies from one source stored {} rows",
        rows.len()
    );
    assert!(!rows.is_empty(), "the first ones are still recorded");
    assert_eq!(
        callbacks_counted(&app, "wechat").await,
        1000,
        "every callback is still counted"
    );
}
