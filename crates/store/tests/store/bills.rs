//! Statement reconciliation's tables: raw bill files kept with their SHA-256, one run per day
//! that a rerun replaces (never appends), differences with both sides and a resolution.

use chrono::{NaiveDate, TimeDelta};
use paygate_core::bill::parse_beijing_time;
use paygate_core::{
    BillLine, BillLineKind, OrderEvent, OrderStatus, OutRefundNo, OutTradeNo, ProviderKind,
    RefundStatus,
};
use paygate_reconciliation::{Category, Ledger, LedgerPayment, MatchOptions, Matcher, Report};
use paygate_store::{
    BillDayKey, NewBillFile, NewOrder, NewReconciliationRun, NewRefund, OrderChanges, Resolution,
    RunOutcome, RunStatus, StoreError, Transition,
};

use crate::harness::{TestDb, app, at, fen, new_order, on_both_backends};

on_both_backends!(
    a_bill_file_is_kept_byte_for_byte_with_its_sha256_and_stored_once,
    a_rerun_replaces_the_days_run_and_its_differences,
    a_failed_run_is_stored_with_its_reason_and_no_differences,
    the_ledger_holds_the_days_payments_and_refunds_and_what_the_bill_names,
    settling_held_differences_changes_them_once_with_the_runs_counts_and_status,
    a_bill_file_of_megabytes_comes_back_byte_for_byte,
);

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 1, 15).unwrap()
}

fn key(provider: ProviderKind) -> BillDayKey {
    BillDayKey {
        app: app("shop"),
        provider,
        bill_day: day(),
    }
}

async fn a_bill_file_is_kept_byte_for_byte_with_its_sha256_and_stored_once(db: TestDb) {
    let s = &db.store;
    // Bytes that are not text (a gzip header and a NUL) must come back unchanged.
    let body = b"\x1f\x8b\x08\x00\x00binary".to_vec();
    let new = NewBillFile {
        app: app("shop"),
        provider: ProviderKind::WECHAT,
        bill_day: day(),
        body: body.clone(),
        fetched_at: at(1, 10),
    };
    let first = s.insert_bill_file(new.clone()).await.unwrap();
    // sha256 of those bytes, computed independently (Python hashlib).
    assert_eq!(
        first.sha256,
        "310e5a160534e9fd7d4761c1da9686c5fa10ed77fc20246cb912fa562e91b854"
    );
    assert_eq!(first.size_bytes, body.len() as u64);
    assert_eq!(s.bill_file_body(&first.id).await.unwrap(), body);

    let again = s
        .insert_bill_file(NewBillFile {
            fetched_at: at(1, 11),
            ..new.clone()
        })
        .await
        .unwrap();
    assert_eq!(
        again, first,
        "the same bytes for the same day are stored once"
    );

    let other = s
        .insert_bill_file(NewBillFile {
            body: b"another fetch".to_vec(),
            ..new
        })
        .await
        .unwrap();
    let kept = s.bill_files(&key(ProviderKind::WECHAT)).await.unwrap();
    assert_eq!(kept, [first, other]);
    assert!(
        s.bill_files(&key(ProviderKind::ALIPAY))
            .await
            .unwrap()
            .is_empty()
    );
}

/// A report of one day: A matched, B amount mismatch, C missing locally, D missing in the bill
/// near midnight (held).
fn report(b_local_fen: i64) -> Report {
    let paid = |no: &str, amount: i64, when: &str| LedgerPayment {
        out_trade_no: no.to_owned(),
        provider_trade_no: None,
        amount: fen(amount),
        status: OrderStatus::Paid,
        paid_at: Some(parse_beijing_time(when).unwrap()),
    };
    let ledger = Ledger {
        payments: vec![
            paid("A", 100, "2024-01-15 10:00:00"),
            paid("B", b_local_fen, "2024-01-15 11:00:00"),
            paid("D", 300, "2024-01-15 23:59:59"),
        ],
        refunds: vec![],
    };
    let mut matcher = Matcher::new(day(), ledger, MatchOptions::default());
    for (no, amount, when) in [
        ("A", 100, "2024-01-15 10:00:00"),
        ("B", 200, "2024-01-15 11:00:00"),
        ("C", 50, "2024-01-15 12:00:00"),
    ] {
        matcher.push(&BillLine {
            kind: BillLineKind::Payment,
            occurred_at: parse_beijing_time(when).unwrap(),
            provider_trade_no: "4200000000000000000000000001",
            out_trade_no: no,
            provider_refund_no: None,
            out_refund_no: None,
            amount: fen(amount),
            settlement: fen(amount),
            fee_fen: 1,
            status: "SUCCESS",
        });
    }
    matcher.finish().unwrap()
}

async fn a_rerun_replaces_the_days_run_and_its_differences(db: TestDb) {
    let s = &db.store;
    let shop = app("shop");
    let new_run = |report: Report, finished| NewReconciliationRun {
        app: shop.clone(),
        provider: ProviderKind::WECHAT,
        bill_day: day(),
        bill_file_id: None,
        outcome: RunOutcome::Reconciled(Box::new(report)),
        finished_at: finished,
    };
    let first = s
        .replace_reconciliation_run(new_run(report(250), at(1, 10)))
        .await
        .unwrap();
    assert_eq!(first.status, RunStatus::Differences);
    assert_eq!(first.differences_count, 3);
    assert_eq!(first.held_count, 1);
    assert_eq!(first.totals.bill_payments_count, 3);
    assert_eq!(first.totals.bill_gross, fen(350));
    assert_eq!(first.totals.bill_fees_fen, 3);
    assert_eq!(first.totals.bill_net_fen(), 347);
    assert_eq!(first.totals.local_payments_count, 3);
    assert_eq!(first.totals.local_gross, fen(650));

    let differences = s.reconciliation_differences(&first.id, None).await.unwrap();
    type Seen<'a> = (&'a str, Category, Option<i64>, Option<i64>, bool);
    let summary: Vec<Seen<'_>> = differences
        .iter()
        .map(|d| {
            (
                d.out_trade_no.as_str(),
                d.category,
                d.bill_amount.map(|f| f.get()),
                d.local_amount.map(|f| f.get()),
                d.held,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("B", Category::AmountMismatch, Some(200), Some(250), false),
            ("C", Category::MissingLocal, Some(50), None, false),
            ("D", Category::MissingInBill, None, Some(300), true),
        ]
    );
    let b = &differences[0];
    assert_eq!(b.local_status.as_deref(), Some("paid"));
    assert_eq!(b.bill_status.as_deref(), Some("SUCCESS"));
    assert_eq!(
        b.bill_time,
        Some(parse_beijing_time("2024-01-15 11:00:00").unwrap())
    );
    let only_missing = s
        .reconciliation_differences(&first.id, Some(Category::MissingLocal))
        .await
        .unwrap();
    assert_eq!(only_missing.len(), 1);

    let resolution = Resolution {
        note: "order from the old shop system".to_owned(),
        by: "finance@shop".to_owned(),
        at: at(1, 12),
    };
    let resolved = s
        .resolve_difference(&only_missing[0].id, resolution.clone())
        .await
        .unwrap();
    assert_eq!(resolved.resolution, Some(resolution));
    let empty = Resolution {
        note: " ".to_owned(),
        by: "finance@shop".to_owned(),
        at: at(1, 12),
    };
    assert!(matches!(
        s.resolve_difference(&only_missing[0].id, empty).await,
        Err(StoreError::Invalid(_))
    ));

    // The rerun (B fixed locally) replaces the day: one run, its own differences only.
    let second = s
        .replace_reconciliation_run(new_run(report(200), at(1, 10) + TimeDelta::hours(1)))
        .await
        .unwrap();
    assert_ne!(second.id, first.id);
    assert_eq!(second.differences_count, 2);
    let runs = s
        .reconciliation_runs(Some(&shop), day(), day())
        .await
        .unwrap();
    assert_eq!(runs, std::slice::from_ref(&second));
    assert_eq!(
        s.reconciliation_run(&key(ProviderKind::WECHAT))
            .await
            .unwrap(),
        Some(second.clone())
    );
    assert!(
        s.reconciliation_differences(&first.id, None)
            .await
            .unwrap()
            .is_empty()
    );
    let categories: Vec<Category> = s
        .reconciliation_differences(&second.id, None)
        .await
        .unwrap()
        .iter()
        .map(|d| d.category)
        .collect();
    assert_eq!(
        categories,
        [Category::MissingLocal, Category::MissingInBill]
    );
}

async fn a_failed_run_is_stored_with_its_reason_and_no_differences(db: TestDb) {
    let s = &db.store;
    let run = s
        .replace_reconciliation_run(NewReconciliationRun {
            app: app("shop"),
            provider: ProviderKind::ALIPAY,
            bill_day: day(),
            bill_file_id: None,
            outcome: RunOutcome::Failed(
                "#交易合计 笔数 is 6 but the detail rows add up to 5".to_owned(),
            ),
            finished_at: at(1, 10),
        })
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.differences_count, 0);
    assert!(run.failure_reason.unwrap().contains("#交易合计"));
    let listed = s.reconciliation_runs(None, day(), day()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].provider, ProviderKind::ALIPAY);
}

/// Stores an order of `app_name` / `provider`, paid at Beijing time `paid` when given.
async fn order_paid_at(
    db: &TestDb,
    app_name: &str,
    provider: ProviderKind,
    no: &str,
    paid: Option<&str>,
) -> paygate_core::Order {
    let order = db
        .store
        .insert_order(NewOrder {
            app: app(app_name),
            provider,
            out_trade_no: OutTradeNo::parse(no).unwrap(),
            ..new_order(no, 1000)
        })
        .await
        .unwrap();
    let Some(paid) = paid else {
        return order;
    };
    let changes = OrderChanges {
        paid_at: Some(parse_beijing_time(paid).unwrap()),
        ..OrderChanges::default()
    };
    match db
        .store
        .transition_order(
            &order.id,
            OrderStatus::Pending,
            OrderEvent::PaymentConfirmed,
            changes,
            None,
        )
        .await
        .unwrap()
    {
        Transition::Applied(order) => order,
        lost => panic!("{lost:?}"),
    }
}

async fn the_ledger_holds_the_days_payments_and_refunds_and_what_the_bill_names(db: TestDb) {
    let wx = ProviderKind::WECHAT;
    // Paid on the 15th (Beijing), the first one seven seconds after midnight.
    let early = order_paid_at(&db, "shop", wx, "L_early", Some("2024-01-15 00:00:07")).await;
    order_paid_at(&db, "shop", wx, "L_noon", Some("2024-01-15 12:00:00")).await;
    // Paid on the 14th and the 16th: only in the ledger when the bill names them.
    order_paid_at(&db, "shop", wx, "L_before", Some("2024-01-14 23:59:59")).await;
    order_paid_at(&db, "shop", wx, "L_after", Some("2024-01-16 00:00:00")).await;
    // Pending: only when named (a lost notify).
    order_paid_at(&db, "shop", wx, "L_pending", None).await;
    // Another app on the same merchant account (its bill is the same bill): included.
    order_paid_at(&db, "shop_v3", wx, "L_v3_app", Some("2024-01-15 13:00:00")).await;
    // Another merchant's app, another provider: never.
    order_paid_at(&db, "other", wx, "L_other_app", Some("2024-01-15 12:00:00")).await;
    order_paid_at(
        &db,
        "ali",
        ProviderKind::ALIPAY,
        "L_ali",
        Some("2024-01-15 12:00:00"),
    )
    .await;

    let refund = |no: &str, when: &str| NewRefund {
        order_id: early.id.clone(),
        out_refund_no: OutRefundNo::parse(no).unwrap(),
        amount: fen(100),
        reason: None,
        created_at: parse_beijing_time(when).unwrap(),
    };
    for (no, when) in [
        ("RF_day_1", "2024-01-15 15:00:00"),
        ("RF_next_1", "2024-01-16 00:00:01"),
        ("RF_named_1", "2024-01-14 23:59:58"),
    ] {
        db.store.create_refund(refund(no, when)).await.unwrap();
    }

    let ledger = db
        .store
        .bill_day_ledger(
            &key(wx),
            &[app("shop"), app("shop_v3")],
            vec![
                "L_before".into(),
                "L_pending".into(),
                "L_noon".into(),
                "L_nowhere".into(),
            ],
            vec!["RF_named_1".into(), "RF_day_1".into()],
        )
        .await
        .unwrap();
    let mut payments: Vec<(&str, OrderStatus)> = ledger
        .payments
        .iter()
        .map(|p| (p.out_trade_no.as_str(), p.status))
        .collect();
    payments.sort_by_key(|(no, _)| *no);
    assert_eq!(
        payments,
        [
            ("L_before", OrderStatus::Paid),
            ("L_early", OrderStatus::Paid),
            ("L_noon", OrderStatus::Paid),
            ("L_pending", OrderStatus::Pending),
            ("L_v3_app", OrderStatus::Paid),
        ]
    );
    let early_paid = ledger
        .payments
        .iter()
        .find(|p| p.out_trade_no == "L_early")
        .unwrap();
    assert_eq!(
        early_paid.paid_at,
        Some(parse_beijing_time("2024-01-15 00:00:07").unwrap())
    );
    let mut refunds: Vec<(&str, &str, RefundStatus)> = ledger
        .refunds
        .iter()
        .map(|r| (r.out_refund_no.as_str(), r.out_trade_no.as_str(), r.status))
        .collect();
    refunds.sort_by_key(|(no, _, _)| *no);
    assert_eq!(
        refunds,
        [
            ("RF_day_1", "L_early", RefundStatus::Processing),
            ("RF_named_1", "L_early", RefundStatus::Processing),
        ]
    );
}

async fn settling_held_differences_changes_them_once_with_the_runs_counts_and_status(db: TestDb) {
    let s = &db.store;
    let near = |no: &str, at: &str| LedgerPayment {
        out_trade_no: no.to_owned(),
        provider_trade_no: None,
        amount: fen(1000),
        status: OrderStatus::Paid,
        paid_at: Some(parse_beijing_time(at).unwrap()),
    };
    // An empty bill: both near-midnight payments are held as missing in it.
    let ledger = Ledger {
        payments: vec![
            near("T_FOUND", "2024-01-15 23:59:58"),
            near("T_LOST", "2024-01-15 23:58:00"),
        ],
        refunds: Vec::new(),
    };
    let report = Matcher::new(day(), ledger, MatchOptions::default())
        .finish()
        .unwrap();
    let run = s
        .replace_reconciliation_run(NewReconciliationRun {
            app: app("shop"),
            provider: ProviderKind::WECHAT,
            bill_day: day(),
            bill_file_id: None,
            outcome: RunOutcome::Reconciled(Box::new(report)),
            finished_at: at(16, 2),
        })
        .await
        .unwrap();
    assert_eq!((run.differences_count, run.held_count), (2, 2));
    let differences = s.reconciliation_differences(&run.id, None).await.unwrap();
    let id_of = |no: &str| {
        differences
            .iter()
            .find(|d| d.out_trade_no == no)
            .unwrap()
            .id
            .clone()
    };
    let note = Resolution {
        note: "found in the 2024-01-16 bill".into(),
        by: "paygate reconciliation".into(),
        at: at(17, 2),
    };
    let settled = s
        .settle_held_differences(
            &run,
            vec![id_of("T_FOUND")],
            vec![id_of("T_LOST")],
            note.clone(),
        )
        .await
        .unwrap();
    assert_eq!((settled.differences_count, settled.held_count), (1, 0));
    assert_eq!(settled.status, RunStatus::Differences);
    let after = s.reconciliation_differences(&run.id, None).await.unwrap();
    let found = after.iter().find(|d| d.out_trade_no == "T_FOUND").unwrap();
    assert_eq!(found.category, Category::MatchedInNeighbourBill);
    assert!(!found.held);
    assert_eq!(found.resolution.as_ref(), Some(&note));
    let lost = after.iter().find(|d| d.out_trade_no == "T_LOST").unwrap();
    assert_eq!((lost.category, lost.held), (Category::MissingInBill, false));
    assert_eq!(lost.resolution, None);

    // No longer held: settling it again (say a rerun of the neighbouring day) changes nothing.
    let again = s
        .settle_held_differences(&run, vec![id_of("T_LOST")], Vec::new(), note)
        .await
        .unwrap();
    assert_eq!(again, settled);
    assert_eq!(
        s.reconciliation_differences(&run.id, None).await.unwrap(),
        after
    );
}

async fn a_bill_file_of_megabytes_comes_back_byte_for_byte(db: TestDb) {
    let s = &db.store;
    // A body of megabytes of every byte value, as a real bill's gzip is.
    let body: Vec<u8> = (0..(9 * 1024 * 1024 + 123u32))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let file = s
        .insert_bill_file(NewBillFile {
            app: app("shop"),
            provider: ProviderKind::WECHAT,
            bill_day: day(),
            body: body.clone(),
            fetched_at: at(1, 10),
        })
        .await
        .unwrap();
    assert_eq!(file.size_bytes, body.len() as u64);
    assert!(s.bill_file_body(&file.id).await.unwrap() == body);
}
