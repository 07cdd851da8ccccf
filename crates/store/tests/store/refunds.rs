use paygate_core::{Fen, Order, OrderEvent, OrderStatus, OutRefundNo, RefundId, RefundStatus};
use paygate_store::{
    EventKind, NewOutboxEvent, NewRefund, OrderChanges, Refund, RefundCompletion, Store,
    StoreError, Transition,
};

use crate::harness::{TestDb, at, fen, on_both_backends, pending_order};

on_both_backends!(
    only_paid_orders_can_be_refunded,
    a_refund_larger_than_what_is_left_is_refused_with_the_refundable_amount,
    a_reused_refund_number_fails_with_the_existing_refund,
    a_hundred_racing_refunds_never_reserve_more_than_was_paid,
    completed_refunds_move_the_order_to_partially_refunded_then_refunded,
    a_failed_refund_releases_its_reservation,
    completing_twice_is_lost_and_processing_is_not_a_completion,
    a_completion_locks_the_order_before_the_refund,
    refunds_are_found_by_id_number_order_and_status,
);

async fn paid(store: &Store, number: &str, amount: i64) -> Order {
    let order = pending_order(store, number, amount).await;
    match store
        .transition_order(
            &order.id,
            OrderStatus::Pending,
            OrderEvent::PaymentConfirmed,
            OrderChanges::default(),
            None,
        )
        .await
        .unwrap()
    {
        Transition::Applied(order) => order,
        lost => panic!("{lost:?}"),
    }
}

fn refund_of(order: &Order, number: &str, amount: i64) -> NewRefund {
    NewRefund {
        order_id: order.id.clone(),
        out_refund_no: OutRefundNo::parse(number).unwrap(),
        amount: fen(amount),
        reason: Some("damaged".into()),
        created_at: at(2, 10),
    }
}

/// Reserves a refund that must be accepted.
async fn reserve(store: &Store, order: &Order, number: &str, amount: i64) -> Refund {
    store
        .create_refund(refund_of(order, number, amount))
        .await
        .unwrap()
}

async fn succeed(store: &Store, refund: &Refund) -> (Refund, Order) {
    match store
        .complete_refund(
            &refund.id,
            RefundStatus::Succeeded,
            Some(format!("wx_{}", refund.out_refund_no)),
            at(2, 11),
            None,
        )
        .await
        .unwrap()
    {
        RefundCompletion::Applied { refund, order } => (refund, *order),
        lost => panic!("{lost:?}"),
    }
}

async fn only_paid_orders_can_be_refunded(db: TestDb) {
    let pending = pending_order(&db.store, "order_0001", 100).await;
    let err = db
        .store
        .create_refund(refund_of(&pending, "refund_01", 10))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NotRefundable {
                status: OrderStatus::Pending
            }
        ),
        "{err:?}"
    );
    let order = paid(&db.store, "order_0002", 100).await;
    let err = db
        .store
        .create_refund(refund_of(&order, "refund_02", 0))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ZeroRefund), "{err:?}");
    let mut ghost = refund_of(&order, "refund_03", 10);
    ghost.order_id = paygate_core::OrderId::generate();
    let err = db.store.create_refund(ghost).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NotFound {
                entity: "order",
                ..
            }
        ),
        "{err:?}"
    );
}

async fn a_refund_larger_than_what_is_left_is_refused_with_the_refundable_amount(db: TestDb) {
    let order = paid(&db.store, "order_0001", 1000).await;
    let first = reserve(&db.store, &order, "refund_01", 600).await;
    assert_eq!(first.status, RefundStatus::Processing);

    let err = db
        .store
        .create_refund(refund_of(&order, "refund_02", 401))
        .await
        .unwrap_err();

    assert!(
        matches!(err, StoreError::RefundExceedsPaid { refundable } if refundable == fen(400)),
        "a processing refund still counts: {err:?}"
    );
    assert!(
        db.store
            .create_refund(refund_of(&order, "refund_03", 400))
            .await
            .is_ok()
    );
}

async fn a_reused_refund_number_fails_with_the_existing_refund(db: TestDb) {
    let order = paid(&db.store, "order_0001", 1000).await;
    let first = reserve(&db.store, &order, "refund_01", 100).await;

    let err = db
        .store
        .create_refund(refund_of(&order, "refund_01", 200))
        .await
        .unwrap_err();

    match err {
        StoreError::DuplicateRefund(existing) => assert_eq!(*existing, first),
        other => panic!("expected DuplicateRefund, got {other:?}"),
    }
    assert_eq!(
        db.store.refunds_for_order(&order.id).await.unwrap(),
        vec![first]
    );
}

async fn a_hundred_racing_refunds_never_reserve_more_than_was_paid(db: TestDb) {
    // 300 fen paid, each request asks for a third: exactly three can fit.
    let order = paid(&db.store, "order_0001", 300).await;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(100));
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let store = db.store.clone();
            let request = refund_of(&order, &format!("refund_{i:03}"), 100);
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store.create_refund(request).await
            })
        })
        .collect();
    let (mut accepted, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => accepted += 1,
            Err(StoreError::RefundExceedsPaid { refundable }) => {
                assert!(refundable < fen(100), "{refundable}");
                refused += 1;
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((accepted, refused), (3, 97));
    let reserved: i64 = db
        .store
        .refunds_for_order(&order.id)
        .await
        .unwrap()
        .iter()
        .map(|r| r.amount.get())
        .sum();
    assert_eq!(reserved, 300);
}

async fn completed_refunds_move_the_order_to_partially_refunded_then_refunded(db: TestDb) {
    let order = paid(&db.store, "order_0001", 1000).await;
    let r1 = reserve(&db.store, &order, "refund_01", 300).await;
    let r2 = reserve(&db.store, &order, "refund_02", 700).await;

    let event = NewOutboxEvent {
        kind: EventKind::RefundSucceeded,
        order_id: order.id.clone(),
        refund_id: Some(r1.id.clone()),
        payload: serde_json::json!({ "refund_id": r1.id.as_str() }),
    };
    let done = db
        .store
        .complete_refund(
            &r1.id,
            RefundStatus::Succeeded,
            Some("wx_1".into()),
            at(2, 11),
            Some(event),
        )
        .await
        .unwrap();
    let RefundCompletion::Applied {
        refund,
        order: after_first,
    } = done
    else {
        panic!("{done:?}")
    };
    assert_eq!(refund.status, RefundStatus::Succeeded);
    assert_eq!(refund.provider_refund_id.as_deref(), Some("wx_1"));
    assert_eq!(refund.succeeded_at, Some(at(2, 11)));
    assert_eq!(after_first.status, OrderStatus::PartiallyRefunded);
    assert_eq!(after_first.refunded_amount, fen(300));
    let events = db.store.outbox_events_for_order(&order.id).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].refund_id, Some(r1.id.clone()));

    let (_, after_second) = succeed(&db.store, &r2).await;
    assert_eq!(after_second.status, OrderStatus::Refunded);
    assert_eq!(after_second.refunded_amount, fen(1000));
    assert_eq!(after_second.refundable_amount(), Fen::ZERO);
    let err = db
        .store
        .create_refund(refund_of(&order, "refund_03", 1))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::NotRefundable {
            status: OrderStatus::Refunded
        }
    ));
}

async fn a_failed_refund_releases_its_reservation(db: TestDb) {
    let order = paid(&db.store, "order_0001", 500).await;
    let refund = reserve(&db.store, &order, "refund_01", 500).await;

    let done = db
        .store
        .complete_refund(&refund.id, RefundStatus::Failed, None, at(2, 11), None)
        .await
        .unwrap();

    let RefundCompletion::Applied {
        refund: failed,
        order: after,
    } = done
    else {
        panic!("{done:?}")
    };
    assert_eq!(failed.status, RefundStatus::Failed);
    assert_eq!(failed.succeeded_at, None);
    assert_eq!(
        after.status,
        OrderStatus::Paid,
        "a failed refund leaves the order paid"
    );
    assert_eq!(after.refunded_amount, Fen::ZERO);
    assert!(
        db.store
            .create_refund(refund_of(&order, "refund_02", 500))
            .await
            .is_ok()
    );
}

async fn completing_twice_is_lost_and_processing_is_not_a_completion(db: TestDb) {
    let order = paid(&db.store, "order_0001", 500).await;
    let refund = reserve(&db.store, &order, "refund_01", 200).await;
    let (succeeded, after) = succeed(&db.store, &refund).await;

    let again = db
        .store
        .complete_refund(&refund.id, RefundStatus::Failed, None, at(2, 12), None)
        .await
        .unwrap();

    assert_eq!(again, RefundCompletion::Lost(succeeded));
    assert_eq!(
        db.store.order(&order.id).await.unwrap(),
        after,
        "counted once"
    );
    let err = db
        .store
        .complete_refund(&refund.id, RefundStatus::Processing, None, at(2, 12), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::IllegalRefundTransition { .. }),
        "{err:?}"
    );
    let err = db
        .store
        .complete_refund(
            &RefundId::generate(),
            RefundStatus::Failed,
            None,
            at(2, 12),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NotFound {
                entity: "refund",
                ..
            }
        ),
        "{err:?}"
    );
}

async fn refunds_are_found_by_id_number_order_and_status(db: TestDb) {
    let order = paid(&db.store, "order_0001", 900).await;
    let r1 = reserve(&db.store, &order, "refund_01", 100).await;
    let r2 = reserve(&db.store, &order, "refund_02", 200).await;
    let (r2_done, _) = succeed(&db.store, &r2).await;

    assert_eq!(db.store.refund(&r1.id).await.unwrap(), r1);
    assert_eq!(
        db.store
            .refund_by_out_refund_no(&r2.out_refund_no)
            .await
            .unwrap(),
        r2_done
    );
    // Two ids made in the same millisecond have a random order, so compare sorted.
    let mut expected = vec![r1.clone(), r2_done.clone()];
    expected.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        db.store.refunds_for_order(&order.id).await.unwrap(),
        expected
    );
    assert_eq!(
        db.store
            .refunds_in_status(RefundStatus::Processing, 10)
            .await
            .unwrap(),
        vec![r1]
    );
    assert_eq!(
        db.store
            .refunds_in_status(RefundStatus::Succeeded, 10)
            .await
            .unwrap(),
        vec![r2_done]
    );
    let missing = OutRefundNo::parse("refund_99").unwrap();
    assert!(matches!(
        db.store.refund_by_out_refund_no(&missing).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// Every write routed by an order takes that order's row lock first, so two replicas' batches
/// lock rows in one order. A completion that updated the refund first deadlocked (PostgreSQL
/// fails one side after `deadlock_timeout`, a 500 to the merchant) when one replica completed a
/// refund from the provider's answer while another, from the refund notify, completed it in a
/// batch already holding the order for a sibling refund.
async fn a_completion_locks_the_order_before_the_refund(db: TestDb) {
    let order = paid(&db.store, "order_0001", 500).await;
    let refund = reserve(&db.store, &order, "refund_01", 200).await;
    db.store.trace_statements();
    succeed(&db.store, &refund).await;
    let statements: Vec<String> = db
        .store
        .traced_statements()
        .into_iter()
        // Without quotes: SQLite's diesel backend quotes names with backticks.
        .map(|sql| sql.to_ascii_uppercase().replace(['"', '`'], ""))
        .collect();
    let refund_update = statements
        .iter()
        .position(|sql| sql.starts_with("UPDATE REFUNDS"))
        .unwrap_or_else(|| panic!("no refund update in {statements:?}"));
    match db.store.backend() {
        paygate_store::Backend::Postgres => {
            let order_lock = statements
                .iter()
                .position(|sql| sql.contains("FROM ORDERS") && sql.contains("FOR UPDATE"))
                .unwrap_or_else(|| panic!("the order row is never locked: {statements:?}"));
            assert!(order_lock < refund_update, "{statements:?}");
        }
        // One writer holds the whole database: there is no row lock to order.
        paygate_store::Backend::Sqlite => {}
    }
}
