//! The WeChat Pay trade bill (`pay/downloadbill` body, and the v3 `tradebill` file, which has
//! the same format), read row by row from any [`BufRead`] so a million-row bill never sits in
//! memory as one string.
//!
//! The layout (bills.md §3): a plain header line, one line per row in which every field starts
//! with a backtick, a summary header, one backticked summary line. Decisions:
//! * Columns and summary fields are found **by header name**; a name we do not know is an
//!   error, because the column sets differ between bill types and formats and guessing
//!   misreads amounts.
//! * A row is split on the two-character separator `` ,` `` after dropping its leading
//!   backtick, never on `,` alone (free text may hold commas) and never with a CSV reader
//!   (quotes are literal).
//! * Amounts become exact fen ([`parse_bill_yuan`]); a sub-fen value is an error. Times are
//!   Beijing wall clock and become UTC instants.
//! * The summary is checked against the row sums before the bill counts as read: a truncated
//!   or mis-split file fails loudly instead of reconciling half a day. Until
//!   [`TradeBillReader::next_row`] has returned `Ok(None)`, no row may be trusted.
//! * Every line is bounded ([`MAX_LINE_BYTES`]), so a hostile body cannot grow a buffer without
//!   limit.

use std::io::{BufRead, BufReader, Read};
use std::ops::Range;

use chrono::{DateTime, NaiveDate, Utc};
use flate2::read::GzDecoder;
use paygate_core::bill::{BillDay, parse_beijing_time, parse_bill_yuan};
use paygate_core::{BillLine, BillLineKind, Fen};

/// The longest line accepted. Real rows are a few hundred bytes; free text is bounded by the
/// order API (body ≤ 128 bytes, attach ≤ 127 bytes).
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Why a trade bill could not be read. Each variant names the line (1-based, counting the
/// header) and what was wrong, so finance can find it in the stored raw file.
#[derive(Debug, thiserror::Error)]
pub enum BillError {
    /// The underlying reader failed.
    #[error("reading the bill: {0}")]
    Io(#[source] std::io::Error),
    /// The gzip stream (`tar_type=GZIP`) is corrupt or truncated.
    #[error("the gzip stream is corrupt: {0}")]
    CorruptGzip(String),
    /// The body is empty: no header line.
    #[error("the bill is empty (no header line)")]
    Empty,
    /// A line is longer than [`MAX_LINE_BYTES`].
    #[error("line {line} is longer than {MAX_LINE_BYTES} bytes")]
    LineTooLong {
        /// The line number.
        line: u64,
    },
    /// A line is not UTF-8.
    #[error("line {line} is not UTF-8")]
    NotUtf8 {
        /// The line number.
        line: u64,
    },
    /// The header names a column this parser does not know.
    #[error("unknown column {name:?} in the {section} header")]
    UnknownColumn {
        /// `detail` or `summary`.
        section: &'static str,
        /// The column name.
        name: String,
    },
    /// A column the parser needs is absent from the header.
    #[error("the detail header has no {name:?} column")]
    MissingColumn {
        /// The column name.
        name: &'static str,
    },
    /// A column appears twice in a header.
    #[error("column {name:?} appears twice in the {section} header")]
    DuplicateColumn {
        /// `detail` or `summary`.
        section: &'static str,
        /// The column name.
        name: String,
    },
    /// A row or summary line does not start with a backtick.
    #[error("line {line} does not start with a backtick")]
    MissingBacktick {
        /// The line number.
        line: u64,
    },
    /// A row has a different number of fields from its header.
    #[error("line {line} has {found} fields, the header has {expected}")]
    FieldCount {
        /// The line number.
        line: u64,
        /// The header's column count.
        expected: usize,
        /// The row's field count.
        found: usize,
    },
    /// An amount cell is not an exact yuan amount.
    #[error("line {line}, column {column}: {value:?} is not an exact yuan amount")]
    Amount {
        /// The line number.
        line: u64,
        /// The column name.
        column: &'static str,
        /// The cell.
        value: String,
    },
    /// A time cell is not a `yyyy-MM-dd HH:mm:ss` time.
    #[error("line {line}, column {column}: {value:?} is not a yyyy-MM-dd HH:mm:ss time")]
    Time {
        /// The line number.
        line: u64,
        /// The column name.
        column: &'static str,
        /// The cell.
        value: String,
    },
    /// The summary's count is not a number.
    #[error("line {line}: summary count {value:?} is not a number")]
    Count {
        /// The line number.
        line: u64,
        /// The cell.
        value: String,
    },
    /// A 交易状态 that is neither a payment nor a refund.
    #[error("line {line}: unknown 交易状态 {value:?}")]
    UnknownStatus {
        /// The line number.
        line: u64,
        /// The cell.
        value: String,
    },
    /// A row belongs to another merchant than the one whose bill was asked for.
    #[error("line {line}: 商户号 {found:?} is not the expected merchant {expected:?}")]
    WrongMerchant {
        /// The line number.
        line: u64,
        /// The merchant asked for.
        expected: String,
        /// The merchant in the row.
        found: String,
    },
    /// A row is dated outside the bill's day.
    #[error("line {line}: {at} is not on the bill day {day}")]
    WrongDay {
        /// The line number.
        line: u64,
        /// The bill day asked for.
        day: NaiveDate,
        /// The row's time.
        at: DateTime<Utc>,
    },
    /// The file ends without a summary: truncated.
    #[error("the bill ends without its summary (truncated?)")]
    MissingSummary,
    /// Something follows the summary line.
    #[error("line {line}: unexpected content after the summary")]
    TrailingData {
        /// The line number.
        line: u64,
    },
    /// A summary field disagrees with the sum over the rows.
    #[error("summary {field} is {summary} but the rows add up to {rows}")]
    SummaryMismatch {
        /// The summary field name.
        field: &'static str,
        /// The value printed in the summary (fen, or rows for the count).
        summary: i64,
        /// The value computed from the rows.
        rows: i64,
    },
}

/// What the caller knows about the bill it asked for; rows that contradict it are errors.
#[derive(Debug, Clone, Default)]
pub struct BillExpectation {
    /// The merchant (`mch_id`) whose bill this must be.
    pub mch_id: Option<String>,
    /// The Beijing day the bill must cover.
    pub day: Option<NaiveDate>,
}

/// The detail columns, by the name in the header. The current ("免充值券") format of the ALL
/// (27 columns), SUCCESS (20) and REFUND (29) bills [bills.md §3.2].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    TradeTime,
    AppId,
    MchId,
    SubMchId,
    DeviceInfo,
    TransactionId,
    OutTradeNo,
    OpenId,
    TradeType,
    TradeStatus,
    BankType,
    Currency,
    SettlementAmount,
    CouponAmount,
    RefundId,
    OutRefundNo,
    RefundAmount,
    RechargeCouponRefund,
    RefundType,
    RefundStatus,
    Product,
    Attach,
    Fee,
    FeeRate,
    OrderAmount,
    RefundRequested,
    FeeRemark,
    RefundRequestTime,
    RefundSuccessTime,
}

const COLUMNS: [(&str, Column); 29] = [
    ("交易时间", Column::TradeTime),
    ("公众账号ID", Column::AppId),
    ("商户号", Column::MchId),
    ("特约商户号", Column::SubMchId),
    ("设备号", Column::DeviceInfo),
    ("微信订单号", Column::TransactionId),
    ("商户订单号", Column::OutTradeNo),
    ("用户标识", Column::OpenId),
    ("交易类型", Column::TradeType),
    ("交易状态", Column::TradeStatus),
    ("付款银行", Column::BankType),
    ("货币种类", Column::Currency),
    ("应结订单金额", Column::SettlementAmount),
    ("代金券金额", Column::CouponAmount),
    ("微信退款单号", Column::RefundId),
    ("商户退款单号", Column::OutRefundNo),
    ("退款金额", Column::RefundAmount),
    ("充值券退款金额", Column::RechargeCouponRefund),
    ("退款类型", Column::RefundType),
    ("退款状态", Column::RefundStatus),
    ("商品名称", Column::Product),
    ("商户数据包", Column::Attach),
    ("手续费", Column::Fee),
    ("费率", Column::FeeRate),
    ("订单金额", Column::OrderAmount),
    ("申请退款金额", Column::RefundRequested),
    ("费率备注", Column::FeeRemark),
    ("退款申请时间", Column::RefundRequestTime),
    ("退款成功时间", Column::RefundSuccessTime),
];

/// Columns every bill type has; without them a row cannot be matched.
const REQUIRED: [Column; 12] = [
    Column::TradeTime,
    Column::AppId,
    Column::MchId,
    Column::TransactionId,
    Column::OutTradeNo,
    Column::TradeStatus,
    Column::Currency,
    Column::SettlementAmount,
    Column::CouponAmount,
    Column::Fee,
    Column::FeeRate,
    Column::OrderAmount,
];

fn column_name(column: Column) -> &'static str {
    COLUMNS
        .iter()
        .find(|(_, c)| *c == column)
        .map_or("?", |(name, _)| name)
}

/// The summary fields, by name. Real SUCCESS bills carry all seven, the 2024 doc lists four
/// (总交易单数, 应结订单总金额, 手续费总金额, 订单总金额), so each is optional except the count.
const SUMMARY_FIELDS: [&str; 7] = [
    "总交易单数",
    "应结订单总金额",
    "退款总金额",
    "充值券退款总金额",
    "手续费总金额",
    "订单总金额",
    "申请退款总金额",
];

/// The bill's summary line, read by name. A field the file does not carry is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TradeBillSummary {
    /// 总交易单数: detail rows, refunds included.
    pub count: u64,
    /// 应结订单总金额 in fen.
    pub settlement_total_fen: Option<i64>,
    /// 退款总金额 in fen.
    pub refund_total_fen: Option<i64>,
    /// 充值券退款总金额 in fen.
    pub recharge_coupon_refund_total_fen: Option<i64>,
    /// 手续费总金额 in fen, signed (refund rows return fees).
    pub fee_total_fen: Option<i64>,
    /// 订单总金额 in fen.
    pub order_total_fen: Option<i64>,
    /// 申请退款总金额 in fen.
    pub refund_requested_total_fen: Option<i64>,
}

/// Row sums kept while reading, checked against the summary and used for the day's totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TradeBillTotals {
    /// Payment rows.
    pub payments_count: u64,
    /// Refund rows.
    pub refunds_count: u64,
    /// Σ 订单金额 over payments: the gross the buyers paid, coupons included.
    pub gross_fen: i64,
    /// Σ 应结订单金额.
    pub settlement_gross_fen: i64,
    /// Σ 退款金额.
    pub refund_settled_fen: i64,
    /// Σ 申请退款金额.
    pub refunds_fen: i64,
    /// Σ 充值券退款金额.
    pub recharge_coupon_refund_fen: i64,
    /// Σ 手续费, signed.
    pub fees_fen: i64,
}

impl TradeBillTotals {
    /// Net settlement for finance: settled gross − refunds − fees.
    pub fn net_fen(&self) -> i64 {
        self.settlement_gross_fen - self.refunds_fen - self.fees_fen
    }
}

/// The numbers parsed out of one row (the text stays in the reader's buffer).
#[derive(Debug, Clone, Copy)]
struct ParsedRow {
    kind: BillLineKind,
    occurred_at: DateTime<Utc>,
    order: Fen,
    settlement: Fen,
    coupon: Fen,
    refund: Fen,
    recharge_coupon_refund: Fen,
    refund_requested: Fen,
    fee_fen: i64,
}

/// A pull reader over a WeChat trade bill: the header is read by [`TradeBillReader::new`], each
/// [`TradeBillReader::next_row`] yields one row, and the end of the rows reads and checks the
/// summary.
pub struct TradeBillReader<R> {
    reader: R,
    gzip: bool,
    expectation: BillExpectation,
    window: Option<BillDay>,
    header: Vec<String>,
    /// For each header position, its column.
    columns: Vec<Column>,
    /// For each column (by `Column as usize`), its position in the row.
    position: [Option<usize>; COLUMNS.len()],
    line: String,
    raw: Vec<u8>,
    spans: Vec<Range<usize>>,
    line_number: u64,
    totals: TradeBillTotals,
    summary: Option<TradeBillSummary>,
}

impl<R: Read> TradeBillReader<BufReader<GzDecoder<R>>> {
    /// Reads a gzip-compressed bill (`tar_type=GZIP`, or the v3 download). A corrupt or
    /// truncated stream, including a bad CRC at its end, is [`BillError::CorruptGzip`].
    pub fn from_gzip(compressed: R, expectation: BillExpectation) -> Result<Self, BillError> {
        let reader = BufReader::with_capacity(64 * 1024, GzDecoder::new(compressed));
        Self::open(reader, true, expectation)
    }
}

impl<R: BufRead> TradeBillReader<R> {
    /// Reads the detail header (a leading UTF-8 BOM is skipped) and prepares to read rows.
    pub fn new(reader: R, expectation: BillExpectation) -> Result<Self, BillError> {
        Self::open(reader, false, expectation)
    }

    fn open(reader: R, gzip: bool, expectation: BillExpectation) -> Result<Self, BillError> {
        let window = expectation.day.map(BillDay::new);
        let mut bill = TradeBillReader {
            reader,
            gzip,
            expectation,
            window,
            header: Vec::new(),
            columns: Vec::new(),
            position: [None; COLUMNS.len()],
            line: String::new(),
            raw: Vec::new(),
            spans: Vec::new(),
            line_number: 0,
            totals: TradeBillTotals::default(),
            summary: None,
        };
        if !bill.read_line()? {
            return Err(BillError::Empty);
        }
        let header_line = bill
            .line
            .strip_prefix('\u{feff}')
            .unwrap_or(&bill.line)
            .to_owned();
        for name in header_line.split(',') {
            let column = COLUMNS
                .iter()
                .find(|(known, _)| *known == name)
                .map(|(_, column)| *column)
                .ok_or_else(|| BillError::UnknownColumn {
                    section: "detail",
                    name: name.to_owned(),
                })?;
            let slot = &mut bill.position[column as usize];
            if slot.is_some() {
                return Err(BillError::DuplicateColumn {
                    section: "detail",
                    name: name.to_owned(),
                });
            }
            *slot = Some(bill.columns.len());
            bill.columns.push(column);
            bill.header.push(name.to_owned());
        }
        if let Some(missing) = REQUIRED
            .iter()
            .find(|c| bill.position[**c as usize].is_none())
        {
            return Err(BillError::MissingColumn {
                name: column_name(*missing),
            });
        }
        Ok(bill)
    }

    /// The detail header's column names, in file order.
    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// Reads the next row. `Ok(None)` means the rows ended and the summary was read and agreed
    /// with them; only then is the bill complete.
    pub fn next_row(&mut self) -> Result<Option<TradeBillRow<'_>>, BillError> {
        if self.summary.is_some() {
            return Ok(None);
        }
        if !self.read_line()? {
            return Err(BillError::MissingSummary);
        }
        if !self.line.starts_with('`') {
            self.read_summary()?;
            return Ok(None);
        }
        self.split_fields()?;
        let parsed = self.parse_row()?;
        self.add_to_totals(&parsed);
        Ok(Some(TradeBillRow {
            line: &self.line,
            spans: &self.spans,
            position: &self.position,
            parsed,
        }))
    }

    /// The row sums so far (all rows once [`Self::next_row`] returned `Ok(None)`).
    pub fn totals(&self) -> TradeBillTotals {
        self.totals
    }

    /// The summary, once the rows have ended.
    pub fn summary(&self) -> Option<&TradeBillSummary> {
        self.summary.as_ref()
    }

    /// Reads one line into `self.line` without its terminator; `false` at the end of input.
    fn read_line(&mut self) -> Result<bool, BillError> {
        self.raw.clear();
        self.line_number += 1;
        let limit = (MAX_LINE_BYTES + 2) as u64;
        let read = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.raw)
            .map_err(|error| self.io_error(error))?;
        if read == 0 {
            return Ok(false);
        }
        if self.raw.last() == Some(&b'\n') {
            self.raw.pop();
            if self.raw.last() == Some(&b'\r') {
                self.raw.pop();
            }
        } else if read as u64 == limit {
            return Err(BillError::LineTooLong {
                line: self.line_number,
            });
        }
        if self.raw.len() > MAX_LINE_BYTES {
            return Err(BillError::LineTooLong {
                line: self.line_number,
            });
        }
        let text = std::str::from_utf8(&self.raw).map_err(|_| BillError::NotUtf8 {
            line: self.line_number,
        })?;
        self.line.clear();
        self.line.push_str(text);
        Ok(true)
    }

    fn io_error(&self, error: std::io::Error) -> BillError {
        if self.gzip {
            BillError::CorruptGzip(error.to_string())
        } else {
            BillError::Io(error)
        }
    }

    /// Splits a backticked line into `self.spans`: drop the first backtick, split on `` ,` ``.
    fn split_fields(&mut self) -> Result<(), BillError> {
        let line = self.line_number;
        let body = self
            .line
            .strip_prefix('`')
            .ok_or(BillError::MissingBacktick { line })?;
        self.spans.clear();
        let mut start = 1;
        for part in body.split(",`") {
            self.spans.push(start..start + part.len());
            start += part.len() + 2;
        }
        Ok(())
    }

    fn cell(&self, column: Column) -> Option<&str> {
        self.position[column as usize].map(|at| &self.line[self.spans[at].clone()])
    }

    fn amount(&self, column: Column) -> Result<i64, BillError> {
        match self.cell(column) {
            None => Ok(0),
            Some(text) => parse_bill_yuan(text).map_err(|_| BillError::Amount {
                line: self.line_number,
                column: column_name(column),
                value: text.to_owned(),
            }),
        }
    }

    /// An amount that is never negative in a WeChat bill (only fees carry a sign).
    fn fen(&self, column: Column) -> Result<Fen, BillError> {
        let fen = self.amount(column)?;
        Fen::new(fen).map_err(|_| BillError::Amount {
            line: self.line_number,
            column: column_name(column),
            value: self.cell(column).unwrap_or_default().to_owned(),
        })
    }

    fn time(&self, column: Column) -> Result<Option<DateTime<Utc>>, BillError> {
        self.cell(column)
            .map(|text| {
                parse_beijing_time(text).map_err(|_| BillError::Time {
                    line: self.line_number,
                    column: column_name(column),
                    value: text.to_owned(),
                })
            })
            .transpose()
    }

    fn parse_row(&self) -> Result<ParsedRow, BillError> {
        let line = self.line_number;
        if self.spans.len() != self.columns.len() {
            return Err(BillError::FieldCount {
                line,
                expected: self.columns.len(),
                found: self.spans.len(),
            });
        }
        let status = self.cell(Column::TradeStatus).unwrap_or_default();
        let kind = match status {
            "SUCCESS" | "REVOKED" => BillLineKind::Payment,
            "REFUND" => BillLineKind::Refund,
            other => {
                return Err(BillError::UnknownStatus {
                    line,
                    value: other.to_owned(),
                });
            }
        };
        if let Some(expected) = &self.expectation.mch_id {
            let found = self.cell(Column::MchId).unwrap_or_default();
            if found != expected {
                return Err(BillError::WrongMerchant {
                    line,
                    expected: expected.clone(),
                    found: found.to_owned(),
                });
            }
        }
        let trade_time = self.time(Column::TradeTime)?;
        // REFUND bills carry the request time in its own column; column 1 is not reliably it.
        let occurred_at = match (kind, self.time(Column::RefundRequestTime)?) {
            (BillLineKind::Refund, Some(requested)) => requested,
            _ => trade_time.ok_or(BillError::MissingColumn {
                name: column_name(Column::TradeTime),
            })?,
        };
        if let Some(window) = self.window
            && !window.contains(occurred_at)
        {
            return Err(BillError::WrongDay {
                line,
                day: window.date(),
                at: occurred_at,
            });
        }
        Ok(ParsedRow {
            kind,
            occurred_at,
            order: self.fen(Column::OrderAmount)?,
            settlement: self.fen(Column::SettlementAmount)?,
            coupon: self.fen(Column::CouponAmount)?,
            refund: self.fen(Column::RefundAmount)?,
            recharge_coupon_refund: self.fen(Column::RechargeCouponRefund)?,
            refund_requested: self.fen(Column::RefundRequested)?,
            fee_fen: self.amount(Column::Fee)?,
        })
    }

    fn add_to_totals(&mut self, row: &ParsedRow) {
        let totals = &mut self.totals;
        match row.kind {
            BillLineKind::Payment => totals.payments_count += 1,
            BillLineKind::Refund => totals.refunds_count += 1,
        }
        // Refund rows print 订单金额 0.00, so summing every row is the payments' gross.
        totals.gross_fen += row.order.get();
        totals.settlement_gross_fen += row.settlement.get();
        totals.refund_settled_fen += row.refund.get();
        totals.refunds_fen += row.refund_requested.get();
        totals.recharge_coupon_refund_fen += row.recharge_coupon_refund.get();
        totals.fees_fen += row.fee_fen;
    }

    /// Reads the summary header (in `self.line`) and the summary line, checks them against the
    /// row sums, and checks that nothing but blank lines follows.
    fn read_summary(&mut self) -> Result<(), BillError> {
        let mut names = Vec::new();
        for name in self.line.split(',') {
            let known = SUMMARY_FIELDS
                .iter()
                .find(|known| **known == name)
                .ok_or_else(|| BillError::UnknownColumn {
                    section: "summary",
                    name: name.to_owned(),
                })?;
            if names.contains(known) {
                return Err(BillError::DuplicateColumn {
                    section: "summary",
                    name: name.to_owned(),
                });
            }
            names.push(*known);
        }
        if !self.read_line()? {
            return Err(BillError::MissingSummary);
        }
        self.split_fields()?;
        if self.spans.len() != names.len() {
            return Err(BillError::FieldCount {
                line: self.line_number,
                expected: names.len(),
                found: self.spans.len(),
            });
        }
        let mut summary = TradeBillSummary::default();
        let mut has_count = false;
        for (name, span) in names.iter().zip(&self.spans) {
            let text = &self.line[span.clone()];
            if *name == "总交易单数" {
                summary.count = text.parse().map_err(|_| BillError::Count {
                    line: self.line_number,
                    value: text.to_owned(),
                })?;
                has_count = true;
                continue;
            }
            let fen = parse_bill_yuan(text).map_err(|_| BillError::Amount {
                line: self.line_number,
                column: name,
                value: text.to_owned(),
            })?;
            let slot = match *name {
                "应结订单总金额" => &mut summary.settlement_total_fen,
                "退款总金额" => &mut summary.refund_total_fen,
                "充值券退款总金额" => &mut summary.recharge_coupon_refund_total_fen,
                "手续费总金额" => &mut summary.fee_total_fen,
                "订单总金额" => &mut summary.order_total_fen,
                _ => &mut summary.refund_requested_total_fen,
            };
            *slot = Some(fen);
        }
        if !has_count {
            return Err(BillError::MissingColumn {
                name: "总交易单数"
            });
        }
        check_summary(&summary, &self.totals)?;
        while self.read_line()? {
            if !self.line.is_empty() {
                return Err(BillError::TrailingData {
                    line: self.line_number,
                });
            }
        }
        self.summary = Some(summary);
        Ok(())
    }
}

fn check_summary(summary: &TradeBillSummary, totals: &TradeBillTotals) -> Result<(), BillError> {
    let rows = i64::try_from(totals.payments_count + totals.refunds_count).unwrap_or(i64::MAX);
    let count = i64::try_from(summary.count).unwrap_or(i64::MAX);
    if count != rows {
        return Err(BillError::SummaryMismatch {
            field: "总交易单数",
            summary: count,
            rows,
        });
    }
    // 订单总金额 sums the 订单金额 column over every row; refund rows print 0.00 there.
    let checks = [
        (
            "应结订单总金额",
            summary.settlement_total_fen,
            totals.settlement_gross_fen,
        ),
        (
            "退款总金额",
            summary.refund_total_fen,
            totals.refund_settled_fen,
        ),
        (
            "充值券退款总金额",
            summary.recharge_coupon_refund_total_fen,
            totals.recharge_coupon_refund_fen,
        ),
        ("手续费总金额", summary.fee_total_fen, totals.fees_fen),
        ("订单总金额", summary.order_total_fen, totals.gross_fen),
        (
            "申请退款总金额",
            summary.refund_requested_total_fen,
            totals.refunds_fen,
        ),
    ];
    for (field, printed, computed) in checks {
        if let Some(printed) = printed
            && printed != computed
        {
            return Err(BillError::SummaryMismatch {
                field,
                summary: printed,
                rows: computed,
            });
        }
    }
    Ok(())
}

/// One detail row, borrowed from the reader until the next call.
#[derive(Debug, Clone, Copy)]
pub struct TradeBillRow<'a> {
    line: &'a str,
    spans: &'a [Range<usize>],
    position: &'a [Option<usize>; COLUMNS.len()],
    parsed: ParsedRow,
}

impl<'a> TradeBillRow<'a> {
    /// The cell under header `name`, backtick removed; `None` if the bill has no such column.
    pub fn raw(&self, name: &str) -> Option<&'a str> {
        let (_, column) = COLUMNS.iter().find(|(known, _)| *known == name)?;
        self.cell(*column)
    }

    fn cell(&self, column: Column) -> Option<&'a str> {
        self.position[column as usize].map(|at| &self.line[self.spans[at].clone()])
    }

    fn text(&self, column: Column) -> &'a str {
        self.cell(column).unwrap_or_default()
    }

    /// A cell that WeChat leaves empty (or `0` for the refund ids on payment rows) when it
    /// does not apply.
    fn optional(&self, column: Column, absent: &[&str]) -> Option<&'a str> {
        self.cell(column).filter(|text| !absent.contains(text))
    }

    /// Payment or refund.
    pub fn kind(&self) -> BillLineKind {
        self.parsed.kind
    }

    /// 交易时间 (or 退款申请时间 in a REFUND bill) as an instant.
    pub fn occurred_at(&self) -> DateTime<Utc> {
        self.parsed.occurred_at
    }

    /// 微信订单号.
    pub fn transaction_id(&self) -> &'a str {
        self.text(Column::TransactionId)
    }

    /// 商户订单号.
    pub fn out_trade_no(&self) -> &'a str {
        self.text(Column::OutTradeNo)
    }

    /// 微信退款单号 on refund rows.
    pub fn refund_id(&self) -> Option<&'a str> {
        self.optional(Column::RefundId, &["", "0"])
    }

    /// 商户退款单号 on refund rows.
    pub fn out_refund_no(&self) -> Option<&'a str> {
        self.optional(Column::OutRefundNo, &["", "0"])
    }

    /// 交易状态 on payments, 退款状态 on refunds.
    pub fn status(&self) -> &'a str {
        match self.parsed.kind {
            BillLineKind::Payment => self.text(Column::TradeStatus),
            BillLineKind::Refund => self.text(Column::RefundStatus),
        }
    }

    /// The compared amount: 订单金额 on payments, 申请退款金额 on refunds.
    pub fn amount(&self) -> Fen {
        match self.parsed.kind {
            BillLineKind::Payment => self.parsed.order,
            BillLineKind::Refund => self.parsed.refund_requested,
        }
    }

    /// 应结订单金额 on payments, 退款金额 on refunds.
    pub fn settlement(&self) -> Fen {
        match self.parsed.kind {
            BillLineKind::Payment => self.parsed.settlement,
            BillLineKind::Refund => self.parsed.refund,
        }
    }

    /// 代金券金额 on payments, 充值券退款金额 on refunds.
    pub fn coupon(&self) -> Fen {
        match self.parsed.kind {
            BillLineKind::Payment => self.parsed.coupon,
            BillLineKind::Refund => self.parsed.recharge_coupon_refund,
        }
    }

    /// 手续费, signed: negative on refund rows (the fee returned).
    pub fn fee_fen(&self) -> i64 {
        self.parsed.fee_fen
    }

    /// 费率, e.g. `0.60%`.
    pub fn fee_rate(&self) -> &'a str {
        self.text(Column::FeeRate)
    }

    /// 货币种类.
    pub fn currency(&self) -> &'a str {
        self.text(Column::Currency)
    }

    /// 公众账号ID.
    pub fn appid(&self) -> &'a str {
        self.text(Column::AppId)
    }

    /// 商户号.
    pub fn mch_id(&self) -> &'a str {
        self.text(Column::MchId)
    }

    /// 特约商户号 (`0` outside partner mode).
    pub fn sub_mch_id(&self) -> Option<&'a str> {
        self.optional(Column::SubMchId, &[""])
    }

    /// 设备号, if any.
    pub fn device_info(&self) -> Option<&'a str> {
        self.optional(Column::DeviceInfo, &[""])
    }

    /// 用户标识 (openid).
    pub fn openid(&self) -> Option<&'a str> {
        self.optional(Column::OpenId, &[""])
    }

    /// 交易类型.
    pub fn trade_type(&self) -> Option<&'a str> {
        self.optional(Column::TradeType, &[""])
    }

    /// 付款银行.
    pub fn bank_type(&self) -> Option<&'a str> {
        self.optional(Column::BankType, &[""])
    }

    /// 商品名称.
    pub fn product(&self) -> Option<&'a str> {
        self.optional(Column::Product, &[""])
    }

    /// 商户数据包 (attach).
    pub fn attach(&self) -> Option<&'a str> {
        self.optional(Column::Attach, &[""])
    }

    /// 退款类型 on refund rows.
    pub fn refund_type(&self) -> Option<&'a str> {
        self.optional(Column::RefundType, &[""])
    }

    /// 费率备注, if any.
    pub fn fee_remark(&self) -> Option<&'a str> {
        self.optional(Column::FeeRemark, &[""])
    }

    /// The row in reconciliation's provider-neutral form.
    pub fn bill_line(&self) -> BillLine<'a> {
        BillLine {
            kind: self.parsed.kind,
            occurred_at: self.parsed.occurred_at,
            provider_trade_no: self.transaction_id(),
            out_trade_no: self.out_trade_no(),
            provider_refund_no: self.refund_id(),
            out_refund_no: self.out_refund_no(),
            amount: self.amount(),
            settlement: self.settlement(),
            fee_fen: self.parsed.fee_fen,
            status: self.status(),
        }
    }
}
