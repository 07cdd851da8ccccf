//! A million-row WeChat trade bill (issue 16): parse throughput (target ≥ 500k rows/s on one
//! core), the whole reconciliation against a million ledger entries (target < 60 s) and its
//! peak RSS (target < 256 MB).
//!
//! The bill is generated into a temp file (about 330 MB of text, never in memory) with the
//! real ALL layout: 27 backticked columns, CRLF, the 7-field summary. The ledger has one paid
//! order per bill row, except that one in 1,000 differs in amount and one in 1,000 is absent
//! (so the report has differences to keep), plus 1,000 local-only paid orders.
//!
//! `cargo bench -p paygate-reconciliation --bench million` runs criterion (parse alone, then
//! parse + match). With `PAYGATE_BILL_BENCH_ONCE=1` it instead runs one full reconciliation,
//! prints the times and the process's peak RSS (`VmHWM`), and exits: run that under
//! `/usr/bin/time -v` for an outside view. `PAYGATE_BILL_BENCH_ROWS` changes the row count.

// The figures on stdout are this program's output.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, TimeDelta};
use criterion::{BatchSize, Criterion, Throughput};
use paygate_core::bill::parse_beijing_time;
use paygate_core::{Fen, OrderStatus};
use paygate_reconciliation::{Ledger, LedgerPayment, MatchOptions, Matcher, Report};
use paygate_wechat::bill::{BillExpectation, TradeBillReader};

const HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注";

fn rows() -> u64 {
    std::env::var("PAYGATE_BILL_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 1, 15).unwrap()
}

/// Row `i`: amount 1.00–999.99 yuan, fee 0.6 % rounded down to the fen.
fn amount_fen(i: u64) -> i64 {
    100 + (i as i64 * 7919) % 99_900
}

fn out_trade_no(i: u64) -> String {
    format!("PG{i:014}")
}

fn transaction_id(i: u64) -> String {
    format!("42000021012024011{i:011}")
}

fn yuan(fen: i64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// Writes the bill; rows are spread over the day in a shuffled order (not sorted by time).
fn write_bill(path: &Path, rows: u64) {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
    write!(out, "{HEADER}\r\n").unwrap();
    let (mut gross, mut fees) = (0i64, 0i64);
    for n in 0..rows {
        // A fixed permutation of 0..rows, so neighbours in the file are far apart in time.
        let i = (n * 7_368_787) % rows;
        let fen = amount_fen(i);
        let fee = fen * 6 / 1000;
        gross += fen;
        fees += fee;
        let seconds = i * 86_399 / rows.max(1);
        let time = format!(
            "2024-01-15 {:02}:{:02}:{:02}",
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60
        );
        write!(
            out,
            "`{time},`wx2421b1c4370ec43b,`10000100,`0,`,`{},`{},`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`NATIVE,`SUCCESS,`OTHERS,`CNY,`{},`0.00,`0,`0,`0.00,`0.00,`,`,`会员月卡（30天）,`{{\"store\":\"SH001\"}},`{}000,`0.60%,`{},`0.00,`\r\n",
            transaction_id(i),
            out_trade_no(i),
            yuan(fen),
            yuan(fee),
            yuan(fen),
        )
        .unwrap();
    }
    write!(
        out,
        "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\r\n`{rows},`{},`0.00,`0.00,`{}000,`{},`0.00\r\n",
        yuan(gross),
        yuan(fees),
        yuan(gross)
    )
    .unwrap();
    out.flush().unwrap();
}

/// One paid order per row (one in 1,000 with another amount, one in 1,000 missing) and 1,000
/// local-only paid orders.
fn ledger(rows: u64) -> Ledger {
    let noon = parse_beijing_time("2024-01-15 12:00:00").unwrap();
    let mut payments: Vec<LedgerPayment> = (0..rows)
        .filter(|i| i % 1000 != 7)
        .map(|i| LedgerPayment {
            out_trade_no: out_trade_no(i),
            provider_trade_no: Some(transaction_id(i)),
            amount: Fen::new(amount_fen(i) + i64::from(i % 1000 == 3)).unwrap(),
            status: OrderStatus::Paid,
            paid_at: Some(noon),
        })
        .collect();
    payments.extend((0..1000).map(|i| LedgerPayment {
        out_trade_no: format!("PGLOCAL{i:09}"),
        provider_trade_no: None,
        amount: Fen::new(100).unwrap(),
        status: OrderStatus::Paid,
        paid_at: Some(noon + TimeDelta::seconds(i)),
    }));
    Ledger {
        payments,
        refunds: Vec::new(),
    }
}

fn expectation() -> BillExpectation {
    BillExpectation {
        mch_id: Some("10000100".to_owned()),
        day: Some(day()),
    }
}

fn parse_only(path: &Path) -> u64 {
    let file = BufReader::with_capacity(1 << 16, File::open(path).unwrap());
    let mut reader = TradeBillReader::new(file, expectation()).unwrap();
    let mut count = 0;
    while reader.next_row().unwrap().is_some() {
        count += 1;
    }
    count
}

fn reconcile(path: &Path, ledger: Ledger) -> Report {
    let file = BufReader::with_capacity(1 << 16, File::open(path).unwrap());
    let mut reader = TradeBillReader::new(file, expectation()).unwrap();
    let mut matcher = Matcher::new(day(), ledger, MatchOptions::default());
    while let Some(row) = reader.next_row().unwrap() {
        matcher.push(&row.bill_line());
    }
    matcher.finish().unwrap()
}

fn check(report: &Report, rows: u64) {
    let thousandths = rows / 1000;
    let counts = &report.counts;
    let get = |c| counts.get(&c).copied().unwrap_or(0);
    use paygate_reconciliation::Category::*;
    assert_eq!(get(AmountMismatch), thousandths, "{counts:?}");
    assert_eq!(get(MissingLocal), thousandths, "{counts:?}");
    assert_eq!(get(MissingInBill), 1000, "{counts:?}");
    assert_eq!(get(Matched), rows - 2 * thousandths, "{counts:?}");
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn once(path: &Path, rows: u64) {
    let start = Instant::now();
    let parsed = parse_only(path);
    let parse = start.elapsed();
    assert_eq!(parsed, rows);
    let start = Instant::now();
    let ledger = ledger(rows);
    let build = start.elapsed();
    let start = Instant::now();
    let report = reconcile(path, ledger);
    let matched = start.elapsed();
    check(&report, rows);
    println!(
        "| rows | parse alone | parse rows/s | ledger built | parse + match | differences | peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {rows} | {:.2} s | {:.0} | {:.2} s | {:.2} s | {} | {} MiB |",
        parse.as_secs_f64(),
        rows as f64 / parse.as_secs_f64(),
        build.as_secs_f64(),
        matched.as_secs_f64(),
        report.items.len(),
        peak_rss_kib().map_or("?".to_owned(), |k| (k / 1024).to_string()),
    );
}

fn main() {
    let rows = rows();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bill.csv");
    let start = Instant::now();
    write_bill(&path, rows);
    println!(
        "generated {rows} rows ({} MB) in {:.1} s",
        std::fs::metadata(&path).unwrap().len() / 1_000_000,
        start.elapsed().as_secs_f64()
    );
    if std::env::var_os("PAYGATE_BILL_BENCH_ONCE").is_some() {
        once(&path, rows);
        return;
    }
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20))
        .configure_from_args();
    let mut group = criterion.benchmark_group("wechat_bill");
    group.throughput(Throughput::Elements(rows));
    group.bench_function("parse", |b| b.iter(|| parse_only(&path)));
    group.bench_function("parse_and_match", |b| {
        b.iter_batched(
            || ledger(rows),
            |ledger| reconcile(&path, ledger),
            BatchSize::LargeInput,
        )
    });
    group.finish();
    criterion.final_summary();
}
