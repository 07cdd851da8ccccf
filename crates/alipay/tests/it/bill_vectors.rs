//! The trade-bill zip parser against the vendored bill vector (the workspace's `tests/data/vectors/bills/`,
//! copied unchanged from `shared/vectors/bills/`): every row, the footer, the summary file and
//! the day totals compared field by field with the expected JSON, then one typed error per kind
//! of bad input, built by editing the real zip's decoded text and zipping it again.

use std::io::{Cursor, Read, Write};
use std::path::PathBuf;

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use encoding_rs::GBK;
use paygate_alipay::bill::{
    BillError, BillExpectation, TradeBill, TradeBillRow, read_trade_bill_zip,
};
use paygate_core::BillLineKind;
use serde_json::{Value, json};

const DETAIL: &str = "20881011221362410156_20240115_业务明细.csv";
const SUMMARY: &str = "20881011221362410156_20240115_业务明细(汇总).csv";

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/vectors/bills")
}

fn zip_bytes() -> Vec<u8> {
    std::fs::read(dir().join("alipay-trade.zip")).unwrap()
}

fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(dir().join("alipay-trade.expected.json")).unwrap())
        .unwrap()
}

fn expectation() -> BillExpectation {
    BillExpectation {
        account: Some("20881011221362410156".to_owned()),
        day: Some(NaiveDate::from_ymd_opt(2024, 1, 15).unwrap()),
    }
}

fn beijing(instant: DateTime<Utc>) -> String {
    instant
        .with_timezone(&FixedOffset::east_opt(8 * 3600).unwrap())
        .to_rfc3339()
}

fn normalized(row: &TradeBillRow) -> Value {
    json!({
        "type": match row.kind { BillLineKind::Payment => "payment", BillLineKind::Refund => "refund" },
        "occurred_at": beijing(row.completed_at),
        "created_at": beijing(row.created_at),
        "provider_trade_no": row.trade_no,
        "out_trade_no": row.out_trade_no,
        "provider_refund_no": null,
        "out_refund_no": row.out_request_no,
        "amount_fen": row.amount().get(),
        "settlement_fen": row.settlement().get(),
        "fee_fen": row.fee_fen(),
        "signed": {
            "order_fen": row.order_fen,
            "received_fen": row.received_fen,
            "service_fee_fen": row.service_fee_fen,
            "profit_share_fen": row.profit_share_fen,
        },
        "discounts": {
            "alipay_red_packet_fen": row.alipay_red_packet_fen,
            "jifenbao_fen": row.jifenbao_fen,
            "alipay_discount_fen": row.alipay_discount_fen,
            "merchant_discount_fen": row.merchant_discount_fen,
            "coupon_writeoff_fen": row.coupon_writeoff_fen,
            "coupon_name": row.text("券名称"),
            "merchant_red_packet_fen": row.merchant_red_packet_fen,
            "card_fen": row.card_fen,
        },
        "currency": "CNY",
        "store_id": row.text("门店编号"),
        "store_name": row.text("门店名称"),
        "operator": row.text("操作员"),
        "terminal": row.text("终端号"),
        "buyer": row.text("对方账户"),
        "product": row.text("商品名称"),
        "remark": row.text("备注"),
    })
}

fn read(zip: Vec<u8>) -> Result<(Vec<TradeBillRow>, TradeBill), BillError> {
    let mut rows = Vec::new();
    let bill = read_trade_bill_zip(Cursor::new(zip), &expectation(), |row| {
        rows.push(row.clone())
    })?;
    Ok((rows, bill))
}

fn assert_fields(what: &str, ours: &Value, theirs: &Value) {
    let (ours, theirs) = (ours.as_object().unwrap(), theirs.as_object().unwrap());
    assert!(!theirs.is_empty(), "{what}: the expected object is empty");
    for (key, want) in theirs {
        assert_eq!(ours.get(key), Some(want), "{what}: field {key:?}");
    }
    for key in ours.keys() {
        assert!(theirs.contains_key(key), "{what}: unexpected field {key:?}");
    }
}

#[test]
fn the_trade_bill_zip_parses_to_its_expected_json() {
    let want = expected();
    let (rows, bill) = read(zip_bytes()).unwrap();
    let detail = &want["detail"];
    let want_rows = detail["rows"].as_array().unwrap();
    assert_eq!(rows.len(), want_rows.len());
    for (i, (row, want_row)) in rows.iter().zip(want_rows).enumerate() {
        let raw: serde_json::Map<String, Value> = want_row["raw"]
            .as_object()
            .unwrap()
            .keys()
            .map(|name| (name.clone(), json!(row.raw(name).unwrap())))
            .collect();
        assert_fields(
            &format!("row {i} raw"),
            &Value::Object(raw),
            &want_row["raw"],
        );
        assert_fields(
            &format!("row {i}"),
            &normalized(row),
            &want_row["normalized"],
        );
    }
    let footer = json!({
        "account": bill.heading.account,
        "period_start": bill.heading.period_start.map(beijing),
        "period_end": bill.heading.period_end.map(beijing),
        "trade_count": bill.footer.trade_count,
        "trade_received_fen": bill.footer.trade_received_fen,
        "trade_merchant_discount_fen": bill.footer.trade_merchant_discount_fen,
        "refund_count": bill.footer.refund_count,
        "refund_received_fen": bill.footer.refund_received_fen,
        "refund_merchant_discount_fen": bill.footer.refund_merchant_discount_fen,
        "exported_at": bill.footer.exported_at.map(beijing),
    });
    assert_fields("detail footer", &footer, &detail["footer"]);
    let totals = bill.totals;
    let derived = json!({
        "payments_count": totals.payments_count,
        "refunds_count": totals.refunds_count,
        "gross_fen": totals.gross_fen,
        "settlement_gross_fen": totals.settlement_gross_fen,
        "refunds_fen": totals.refunds_fen,
        "fees_fen": totals.fees_fen,
        "net_fen": totals.net_fen(),
    });
    assert_fields("derived totals", &derived, &detail["derived_totals"]);

    let summary = &want["summary"];
    let want_summary_rows = summary["rows"].as_array().unwrap();
    assert_eq!(bill.summary_rows.len(), want_summary_rows.len());
    for (i, (row, want_row)) in bill.summary_rows.iter().zip(want_summary_rows).enumerate() {
        let text = |name: &str| row.raw(name).filter(|t| !t.is_empty());
        let ours = json!({
            "store_id": text("门店编号"),
            "store_name": text("门店名称"),
            "trade_count": row.trade_count,
            "refund_count": row.refund_count,
            "order_fen": row.order_fen,
            "received_fen": row.received_fen,
            "alipay_discount_fen": row.alipay_discount_fen,
            "merchant_discount_fen": row.merchant_discount_fen,
            "card_fen": row.card_fen,
            "service_fee_fen": row.service_fee_fen,
            "profit_share_fen": row.profit_share_fen,
            "net_received_fen": row.net_received_fen,
        });
        assert_fields(&format!("summary row {i}"), &ours, &want_row["normalized"]);
        for (name, cell) in want_row["raw"].as_object().unwrap() {
            assert_eq!(row.raw(name), cell.as_str(), "summary row {i} raw {name:?}");
        }
    }
    let summary_footer = json!({
        "account": bill.summary_heading.account,
        "period_start": bill.summary_heading.period_start.map(beijing),
        "period_end": bill.summary_heading.period_end.map(beijing),
        "exported_at": bill.summary_exported_at.map(beijing),
    });
    assert_fields("summary footer", &summary_footer, &summary["footer"]);
}

#[test]
fn refund_rows_become_positive_bill_lines_keyed_on_the_request_number() {
    let (rows, _) = read(zip_bytes()).unwrap();
    let refund = rows
        .iter()
        .find(|r| r.kind == BillLineKind::Refund)
        .unwrap();
    let line = refund.bill_line();
    assert_eq!(line.amount.get(), 2000);
    assert_eq!(line.fee_fen, -12);
    assert_eq!(line.out_refund_no, Some("RF20240115A0004-1"));
    assert_eq!(line.provider_trade_no, "2024011522001411110000000104");
}

/// The two entries' decoded text.
fn entries() -> (String, String) {
    let mut zip = zip::ZipArchive::new(Cursor::new(zip_bytes())).unwrap();
    let mut text_of = |suffix: &str| {
        let index = (0..zip.len())
            .find(|&i| {
                let name = GBK
                    .decode(zip.by_index_raw(i).unwrap().name_raw())
                    .0
                    .into_owned();
                name.ends_with(suffix)
            })
            .unwrap();
        let mut bytes = Vec::new();
        zip.by_index(index)
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        GBK.decode(&bytes).0.into_owned()
    };
    (text_of("_业务明细.csv"), text_of("_业务明细(汇总).csv"))
}

/// A zip of the given GBK-encoded entries (the names are written UTF-8 flagged, which the
/// parser also accepts).
fn zip_of(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes) in files {
        out.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        out.write_all(bytes).unwrap();
    }
    out.finish().unwrap().into_inner()
}

fn gbk(text: &str) -> Vec<u8> {
    GBK.encode(text).0.into_owned()
}

/// The bill with one edit in the detail or summary text (the edit must apply exactly once).
fn edited(in_detail: bool, from: &str, to: &str) -> Vec<u8> {
    let (mut detail, mut summary) = entries();
    let target = if in_detail { &mut detail } else { &mut summary };
    assert_eq!(target.matches(from).count(), 1, "{from:?} must occur once");
    *target = target.replacen(from, to, 1);
    zip_of(&[(DETAIL, gbk(&detail)), (SUMMARY, gbk(&summary))])
}

fn error_of(zip: Vec<u8>) -> BillError {
    read(zip).expect_err("the bill must be refused")
}

#[test]
fn the_rezipped_unedited_bill_still_parses() {
    // Guards the edit helpers: a failure below is then the edit's doing.
    let (detail, summary) = entries();
    let (rows, _) = read(zip_of(&[(DETAIL, gbk(&detail)), (SUMMARY, gbk(&summary))])).unwrap();
    assert_eq!(rows.len(), 7);
}

#[test]
fn a_corrupt_or_truncated_zip_is_a_typed_error() {
    let zip = zip_bytes();
    assert!(matches!(
        error_of(b"not a zip at all".to_vec()),
        BillError::CorruptZip(_)
    ));
    assert!(matches!(
        error_of(zip[..zip.len() / 2].to_vec()),
        BillError::CorruptZip(_)
    ));
    // Damage the first entry's compressed data (after its 30-byte header, name and extra).
    let name_len = usize::from(u16::from_le_bytes([zip[26], zip[27]]));
    let extra_len = usize::from(u16::from_le_bytes([zip[28], zip[29]]));
    let mut damaged = zip.clone();
    for byte in &mut damaged[30 + name_len + extra_len + 20..30 + name_len + extra_len + 40] {
        *byte ^= 0x5a;
    }
    let err = error_of(damaged);
    assert!(matches!(err, BillError::CorruptZip(_)), "{err:?}");
}

#[test]
fn a_zip_without_the_summary_file_is_refused() {
    let (detail, _) = entries();
    let err = error_of(zip_of(&[(DETAIL, gbk(&detail))]));
    assert!(
        matches!(err, BillError::MissingEntry(suffix) if suffix.contains("汇总")),
        "{err:?}"
    );
}

#[test]
fn an_unknown_column_is_refused_by_name() {
    let err = error_of(edited(true, "分润（元）,备注", "分润（元）,说明"));
    assert!(
        matches!(&err, BillError::UnknownColumn { file: "detail", name } if name == "说明"),
        "{err:?}"
    );
}

#[test]
fn a_footer_that_disagrees_with_the_rows_is_refused() {
    let err = error_of(edited(true, "#交易合计：5笔", "#交易合计：6笔"));
    assert!(
        matches!(
            err,
            BillError::TotalsMismatch {
                field: "#交易合计 笔数",
                printed: 6,
                rows: 5
            }
        ),
        "{err:?}"
    );
    let err = error_of(edited(
        true,
        "商家实收退款共-32.00元",
        "商家实收退款共-33.00元",
    ));
    assert!(
        matches!(
            err,
            BillError::TotalsMismatch {
                printed: -3300,
                rows: -3200,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_summary_total_that_disagrees_with_the_rows_is_refused() {
    let err = error_of(edited(
        false,
        "0.00,-1.13,0.00,186.87",
        "0.00,-1.14,0.00,186.86",
    ));
    assert!(
        matches!(
            err,
            BillError::TotalsMismatch {
                field: "汇总 服务费",
                printed: -114,
                rows: -113
            }
        ),
        "{err:?}"
    );
}

#[test]
fn an_unparseable_amount_is_refused_with_its_cell() {
    let err = error_of(edited(true, ",-0.27,", ",-0.2７,"));
    assert!(
        matches!(&err, BillError::Value { file: "detail", column: "服务费（元）", value, .. } if value == "-0.2７"),
        "{err:?}"
    );
}

#[test]
fn a_payment_with_a_negative_amount_is_refused() {
    let err = error_of(edited(
        true,
        ",**明(138****8000)\t,50.00,45.00,",
        ",**明(138****8000)\t,-50.00,-45.00,",
    ));
    assert!(matches!(err, BillError::BadRow { .. }), "{err:?}");
}

#[test]
fn a_bill_of_another_account_or_day_is_refused() {
    let mut rows = 0;
    let other_account = BillExpectation {
        account: Some("20889999999999990156".to_owned()),
        ..expectation()
    };
    let err =
        read_trade_bill_zip(Cursor::new(zip_bytes()), &other_account, |_| rows += 1).unwrap_err();
    assert!(matches!(err, BillError::WrongMerchant { .. }), "{err:?}");
    let other_day = BillExpectation {
        day: Some(NaiveDate::from_ymd_opt(2024, 1, 16).unwrap()),
        ..expectation()
    };
    let err = read_trade_bill_zip(Cursor::new(zip_bytes()), &other_day, |_| rows += 1).unwrap_err();
    assert!(matches!(err, BillError::WrongDay { .. }), "{err:?}");
    assert_eq!(
        rows, 0,
        "no row is delivered from a bill of the wrong account or day"
    );
}

#[test]
fn a_detail_file_cut_before_its_footer_is_refused() {
    let (detail, summary) = entries();
    // Everything before the end-of-list marker: the rows are there, the footer is not.
    let cut = &detail[..detail.rfind("\r\n#-").unwrap() + 2];
    let err = error_of(zip_of(&[(DETAIL, gbk(cut)), (SUMMARY, gbk(&summary))]));
    assert!(
        matches!(err, BillError::MissingLine { file: "detail", .. }),
        "{err:?}"
    );
}

#[test]
fn a_line_that_is_not_gbk_is_refused() {
    let (detail, summary) = entries();
    let mut bytes = gbk(&detail);
    let at = bytes.windows(5).position(|w| w == b"SH001").unwrap();
    bytes[at] = 0xff; // never a GBK lead byte
    let err = error_of(zip_of(&[(DETAIL, bytes), (SUMMARY, gbk(&summary))]));
    assert!(
        matches!(err, BillError::NotGbk { file: "detail", .. }),
        "{err:?}"
    );
}
