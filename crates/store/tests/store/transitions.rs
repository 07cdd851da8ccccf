use chrono::Duration;
use paygate_core::{Order, OrderEvent, OrderStatus, ProviderKind, TransitionError};
use paygate_store::{EventKind, NewOutboxEvent, OrderChanges, Store, StoreError, Transition};

use crate::harness::{TestDb, app, at, new_order, on_both_backends, pending_order};

on_both_backends!(
    every_allowed_transition_moves_the_status_and_bumps_the_version,
    a_refused_transition_is_an_error_and_changes_nothing,
    a_transition_from_a_stale_status_is_lost_and_writes_no_event,
    sixty_four_racing_payments_have_exactly_one_winner,
    the_reconciler_finds_old_and_expired_pending_orders,
);

async fn pending(store: &Store, number: &str) -> Order {
    pending_order(store, number, 1000).await
}

fn paid_event(order: &Order) -> NewOutboxEvent {
    NewOutboxEvent {
        kind: EventKind::OrderPaid,
        order_id: order.id.clone(),
        refund_id: None,
        payload: serde_json::json!({ "order_id": order.id.as_str(), "status": "paid" }),
    }
}

async fn apply(store: &Store, order: &Order, from: OrderStatus, event: OrderEvent) -> Order {
    match store
        .transition_order(&order.id, from, event, OrderChanges::default(), None)
        .await
        .unwrap()
    {
        Transition::Applied(order) => order,
        Transition::Lost(order) => panic!("lost: {order:?}"),
    }
}

async fn every_allowed_transition_moves_the_status_and_bumps_the_version(db: TestDb) {
    use OrderEvent as E;
    use OrderStatus as S;
    let s = &db.store;

    let order = pending(s, "order_paid").await;
    let changes = OrderChanges {
        provider_trade_no: Some("4200000000001".into()),
        payer_id: Some("openid_9".into()),
        paid_at: Some(at(1, 11)),
        closed_at: None,
        query_again_at: None,
    };
    let paid = match s
        .transition_order(&order.id, S::Pending, E::PaymentConfirmed, changes, None)
        .await
        .unwrap()
    {
        Transition::Applied(o) => o,
        lost => panic!("{lost:?}"),
    };
    assert_eq!(paid.status, S::Paid);
    assert_eq!(paid.version, 1);
    assert_eq!(paid.provider_trade_no.as_deref(), Some("4200000000001"));
    assert_eq!(paid.payer_id.as_deref(), Some("openid_9"));
    assert_eq!(paid.paid_at, Some(at(1, 11)));
    assert_eq!(paid.subject, order.subject, "untouched columns stay");

    let partly = apply(s, &paid, S::Paid, E::PartiallyRefunded).await;
    assert_eq!((partly.status, partly.version), (S::PartiallyRefunded, 2));
    let partly_again = apply(s, &partly, S::PartiallyRefunded, E::PartiallyRefunded).await;
    assert_eq!(
        (partly_again.status, partly_again.version),
        (S::PartiallyRefunded, 3)
    );
    let refunded = apply(s, &partly_again, S::PartiallyRefunded, E::FullyRefunded).await;
    assert_eq!((refunded.status, refunded.version), (S::Refunded, 4));
    assert_eq!(
        refunded.paid_at,
        Some(at(1, 11)),
        "a later change keeps paid_at"
    );

    let order = pending(s, "order_full").await;
    let paid = apply(s, &order, S::Pending, E::PaymentConfirmed).await;
    assert_eq!(
        apply(s, &paid, S::Paid, E::FullyRefunded).await.status,
        S::Refunded
    );

    let order = pending(s, "order_late").await;
    let closed = match s
        .transition_order(
            &order.id,
            S::Pending,
            E::Closed,
            OrderChanges {
                closed_at: Some(at(1, 12)),
                ..OrderChanges::default()
            },
            None,
        )
        .await
        .unwrap()
    {
        Transition::Applied(o) => o,
        lost => panic!("{lost:?}"),
    };
    assert_eq!(
        (closed.status, closed.closed_at),
        (S::Closed, Some(at(1, 12)))
    );
    let late = apply(s, &closed, S::Closed, E::LatePaymentConfirmed).await;
    assert_eq!(
        late.status,
        S::Paid,
        "money that arrived after closing is kept"
    );
}

async fn a_refused_transition_is_an_error_and_changes_nothing(db: TestDb) {
    let order = pending(&db.store, "order_0001").await;
    let paid = apply(
        &db.store,
        &order,
        OrderStatus::Pending,
        OrderEvent::PaymentConfirmed,
    )
    .await;

    let err = db
        .store
        .transition_order(
            &paid.id,
            OrderStatus::Paid,
            OrderEvent::Closed,
            OrderChanges::default(),
            Some(paid_event(&paid)),
        )
        .await
        .unwrap_err();

    assert!(
        matches!(
            err,
            StoreError::IllegalTransition(TransitionError {
                from: OrderStatus::Paid,
                event: OrderEvent::Closed
            })
        ),
        "{err:?}"
    );
    assert_eq!(db.store.order(&paid.id).await.unwrap(), paid);
    assert!(
        db.store
            .outbox_events_for_order(&paid.id)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_transition_from_a_stale_status_is_lost_and_writes_no_event(db: TestDb) {
    let order = pending(&db.store, "order_0001").await;
    let first = db
        .store
        .transition_order(
            &order.id,
            OrderStatus::Pending,
            OrderEvent::PaymentConfirmed,
            OrderChanges::default(),
            Some(paid_event(&order)),
        )
        .await
        .unwrap();
    let Transition::Applied(paid) = first else {
        panic!("{first:?}")
    };

    // A second notify that still believes the order is pending, and would close it.
    let second = db
        .store
        .transition_order(
            &order.id,
            OrderStatus::Pending,
            OrderEvent::Closed,
            OrderChanges::default(),
            Some(paid_event(&order)),
        )
        .await
        .unwrap();

    assert_eq!(second, Transition::Lost(paid.clone()));
    let events = db.store.outbox_events_for_order(&order.id).await.unwrap();
    assert_eq!(
        events.len(),
        1,
        "only the winning transition wrote its event"
    );
    assert_eq!(events[0].kind, EventKind::OrderPaid);
    assert_eq!(events[0].payload["status"], "paid");
}

async fn sixty_four_racing_payments_have_exactly_one_winner(db: TestDb) {
    let order = pending(&db.store, "order_race").await;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(64));
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let store = db.store.clone();
            let order = order.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let changes = OrderChanges {
                    provider_trade_no: Some(format!("trade_{i}")),
                    ..OrderChanges::default()
                };
                store
                    .transition_order(
                        &order.id,
                        OrderStatus::Pending,
                        OrderEvent::PaymentConfirmed,
                        changes,
                        Some(paid_event(&order)),
                    )
                    .await
            })
        })
        .collect();
    let (mut applied, mut lost) = (Vec::new(), 0);
    for task in tasks {
        match task.await.unwrap().unwrap() {
            Transition::Applied(o) => applied.push(o),
            Transition::Lost(o) => {
                assert_eq!(o.status, OrderStatus::Paid);
                lost += 1;
            }
        }
    }
    assert_eq!((applied.len(), lost), (1, 63));
    let stored = db.store.order(&order.id).await.unwrap();
    assert_eq!(stored, applied[0], "the stored order is the winner's");
    assert_eq!(stored.version, 1);
    assert_eq!(
        db.store
            .outbox_events_for_order(&order.id)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn the_reconciler_finds_old_and_expired_pending_orders(db: TestDb) {
    let s = &db.store;
    let mut early = new_order("order_early", 100);
    early.created_at = at(1, 8);
    early.expires_at = at(1, 9);
    let early = s.insert_order(early).await.unwrap();
    let mut late = new_order("order_late1", 100);
    late.created_at = at(1, 10);
    late.expires_at = at(1, 20);
    let late = s.insert_order(late).await.unwrap();
    let mut paid = new_order("order_paid1", 100);
    paid.created_at = at(1, 7);
    paid.expires_at = at(1, 8);
    let paid = s.insert_order(paid).await.unwrap();
    apply(s, &paid, OrderStatus::Pending, OrderEvent::PaymentConfirmed).await;

    let old: Vec<_> = s
        .pending_orders_older_than(at(1, 10), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(
        old,
        vec![early.id.clone()],
        "created_at < 10:00, pending only"
    );
    let old: Vec<_> = s
        .pending_orders_older_than(at(1, 10) + Duration::seconds(1), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(old, vec![early.id.clone(), late.id.clone()], "oldest first");

    let shop = [(ProviderKind::WECHAT, app("shop"))];
    let expired: Vec<_> = s
        .expired_pending_orders(&shop, at(1, 9), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(expired, vec![early.id.clone()], "expires_at <= now");
    assert_eq!(
        s.expired_pending_orders(&shop, at(1, 21), 1)
            .await
            .unwrap()
            .len(),
        1,
        "limit"
    );
}
