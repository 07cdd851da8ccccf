//! The trade-bill parser against the vendored bill vectors (the workspace's `tests/data/vectors/bills/`,
//! copied unchanged from `shared/vectors/bills/`): every row, the summary and the day totals
//! compared field by field with the expected JSON; the BOM/LF and doc-summary variants; and one
//! typed error per kind of bad input.

use std::io::Cursor;
use std::path::PathBuf;

use chrono::{FixedOffset, NaiveDate};
use paygate_core::BillLineKind;
use paygate_wechat::bill::{BillError, BillExpectation, TradeBillReader, TradeBillRow};
use serde_json::{Value, json};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/vectors/bills")
}

fn bytes(file: &str) -> Vec<u8> {
    std::fs::read(dir().join(file)).unwrap_or_else(|e| panic!("vector {file} is missing: {e}"))
}

fn expected(file: &str) -> Value {
    serde_json::from_slice(&bytes(file)).unwrap()
}

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 1, 15).unwrap()
}

fn expectation() -> BillExpectation {
    BillExpectation {
        mch_id: Some("10000100".to_owned()),
        day: Some(day()),
    }
}

/// A row in the vectors' `normalized` shape, built from the parser's accessors.
fn normalized(row: &TradeBillRow<'_>) -> Value {
    let beijing = FixedOffset::east_opt(8 * 3600).unwrap();
    json!({
        "type": match row.kind() { BillLineKind::Payment => "payment", BillLineKind::Refund => "refund" },
        "occurred_at": row.occurred_at().with_timezone(&beijing).to_rfc3339(),
        "provider_trade_no": row.transaction_id(),
        "out_trade_no": row.out_trade_no(),
        "provider_refund_no": row.refund_id(),
        "out_refund_no": row.out_refund_no(),
        "status": row.status(),
        "amount_fen": row.amount().get(),
        "settlement_fen": row.settlement().get(),
        "coupon_fen": row.coupon().get(),
        "fee_fen": row.fee_fen(),
        "fee_rate": row.fee_rate(),
        "currency": row.currency(),
        "appid": row.appid(),
        "mch_id": row.mch_id(),
        "sub_mch_id": row.sub_mch_id(),
        "device_info": row.device_info(),
        "openid": row.openid(),
        "trade_type": row.trade_type(),
        "bank_type": row.bank_type(),
        "product": row.product(),
        "attach": row.attach(),
        "refund_type": row.refund_type(),
        "fee_remark": row.fee_remark(),
    })
}

/// Parses a whole bill into (raw rows, normalized rows, summary, totals) as JSON.
fn parse(body: &[u8]) -> Result<(Vec<Value>, Vec<Value>, Value, Value), BillError> {
    let mut reader = TradeBillReader::new(Cursor::new(body), expectation())?;
    let header = reader.header().to_vec();
    let (mut raws, mut rows) = (Vec::new(), Vec::new());
    while let Some(row) = reader.next_row()? {
        let raw: serde_json::Map<String, Value> = header
            .iter()
            .map(|name| (name.clone(), json!(row.raw(name).unwrap())))
            .collect();
        raws.push(Value::Object(raw));
        rows.push(normalized(&row));
    }
    let summary = reader.summary().unwrap().clone();
    let totals = reader.totals();
    Ok((
        raws,
        rows,
        json!({
            "count": summary.count,
            "settlement_total_fen": summary.settlement_total_fen,
            "refund_total_fen": summary.refund_total_fen,
            "recharge_coupon_refund_total_fen": summary.recharge_coupon_refund_total_fen,
            "fee_total_fen": summary.fee_total_fen,
            "order_total_fen": summary.order_total_fen,
            "refund_requested_total_fen": summary.refund_requested_total_fen,
        }),
        json!({
            "payments_count": totals.payments_count,
            "refunds_count": totals.refunds_count,
            "gross_fen": totals.gross_fen,
            "settlement_gross_fen": totals.settlement_gross_fen,
            "refunds_fen": totals.refunds_fen,
            "fees_fen": totals.fees_fen,
            "net_fen": totals.net_fen(),
        }),
    ))
}

/// Compares two JSON objects key by key, naming the first differing field.
fn assert_fields(what: &str, ours: &Value, theirs: &Value) {
    let theirs_map = theirs.as_object().unwrap();
    let ours_map = ours.as_object().unwrap();
    assert!(
        !theirs_map.is_empty(),
        "{what}: the expected object is empty"
    );
    for (key, want) in theirs_map {
        assert_eq!(ours_map.get(key), Some(want), "{what}: field {key:?}");
    }
    for key in ours_map.keys() {
        assert!(
            theirs_map.contains_key(key),
            "{what}: unexpected field {key:?}"
        );
    }
}

fn check_vector(bill: &str, expected_json: &str) {
    let want = expected(expected_json);
    let (raws, rows, summary, totals) = parse(&bytes(bill)).unwrap();
    let want_rows = want["rows"].as_array().unwrap();
    assert_eq!(rows.len(), want_rows.len(), "{bill}: row count");
    for (i, (want_row, (raw, row))) in want_rows.iter().zip(raws.iter().zip(&rows)).enumerate() {
        assert_fields(&format!("{bill} row {i} raw"), raw, &want_row["raw"]);
        assert_fields(&format!("{bill} row {i}"), row, &want_row["normalized"]);
    }
    assert_fields(&format!("{bill} summary"), &summary, &want["summary"]);
    if !want["derived_totals"].is_null() {
        assert_fields(&format!("{bill} totals"), &totals, &want["derived_totals"]);
    }
}

#[test]
fn the_v2_all_bill_parses_to_its_expected_json() {
    check_vector("wechat-v2-ALL.csv", "wechat-v2-ALL.expected.json");
}

#[test]
fn the_v2_success_bill_parses_to_its_expected_json() {
    check_vector("wechat-v2-SUCCESS.csv", "wechat-v2-SUCCESS.expected.json");
}

#[test]
fn the_v3_tradebill_parses_to_its_expected_json() {
    check_vector(
        "wechat-v3-tradebill-ALL.csv",
        "wechat-v3-tradebill-ALL.expected.json",
    );
}

#[test]
fn the_gzipped_v3_tradebill_parses_to_the_same_rows_as_the_plain_file() {
    let want = expected("wechat-v3-tradebill-ALL.expected.json");
    let gz = bytes("wechat-v3-tradebill-ALL.csv.gz");
    let mut reader = TradeBillReader::from_gzip(Cursor::new(gz), expectation()).unwrap();
    let mut rows = Vec::new();
    while let Some(row) = reader.next_row().unwrap() {
        rows.push(normalized(&row));
    }
    let want_rows: Vec<Value> = want["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["normalized"].clone())
        .collect();
    assert_eq!(rows, want_rows);
    assert_eq!(reader.summary().unwrap().count, 7);
}

#[test]
fn the_bom_and_lf_variant_parses_to_exactly_the_rows_of_the_crlf_bill() {
    let variant = bytes("variants/wechat-v2-ALL.bom-lf.csv");
    assert!(
        variant.starts_with(b"\xEF\xBB\xBF"),
        "the variant must carry a BOM"
    );
    let (raws, rows, summary, totals) = parse(&variant).unwrap();
    let original = parse(&bytes("wechat-v2-ALL.csv")).unwrap();
    assert_eq!((raws, rows, summary, totals), original);
}

#[test]
fn the_four_field_doc_summary_is_read_by_name() {
    let (_, rows, summary, _) =
        parse(&bytes("variants/wechat-v2-SUCCESS.doc-summary.csv")).unwrap();
    let (_, original_rows, _, _) = parse(&bytes("wechat-v2-SUCCESS.csv")).unwrap();
    assert_eq!(rows, original_rows);
    assert_eq!(summary["count"], 5);
    assert_eq!(summary["settlement_total_fen"], 28300);
    assert_eq!(summary["fee_total_fen"], 170);
    assert_eq!(summary["order_total_fen"], 29300);
    assert_eq!(summary["refund_total_fen"], Value::Null);
}

#[test]
fn rows_become_provider_neutral_bill_lines() {
    let body = bytes("wechat-v2-ALL.csv");
    let want = expected("wechat-v2-ALL.expected.json");
    let mut reader = TradeBillReader::new(Cursor::new(&body[..]), expectation()).unwrap();
    let mut i = 0;
    while let Some(row) = reader.next_row().unwrap() {
        let line = row.bill_line();
        let want_row = &want["rows"][i]["normalized"];
        assert_eq!(line.out_trade_no, want_row["out_trade_no"]);
        assert_eq!(line.provider_trade_no, want_row["provider_trade_no"]);
        assert_eq!(line.out_refund_no, want_row["out_refund_no"].as_str());
        assert_eq!(line.amount.get(), want_row["amount_fen"]);
        assert_eq!(line.fee_fen, want_row["fee_fen"]);
        assert_eq!(line.status, want_row["status"]);
        i += 1;
    }
    assert_eq!(i, 7);
}

/// The ALL bill with `from` replaced by `to` (exactly once).
fn edited(from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8(bytes("wechat-v2-ALL.csv")).unwrap();
    assert_eq!(text.matches(from).count(), 1, "{from:?} must occur once");
    text.replacen(from, to, 1).into_bytes()
}

fn error_of(body: &[u8]) -> BillError {
    parse(body).expect_err("the bill must be refused")
}

#[test]
fn an_unknown_detail_column_is_refused_by_name() {
    let err = error_of(&edited("费率备注\r\n", "费率说明\r\n"));
    assert!(
        matches!(&err, BillError::UnknownColumn { section: "detail", name } if name == "费率说明"),
        "{err:?}"
    );
}

#[test]
fn a_missing_required_column_is_refused() {
    let text = String::from_utf8(bytes("wechat-v2-SUCCESS.csv")).unwrap();
    let header_end = text.find("\r\n").unwrap();
    let header = text[..header_end].replace(",订单金额", "");
    let err = error_of(format!("{header}\r\n").as_bytes());
    assert!(
        matches!(
            err,
            BillError::MissingColumn {
                name: "订单金额"
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_summary_count_that_disagrees_with_the_rows_is_refused() {
    let err = error_of(&edited("`7,`283.00", "`8,`283.00"));
    assert!(
        matches!(
            err,
            BillError::SummaryMismatch {
                field: "总交易单数",
                summary: 8,
                rows: 7
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_summary_amount_that_disagrees_with_the_rows_is_refused() {
    let err = error_of(&edited("`1.51000,`293.00", "`1.52000,`293.00"));
    assert!(
        matches!(
            err,
            BillError::SummaryMismatch {
                field: "手续费总金额",
                summary: 152,
                rows: 151
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_dropped_row_is_caught_by_the_summary() {
    let text = String::from_utf8(bytes("wechat-v2-ALL.csv")).unwrap();
    let dropped: String = text
        .split_inclusive("\r\n")
        .filter(|line| !line.contains("PG20240115000002"))
        .collect();
    let err = error_of(dropped.as_bytes());
    assert!(
        matches!(
            err,
            BillError::SummaryMismatch {
                field: "总交易单数",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn an_unparseable_amount_is_refused_with_its_cell() {
    let err = error_of(&edited("`CNY,`25.00,", "`CNY,`25.0O,"));
    assert!(
        matches!(&err, BillError::Amount { line: 6, column: "应结订单金额", value } if value == "25.0O"),
        "{err:?}"
    );
    let err = error_of(&edited("`0.15000,", "`0.15300,"));
    assert!(
        matches!(
            &err,
            BillError::Amount {
                column: "手续费",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn an_unparseable_time_is_refused() {
    let err = error_of(&edited("`2024-01-15 23:59:58,", "`2024/01/15 23:59:58,"));
    assert!(
        matches!(
            &err,
            BillError::Time {
                column: "交易时间",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_row_of_another_merchant_is_refused() {
    let err = error_of(&edited("`POS-01,", "`POS-01,").replace_bill_mch("PG20240115000005"));
    assert!(
        matches!(&err, BillError::WrongMerchant { found, .. } if found == "10000999"),
        "{err:?}"
    );
}

#[test]
fn a_row_outside_the_bill_day_is_refused() {
    let err = error_of(&edited("`2024-01-15 09:12:33,", "`2024-01-16 09:12:33,"));
    assert!(
        matches!(err, BillError::WrongDay { line: 2, .. }),
        "{err:?}"
    );
}

#[test]
fn a_bill_cut_before_its_summary_is_refused() {
    let text = String::from_utf8(bytes("wechat-v2-ALL.csv")).unwrap();
    let cut = &text[..text.find("总交易单数").unwrap()];
    assert!(matches!(
        error_of(cut.as_bytes()),
        BillError::MissingSummary
    ));
    assert!(matches!(error_of(b""), BillError::Empty));
}

#[test]
fn a_row_with_a_missing_field_or_backtick_is_refused() {
    let err = error_of(&edited(",`午餐套餐,`,", ",`午餐套餐,"));
    assert!(
        matches!(
            err,
            BillError::FieldCount {
                line: 6,
                expected: 27,
                found: 26
            }
        ),
        "{err:?}"
    );
    let err = error_of(&edited("`2024-01-15 23:59:58,", "2024-01-15 23:59:58,"));
    // Without its backtick the row reads as a summary header with unknown names.
    assert!(
        matches!(
            err,
            BillError::UnknownColumn {
                section: "summary",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn an_overlong_line_is_refused_without_reading_it_whole() {
    let long = "x".repeat(paygate_wechat::bill::MAX_LINE_BYTES + 10);
    let err = error_of(&edited("`午餐套餐,", &format!("`{long},")));
    assert!(matches!(err, BillError::LineTooLong { line: 6 }), "{err:?}");
}

#[test]
fn a_corrupt_or_truncated_gzip_stream_is_a_typed_error() {
    let gz = bytes("wechat-v3-tradebill-ALL.csv.gz");
    let truncated = &gz[..gz.len() / 2];
    let mut flipped = gz.clone();
    let last = flipped.len() - 5;
    flipped[last] ^= 0xff; // inside the CRC32 trailer
    for (what, body) in [("truncated", truncated.to_vec()), ("bad crc", flipped)] {
        let result =
            TradeBillReader::from_gzip(Cursor::new(body), expectation()).and_then(|mut reader| {
                while reader.next_row()?.is_some() {}
                Ok(())
            });
        assert!(
            matches!(result, Err(BillError::CorruptGzip(_))),
            "{what}: {result:?}"
        );
    }
}

/// Rewrites the merchant of the row holding `out_trade_no`.
trait ReplaceBillMch {
    fn replace_bill_mch(self, out_trade_no: &str) -> Vec<u8>;
}

impl ReplaceBillMch for Vec<u8> {
    fn replace_bill_mch(self, out_trade_no: &str) -> Vec<u8> {
        let text = String::from_utf8(self).unwrap();
        let lines: Vec<String> = text
            .split_inclusive("\r\n")
            .map(|line| {
                if line.contains(out_trade_no) {
                    line.replacen("`10000100,", "`10000999,", 1)
                } else {
                    line.to_owned()
                }
            })
            .collect();
        lines.concat().into_bytes()
    }
}
