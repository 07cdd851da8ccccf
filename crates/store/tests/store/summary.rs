use chrono::{Duration, TimeZone, Utc};
use paygate_core::{OrderEvent, OrderStatus, OutRefundNo, ProviderKind, RefundStatus};
use paygate_store::{GroupBy, NewRefund, OrderChanges, ReportZone, Store, SummaryRow};

use crate::harness::{TestDb, app, at, fen, new_order, on_both_backends};

on_both_backends!(
    summaries_add_up_per_day_provider_app_and_status,
    summary_days_are_dates_in_the_report_zone
);

async fn order(
    store: &Store,
    number: &str,
    provider: ProviderKind,
    app_name: &str,
    amount: i64,
    paid_at: Option<chrono::DateTime<Utc>>,
) -> paygate_core::Order {
    let mut new = new_order(number, amount);
    new.provider = provider;
    new.app = app(app_name);
    let order = store.insert_order(new).await.unwrap();
    if let Some(paid_at) = paid_at {
        store
            .transition_order(
                &order.id,
                OrderStatus::Pending,
                OrderEvent::PaymentConfirmed,
                OrderChanges {
                    paid_at: Some(paid_at),
                    ..OrderChanges::default()
                },
                None,
            )
            .await
            .unwrap();
    }
    order
}

fn row(key: &str, orders: u64, paid: u64, amount: i64, refunded: i64) -> SummaryRow {
    SummaryRow {
        key: key.into(),
        order_count: orders,
        paid_count: paid,
        paid_amount: fen(amount),
        refunded_amount: fen(refunded),
        net_amount: fen(amount - refunded),
    }
}

async fn summaries_add_up_per_day_provider_app_and_status(db: TestDb) {
    let s = &db.store;
    let last_second_of_day_2 = Utc.with_ymd_and_hms(2026, 3, 2, 23, 59, 59).unwrap();
    let o1 = order(
        s,
        "order_0001",
        ProviderKind::WECHAT,
        "shop",
        1000,
        Some(at(2, 9)),
    )
    .await;
    order(
        s,
        "order_0002",
        ProviderKind::ALIPAY,
        "mall",
        500,
        Some(last_second_of_day_2),
    )
    .await;
    order(
        s,
        "order_0003",
        ProviderKind::WECHAT,
        "mall",
        200,
        Some(at(3, 0)),
    )
    .await;
    order(s, "order_0004", ProviderKind::WECHAT, "shop", 700, None).await;
    order(
        s,
        "order_0005",
        ProviderKind::WECHAT,
        "shop",
        400,
        Some(at(6, 0)),
    )
    .await;
    let refund = s
        .create_refund(NewRefund {
            order_id: o1.id.clone(),
            out_refund_no: OutRefundNo::parse("refund_01").unwrap(),
            amount: fen(300),
            reason: None,
            created_at: at(4, 0),
        })
        .await
        .unwrap();
    s.complete_refund(&refund.id, RefundStatus::Succeeded, None, at(4, 1), None)
        .await
        .unwrap();
    let (from, to) = (at(1, 0), at(5, 0));

    assert_eq!(
        s.summary(from, to, GroupBy::Day).await.unwrap(),
        vec![
            row("2026-03-02", 2, 2, 1500, 300),
            row("2026-03-03", 1, 1, 200, 0)
        ]
    );
    assert_eq!(
        s.summary(from, to, GroupBy::Provider).await.unwrap(),
        vec![row("alipay", 1, 1, 500, 0), row("wechat", 2, 2, 1200, 300)]
    );
    assert_eq!(
        s.summary(from, to, GroupBy::App).await.unwrap(),
        vec![row("mall", 2, 2, 700, 0), row("shop", 1, 1, 1000, 300)]
    );
    // By status: every order CREATED in the range (all five were created on day 1).
    assert_eq!(
        s.summary(from, to, GroupBy::Status).await.unwrap(),
        vec![
            row("paid", 3, 3, 1100, 0),
            row("partially_refunded", 1, 1, 1000, 300),
            row("pending", 1, 0, 0, 0),
        ]
    );
    assert!(
        s.summary(at(7, 0), at(8, 0) + Duration::hours(1), GroupBy::Day)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn summary_days_are_dates_in_the_report_zone(db: TestDb) {
    let s = &db.store;
    let beijing_morning = Utc.with_ymd_and_hms(2026, 3, 1, 23, 7, 0).unwrap();
    order(
        s,
        "zone_0001",
        ProviderKind::WECHAT,
        "shop",
        100,
        Some(beijing_morning),
    )
    .await;
    order(
        s,
        "zone_0002",
        ProviderKind::WECHAT,
        "shop",
        20,
        Some(at(2, 4)),
    )
    .await;
    order(
        s,
        "zone_0003",
        ProviderKind::ALIPAY,
        "shop",
        3,
        Some(at(2, 20)),
    )
    .await;
    let (from, to) = (at(1, 0), at(4, 0));
    let days = |zone: ReportZone| async move {
        s.summary_in(from, to, GroupBy::Day, zone)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.key, r.paid_amount.get()))
            .collect::<Vec<_>>()
    };
    let day = |key: &str, fen: i64| (key.to_owned(), fen);
    assert_eq!(
        days(ReportZone::Shanghai).await,
        vec![day("2026-03-02", 120), day("2026-03-03", 3)]
    );
    assert_eq!(
        days(ReportZone::Utc).await,
        vec![day("2026-03-01", 100), day("2026-03-02", 23)]
    );
    assert_eq!(
        days(ReportZone::Utc).await.len(),
        s.summary(from, to, GroupBy::Day).await.unwrap().len()
    );
    let new_york_winter = ReportZone::parse("-05:00").unwrap();
    assert_eq!(
        days(new_york_winter).await,
        vec![day("2026-03-01", 120), day("2026-03-02", 3)]
    );
    // The zone moves days only: the other groupings are the same in every zone.
    assert_eq!(
        s.summary_in(from, to, GroupBy::Provider, ReportZone::Shanghai)
            .await
            .unwrap(),
        s.summary(from, to, GroupBy::Provider).await.unwrap()
    );
}
