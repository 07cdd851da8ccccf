//! The group-committing write path, seen from outside: concurrent writes that share one
//! transaction still succeed or fail one by one, and a callback stored with a transition is
//! stored only when that transition wins.

use paygate_core::{OrderEvent, OrderStatus, OutRefundNo, ProviderKind, RefundStatus};
use paygate_store::{
    CallbackId, CallbackKind, CallbackVerdict, JudgedCallback, LockKey, NewCallback, NewRefund,
    OrderChanges, OrderFilter, QueryAgain, RefundCompletion, StoreError, Transition,
};

use crate::harness::{TestDb, at, fen, new_order, on_both_backends, pending_order};

on_both_backends!(
    concurrent_writes_fail_one_by_one_and_the_rest_commit,
    a_callback_rides_with_its_transition_only_when_it_wins,
    the_first_writes_after_the_server_dropped_the_writers_connections_succeed,
    closing_a_clone_leaves_the_others_writing_and_closing_the_last_commits_its_writes,
    every_write_that_locks_an_order_is_routed_by_that_order,
);

/// Writes routed by the same key queue in one writer lane; a write routed by anything but the
/// row it locks can wait on another lane's batch for that row (or deadlock with it).
async fn every_write_that_locks_an_order_is_routed_by_that_order(db: TestDb) {
    let store = &db.store;
    let order = pending_order(store, "routed_0001", 100).await;
    let other = pending_order(store, "routed_0002", 100).await;
    let by_order = LockKey::Order(order.id.clone());
    store.trace_write_keys();

    let paid = store
        .transition_order(
            &order.id,
            OrderStatus::Pending,
            OrderEvent::PaymentConfirmed,
            OrderChanges::default(),
            None,
        )
        .await
        .unwrap();
    assert!(matches!(paid, Transition::Applied(_)));
    assert_eq!(store.traced_write_keys(), vec![by_order.clone()]);

    let refund = |number: &str, amount: i64| NewRefund {
        order_id: order.id.clone(),
        out_refund_no: OutRefundNo::parse(number).unwrap(),
        amount: fen(amount),
        reason: None,
        created_at: at(2, 10),
    };
    let first = store.create_refund(refund("routed_r1", 30)).await.unwrap();
    let second = store.create_refund(refund("routed_r2", 20)).await.unwrap();
    assert_eq!(
        store.traced_write_keys(),
        [by_order.clone(), by_order.clone()]
    );

    // Completing a refund locks its order's row to add to the refunded total: routed by the
    // order, never by the refund, whichever way it ends.
    let succeeded = store
        .complete_refund(&first.id, RefundStatus::Succeeded, None, at(2, 11), None)
        .await
        .unwrap();
    let failed = store
        .complete_refund(&second.id, RefundStatus::Failed, None, at(2, 11), None)
        .await
        .unwrap();
    assert_eq!(
        store.traced_write_keys(),
        [by_order.clone(), by_order.clone()]
    );
    let RefundCompletion::Applied {
        order: refunded, ..
    } = succeeded
    else {
        panic!("{succeeded:?}");
    };
    assert_eq!(refunded.refunded_amount, fen(30));
    assert_eq!(refunded.status, OrderStatus::PartiallyRefunded);
    assert!(matches!(failed, RefundCompletion::Applied { .. }));

    // The reconciler's schedule updates lock one row per order: one write per order.
    let again = |order: &paygate_core::Order| QueryAgain {
        order: order.id.clone(),
        attempts: 2,
        at: at(3, 10),
    };
    store
        .reschedule_queries(vec![again(&order), again(&other)])
        .await
        .unwrap();
    let mut keys = store.traced_write_keys();
    keys.sort_by_key(|key| format!("{key:?}"));
    let mut expected = vec![by_order, LockKey::Order(other.id.clone())];
    expected.sort_by_key(|key| format!("{key:?}"));
    assert_eq!(keys, expected);
}

async fn closing_a_clone_leaves_the_others_writing_and_closing_the_last_commits_its_writes(
    db: TestDb,
) {
    // A second store on the same database, so closing it cannot take the harness's store along.
    let store = paygate_store::Store::connect(&db.url, paygate_store::PoolOptions::sized(2))
        .await
        .unwrap();
    let clone = store.clone();

    // Closing a clone must neither wait for the writers (the other handle keeps them alive: a
    // join would hang) nor stop them.
    tokio::time::timeout(std::time::Duration::from_secs(10), clone.close())
        .await
        .expect("closing a clone returns at once")
        .unwrap();
    pending_order(&store, "after_clone_closed", 5).await;

    // The last handle: queued writes are committed before close returns.
    let writes: Vec<_> = (0..20)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .insert_order(new_order(&format!("closing_{n:04}"), 3))
                    .await
            })
        })
        .collect();
    for write in writes {
        write.await.unwrap().unwrap();
    }
    tokio::time::timeout(std::time::Duration::from_secs(10), store.close())
        .await
        .expect("closing the last handle joins its writers")
        .unwrap();

    let stored = db
        .store
        .list_orders(&OrderFilter::default(), 100, None)
        .await
        .unwrap()
        .items;
    let closing = stored
        .iter()
        .filter(|o| o.out_trade_no.as_str().starts_with("closing_"))
        .count();
    assert_eq!(closing, 20);
    assert!(
        stored
            .iter()
            .any(|o| o.out_trade_no.as_str() == "after_clone_closed")
    );
}

async fn concurrent_writes_fail_one_by_one_and_the_rest_commit(db: TestDb) {
    // Arrange: 20 numbers already taken, so their inserts fail with a unique violation in the
    // middle of batches full of inserts that must succeed (on PostgreSQL a failed statement
    // would poison the whole batch without its own savepoint).
    for n in 0..20 {
        pending_order(&db.store, &format!("taken_{n:04}"), 100).await;
    }

    // Act
    let mut tasks = Vec::new();
    for n in 0..60 {
        let store = db.store.clone();
        let number = if n % 3 == 0 {
            format!("taken_{:04}", n / 3)
        } else {
            format!("fresh_{n:04}")
        };
        tasks.push(tokio::spawn(async move {
            store.insert_order(new_order(&number, 7)).await
        }));
    }
    let mut created = 0;
    let mut duplicates = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(order) => {
                assert!(order.out_trade_no.as_str().starts_with("fresh_"));
                created += 1;
            }
            Err(StoreError::DuplicateOrder { existing, .. }) => {
                assert!(existing.out_trade_no.as_str().starts_with("taken_"));
                assert_eq!(existing.amount.get(), 100, "the first order is untouched");
                duplicates += 1;
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    // Assert
    assert_eq!((created, duplicates), (40, 20));
    let stored = db
        .store
        .list_orders(&OrderFilter::default(), 1000, None)
        .await
        .unwrap();
    assert_eq!(stored.items.len(), 60, "20 taken + 40 fresh, nothing lost");
}

fn judged(order_id: &paygate_core::OrderId, body: &str) -> JudgedCallback {
    JudgedCallback {
        id: CallbackId::generate(),
        callback: NewCallback {
            provider: ProviderKind::WECHAT,
            app: "shop".into(),
            kind: CallbackKind::Payment,
            received_at: at(1, 12),
            body: body.as_bytes().to_vec(),
            content_type: Some("text/xml".into()),
        },
        verdict: CallbackVerdict::Accepted,
        reason: None,
        order_id: Some(order_id.clone()),
    }
}

async fn a_callback_rides_with_its_transition_only_when_it_wins(db: TestDb) {
    let order = pending_order(&db.store, "order_0001", 100).await;
    let pay = |body: &'static str| {
        db.store.transition_order_for_callback(
            &order.id,
            OrderStatus::Pending,
            OrderEvent::PaymentConfirmed,
            OrderChanges::default(),
            None,
            Some(judged(&order.id, body)),
        )
    };

    let first = pay("<xml>first</xml>").await.unwrap();
    let second = pay("<xml>second</xml>").await.unwrap();

    assert!(matches!(first, Transition::Applied(ref o) if o.status == OrderStatus::Paid));
    assert!(matches!(second, Transition::Lost(ref o) if o.status == OrderStatus::Paid));
    let stored = db.store.callbacks_for_order(&order.id).await.unwrap();
    assert_eq!(
        stored.len(),
        1,
        "the losing copy stored nothing: {stored:?}"
    );
    assert_eq!(stored[0].body, b"<xml>first</xml>");
    assert_eq!(stored[0].verdict, CallbackVerdict::Accepted);
}

async fn the_first_writes_after_the_server_dropped_the_writers_connections_succeed(db: TestDb) {
    use diesel::{Connection, PgConnection, RunQueryDsl};
    // Every lane writes once, so each holds a connection; reads leave pooled connections.
    let mut before = Vec::new();
    for n in 0..8 {
        before.push(pending_order(&db.store, &format!("before_{n}"), 1).await);
    }
    for read in read_all_at_once(&db.store, &before).await {
        read.unwrap();
    }
    if db.store.backend() == paygate_store::Backend::Postgres {
        // A server restart or an administrator ends every idle connection of the database.
        let name = db.url.rsplit('/').next().unwrap().to_owned();
        let mut admin = PgConnection::establish(&db.url).unwrap();
        diesel::sql_query(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        ))
        .execute(&mut admin)
        .unwrap();
    }

    // Each lane finds its connection dead; none may answer its first write with an error.
    for n in 0..8 {
        let inserted = db
            .store
            .insert_order(new_order(&format!("after_{n}"), 1))
            .await;
        assert!(inserted.is_ok(), "write {n} after the outage: {inserted:?}");
    }
    // The pooled readers are dead too; the hot reads are not tested on checkout, so they
    // must notice and read again on a fresh connection.
    for (n, read) in read_all_at_once(&db.store, &before)
        .await
        .into_iter()
        .enumerate()
    {
        assert!(read.is_ok(), "read {n} after the outage: {read:?}");
    }
}

/// Reads every order concurrently, so the reads take several pooled connections.
async fn read_all_at_once(
    store: &paygate_store::Store,
    orders: &[paygate_core::Order],
) -> Vec<Result<paygate_core::Order, paygate_store::StoreError>> {
    let mut reads = tokio::task::JoinSet::new();
    for order in orders {
        let (store, id) = (store.clone(), order.id.clone());
        reads.spawn(async move { store.order(&id).await });
    }
    reads.join_all().await
}
