//! The reconciler's queue: which pending orders a pass picks, in what order, and which it
//! leaves out (orders of apps no longer configured, reported once).

use chrono::{DateTime, Duration, Utc};
use paygate_core::{Order, OrderId, ProviderKind};
use paygate_store::{AnomalyKind, DueQuery, NewAnomaly, QueryAgain, Store};

use crate::harness::{TestDb, app, at, new_order, on_both_backends};

on_both_backends!(
    a_pass_takes_half_by_fewest_queries_newest_first_and_the_rest_longest_overdue,
    orders_of_apps_no_longer_configured_are_left_out_and_reported_once,
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
    let shop = [(ProviderKind::Wechat, app("shop"))];
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
    let shop = [(ProviderKind::Wechat, app("shop"))];
    let kept = pending(s, "u_kept", "shop", minutes(1, 0)).await;
    let retired = pending(s, "u_retired", "retired", minutes(1, 0)).await;
    let mut alipay_shop = new_order("u_alipay_shop", 100);
    alipay_shop.provider = ProviderKind::Alipay;
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
