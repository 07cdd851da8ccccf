//! What each hot operation costs in statements, one round trip each on PostgreSQL: counted
//! from the statements the store's connections actually send, not from a benchmark.
//!
//! Statements that frame a writer batch (`BEGIN`, a checkpoint savepoint when a batch needs one,
//! `COMMIT`) are paid once per batch of up to 64 writes, so they are counted apart from the
//! operation's own.

use paygate_core::{OrderEvent, OrderStatus, PayParams, ProviderKind};
use paygate_store::{
    Backend, CallbackId, CallbackKind, CallbackVerdict, EventKind, JudgedCallback, NewCallback,
    NewOutboxEvent, OrderChanges, Store, Transition,
};

use crate::harness::{TestDb, app, at, new_order, on_both_backends, pending_order};

on_both_backends!(
    a_genuine_notify_costs_one_read_and_one_write_statement,
    a_locally_signed_create_is_one_statement_and_a_provider_create_two,
    a_failing_write_is_rolled_back_alone_and_its_batch_still_commits,
    the_compare_and_set_is_prepared_once_and_reused_by_every_notify,
    every_statement_of_a_notify_comes_from_the_statement_cache,
);

/// The statements an operation sent, without the batch framing; and the framing apart.
fn split(statements: Vec<String>) -> (Vec<String>, Vec<String>) {
    statements.into_iter().partition(|sql| {
        let sql = sql.trim_start().to_ascii_uppercase();
        !(sql.starts_with("BEGIN")
            || sql.starts_with("COMMIT")
            || sql.starts_with("SAVEPOINT PAYGATE_CHECKPOINT"))
    })
}

fn first_words(statements: &[String]) -> Vec<String> {
    statements
        .iter()
        .map(|sql| sql.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .collect()
}

/// The outbox events and callbacks stored for an order.
async fn rows_written(store: &Store, order: &paygate_core::OrderId) -> (usize, usize) {
    let events = store.outbox_events_for_order(order).await.unwrap();
    let callbacks = store.callbacks_for_order(order).await.unwrap();
    (events.len(), callbacks.len())
}

async fn notify_once(store: &Store, out_trade_no: &str) -> Transition {
    let number = paygate_core::OutTradeNo::parse(out_trade_no).unwrap();
    let order = store
        .order_by_out_trade_no(&app("shop"), &number)
        .await
        .unwrap();
    let callback = JudgedCallback {
        id: CallbackId::generate(),
        callback: NewCallback {
            provider: ProviderKind::WECHAT,
            app: "shop".into(),
            kind: CallbackKind::Payment,
            received_at: at(1, 11),
            body: b"<xml><return_code>SUCCESS</return_code></xml>".to_vec(),
            content_type: Some("text/xml".into()),
        },
        verdict: CallbackVerdict::Accepted,
        reason: None,
        order_id: Some(order.id.clone()),
    };
    let event = NewOutboxEvent {
        kind: EventKind::OrderPaid,
        order_id: order.id.clone(),
        refund_id: None,
        payload: serde_json::json!({ "order_id": order.id.as_str() }),
    };
    let changes = OrderChanges {
        provider_trade_no: Some("4200000001".into()),
        paid_at: Some(at(1, 11)),
        ..OrderChanges::default()
    };
    store
        .transition_order_for_callback(
            &order.id,
            // As every copy of a notify that read the order while it was pending.
            OrderStatus::Pending,
            OrderEvent::PaymentConfirmed,
            changes,
            Some(event),
            Some(callback),
        )
        .await
        .unwrap()
}

async fn a_genuine_notify_costs_one_read_and_one_write_statement(db: TestDb) {
    let order = pending_order(&db.store, "order_0001", 100).await;
    db.store.trace_statements();
    db.store.traced_statements();

    let moved = notify_once(&db.store, "order_0001").await;

    let Transition::Applied(paid) = moved else {
        panic!("the first notify wins: {moved:?}");
    };
    assert_eq!(paid.status, OrderStatus::Paid);
    assert_eq!(paid.provider_trade_no.as_deref(), Some("4200000001"));
    let (own, framing) = split(db.store.traced_statements());
    match db.store.backend() {
        // The read, then the compare-and-set with its event and callback in one statement.
        Backend::Postgres => assert_eq!(own.len(), 2, "{:?}", first_words(&own)),
        // In process: the update, the event and the callback are three cheap calls.
        Backend::Sqlite => assert_eq!(own.len(), 4, "{:?}", first_words(&own)),
    }
    assert!(own[0].to_ascii_uppercase().starts_with("SELECT"), "{own:?}");
    // A batch that opens with rerunnable writes has its start as their checkpoint: no
    // savepoint (a round trip and a subtransaction on PostgreSQL).
    assert_eq!(framing.len(), 2, "BEGIN, COMMIT: {framing:?}");
    // Both rows were written with the transition.
    assert_eq!(rows_written(&db.store, &order.id).await, (1, 1));

    // A duplicate loses the compare-and-set and inserts nothing.
    let again = notify_once(&db.store, "order_0001").await;
    assert!(matches!(again, Transition::Lost(ref o) if o.status == OrderStatus::Paid));
    assert_eq!(rows_written(&db.store, &order.id).await, (1, 1));
}

async fn the_compare_and_set_is_prepared_once_and_reused_by_every_notify(db: TestDb) {
    // The writer connects on its first write; its connection's cache starts empty.
    pending_order(&db.store, "warm_up", 1).await;
    for n in 0..12 {
        pending_order(&db.store, &format!("order_{n:04}"), 100).await;
    }
    db.store.trace_statements();
    db.store.traced_statements();
    db.store.traced_prepared_statements();

    for n in 0..12 {
        let moved = notify_once(&db.store, &format!("order_{n:04}")).await;
        assert!(matches!(moved, Transition::Applied(_)), "{moved:?}");
    }

    let updates = |statements: &[String]| {
        statements
            .iter()
            .filter(|sql| sql.contains("UPDATE orders SET status"))
            .count()
    };
    assert_eq!(updates(&db.store.traced_statements()), 12);
    // Prepared into a writer connection's cache by the first notify that lane ran, found
    // there by the others: a statement whose text varied with its changes would never be
    // cached (0). SQLite has one writer lane; PostgreSQL four, an order's lane by its id.
    let lanes = match db.store.backend() {
        Backend::Sqlite => 1,
        Backend::Postgres => 4,
    };
    let prepared = updates(&db.store.traced_prepared_statements());
    assert!(
        (1..=lanes).contains(&prepared),
        "the compare-and-set is parsed once per connection: {prepared} for 12 notifies"
    );
}

async fn every_statement_of_a_notify_comes_from_the_statement_cache(db: TestDb) {
    for n in 0..3 {
        pending_order(&db.store, &format!("order_{n:04}"), 100).await;
    }
    db.store.trace_statements();
    notify_once(&db.store, "order_0000").await;
    notify_once(&db.store, "order_0001").await;
    let mut prepared = db.store.traced_prepared_statements();
    db.store.traced_statements();

    notify_once(&db.store, "order_0002").await;

    let (own, _) = split(db.store.traced_statements());
    prepared.extend(db.store.traced_prepared_statements());
    // A sent statement is logged with its binds; a prepared one without.
    let text = |sql: &String| {
        sql.split(" -- binds:")
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let parsed_every_time: Vec<String> = own
        .iter()
        .map(text)
        .filter(|sql| !prepared.contains(sql))
        .collect();
    assert!(
        parsed_every_time.is_empty(),
        "statements never cached, parsed again on every notify: {parsed_every_time:#?}"
    );
}

async fn a_locally_signed_create_is_one_statement_and_a_provider_create_two(db: TestDb) {
    // The writer connects on its first write; connecting is not the operation's cost.
    pending_order(&db.store, "warm_up", 1).await;
    db.store.trace_statements();
    db.store.traced_statements();

    let mut signed = new_order("order_0001", 100);
    signed.pay_params = Some(PayParams::AlipayOrderString {
        order_string: "app_id=1&sign=x".into(),
    });
    db.store.insert_order(signed).await.unwrap();
    let (own, _) = split(db.store.traced_statements());
    assert_eq!(own.len(), 1, "{:?}", first_words(&own));

    let order = db
        .store
        .insert_order(new_order("order_0002", 100))
        .await
        .unwrap();
    let params = PayParams::AlipayOrderString {
        order_string: "app_id=1&sign=y".into(),
    };
    let stored = db
        .store
        .set_pay_params(&order.id, &params, Some("2026000001".into()))
        .await
        .unwrap();
    assert_eq!(stored.pay_params, Some(params));
    let (own, _) = split(db.store.traced_statements());
    assert_eq!(
        own.len(),
        2,
        "insert, then update … returning: {:?}",
        first_words(&own)
    );
}

async fn a_failing_write_is_rolled_back_alone_and_its_batch_still_commits(db: TestDb) {
    // Many writes at once, so they share batches; every tenth one fails (its order is not
    // pending any more), which sends its batch back to the checkpoint once.
    let mut orders = Vec::new();
    for n in 0..60 {
        orders.push(pending_order(&db.store, &format!("order_{n:04}"), 100).await);
    }
    for order in orders.iter().step_by(10) {
        db.store
            .transition_order(
                &order.id,
                OrderStatus::Pending,
                OrderEvent::Closed,
                OrderChanges::default(),
                None,
            )
            .await
            .unwrap();
    }
    let params = PayParams::AlipayOrderString {
        order_string: "app_id=1&sign=z".into(),
    };
    let mut writes = tokio::task::JoinSet::new();
    for order in &orders {
        let (store, id, params) = (db.store.clone(), order.id.clone(), params.clone());
        writes.spawn(async move { (id.clone(), store.set_pay_params(&id, &params, None).await) });
    }
    let mut failed = 0;
    while let Some(joined) = writes.join_next().await {
        let (id, result) = joined.unwrap();
        let stored = db.store.order(&id).await.unwrap();
        match result {
            Ok(order) => {
                assert_eq!(order.pay_params, Some(params.clone()));
                assert_eq!(stored, order, "what was answered was committed");
            }
            Err(paygate_store::StoreError::StaleStatus { actual, .. }) => {
                failed += 1;
                assert_eq!(actual, OrderStatus::Closed);
                assert_eq!(stored.pay_params, None, "the failed write left nothing");
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(failed, 6);
}
