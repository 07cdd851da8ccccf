//! The matcher against the vendored reconciliation vector (the workspace's `tests/data/vectors/bills/recon/`,
//! copied unchanged from `shared/vectors/bills/`): `wechat-v2-ALL.csv` parsed by the WeChat
//! parser, matched with `wechat-2024-01-15.local.json`, must give exactly
//! `wechat-2024-01-15.expected.json`. Then the rules the vector does not exercise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Cursor;
use std::path::PathBuf;

use chrono::{DateTime, FixedOffset, NaiveDate, TimeDelta, Utc};
use paygate_core::{BillDay, BillLine, BillLineKind, Fen, OrderStatus, RefundStatus};
use paygate_reconciliation::{
    Category, Item, Ledger, LedgerPayment, LedgerRefund, LocalStatus, MatchError, MatchOptions,
    Matcher, NeighbourBill, Report,
};
use paygate_wechat::bill::{BillExpectation, TradeBillReader};
use serde_json::{Value, json};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/vectors/bills")
}

fn load(file: &str) -> Value {
    serde_json::from_slice(&std::fs::read(dir().join(file)).unwrap()).unwrap()
}

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 1, 15).unwrap()
}

fn instant(text: &Value) -> Option<DateTime<Utc>> {
    text.as_str()
        .map(|t| DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc))
}

fn beijing(instant: DateTime<Utc>) -> String {
    instant
        .with_timezone(&FixedOffset::east_opt(8 * 3600).unwrap())
        .to_rfc3339()
}

/// The vector's local statuses (upper case) as ours.
fn order_status(text: &str) -> OrderStatus {
    OrderStatus::parse(&text.to_lowercase()).unwrap()
}

fn refund_status(text: &str) -> RefundStatus {
    match text {
        "SUCCESS" => RefundStatus::Succeeded,
        "PROCESSING" => RefundStatus::Processing,
        other => panic!("unknown refund status {other}"),
    }
}

fn status_text(status: LocalStatus) -> &'static str {
    match status {
        LocalStatus::Order(status) => match status {
            OrderStatus::Pending => "PENDING",
            OrderStatus::Paid => "PAID",
            OrderStatus::Closed => "CLOSED",
            OrderStatus::PartiallyRefunded => "PARTIALLY_REFUNDED",
            OrderStatus::Refunded => "REFUNDED",
        },
        LocalStatus::Refund(status) => match status {
            RefundStatus::Succeeded => "SUCCESS",
            RefundStatus::Processing => "PROCESSING",
            RefundStatus::Failed => "FAIL",
        },
    }
}

fn ledger(local: &Value) -> Ledger {
    let payments = local["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| LedgerPayment {
            out_trade_no: o["out_trade_no"].as_str().unwrap().to_owned(),
            provider_trade_no: o["provider_trade_no"].as_str().map(str::to_owned),
            amount: Fen::new(o["amount_fen"].as_i64().unwrap()).unwrap(),
            status: order_status(o["status"].as_str().unwrap()),
            paid_at: instant(&o["paid_at"]),
        })
        .collect();
    let refunds = local["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| LedgerRefund {
            out_refund_no: r["out_refund_no"].as_str().unwrap().to_owned(),
            out_trade_no: r["out_trade_no"].as_str().unwrap().to_owned(),
            amount: Fen::new(r["amount_fen"].as_i64().unwrap()).unwrap(),
            status: refund_status(r["status"].as_str().unwrap()),
            requested_at: instant(&r["requested_at"]).unwrap(),
        })
        .collect();
    Ledger { payments, refunds }
}

fn reconcile(bill: &[u8], ledger: Ledger, options: MatchOptions) -> Report {
    let expectation = BillExpectation {
        mch_id: Some("10000100".to_owned()),
        day: Some(day()),
    };
    let mut reader = TradeBillReader::new(Cursor::new(bill), expectation).unwrap();
    let mut matcher = Matcher::new(day(), ledger, options);
    while let Some(row) = reader.next_row().unwrap() {
        matcher.push(&row.bill_line());
    }
    matcher.finish().unwrap()
}

/// An item in the vector's shape.
fn item_json(item: &Item) -> Value {
    let bill = item.bill.as_ref();
    let local = item.local.as_ref();
    let mut value = json!({
        "kind": match item.kind { BillLineKind::Payment => "payment", BillLineKind::Refund => "refund" },
        "out_trade_no": item.out_trade_no,
        "bill_time": bill.map(|b| beijing(b.occurred_at)),
        "bill_amount_fen": bill.map(|b| b.amount.get()),
        "category": item.category.as_str(),
        "local_amount_fen": local.map(|l| l.amount.get()),
        "local_status": local.map(|l| status_text(l.status)),
    });
    let object = value.as_object_mut().unwrap();
    match item.kind {
        BillLineKind::Payment => {
            let trade_no = bill
                .map(|b| b.provider_trade_no.clone())
                .or_else(|| local.and_then(|l| l.provider_trade_no.clone()));
            object.insert("provider_trade_no".into(), json!(trade_no));
        }
        BillLineKind::Refund => {
            object.insert("out_refund_no".into(), json!(item.out_refund_no));
            object.insert(
                "provider_refund_no".into(),
                json!(bill.and_then(|b| b.provider_refund_no.clone())),
            );
            object.insert(
                "bill_refund_status".into(),
                json!(bill.map(|b| b.status.clone())),
            );
        }
    }
    if matches!(
        item.category,
        Category::MissingInBill | Category::RefundMissingInBill
    ) {
        object.insert("near_midnight".into(), json!(item.near_midnight));
    }
    if item.category == Category::RefundMatched {
        object.insert(
            "refund_status_differs".into(),
            json!(item.refund_status_differs),
        );
    }
    value
}

#[test]
fn the_wechat_day_yields_exactly_the_expected_difference_report() {
    let expected = load("recon/wechat-2024-01-15.expected.json");
    let bill = std::fs::read(dir().join(expected["bill"].as_str().unwrap())).unwrap();
    let options = MatchOptions {
        keep_matched: true,
        ..MatchOptions::default()
    };
    let report = reconcile(
        &bill,
        ledger(&load("recon/wechat-2024-01-15.local.json")),
        options,
    );

    let want_items = expected["items"].as_array().unwrap();
    assert_eq!(report.items.len(), want_items.len(), "item count");
    for (i, (item, want)) in report.items.iter().zip(want_items).enumerate() {
        let ours = item_json(item);
        for (key, value) in want.as_object().unwrap() {
            assert_eq!(
                ours.get(key),
                Some(value),
                "item {i} ({}): field {key:?}",
                want["category"]
            );
        }
        for key in ours.as_object().unwrap().keys() {
            assert!(
                want.get(key).is_some(),
                "item {i}: unexpected field {key:?}"
            );
        }
    }
    let counts: serde_json::Map<String, Value> = report
        .counts
        .iter()
        .map(|(category, count)| (category.as_str().to_owned(), json!(count)))
        .collect();
    assert_eq!(Value::Object(counts), expected["counts_by_category"]);

    let local = report.local_totals;
    assert_eq!(
        json!({"payments_count": local.payments_count, "gross_fen": local.gross_fen,
               "refunds_count": local.refunds_count, "refunds_fen": local.refunds_fen}),
        expected["totals"]["local"]
    );
    let bill_totals = report.bill_totals;
    assert_eq!(
        json!({"payments_count": bill_totals.payments_count, "refunds_count": bill_totals.refunds_count,
               "gross_fen": bill_totals.gross_fen, "settlement_gross_fen": bill_totals.settlement_gross_fen,
               "refunds_fen": bill_totals.refunds_fen, "fees_fen": bill_totals.fees_fen,
               "net_fen": bill_totals.net_fen()}),
        expected["totals"]["bill"]
    );
}

#[test]
fn without_keep_matched_only_differences_are_listed_but_all_are_counted() {
    let bill = std::fs::read(dir().join("wechat-v2-ALL.csv")).unwrap();
    let report = reconcile(
        &bill,
        ledger(&load("recon/wechat-2024-01-15.local.json")),
        MatchOptions::default(),
    );
    assert_eq!(report.items.len(), 5);
    assert!(
        report
            .items
            .iter()
            .all(|item| item.category.is_difference())
    );
    assert_eq!(report.counts[&Category::Matched], 2);
    assert_eq!(report.counts[&Category::RefundMatched], 2);
}

#[test]
fn the_held_near_midnight_payment_is_settled_by_the_next_days_bill() {
    let bill = std::fs::read(dir().join("wechat-v2-ALL.csv")).unwrap();
    let mut report = reconcile(
        &bill,
        ledger(&load("recon/wechat-2024-01-15.local.json")),
        MatchOptions::default(),
    );
    let held: Vec<&str> = report
        .items
        .iter()
        .filter(|i| i.held)
        .map(|i| i.out_trade_no.as_str())
        .collect();
    assert_eq!(held, ["PG20240115000006"]);

    // The 16th's bill has the payment at 00:00:02 with the same amount.
    let next_day = BillDay::new(NaiveDate::from_ymd_opt(2024, 1, 16).unwrap());
    let mut neighbour = NeighbourBill::new();
    let line = BillLine {
        kind: BillLineKind::Payment,
        occurred_at: next_day.start() + TimeDelta::seconds(2),
        provider_trade_no: "4200002101202401160000020006",
        out_trade_no: "PG20240115000006",
        provider_refund_no: None,
        out_refund_no: None,
        amount: Fen::new(4000).unwrap(),
        settlement: Fen::new(4000).unwrap(),
        fee_fen: 24,
        status: "SUCCESS",
    };
    neighbour.offer(report.day, &line, MatchOptions::default().near_midnight);
    report.resolve_held(&neighbour);
    let item = report
        .items
        .iter()
        .find(|i| i.out_trade_no == "PG20240115000006")
        .unwrap();
    assert_eq!(item.category, Category::MatchedInNeighbourBill);
    assert!(!item.held);
    assert!(!report.counts.contains_key(&Category::MissingInBill));
}

#[test]
fn a_held_item_absent_from_the_neighbouring_bill_is_escalated() {
    let bill = std::fs::read(dir().join("wechat-v2-ALL.csv")).unwrap();
    let mut report = reconcile(
        &bill,
        ledger(&load("recon/wechat-2024-01-15.local.json")),
        MatchOptions::default(),
    );
    report.resolve_held(&NeighbourBill::new());
    let item = report
        .items
        .iter()
        .find(|i| i.out_trade_no == "PG20240115000006")
        .unwrap();
    assert_eq!(item.category, Category::MissingInBill);
    assert!(!item.held, "no longer held: finance sees it");
}

fn payment_line<'a>(out_trade_no: &'a str, fen: i64, at: &str) -> BillLine<'a> {
    BillLine {
        kind: BillLineKind::Payment,
        occurred_at: paygate_core::bill::parse_beijing_time(at).unwrap(),
        provider_trade_no: "4200000000000000000000000001",
        out_trade_no,
        provider_refund_no: None,
        out_refund_no: None,
        amount: Fen::new(fen).unwrap(),
        settlement: Fen::new(fen).unwrap(),
        fee_fen: 0,
        status: "SUCCESS",
    }
}

#[test]
fn the_same_order_twice_in_the_bill_or_in_our_books_is_a_duplicate() {
    let paid = |no: &str| LedgerPayment {
        out_trade_no: no.to_owned(),
        provider_trade_no: None,
        amount: Fen::new(100).unwrap(),
        status: OrderStatus::Paid,
        paid_at: Some(paygate_core::bill::parse_beijing_time("2024-01-15 12:00:00").unwrap()),
    };
    let ledger = Ledger {
        payments: vec![paid("A"), paid("B"), paid("B")],
        refunds: vec![],
    };
    let mut matcher = Matcher::new(day(), ledger, MatchOptions::default());
    for no in ["A", "A", "X", "X"] {
        matcher.push(&payment_line(no, 100, "2024-01-15 12:00:00"));
    }
    let report = matcher.finish().unwrap();
    let categories: Vec<(&str, Category)> = report
        .items
        .iter()
        .map(|i| (i.out_trade_no.as_str(), i.category))
        .collect();
    assert_eq!(
        categories,
        [
            ("B", Category::Duplicate),
            ("A", Category::Duplicate),
            ("X", Category::MissingLocal),
            ("X", Category::Duplicate),
            ("B", Category::MissingInBill),
        ]
    );
}

#[test]
fn an_empty_bill_leaves_every_paid_order_of_the_day_missing_in_the_bill() {
    let report = reconcile_nothing(ledger(&load("recon/wechat-2024-01-15.local.json")));
    let missing: Vec<&str> = report
        .items
        .iter()
        .filter(|i| i.category == Category::MissingInBill)
        .map(|i| i.out_trade_no.as_str())
        .collect();
    assert_eq!(
        missing,
        [
            "PG20240114000977",
            "PG20240115000003",
            "PG20240115000004",
            "PG20240115000006"
        ]
    );
    assert_eq!(report.counts[&Category::RefundMissingInBill], 3);
}

fn reconcile_nothing(ledger: Ledger) -> Report {
    Matcher::new(day(), ledger, MatchOptions::default())
        .finish()
        .unwrap()
}

#[test]
fn a_line_from_another_day_fails_the_whole_match() {
    let mut matcher = Matcher::new(day(), Ledger::default(), MatchOptions::default());
    matcher.push(&payment_line("A", 100, "2024-01-16 00:00:00"));
    assert!(matches!(
        matcher.finish(),
        Err(MatchError::LineOutsideDay { .. })
    ));
}

#[test]
fn a_refund_our_books_have_as_failed_is_a_status_mismatch() {
    let ledger = Ledger {
        payments: vec![],
        refunds: vec![LedgerRefund {
            out_refund_no: "R1".to_owned(),
            out_trade_no: "A".to_owned(),
            amount: Fen::new(100).unwrap(),
            status: RefundStatus::Failed,
            requested_at: paygate_core::bill::parse_beijing_time("2024-01-15 12:00:00").unwrap(),
        }],
    };
    let mut matcher = Matcher::new(day(), ledger, MatchOptions::default());
    let line = BillLine {
        kind: BillLineKind::Refund,
        out_refund_no: Some("R1"),
        ..payment_line("A", 100, "2024-01-15 12:00:01")
    };
    matcher.push(&line);
    let report = matcher.finish().unwrap();
    assert_eq!(report.items.len(), 1);
    assert_eq!(report.items[0].category, Category::RefundStatusMismatch);
}
