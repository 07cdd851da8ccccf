//! The Alipay trade bill (`bill_type=trade`): the zip that `bill_download_url` returns, with a
//! GBK CSV detail file (`…_业务明细.csv`) and a GBK CSV summary file (`…_业务明细(汇总).csv`)
//! [bills.md §4]. Rows are streamed to a callback as they are decoded, so a large bill is never
//! held as one string.
//!
//! Decisions:
//! * Well-kept crates do the decoding: `zip` for the archive (its deflate runs on `flate2`) and
//!   `encoding_rs` for GBK, rather than hand-written decoders of formats with many corner cases.
//! * Entry names are GBK bytes with the zip UTF-8 flag clear; they are decoded as GBK and the
//!   entries are chosen by suffix, never by position.
//! * Contents are decoded line by line: GBK trail bytes are never `\n`, so splitting the bytes
//!   on `\n` first is safe, and a line that is not valid GBK is an error, not replacement text.
//! * Columns are found by header name; an unknown name is an error. Trailing TABs are removed
//!   from cells (and only TABs: spaces can be meaningful).
//! * Refund rows are negative; [`TradeBillRow::bill_line`] turns them into positive amounts
//!   and a fee that is positive when charged, so both providers match with the same rules.
//! * The detail footer (`#交易合计`, `#退款合计`) and the summary file's `合计` row are checked
//!   against the row sums. Until [`read_trade_bill_zip`] returns `Ok`, no row may be trusted.

use std::borrow::Cow;
use std::io::{BufRead, BufReader, Read, Seek};

use chrono::{DateTime, NaiveDate, Utc};
use encoding_rs::GBK;
use paygate_core::bill::{BillDay, parse_beijing_time, parse_bill_yuan};
use paygate_core::{BillLine, BillLineKind, Fen};

/// The longest line accepted in either file.
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// The largest uncompressed entry read (a zip bomb stops here): about four million rows.
pub const MAX_ENTRY_BYTES: u64 = 2 * 1024 * 1024 * 1024;

const DETAIL_SUFFIX: &str = "_业务明细.csv";
const SUMMARY_SUFFIX: &str = "_业务明细(汇总).csv";
const DETAIL_TITLE: &str = "#支付宝业务明细查询";
const SUMMARY_TITLE: &str = "#支付宝业务汇总查询";

/// Why an Alipay trade bill could not be read; each variant names the file and line.
#[derive(Debug, thiserror::Error)]
pub enum BillError {
    /// The archive is not a readable zip, or an entry's data is corrupt.
    #[error("the zip is corrupt: {0}")]
    CorruptZip(String),
    /// The archive lacks the detail or the summary file.
    #[error("the zip has no entry ending in {0:?}")]
    MissingEntry(&'static str),
    /// An entry is larger than [`MAX_ENTRY_BYTES`] uncompressed.
    #[error("entry {0:?} is larger than {MAX_ENTRY_BYTES} bytes")]
    EntryTooLarge(String),
    /// A line is longer than [`MAX_LINE_BYTES`].
    #[error("{file} line {line} is longer than {MAX_LINE_BYTES} bytes")]
    LineTooLong {
        /// `detail` or `summary`.
        file: &'static str,
        /// The line number.
        line: u64,
    },
    /// A line is not valid GBK.
    #[error("{file} line {line} is not GBK text")]
    NotGbk {
        /// `detail` or `summary`.
        file: &'static str,
        /// The line number.
        line: u64,
    },
    /// A line is not what the format has at that place.
    #[error("{file} line {line}: expected {expected}, found {found:?}")]
    UnexpectedLine {
        /// `detail` or `summary`.
        file: &'static str,
        /// The line number.
        line: u64,
        /// What the format has there.
        expected: &'static str,
        /// The line.
        found: String,
    },
    /// A header names a column this parser does not know.
    #[error("unknown column {name:?} in the {file} header")]
    UnknownColumn {
        /// `detail` or `summary`.
        file: &'static str,
        /// The column name.
        name: String,
    },
    /// A column the parser needs is absent, or appears twice.
    #[error("the {file} header has no single {name:?} column")]
    MissingColumn {
        /// `detail` or `summary`.
        file: &'static str,
        /// The column name.
        name: &'static str,
    },
    /// A row has a different number of cells from its header.
    #[error("{file} line {line} has {found} cells, the header has {expected}")]
    FieldCount {
        /// `detail` or `summary`.
        file: &'static str,
        /// The line number.
        line: u64,
        /// The header's column count.
        expected: usize,
        /// The row's cell count.
        found: usize,
    },
    /// A cell is not an exact yuan amount, a count or a time.
    #[error("{file} line {line}, column {column}: {value:?} is not a valid value")]
    Value {
        /// `detail` or `summary`.
        file: &'static str,
        /// The line number.
        line: u64,
        /// The column name.
        column: &'static str,
        /// The cell.
        value: String,
    },
    /// A 业务类型 other than 交易 or 退款, or a row whose amount sign contradicts it.
    #[error("detail line {line}: {reason}")]
    BadRow {
        /// The line number.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// The bill belongs to another account than the one asked for.
    #[error("the bill is for account {found:?}, not {expected:?}")]
    WrongMerchant {
        /// The account asked for (PID + `0156`).
        expected: String,
        /// The account in `#账号`.
        found: String,
    },
    /// The bill's period, or a row's completion time, is not the day asked for.
    #[error("{what} is not within the bill day {day}")]
    WrongDay {
        /// What is outside.
        what: String,
        /// The day asked for.
        day: NaiveDate,
    },
    /// A file ends before its footer (truncated), or lacks its account or period line.
    #[error("the {file} file has no {what} line (truncated?)")]
    MissingLine {
        /// `detail` or `summary`.
        file: &'static str,
        /// Which line.
        what: &'static str,
    },
    /// A footer or summary total disagrees with the sum over the detail rows.
    #[error("{field} is {printed} but the detail rows add up to {rows}")]
    TotalsMismatch {
        /// The total that disagrees.
        field: &'static str,
        /// The printed value (fen, or rows for counts).
        printed: i64,
        /// The value computed from the rows.
        rows: i64,
    },
}

/// What the caller knows about the bill it asked for; a bill that contradicts it is an error.
#[derive(Debug, Clone, Default)]
pub struct BillExpectation {
    /// The account in `#账号`: the merchant PID followed by `0156`.
    pub account: Option<String>,
    /// The Beijing day the bill must cover.
    pub day: Option<NaiveDate>,
}

/// The detail file's columns (a real 2019 file; the same structure in 2020).
const DETAIL_COLUMNS: [&str; 25] = [
    "支付宝交易号",
    "商户订单号",
    "业务类型",
    "商品名称",
    "创建时间",
    "完成时间",
    "门店编号",
    "门店名称",
    "操作员",
    "终端号",
    "对方账户",
    "订单金额（元）",
    "商家实收（元）",
    "支付宝红包（元）",
    "集分宝（元）",
    "支付宝优惠（元）",
    "商家优惠（元）",
    "券核销金额（元）",
    "券名称",
    "商家红包消费金额（元）",
    "卡消费金额（元）",
    "退款批次号/请求号",
    "服务费（元）",
    "分润（元）",
    "备注",
];

/// The summary file's columns (reconstructed from parser code; no verbatim sample exists).
const SUMMARY_COLUMNS: [&str; 12] = [
    "门店编号",
    "门店名称",
    "交易订单总笔数",
    "退款订单总笔数",
    "订单金额（元）",
    "商家实收（元）",
    "支付宝优惠（元）",
    "商家优惠（元）",
    "卡消费金额（元）",
    "服务费（元）",
    "分润（元）",
    "实收净额（元）",
];

/// One detail row, decoded and parsed. Amounts keep the printed signs (refunds negative).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeBillRow {
    /// The cells in header order, trailing TABs removed.
    pub cells: Vec<String>,
    /// 交易 is a payment, 退款 a refund.
    pub kind: BillLineKind,
    /// 完成时间: payment time or refund completion time. It decides the bill day.
    pub completed_at: DateTime<Utc>,
    /// 创建时间: the trade's creation (the original trade's, on refund rows).
    pub created_at: DateTime<Utc>,
    /// 支付宝交易号 (the original trade's on refund rows).
    pub trade_no: String,
    /// 商户订单号.
    pub out_trade_no: String,
    /// 退款批次号/请求号 (our `out_request_no`) on refund rows.
    pub out_request_no: Option<String>,
    /// 订单金额 in fen, negative on refunds.
    pub order_fen: i64,
    /// 商家实收 in fen, negative on refunds.
    pub received_fen: i64,
    /// 支付宝红包 in fen.
    pub alipay_red_packet_fen: i64,
    /// 集分宝 in fen.
    pub jifenbao_fen: i64,
    /// 支付宝优惠 in fen.
    pub alipay_discount_fen: i64,
    /// 商家优惠 in fen.
    pub merchant_discount_fen: i64,
    /// 券核销金额 in fen.
    pub coupon_writeoff_fen: i64,
    /// 商家红包消费金额 in fen.
    pub merchant_red_packet_fen: i64,
    /// 卡消费金额 in fen.
    pub card_fen: i64,
    /// 服务费 in fen: negative when charged, positive when returned.
    pub service_fee_fen: i64,
    /// 分润 in fen.
    pub profit_share_fen: i64,
}

impl TradeBillRow {
    /// The cell under header `name`, if the bill has that column.
    pub fn raw(&self, name: &str) -> Option<&str> {
        let at = DETAIL_COLUMNS.iter().position(|known| *known == name)?;
        self.cells.get(at).map(String::as_str)
    }

    /// A text cell, `None` when empty.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.raw(name).filter(|text| !text.is_empty())
    }

    /// |订单金额|: the amount compared with our books.
    pub fn amount(&self) -> Fen {
        Fen::new(self.order_fen.abs()).unwrap_or(Fen::ZERO)
    }

    /// |商家实收|: what settles to the merchant.
    pub fn settlement(&self) -> Fen {
        Fen::new(self.received_fen.abs()).unwrap_or(Fen::ZERO)
    }

    /// The fee, positive when Alipay charges it (−服务费).
    pub fn fee_fen(&self) -> i64 {
        -self.service_fee_fen
    }

    /// The row in reconciliation's provider-neutral form. The bill lists only completed
    /// business, so every line's status is `SUCCESS`.
    pub fn bill_line(&self) -> BillLine<'_> {
        BillLine {
            kind: self.kind,
            occurred_at: self.completed_at,
            provider_trade_no: &self.trade_no,
            out_trade_no: &self.out_trade_no,
            provider_refund_no: None,
            out_refund_no: self.out_request_no.as_deref(),
            amount: self.amount(),
            settlement: self.settlement(),
            fee_fen: self.fee_fen(),
            status: "SUCCESS",
        }
    }
}

/// The detail file's footer, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DetailFooter {
    /// `#交易合计` count.
    pub trade_count: i64,
    /// `#交易合计` 商家实收 in fen.
    pub trade_received_fen: i64,
    /// `#交易合计` 商家优惠 in fen.
    pub trade_merchant_discount_fen: i64,
    /// `#退款合计` count.
    pub refund_count: i64,
    /// `#退款合计` 商家实收退款 in fen (negative).
    pub refund_received_fen: i64,
    /// `#退款合计` 商家优惠退款 in fen.
    pub refund_merchant_discount_fen: i64,
    /// `#导出时间`, if present.
    pub exported_at: Option<DateTime<Utc>>,
}

/// The `#账号` and `#起始日期 … 终止日期` lines of either file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BillHeading {
    /// The account: merchant PID + `0156`.
    pub account: String,
    /// The period's start.
    pub period_start: Option<DateTime<Utc>>,
    /// The period's end.
    pub period_end: Option<DateTime<Utc>>,
}

/// One row of the summary file (one per store, then `合计`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryRow {
    /// The cells in header order, trailing TABs removed.
    pub cells: Vec<String>,
    /// 交易订单总笔数.
    pub trade_count: i64,
    /// 退款订单总笔数.
    pub refund_count: i64,
    /// 订单金额 in fen (signed sum).
    pub order_fen: i64,
    /// 商家实收 in fen.
    pub received_fen: i64,
    /// 支付宝优惠 in fen (红包 + 集分宝 + 支付宝优惠).
    pub alipay_discount_fen: i64,
    /// 商家优惠 in fen.
    pub merchant_discount_fen: i64,
    /// 卡消费金额 in fen.
    pub card_fen: i64,
    /// 服务费 in fen.
    pub service_fee_fen: i64,
    /// 分润 in fen.
    pub profit_share_fen: i64,
    /// 实收净额 in fen.
    pub net_received_fen: i64,
}

impl SummaryRow {
    /// The cell under header `name`.
    pub fn raw(&self, name: &str) -> Option<&str> {
        let at = SUMMARY_COLUMNS.iter().position(|known| *known == name)?;
        self.cells.get(at).map(String::as_str)
    }
}

/// Sums over the detail rows: the day's totals for finance and the basis of every check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TradeBillTotals {
    /// Payment rows.
    pub payments_count: i64,
    /// Refund rows.
    pub refunds_count: i64,
    /// Σ 订单金额 over payments.
    pub gross_fen: i64,
    /// Σ 商家实收 over payments.
    pub settlement_gross_fen: i64,
    /// Σ |订单金额| over refunds.
    pub refunds_fen: i64,
    /// Σ −服务费: fees charged net of fees returned.
    pub fees_fen: i64,
    /// Σ 商家实收 over refunds (negative).
    pub refund_received_fen: i64,
    /// Σ 商家优惠 over payments.
    pub merchant_discount_fen: i64,
    /// Σ 商家优惠 over refunds.
    pub refund_merchant_discount_fen: i64,
    /// Σ 订单金额, signed, all rows.
    pub order_signed_fen: i64,
    /// Σ (红包 + 集分宝 + 支付宝优惠), all rows.
    pub alipay_discount_fen: i64,
    /// Σ 卡消费金额, all rows.
    pub card_fen: i64,
    /// Σ 服务费, signed, all rows.
    pub service_fee_fen: i64,
    /// Σ 分润, all rows.
    pub profit_share_fen: i64,
}

impl TradeBillTotals {
    /// Net settlement for finance: settled gross − refunds − fees.
    pub fn net_fen(&self) -> i64 {
        self.settlement_gross_fen - self.refunds_fen - self.fees_fen
    }

    fn add(&mut self, row: &TradeBillRow) {
        match row.kind {
            BillLineKind::Payment => {
                self.payments_count += 1;
                self.gross_fen += row.order_fen;
                self.settlement_gross_fen += row.received_fen;
                self.merchant_discount_fen += row.merchant_discount_fen;
            }
            BillLineKind::Refund => {
                self.refunds_count += 1;
                self.refunds_fen += row.order_fen.abs();
                self.refund_received_fen += row.received_fen;
                self.refund_merchant_discount_fen += row.merchant_discount_fen;
            }
        }
        self.fees_fen += row.fee_fen();
        self.order_signed_fen += row.order_fen;
        self.alipay_discount_fen +=
            row.alipay_red_packet_fen + row.jifenbao_fen + row.alipay_discount_fen;
        self.card_fen += row.card_fen;
        self.service_fee_fen += row.service_fee_fen;
        self.profit_share_fen += row.profit_share_fen;
    }
}

/// Everything but the rows (which went to the callback), once the bill has been read and every
/// total agreed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeBill {
    /// The detail file's `#账号` and period.
    pub heading: BillHeading,
    /// The detail file's footer.
    pub footer: DetailFooter,
    /// The summary file's `#账号` and period.
    pub summary_heading: BillHeading,
    /// The summary file's rows, `合计` last.
    pub summary_rows: Vec<SummaryRow>,
    /// The summary file's `#导出时间`.
    pub summary_exported_at: Option<DateTime<Utc>>,
    /// Sums over the detail rows.
    pub totals: TradeBillTotals,
}

/// Reads the trade-bill zip: streams each detail row to `on_row`, then reads the summary file
/// and checks both files' totals against the rows. A bill that fails any check is an error,
/// and the rows already delivered must be discarded.
pub fn read_trade_bill_zip<R: Read + Seek>(
    archive: R,
    expectation: &BillExpectation,
    mut on_row: impl FnMut(&TradeBillRow),
) -> Result<TradeBill, BillError> {
    let mut zip =
        zip::ZipArchive::new(archive).map_err(|e| BillError::CorruptZip(e.to_string()))?;
    let detail_index = find_entry(&mut zip, DETAIL_SUFFIX)?;
    let summary_index = find_entry(&mut zip, SUMMARY_SUFFIX)?;

    let detail = open_entry(&mut zip, detail_index)?;
    let mut lines = GbkLines::new(detail, "detail");
    let heading = read_heading(&mut lines, DETAIL_TITLE, expectation)?;
    let window = expectation.day.map(BillDay::new);
    let header = lines.next_line()?.ok_or(BillError::MissingLine {
        file: "detail",
        what: "column header",
    })?;
    let columns = DetailColumns::from_header(&header)?;
    let mut totals = TradeBillTotals::default();
    let footer_start = loop {
        let Some(line) = lines.next_line()? else {
            return Err(BillError::MissingLine {
                file: "detail",
                what: "#…业务明细列表结束",
            });
        };
        if line.starts_with('#') {
            break line;
        }
        let row = columns.parse_row(&line, lines.line)?;
        if let Some(window) = window
            && !window.contains(row.completed_at)
        {
            return Err(BillError::WrongDay {
                what: format!("detail line {}: 完成时间 {}", lines.line, row.completed_at),
                day: window.date(),
            });
        }
        totals.add(&row);
        on_row(&row);
    };
    expect_marker(&footer_start, "业务明细列表结束", "detail", lines.line)?;
    let footer = read_detail_footer(&mut lines)?;
    check_detail_footer(&footer, &totals)?;
    drop(lines);

    let summary = open_entry(&mut zip, summary_index)?;
    let mut lines = GbkLines::new(summary, "summary");
    let summary_heading = read_heading(&mut lines, SUMMARY_TITLE, expectation)?;
    let header = lines.next_line()?.ok_or(BillError::MissingLine {
        file: "summary",
        what: "column header",
    })?;
    check_header(&header, &SUMMARY_COLUMNS, "summary")?;
    let mut summary_rows = Vec::new();
    let end_marker = loop {
        let Some(line) = lines.next_line()? else {
            return Err(BillError::MissingLine {
                file: "summary",
                what: "#…业务汇总列表结束",
            });
        };
        if line.starts_with('#') {
            break line;
        }
        summary_rows.push(parse_summary_row(&line, lines.line)?);
    };
    expect_marker(&end_marker, "业务汇总列表结束", "summary", lines.line)?;
    let mut summary_exported_at = None;
    while let Some(line) = lines.next_line()? {
        if let Some(rest) = line.strip_prefix("#导出时间：") {
            summary_exported_at = Some(bracketed_time(rest, "summary", lines.line)?);
        } else if !line.is_empty() {
            return Err(unexpected(
                "summary",
                lines.line,
                "#导出时间 or the end",
                &line,
            ));
        }
    }
    let total_row = summary_rows
        .iter()
        .find(|row| row.cells.first().map(String::as_str) == Some("合计"))
        .ok_or(BillError::MissingLine {
            file: "summary",
            what: "合计",
        })?;
    check_summary_total(total_row, &totals)?;
    Ok(TradeBill {
        heading,
        footer,
        summary_heading,
        summary_rows,
        summary_exported_at,
        totals,
    })
}

fn find_entry<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    suffix: &'static str,
) -> Result<usize, BillError> {
    for index in 0..zip.len() {
        let entry = zip
            .by_index_raw(index)
            .map_err(|e| BillError::CorruptZip(e.to_string()))?;
        let raw = entry.name_raw();
        // GBK with the UTF-8 flag clear in real bills; accept a UTF-8 name too.
        let gbk = GBK.decode_without_bom_handling_and_without_replacement(raw);
        let utf8 = std::str::from_utf8(raw).ok();
        if gbk.as_deref().is_some_and(|name| name.ends_with(suffix))
            || utf8.is_some_and(|name| name.ends_with(suffix))
        {
            return Ok(index);
        }
    }
    Err(BillError::MissingEntry(suffix))
}

fn open_entry<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    index: usize,
) -> Result<BufReader<std::io::Take<zip::read::ZipFile<'_, R>>>, BillError> {
    let entry = zip
        .by_index(index)
        .map_err(|e| BillError::CorruptZip(e.to_string()))?;
    if entry.size() > MAX_ENTRY_BYTES {
        let name = GBK.decode(entry.name_raw()).0.into_owned();
        return Err(BillError::EntryTooLarge(name));
    }
    // The declared size can lie; the cap holds whatever the entry inflates to.
    Ok(BufReader::with_capacity(
        64 * 1024,
        entry.take(MAX_ENTRY_BYTES),
    ))
}

/// Decodes a GBK entry line by line, bounded.
struct GbkLines<R> {
    reader: R,
    file: &'static str,
    line: u64,
    raw: Vec<u8>,
}

impl<R: BufRead> GbkLines<R> {
    fn new(reader: R, file: &'static str) -> Self {
        GbkLines {
            reader,
            file,
            line: 0,
            raw: Vec::new(),
        }
    }

    fn next_line(&mut self) -> Result<Option<String>, BillError> {
        self.raw.clear();
        self.line += 1;
        let limit = (MAX_LINE_BYTES + 2) as u64;
        let read = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.raw)
            // Inflate and CRC failures surface here, as I/O errors of the entry reader.
            .map_err(|e| BillError::CorruptZip(e.to_string()))?;
        if read == 0 {
            return Ok(None);
        }
        if self.raw.last() == Some(&b'\n') {
            self.raw.pop();
            if self.raw.last() == Some(&b'\r') {
                self.raw.pop();
            }
        }
        if self.raw.len() > MAX_LINE_BYTES {
            return Err(BillError::LineTooLong {
                file: self.file,
                line: self.line,
            });
        }
        let text: Cow<'_, str> = GBK
            .decode_without_bom_handling_and_without_replacement(&self.raw)
            .ok_or(BillError::NotGbk {
                file: self.file,
                line: self.line,
            })?;
        Ok(Some(text.into_owned()))
    }
}

fn unexpected(file: &'static str, line: u64, expected: &'static str, found: &str) -> BillError {
    BillError::UnexpectedLine {
        file,
        line,
        expected,
        found: found.chars().take(200).collect(),
    }
}

fn expect_marker(
    line: &str,
    marker: &'static str,
    file: &'static str,
    number: u64,
) -> Result<(), BillError> {
    let dashes = line.trim_start_matches('#').trim_matches('-');
    if dashes == marker {
        Ok(())
    } else {
        Err(unexpected(file, number, marker, line))
    }
}

/// `[2024年01月15日 00:00:00]` → an instant.
fn bracketed_time(text: &str, file: &'static str, line: u64) -> Result<DateTime<Utc>, BillError> {
    let invalid = || BillError::Value {
        file,
        line,
        column: "日期",
        value: text.to_owned(),
    };
    let inner = text
        .trim()
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .ok_or_else(invalid)?;
    let dashed = inner
        .replacen('年', "-", 1)
        .replacen('月', "-", 1)
        .replacen('日', "", 1);
    parse_beijing_time(&dashed).map_err(|_| invalid())
}

/// Reads the title, `#账号` and period lines up to the column header's opening marker.
fn read_heading<R: BufRead>(
    lines: &mut GbkLines<R>,
    title: &'static str,
    expectation: &BillExpectation,
) -> Result<BillHeading, BillError> {
    let file = lines.file;
    let first = lines
        .next_line()?
        .ok_or(BillError::MissingLine { file, what: title })?;
    if first != title {
        return Err(unexpected(file, lines.line, title, &first));
    }
    let mut heading = BillHeading::default();
    loop {
        let line = lines.next_line()?.ok_or(BillError::MissingLine {
            file,
            what: "column header",
        })?;
        if let Some(rest) = line.strip_prefix("#账号：") {
            heading.account = rest
                .trim()
                .strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .ok_or_else(|| unexpected(file, lines.line, "#账号：[…]", &line))?
                .to_owned();
        } else if let Some(rest) = line.strip_prefix("#起始日期：") {
            let (start, end) = rest.split_once("终止日期：").ok_or_else(|| {
                unexpected(file, lines.line, "#起始日期：[…]   终止日期：[…]", &line)
            })?;
            heading.period_start = Some(bracketed_time(start, file, lines.line)?);
            heading.period_end = Some(bracketed_time(end, file, lines.line)?);
        } else if line.starts_with("#-") {
            break;
        } else {
            return Err(unexpected(
                file,
                lines.line,
                "#账号, #起始日期 or the list marker",
                &line,
            ));
        }
    }
    if heading.account.is_empty() {
        return Err(BillError::MissingLine {
            file,
            what: "#账号",
        });
    }
    if let Some(expected) = &expectation.account
        && *expected != heading.account
    {
        return Err(BillError::WrongMerchant {
            expected: expected.clone(),
            found: heading.account.clone(),
        });
    }
    if let Some(day) = expectation.day {
        let window = BillDay::new(day);
        if heading.period_start != Some(window.start()) || heading.period_end != Some(window.end())
        {
            return Err(BillError::WrongDay {
                what: format!("the {file} period"),
                day,
            });
        }
    }
    Ok(heading)
}

fn check_header(header: &str, known: &[&'static str], file: &'static str) -> Result<(), BillError> {
    let names: Vec<&str> = header.split(',').collect();
    for name in &names {
        if !known.contains(name) {
            return Err(BillError::UnknownColumn {
                file,
                name: (*name).to_owned(),
            });
        }
    }
    // Same names in the same order: cells are then read by the known position of each name.
    for (at, name) in known.iter().enumerate() {
        if names.get(at) != Some(name) || names.iter().filter(|n| *n == name).count() != 1 {
            return Err(BillError::MissingColumn { file, name });
        }
    }
    Ok(())
}

fn split_cells(line: &str) -> Vec<String> {
    line.split(',')
        .map(|cell| cell.trim_end_matches('\t').to_owned())
        .collect()
}

fn amount(
    cells: &[String],
    at: usize,
    file: &'static str,
    line: u64,
    columns: &[&'static str],
) -> Result<i64, BillError> {
    parse_bill_yuan(&cells[at]).map_err(|_| BillError::Value {
        file,
        line,
        column: columns[at],
        value: cells[at].clone(),
    })
}

/// The detail header, checked; cells are then read by the known column positions.
struct DetailColumns;

impl DetailColumns {
    fn from_header(header: &str) -> Result<Self, BillError> {
        check_header(header, &DETAIL_COLUMNS, "detail")?;
        Ok(DetailColumns)
    }

    fn parse_row(&self, line: &str, number: u64) -> Result<TradeBillRow, BillError> {
        let cells = split_cells(line);
        if cells.len() != DETAIL_COLUMNS.len() {
            return Err(BillError::FieldCount {
                file: "detail",
                line: number,
                expected: DETAIL_COLUMNS.len(),
                found: cells.len(),
            });
        }
        let fen = |at: usize| amount(&cells, at, "detail", number, &DETAIL_COLUMNS);
        let time = |at: usize| {
            parse_beijing_time(&cells[at]).map_err(|_| BillError::Value {
                file: "detail",
                line: number,
                column: DETAIL_COLUMNS[at],
                value: cells[at].clone(),
            })
        };
        let kind = match cells[2].as_str() {
            "交易" => BillLineKind::Payment,
            "退款" => BillLineKind::Refund,
            other => {
                return Err(BillError::BadRow {
                    line: number,
                    reason: format!("unknown 业务类型 {other:?}"),
                });
            }
        };
        let order_fen = fen(11)?;
        let received_fen = fen(12)?;
        let sign_ok = match kind {
            BillLineKind::Payment => order_fen >= 0 && received_fen >= 0,
            BillLineKind::Refund => order_fen <= 0 && received_fen <= 0,
        };
        if !sign_ok {
            return Err(BillError::BadRow {
                line: number,
                reason: format!(
                    "{} row with 订单金额 {order_fen} / 商家实收 {received_fen} fen",
                    cells[2]
                ),
            });
        }
        let out_request_no = Some(cells[21].clone()).filter(|no| !no.is_empty());
        if kind == BillLineKind::Refund && out_request_no.is_none() {
            return Err(BillError::BadRow {
                line: number,
                reason: "refund row without 退款批次号/请求号".to_owned(),
            });
        }
        Ok(TradeBillRow {
            kind,
            completed_at: time(5)?,
            created_at: time(4)?,
            trade_no: cells[0].clone(),
            out_trade_no: cells[1].clone(),
            out_request_no,
            order_fen,
            received_fen,
            alipay_red_packet_fen: fen(13)?,
            jifenbao_fen: fen(14)?,
            alipay_discount_fen: fen(15)?,
            merchant_discount_fen: fen(16)?,
            coupon_writeoff_fen: fen(17)?,
            merchant_red_packet_fen: fen(19)?,
            card_fen: fen(20)?,
            service_fee_fen: fen(22)?,
            profit_share_fen: fen(23)?,
            cells,
        })
    }
}

fn parse_summary_row(line: &str, number: u64) -> Result<SummaryRow, BillError> {
    let cells = split_cells(line);
    if cells.len() != SUMMARY_COLUMNS.len() {
        return Err(BillError::FieldCount {
            file: "summary",
            line: number,
            expected: SUMMARY_COLUMNS.len(),
            found: cells.len(),
        });
    }
    let fen = |at: usize| amount(&cells, at, "summary", number, &SUMMARY_COLUMNS);
    let count = |at: usize| {
        cells[at].parse::<i64>().map_err(|_| BillError::Value {
            file: "summary",
            line: number,
            column: SUMMARY_COLUMNS[at],
            value: cells[at].clone(),
        })
    };
    Ok(SummaryRow {
        trade_count: count(2)?,
        refund_count: count(3)?,
        order_fen: fen(4)?,
        received_fen: fen(5)?,
        alipay_discount_fen: fen(6)?,
        merchant_discount_fen: fen(7)?,
        card_fen: fen(8)?,
        service_fee_fen: fen(9)?,
        profit_share_fen: fen(10)?,
        net_received_fen: fen(11)?,
        cells,
    })
}

/// `5笔，商家实收共220.00元，商家优惠共5.00元` → (count, received, discount).
fn footer_totals(
    text: &str,
    received_label: &str,
    discount_label: &str,
    number: u64,
) -> Result<(i64, i64, i64), BillError> {
    let invalid = || BillError::Value {
        file: "detail",
        line: number,
        column: "合计",
        value: text.to_owned(),
    };
    let (count, rest) = text.split_once("笔，").ok_or_else(invalid)?;
    let rest = rest.strip_prefix(received_label).ok_or_else(invalid)?;
    let (received, rest) = rest.split_once("元，").ok_or_else(invalid)?;
    let discount = rest
        .strip_prefix(discount_label)
        .and_then(|r| r.strip_suffix('元'))
        .ok_or_else(invalid)?;
    let count = count.parse().map_err(|_| invalid())?;
    let received = parse_bill_yuan(received).map_err(|_| invalid())?;
    let discount = parse_bill_yuan(discount).map_err(|_| invalid())?;
    Ok((count, received, discount))
}

fn read_detail_footer<R: BufRead>(lines: &mut GbkLines<R>) -> Result<DetailFooter, BillError> {
    let mut footer = DetailFooter::default();
    let (mut trades, mut refunds) = (false, false);
    while let Some(line) = lines.next_line()? {
        if let Some(rest) = line.strip_prefix("#交易合计：") {
            (
                footer.trade_count,
                footer.trade_received_fen,
                footer.trade_merchant_discount_fen,
            ) = footer_totals(rest, "商家实收共", "商家优惠共", lines.line)?;
            trades = true;
        } else if let Some(rest) = line.strip_prefix("#退款合计：") {
            (
                footer.refund_count,
                footer.refund_received_fen,
                footer.refund_merchant_discount_fen,
            ) = footer_totals(rest, "商家实收退款共", "商家优惠退款共", lines.line)?;
            refunds = true;
        } else if let Some(rest) = line.strip_prefix("#导出时间：") {
            footer.exported_at = Some(bracketed_time(rest, "detail", lines.line)?);
        } else if !line.is_empty() {
            return Err(unexpected("detail", lines.line, "a # footer line", &line));
        }
    }
    if !trades {
        return Err(BillError::MissingLine {
            file: "detail",
            what: "#交易合计",
        });
    }
    if !refunds {
        return Err(BillError::MissingLine {
            file: "detail",
            what: "#退款合计",
        });
    }
    Ok(footer)
}

fn compare(field: &'static str, printed: i64, rows: i64) -> Result<(), BillError> {
    if printed == rows {
        Ok(())
    } else {
        Err(BillError::TotalsMismatch {
            field,
            printed,
            rows,
        })
    }
}

fn check_detail_footer(footer: &DetailFooter, totals: &TradeBillTotals) -> Result<(), BillError> {
    compare("#交易合计 笔数", footer.trade_count, totals.payments_count)?;
    compare(
        "#交易合计 商家实收",
        footer.trade_received_fen,
        totals.settlement_gross_fen,
    )?;
    compare(
        "#交易合计 商家优惠",
        footer.trade_merchant_discount_fen,
        totals.merchant_discount_fen,
    )?;
    compare("#退款合计 笔数", footer.refund_count, totals.refunds_count)?;
    compare(
        "#退款合计 商家实收退款",
        footer.refund_received_fen,
        totals.refund_received_fen,
    )?;
    compare(
        "#退款合计 商家优惠退款",
        footer.refund_merchant_discount_fen,
        totals.refund_merchant_discount_fen,
    )
}

fn check_summary_total(total: &SummaryRow, totals: &TradeBillTotals) -> Result<(), BillError> {
    compare(
        "汇总 交易订单总笔数",
        total.trade_count,
        totals.payments_count,
    )?;
    compare(
        "汇总 退款订单总笔数",
        total.refund_count,
        totals.refunds_count,
    )?;
    compare("汇总 订单金额", total.order_fen, totals.order_signed_fen)?;
    compare(
        "汇总 商家实收",
        total.received_fen,
        totals.settlement_gross_fen + totals.refund_received_fen,
    )?;
    compare(
        "汇总 支付宝优惠",
        total.alipay_discount_fen,
        totals.alipay_discount_fen,
    )?;
    compare(
        "汇总 商家优惠",
        total.merchant_discount_fen,
        totals.merchant_discount_fen + totals.refund_merchant_discount_fen,
    )?;
    compare("汇总 卡消费金额", total.card_fen, totals.card_fen)?;
    compare("汇总 服务费", total.service_fee_fen, totals.service_fee_fen)?;
    compare("汇总 分润", total.profit_share_fen, totals.profit_share_fen)?;
    compare(
        "汇总 实收净额",
        total.net_received_fen,
        total.received_fen + total.service_fee_fen + total.profit_share_fen,
    )
}
