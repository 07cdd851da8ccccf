//! The reconciler's queue: which pending orders a pass picks, in what order, and which it
//! leaves out (orders of apps no longer configured, reported once).

use chrono::{DateTime, Duration, Utc};
use paygate_core::{Order, OrderEvent, OrderId, OrderStatus, ProviderKind};
use paygate_store::{AnomalyKind, DueQuery, NewAnomaly, OrderChanges, QueryAgain, Store};

use crate::harness::{TestDb, app, at, new_order, on_both_backends};

on_both_backends!(
    a_pass_takes_half_by_fewest_queries_newest_first_and_the_rest_longest_overdue,
    orders_of_apps_no_longer_configured_are_left_out_and_reported_once,
    only_orders_closed_with_a_next_query_are_watched_and_only_until_they_expire,
);

async fn pending(s: &Store, out_trade_no: &str, app_name: &str, created: DateTime<Utc>) -> Order {
    let mut new = new_order(out_trade_no, 100);
    new.app = app(app_name);
    new.created_at = created;
    new.expires_at = at(2, 0);
    s.insert_order(new).await.unwrap()
}

fn minutes(hour: u32, minute: i64) -> DateTime<Utc> {
    at(1, hour) + Duration::minutes(minute)
}

fn picked(due: &[DueQuery]) -> Vec<(OrderId, u32)> {
    due.iter()
        .map(|d| (d.order.id.clone(), d.attempts))
        .collect()
}

async fn a_pass_takes_half_by_fewest_queries_newest_first_and_the_rest_longest_overdue(db: TestDb) {
    let s = &db.store;
    let shop = [(ProviderKind::WECHAT, app("shop"))];
    let oldest = pending(s, "q_oldest", "shop", minutes(1, 0)).await;
    let requeried = pending(s, "q_requeried", "shop", minutes(2, 0)).await;
    let older = pending(s, "q_older", "shop", minutes(4, 0)).await;
    let backed_off = pending(s, "q_backed_off", "shop", minutes(5, 0)).await;
    let newest = pending(s, "q_newest", "shop", minutes(9, 0)).await;
    let too_young = pending(s, "q_too_young", "shop", minutes(9, 50)).await;
    let other_app = pending(s, "q_other_app", "retired", minutes(0, 30)).await;
    s.reschedule_queries(vec![
        QueryAgain {
            order: requeried.id.clone(),
            attempts: 3,
            at: minutes(3, 0),
        },
        QueryAgain {
            order: backed_off.id.clone(),
            attempts: 1,
            at: minutes(20, 0),
        },
    ])
    .await
    .unwrap();
    let (first_query_before, now) = (minutes(9, 45), minutes(10, 0));

    let due = s
        .pending_orders_due(&shop, first_query_before, now, 4)
        .await
        .unwrap();
    assert_eq!(
        picked(&due),
        [
            // Half the batch: never queried, newest due first.
            (newest.id.clone(), 0),
            (older.id.clone(), 0),
            // The rest: longest overdue first, whatever the attempts.
            (oldest.id.clone(), 0),
            (requeried.id.clone(), 3),
        ],
        "backed off until 20:00, created after the first-query cut-off, or of another app: \
         not picked"
    );
    let all = s
        .pending_orders_due(&shop, first_query_before, now, 100)
        .await
        .unwrap();
    assert_eq!(all.len(), 4, "{:?}", picked(&all));
    for left_out in [&backed_off.id, &too_young.id, &other_app.id] {
        assert!(all.iter().all(|d| &d.order.id != left_out));
    }
    // A batch of one has no priority half: the longest overdue goes first.
    let one = s
        .pending_orders_due(&shop, first_query_before, now, 1)
        .await
        .unwrap();
    assert_eq!(picked(&one), [(oldest.id.clone(), 0)]);

    // Queried and found unpaid, it moves behind until its time.
    s.reschedule_queries(vec![QueryAgain {
        order: oldest.id.clone(),
        attempts: 1,
        at: minutes(11, 0),
    }])
    .await
    .unwrap();
    let due = s
        .pending_orders_due(&shop, first_query_before, now, 100)
        .await
        .unwrap();
    assert!(due.iter().all(|d| d.order.id != oldest.id));
    let later = s
        .pending_orders_due(&shop, first_query_before, minutes(11, 0), 100)
        .await
        .unwrap();
    let oldest_again = later.iter().find(|d| d.order.id == oldest.id).unwrap();
    assert_eq!(oldest_again.attempts, 1);
    assert!(!later.iter().any(|d| d.order.id == backed_off.id));
}

async fn orders_of_apps_no_longer_configured_are_left_out_and_reported_once(db: TestDb) {
    let s = &db.store;
    let shop = [(ProviderKind::WECHAT, app("shop"))];
    let kept = pending(s, "u_kept", "shop", minutes(1, 0)).await;
    let retired = pending(s, "u_retired", "retired", minutes(1, 0)).await;
    let mut alipay_shop = new_order("u_alipay_shop", 100);
    alipay_shop.provider = ProviderKind::ALIPAY;
    alipay_shop.created_at = minutes(1, 0);
    alipay_shop.expires_at = minutes(2, 0);
    let alipay_shop = s.insert_order(alipay_shop).await.unwrap();

    let expired = s.expired_pending_orders(&shop, at(2, 1), 10).await.unwrap();
    assert_eq!(
        expired.iter().map(|o| &o.id).collect::<Vec<_>>(),
        [&kept.id],
        "another app, or the same name at the other provider: not the reconciler's to close"
    );
    let none = s.expired_pending_orders(&[], at(2, 1), 10).await.unwrap();
    assert!(none.is_empty(), "no apps configured, nothing picked");

    let unreported = s
        .unconfigured_pending_orders_unreported(&shop, AnomalyKind::AppUnconfigured, 10)
        .await
        .unwrap();
    let ids: Vec<&OrderId> = unreported.iter().map(|o| &o.id).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&&retired.id) && ids.contains(&&alipay_shop.id));

    // An anomaly of another kind does not count as the report.
    for (order, kind) in [
        (&retired, AnomalyKind::AppUnconfigured),
        (&alipay_shop, AnomalyKind::StateDisagreement),
    ] {
        s.record_anomaly(NewAnomaly {
            order_id: Some(order.id.clone()),
            provider: order.provider,
            app: order.app.to_string(),
            kind,
            detail: "test".into(),
            callback_id: None,
            created_at: Utc::now(),
        })
        .await
        .unwrap();
    }
    let unreported = s
        .unconfigured_pending_orders_unreported(&shop, AnomalyKind::AppUnconfigured, 10)
        .await
        .unwrap();
    assert_eq!(
        unreported.iter().map(|o| &o.id).collect::<Vec<_>>(),
        [&alipay_shop.id]
    );
}

/// An Alipay order of `shop` created at 01:00, expiring at 03:00.
async fn alipay_order(s: &Store, out_trade_no: &str) -> Order {
    let mut new = new_order(out_trade_no, 100);
    (new.provider, new.app) = (ProviderKind::ALIPAY, app("shop"));
    (new.created_at, new.expires_at) = (at(1, 1), at(1, 3));
    s.insert_order(new).await.unwrap()
}

async fn close(s: &Store, order: &Order, query_again_at: Option<DateTime<Utc>>) {
    let changes = OrderChanges {
        closed_at: Some(minutes(1, 30)),
        query_again_at,
        ..OrderChanges::default()
    };
    s.transition_order(
        &order.id,
        OrderStatus::Pending,
        OrderEvent::Closed,
        changes,
        None,
    )
    .await
    .unwrap();
}

async fn only_orders_closed_with_a_next_query_are_watched_and_only_until_they_expire(db: TestDb) {
    let s = &db.store;
    let shop = [(ProviderKind::ALIPAY, app("shop"))];
    let watched = alipay_order(s, "w_watched").await;
    let final_close = alipay_order(s, "w_final").await;
    alipay_order(s, "w_pending").await;
    close(s, &watched, Some(minutes(1, 30))).await;
    close(s, &final_close, None).await;

    let ids = |due: Vec<DueQuery>| picked(&due);
    let due = s
        .closed_orders_to_watch(&shop, minutes(1, 40), minutes(1, 40), 10)
        .await
        .unwrap();
    assert_eq!(
        ids(due),
        [(watched.id.clone(), 0)],
        "only the watched close"
    );
    let not_yet = s
        .closed_orders_to_watch(&shop, minutes(1, 20), minutes(1, 20), 10)
        .await
        .unwrap();
    assert!(not_yet.is_empty(), "not before its next query");

    // A query found it unpaid: it backs off like a pending order.
    s.reschedule_queries(vec![QueryAgain {
        order: watched.id.clone(),
        attempts: 1,
        at: minutes(1, 50),
    }])
    .await
    .unwrap();
    let backed_off = s
        .closed_orders_to_watch(&shop, minutes(1, 45), minutes(1, 45), 10)
        .await
        .unwrap();
    assert!(backed_off.is_empty());
    let again = s
        .closed_orders_to_watch(&shop, minutes(1, 55), minutes(1, 55), 10)
        .await
        .unwrap();
    assert_eq!(ids(again), [(watched.id.clone(), 1)]);

    // Once it has expired (03:00) nobody can pay it: watched no more.
    let expired = s
        .closed_orders_to_watch(&shop, at(1, 3), at(1, 4), 10)
        .await
        .unwrap();
    assert!(expired.is_empty(), "{expired:?}");
    // A close with no next query is not rescheduled into the watch by a stray reschedule.
    s.reschedule_queries(vec![QueryAgain {
        order: final_close.id.clone(),
        attempts: 1,
        at: minutes(1, 0),
    }])
    .await
    .unwrap();
    let due = s
        .closed_orders_to_watch(&shop, minutes(1, 55), minutes(1, 55), 10)
        .await
        .unwrap();
    assert_eq!(ids(due), [(watched.id.clone(), 1)]);
}
