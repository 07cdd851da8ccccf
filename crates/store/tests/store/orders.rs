use std::collections::HashSet;

use diesel::{Connection, PgConnection, RunQueryDsl, SqliteConnection};
use paygate_core::{
    Channel, OrderEvent, OrderId, OrderStatus, OutTradeNo, PayParams, ProviderKind,
};
use paygate_store::{Backend, DbConnection, OrderChanges, OrderFilter, StoreError};

use crate::harness::{TestDb, app, at, fen, new_order, on_both_backends, pending_order};

on_both_backends!(
    an_inserted_order_reads_back_identically_by_id_and_by_number,
    a_duplicate_number_fails_with_the_existing_row,
    racing_inserts_of_one_number_leave_one_order,
    an_unknown_order_is_not_found,
    each_list_filter_selects_exactly_its_orders,
    pages_cover_every_order_once_newest_first,
    pay_params_are_kept_while_pending_and_refused_after,
    a_row_with_an_unknown_status_is_reported_as_corrupt,
);

async fn an_inserted_order_reads_back_identically_by_id_and_by_number(db: TestDb) {
    let request = new_order("order_0001", 1999);
    let order = db.store.insert_order(request.clone()).await.unwrap();

    assert!(order.id.as_str().starts_with("ord_"));
    assert_eq!(order.status, OrderStatus::Pending);
    assert_eq!(order.amount, fen(1999));
    assert_eq!(order.refunded_amount, fen(0));
    assert_eq!(order.version, 0);
    assert_eq!(order.created_at, request.created_at, "microseconds survive");
    assert_eq!(order.metadata.as_deref(), Some(r#"{"cart":42}"#));
    assert_eq!(order.pay_params, None);
    assert_eq!(db.store.order(&order.id).await.unwrap(), order);
    assert_eq!(
        db.store
            .order_by_out_trade_no(&app("shop"), &request.out_trade_no)
            .await
            .unwrap(),
        order
    );
}

async fn a_duplicate_number_fails_with_the_existing_row(db: TestDb) {
    let first = pending_order(&db.store, "order_0001", 100).await;
    let mut again = new_order("order_0001", 555);
    again.request_hash = "another request".into();

    let err = db.store.insert_order(again).await.unwrap_err();

    match err {
        StoreError::DuplicateOrder {
            existing,
            request_hash,
        } => {
            assert_eq!(*existing, first);
            assert_eq!(request_hash, "hash-of-order_0001");
        }
        other => panic!("expected DuplicateOrder, got {other:?}"),
    }
    let mut other_app = new_order("order_0001", 100);
    other_app.app = app("other-app");
    assert!(
        db.store.insert_order(other_app).await.is_ok(),
        "numbers are unique per app only"
    );
}

async fn racing_inserts_of_one_number_leave_one_order(db: TestDb) {
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = db.store.clone();
            tokio::spawn(async move { store.insert_order(new_order("order_race", 100)).await })
        })
        .collect();
    let mut winners = Vec::new();
    let mut existing_ids = HashSet::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(order) => winners.push(order.id),
            Err(StoreError::DuplicateOrder { existing, .. }) => {
                existing_ids.insert(existing.id);
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1);
    assert!(existing_ids.iter().all(|id| *id == winners[0]));
}

async fn an_unknown_order_is_not_found(db: TestDb) {
    let err = db.store.order(&OrderId::generate()).await.unwrap_err();
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
    let err = db
        .store
        .order_by_out_trade_no(&app("shop"), &OutTradeNo::parse("nothing_here").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
}

async fn each_list_filter_selects_exactly_its_orders(db: TestDb) {
    let s = &db.store;
    // a: wechat/shop/jsapi 100, created day 1, paid day 2
    let a = pending_order(s, "alpha_0001", 100).await;
    s.transition_order(
        &a.id,
        OrderStatus::Pending,
        OrderEvent::PaymentConfirmed,
        OrderChanges {
            paid_at: Some(at(2, 9)),
            ..OrderChanges::default()
        },
        None,
    )
    .await
    .unwrap();
    // b: alipay/mall/app 250, created day 3, pending
    let mut b_new = new_order("alpha_0002", 250);
    b_new.provider = ProviderKind::ALIPAY;
    b_new.app = app("mall");
    b_new.channel = Channel::App;
    b_new.created_at = at(3, 9);
    let b = s.insert_order(b_new).await.unwrap();
    // c: wechat/shop/native 999, created day 5, closed
    let mut c_new = new_order("beta_0003", 999);
    c_new.channel = Channel::Native;
    c_new.created_at = at(5, 9);
    let c = s.insert_order(c_new).await.unwrap();
    s.transition_order(
        &c.id,
        OrderStatus::Pending,
        OrderEvent::Closed,
        OrderChanges::default(),
        None,
    )
    .await
    .unwrap();

    let ids = |filter: OrderFilter| async move {
        let page = s.list_orders(&filter, 100, None).await.unwrap();
        let mut ids: Vec<OrderId> = page.items.into_iter().map(|o| o.id).collect();
        ids.sort();
        ids
    };
    let sorted = |mut v: Vec<&OrderId>| {
        v.sort();
        v.into_iter().cloned().collect::<Vec<_>>()
    };

    assert_eq!(
        ids(OrderFilter::default()).await,
        sorted(vec![&a.id, &b.id, &c.id])
    );
    let statuses = OrderFilter {
        statuses: vec![OrderStatus::Paid, OrderStatus::Closed],
        ..OrderFilter::default()
    };
    assert_eq!(ids(statuses).await, sorted(vec![&a.id, &c.id]));
    let provider = OrderFilter {
        provider: Some(ProviderKind::ALIPAY),
        ..OrderFilter::default()
    };
    assert_eq!(ids(provider).await, vec![b.id.clone()]);
    let apps = OrderFilter {
        apps: vec![app("shop")],
        ..OrderFilter::default()
    };
    assert_eq!(ids(apps).await, sorted(vec![&a.id, &c.id]));
    let channel = OrderFilter {
        channel: Some(Channel::Native),
        ..OrderFilter::default()
    };
    assert_eq!(ids(channel).await, vec![c.id.clone()]);
    let created = OrderFilter {
        created_from: Some(at(3, 0)),
        created_to: Some(at(5, 9)),
        ..OrderFilter::default()
    };
    assert_eq!(
        ids(created).await,
        vec![b.id.clone()],
        "the upper bound is exclusive"
    );
    let paid = OrderFilter {
        paid_from: Some(at(2, 0)),
        paid_to: Some(at(3, 0)),
        ..OrderFilter::default()
    };
    assert_eq!(ids(paid).await, vec![a.id.clone()]);
    let amount = OrderFilter {
        amount_min: Some(fen(100)),
        amount_max: Some(fen(250)),
        ..OrderFilter::default()
    };
    assert_eq!(
        ids(amount).await,
        sorted(vec![&a.id, &b.id]),
        "both bounds inclusive"
    );
    let prefix = OrderFilter {
        out_trade_no_prefix: Some("alpha_".into()),
        ..OrderFilter::default()
    };
    assert_eq!(ids(prefix).await, sorted(vec![&a.id, &b.id]));
    let case = OrderFilter {
        out_trade_no_prefix: Some("ALPHA".into()),
        ..OrderFilter::default()
    };
    assert_eq!(
        ids(case).await,
        Vec::<OrderId>::new(),
        "prefixes are case-sensitive"
    );
    let combined = OrderFilter {
        apps: vec![app("shop")],
        statuses: vec![OrderStatus::Pending],
        ..OrderFilter::default()
    };
    assert_eq!(ids(combined).await, Vec::<OrderId>::new());
}

async fn pages_cover_every_order_once_newest_first(db: TestDb) {
    let mut inserted = Vec::new();
    for i in 0..25 {
        let order = db
            .store
            .insert_order(new_order(&format!("page_{i:04}"), 100 + i))
            .await
            .unwrap();
        inserted.push(order.id);
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = db
            .store
            .list_orders(&OrderFilter::default(), 7, cursor.as_ref())
            .await
            .unwrap();
        pages += 1;
        assert!(page.items.len() <= 7);
        seen.extend(page.items.into_iter().map(|o| o.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 4, "25 orders in pages of 7");
    let mut expected = inserted.clone();
    expected.sort();
    expected.reverse();
    assert_eq!(
        seen, expected,
        "every order once, newest (largest ULID) first"
    );
}

async fn pay_params_are_kept_while_pending_and_refused_after(db: TestDb) {
    let order = pending_order(&db.store, "order_0001", 100).await;
    let params = PayParams::CodeUrl {
        code_url: "weixin://wxpay/bizpayurl?pr=abc".into(),
    };
    let updated = db
        .store
        .set_pay_params(&order.id, &params, Some("4200000001".into()))
        .await
        .unwrap();
    assert_eq!(updated.pay_params, Some(params.clone()));
    assert_eq!(updated.provider_trade_no.as_deref(), Some("4200000001"));
    assert_eq!(db.store.order(&order.id).await.unwrap(), updated);

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
    let err = db
        .store
        .set_pay_params(&order.id, &params, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::StaleStatus {
                expected: OrderStatus::Pending,
                actual: OrderStatus::Closed
            }
        ),
        "{err:?}"
    );
}

async fn a_row_with_an_unknown_status_is_reported_as_corrupt(db: TestDb) {
    let order = pending_order(&db.store, "order_0001", 100).await;
    let sql = format!(
        "UPDATE orders SET status = 'teleported' WHERE id = '{}'",
        order.id
    );
    let mut raw = match db.store.backend() {
        Backend::Postgres => DbConnection::Pg(PgConnection::establish(&db.url).unwrap()),
        Backend::Sqlite => DbConnection::Sqlite(
            SqliteConnection::establish(db.url.trim_start_matches("sqlite://")).unwrap(),
        ),
    };
    if let DbConnection::Sqlite(sqlite) = &mut raw {
        // Waits its turn, as the store's own connections do (its checkpointer may be at work).
        diesel::connection::SimpleConnection::batch_execute(sqlite, "PRAGMA busy_timeout = 10000")
            .unwrap();
    }
    diesel::sql_query(sql).execute(&mut raw).unwrap();

    let err = db.store.order(&order.id).await.unwrap_err();

    match err {
        StoreError::Corrupt { table, id, reason } => {
            assert_eq!(table, "orders");
            assert_eq!(id, order.id.as_str());
            assert!(reason.contains("teleported"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let listed = db
        .store
        .list_orders(&OrderFilter::default(), 10, None)
        .await;
    assert!(matches!(listed, Err(StoreError::Corrupt { .. })));
}
