use chrono::{Duration, Utc};
use paygate_store::{EventFilter, EventKind, NewOutboxEvent, NewWebhookAttempt, StoreError};

use crate::harness::{TestDb, app, on_both_backends, pending_order};

on_both_backends!(
    only_one_holder_gets_a_live_lease_and_a_released_one_is_free_again,
    an_expired_lease_can_be_taken_over,
    attempts_are_recorded_per_round_and_redelivery_starts_a_new_round,
    events_are_filtered_by_order_status_and_app,
);

async fn only_one_holder_gets_a_live_lease_and_a_released_one_is_free_again(db: TestDb) {
    let s = &db.store;
    let ttl = Duration::seconds(60);
    assert!(
        s.try_claim_lease("reconciler", "replica-a", ttl)
            .await
            .unwrap()
    );
    assert!(
        !s.try_claim_lease("reconciler", "replica-b", ttl)
            .await
            .unwrap()
    );
    // The holder renews its own lease.
    assert!(
        s.try_claim_lease("reconciler", "replica-a", ttl)
            .await
            .unwrap()
    );
    // Leases are per job.
    assert!(
        s.try_claim_lease("webhooks", "replica-b", ttl)
            .await
            .unwrap()
    );

    s.release_lease("reconciler", "replica-a").await.unwrap();
    assert!(
        s.try_claim_lease("reconciler", "replica-b", ttl)
            .await
            .unwrap()
    );
    assert!(
        !s.try_claim_lease("reconciler", "replica-a", ttl)
            .await
            .unwrap()
    );
}

async fn an_expired_lease_can_be_taken_over(db: TestDb) {
    let s = &db.store;
    // A lease that is already over when claimed: its holder "died" at once.
    assert!(
        s.try_claim_lease("reconciler", "replica-a", Duration::seconds(-5))
            .await
            .unwrap()
    );
    assert!(
        s.try_claim_lease("reconciler", "replica-b", Duration::seconds(60))
            .await
            .unwrap()
    );
    assert!(
        !s.try_claim_lease("reconciler", "replica-a", Duration::seconds(60))
            .await
            .unwrap()
    );
}

fn paid_event(order: &paygate_core::Order) -> NewOutboxEvent {
    NewOutboxEvent {
        kind: EventKind::OrderPaid,
        order_id: order.id.clone(),
        refund_id: None,
        payload: serde_json::json!({ "order_id": order.id.as_str() }),
    }
}

async fn attempts_are_recorded_per_round_and_redelivery_starts_a_new_round(db: TestDb) {
    let s = &db.store;
    let order = pending_order(s, "wh_round", 500).await;
    let id = s.insert_outbox_event(paid_event(&order)).await.unwrap();
    let attempt = |status: Option<u16>, round: i64| NewWebhookAttempt {
        event_id: id.clone(),
        delivery_round: round,
        endpoint: "http://merchant.test/hook".into(),
        attempted_at: Utc::now(),
        response_status: status,
        error: status.is_none().then(|| "connection refused".to_owned()),
    };
    s.record_webhook_attempt(attempt(None, 0)).await.unwrap();
    s.record_webhook_attempt(attempt(Some(500), 0))
        .await
        .unwrap();
    s.record_webhook_attempt(attempt(Some(204), 0))
        .await
        .unwrap();
    s.mark_event_delivered(&id, Utc::now()).await.unwrap();

    let attempts = s.webhook_attempts(&id).await.unwrap();
    let acknowledged: Vec<bool> = attempts.iter().map(|a| a.acknowledged()).collect();
    assert_eq!(acknowledged, [false, false, true]);
    assert_eq!(attempts[0].error.as_deref(), Some("connection refused"));
    assert!(
        s.pending_outbox_events(10, Utc::now())
            .await
            .unwrap()
            .is_empty()
    );

    let again = s.redeliver_event(&id).await.unwrap();
    assert_eq!(again.delivery_round, 1);
    assert_eq!(again.delivered_at, None);
    let due = s
        .pending_outbox_events(10, Utc::now() + Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, id);

    let unknown = paygate_store::EventId::parse("01JAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
    assert!(matches!(
        s.redeliver_event(&unknown).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn events_are_filtered_by_order_status_and_app(db: TestDb) {
    let s = &db.store;
    let first = pending_order(s, "wh_first", 100).await;
    let second = pending_order(s, "wh_second", 200).await;
    let delivered = s.insert_outbox_event(paid_event(&first)).await.unwrap();
    let pending = s.insert_outbox_event(paid_event(&second)).await.unwrap();
    s.mark_event_delivered(&delivered, Utc::now())
        .await
        .unwrap();

    let ids = |events: Vec<paygate_store::OutboxEvent>| {
        let mut ids: Vec<String> = events.into_iter().map(|e| e.id.to_string()).collect();
        ids.sort();
        ids
    };
    let all = EventFilter {
        limit: 10,
        ..EventFilter::default()
    };
    let mut both = vec![pending.to_string(), delivered.to_string()];
    both.sort();
    assert_eq!(ids(s.list_outbox_events(all.clone()).await.unwrap()), both);
    let only_first = EventFilter {
        order_id: Some(first.id.clone()),
        ..all.clone()
    };
    assert_eq!(
        ids(s.list_outbox_events(only_first).await.unwrap()),
        [delivered.to_string()]
    );
    let undelivered = EventFilter {
        delivered: Some(false),
        ..all.clone()
    };
    assert_eq!(
        ids(s.list_outbox_events(undelivered).await.unwrap()),
        [pending.to_string()]
    );
    let own_app = EventFilter {
        apps: Some(vec![first.app.clone()]),
        ..all.clone()
    };
    assert_eq!(s.list_outbox_events(own_app).await.unwrap().len(), 2);
    let other_app = EventFilter {
        apps: Some(vec![app("someone-else")]),
        ..all
    };
    assert!(s.list_outbox_events(other_app).await.unwrap().is_empty());
}
