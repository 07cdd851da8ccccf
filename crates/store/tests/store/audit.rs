use chrono::Duration;
use paygate_core::ProviderKind;
use paygate_store::{
    AnomalyKind, ApiKeyRole, CallbackId, CallbackKind, CallbackVerdict, EventKind, JudgedCallback,
    NewAnomaly, NewApiKey, NewCallback, NewOutboxEvent, StoreError, hash_api_key_secret,
};

use crate::harness::{TestDb, app, at, on_both_backends, pending_order};

on_both_backends!(
    a_callback_body_is_kept_byte_for_byte_with_its_verdict,
    anomalies_page_newest_first,
    api_keys_are_found_by_hash_until_revoked,
    outbox_events_wait_until_due_and_stop_once_delivered,
);

async fn a_callback_body_is_kept_byte_for_byte_with_its_verdict(db: TestDb) {
    let order = pending_order(&db.store, "order_0001", 100).await;
    // Not UTF-8, with a NUL and a CR: a text column would mangle some of these.
    let body: Vec<u8> = b"<xml>\r\n<a>\xff\xfe\x00</a></xml>".to_vec();
    let judged = |order_id: paygate_core::OrderId| JudgedCallback {
        id: CallbackId::generate(),
        callback: NewCallback {
            provider: ProviderKind::WECHAT,
            app: "shop".into(),
            kind: CallbackKind::Payment,
            received_at: at(1, 11),
            body: body.clone(),
            content_type: Some("text/xml".into()),
        },
        verdict: CallbackVerdict::BadSignature,
        reason: Some("sign does not verify".into()),
        order_id: Some(order_id),
    };
    let id = db
        .store
        .record_judged_callback(judged(order.id.clone()))
        .await
        .unwrap();

    let stored = db.store.callbacks_for_order(&order.id).await.unwrap();

    assert_eq!(stored.len(), 1);
    let callback = &stored[0];
    assert_eq!(callback.id, id);
    assert_eq!(callback.body, body);
    assert_eq!(callback.verdict, CallbackVerdict::BadSignature);
    assert_eq!(callback.reason.as_deref(), Some("sign does not verify"));
    assert_eq!(callback.received_at, at(1, 11));
    assert_eq!(callback.content_type.as_deref(), Some("text/xml"));
    assert_eq!(callback.kind, CallbackKind::Payment);
    // Foreign keys are enforced on both backends (SQLite needs a pragma for that).
    let ghost_order = db
        .store
        .record_judged_callback(judged(paygate_core::OrderId::generate()))
        .await;
    assert!(
        matches!(ghost_order, Err(StoreError::Query(_))),
        "{ghost_order:?}"
    );
}

async fn anomalies_page_newest_first(db: TestDb) {
    let order = pending_order(&db.store, "order_0001", 100).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            db.store
                .record_anomaly(NewAnomaly {
                    order_id: Some(order.id.clone()),
                    provider: ProviderKind::ALIPAY,
                    app: "shop".into(),
                    kind: AnomalyKind::PaymentMismatch,
                    detail: format!("amount 1 != 100 (#{i})"),
                    callback_id: None,
                    created_at: at(1, 12),
                })
                .await
                .unwrap(),
        );
    }
    let first = db.store.list_anomalies(3, None).await.unwrap();
    let cursor = first.next_cursor.clone().expect("a second page");
    let second = db.store.list_anomalies(3, Some(&cursor)).await.unwrap();
    assert_eq!(second.next_cursor, None);

    let mut seen: Vec<_> = first
        .items
        .iter()
        .chain(&second.items)
        .map(|a| a.id.clone())
        .collect();
    ids.sort();
    ids.reverse();
    assert_eq!(seen.len(), 5);
    assert_eq!(seen, ids);
    seen.dedup();
    assert_eq!(seen.len(), 5);
    let anomaly = &first.items[0];
    assert_eq!(anomaly.order_id, Some(order.id.clone()));
    assert_eq!(anomaly.kind, AnomalyKind::PaymentMismatch);
    assert_eq!(anomaly.created_at, at(1, 12));
}

async fn api_keys_are_found_by_hash_until_revoked(db: TestDb) {
    let secret = "pgk_live_0123456789abcdef";
    let hash = hash_api_key_secret(secret);
    // SHA-256("pgk_live_0123456789abcdef") by an independent implementation (sha256sum).
    assert_eq!(
        hash,
        "cbef7c0b572901c9140ebcbf24b2a028f335dc714ceb95607fa71a0a19ee8770"
    );
    let key = db
        .store
        .insert_api_key(NewApiKey {
            name: "shop backend".into(),
            role: ApiKeyRole::Merchant,
            key_hash: hash.clone(),
            key_prefix: secret[..12].to_owned(),
            apps: vec![app("shop")],
            created_at: at(1, 9),
        })
        .await
        .unwrap();
    assert!(key.allows_app(&app("shop")));
    assert!(!key.allows_app(&app("mall")));

    let found = db.store.api_key_by_hash(&hash).await.unwrap();
    assert_eq!(found.as_ref(), Some(&key));
    assert_eq!(
        db.store
            .api_key_by_hash(&hash_api_key_secret("wrong"))
            .await
            .unwrap(),
        None
    );

    db.store.touch_api_key(&key.id, at(1, 10)).await.unwrap();
    db.store.revoke_api_key(&key.id, at(1, 11)).await.unwrap();
    db.store.revoke_api_key(&key.id, at(1, 13)).await.unwrap();

    assert_eq!(db.store.api_key_by_hash(&hash).await.unwrap(), None);
    let listed = db.store.list_api_keys().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_used_at, Some(at(1, 10)));
    assert_eq!(
        listed[0].revoked_at,
        Some(at(1, 11)),
        "the first revocation time stays"
    );
    let missing = paygate_store::ApiKeyId::generate();
    assert!(matches!(
        db.store.touch_api_key(&missing, at(1, 10)).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        db.store.revoke_api_key(&missing, at(1, 10)).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn outbox_events_wait_until_due_and_stop_once_delivered(db: TestDb) {
    let order = pending_order(&db.store, "order_0001", 100).await;
    let id = db
        .store
        .insert_outbox_event(NewOutboxEvent {
            kind: EventKind::OrderClosed,
            order_id: order.id.clone(),
            refund_id: None,
            payload: serde_json::json!({ "order_id": order.id.as_str() }),
        })
        .await
        .unwrap();
    let now = chrono::Utc::now() + Duration::seconds(1);

    let due = db.store.pending_outbox_events(10, now).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, id);
    assert_eq!(due[0].attempts, 0);
    assert_eq!(due[0].payload["order_id"], order.id.as_str());

    let retry_at = now + Duration::minutes(5);
    db.store
        .mark_event_failed(&id, "HTTP 502", retry_at)
        .await
        .unwrap();
    assert!(
        db.store
            .pending_outbox_events(10, now)
            .await
            .unwrap()
            .is_empty()
    );
    let retried = db.store.pending_outbox_events(10, retry_at).await.unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].attempts, 1);
    assert_eq!(retried[0].last_error.as_deref(), Some("HTTP 502"));

    db.store.mark_event_delivered(&id, retry_at).await.unwrap();
    assert!(
        db.store
            .pending_outbox_events(10, retry_at + Duration::days(1))
            .await
            .unwrap()
            .is_empty()
    );
    let all = db.store.outbox_events_for_order(&order.id).await.unwrap();
    assert_eq!(
        all[0].delivered_at.map(|t| t.timestamp_micros()),
        Some(retry_at.timestamp_micros())
    );
    let missing = paygate_store::EventId::generate();
    assert!(matches!(
        db.store.mark_event_delivered(&missing, retry_at).await,
        Err(StoreError::NotFound { .. })
    ));
}
