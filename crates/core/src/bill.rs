//! The provider-neutral view of a statement (bill) line, and the two value formats every
//! provider bill shares: signed yuan amounts and Beijing wall-clock times.
//!
//! The provider crates parse their own files and hand each row over as a [`BillLine`];
//! reconciliation only ever sees this type, so it matches a WeChat and an Alipay bill with the
//! same rules. The line borrows its text from the parser's row, so a million-row bill is
//! matched without allocating per row.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc};

use crate::Fen;

/// UTC+8, the zone of every bill: WeChat and Alipay write Beijing wall-clock times, and a bill
/// covers one Beijing calendar day. China has no daylight saving time.
pub const BEIJING: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(offset) => offset,
    None => panic!("UTC+8 is a valid offset"),
};

/// Whether a bill line records money coming in or going back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BillLineKind {
    /// A successful (or, on WeChat, revoked) payment.
    Payment,
    /// A refund request, dated by when it was made.
    Refund,
}

/// One row of a provider's trade bill in the form reconciliation matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BillLine<'a> {
    /// Payment or refund.
    pub kind: BillLineKind,
    /// The instant that dates the line: payment success time, or refund request time (WeChat)
    /// / completion time (Alipay). It decides the bill day.
    pub occurred_at: DateTime<Utc>,
    /// The provider's trade number (`transaction_id`, `支付宝交易号`).
    pub provider_trade_no: &'a str,
    /// Our order number.
    pub out_trade_no: &'a str,
    /// The provider's refund number, when the provider has one (WeChat).
    pub provider_refund_no: Option<&'a str>,
    /// Our refund number (Alipay's `退款批次号/请求号`).
    pub out_refund_no: Option<&'a str>,
    /// The amount compared with our books: the order total (coupons included) for a payment,
    /// the requested amount for a refund.
    pub amount: Fen,
    /// What actually settles: WeChat 应结订单金额 / 退款金额, Alipay |商家实收|.
    pub settlement: Fen,
    /// The provider's fee in fen, positive when charged to the merchant and negative when
    /// returned (refunds), so the day's fees are a plain sum.
    pub fee_fen: i64,
    /// The provider's status text as printed (WeChat `SUCCESS`/`REVOKED` on payments,
    /// `SUCCESS`/`PROCESSING`/… on refunds); `SUCCESS` for Alipay, whose bill lists only
    /// completed business.
    pub status: &'a str,
}

/// A bill value that is not in the form the provider documents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillValueError {
    /// Not `[-]digits[.digits]`, or too large.
    #[error("{0:?} is not a yuan amount")]
    Amount(String),
    /// A yuan amount with a non-zero digit beyond the fen, which no order can carry.
    #[error("{0:?} is not a whole number of fen")]
    SubFen(String),
    /// Not a `yyyy-MM-dd HH:mm:ss` Beijing time.
    #[error("{0:?} is not a yyyy-MM-dd HH:mm:ss time")]
    Time(String),
}

/// Parses a bill's yuan amount into signed fen exactly: an optional `-`, ASCII digits, and
/// optionally a dot with any number of decimals of which those beyond the second are zeros
/// (WeChat prints fees as `0.53000`). Anything else, thousands separators included (they mean
/// the file went through Excel), is refused rather than guessed.
pub fn parse_bill_yuan(text: &str) -> Result<i64, BillValueError> {
    let invalid = || BillValueError::Amount(text.to_owned());
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if whole.is_empty()
        || whole.len() > 15
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || (unsigned.contains('.') && fraction.is_empty())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(invalid());
    }
    let (fen_digits, beyond) = fraction.split_at(fraction.len().min(2));
    if beyond.bytes().any(|b| b != b'0') {
        return Err(BillValueError::SubFen(text.to_owned()));
    }
    let mut fen: i64 = 0;
    for b in whole.bytes().chain(fen_digits.bytes()) {
        fen = fen * 10 + i64::from(b - b'0');
    }
    // "1.5" is 150 fen: pad the missing decimals.
    for _ in fen_digits.len()..2 {
        fen *= 10;
    }
    Ok(if negative { -fen } else { fen })
}

/// Parses a bill's non-negative yuan amount into [`Fen`].
pub fn parse_bill_fen(text: &str) -> Result<Fen, BillValueError> {
    let fen = parse_bill_yuan(text)?;
    Fen::new(fen).map_err(|_| BillValueError::Amount(text.to_owned()))
}

/// Parses a `yyyy-MM-dd HH:mm:ss` Beijing wall-clock time into a UTC instant. The fixed shape
/// is checked byte by byte because it runs once per row of a million-row bill and chrono's
/// format parser also accepts shorter fields.
pub fn parse_beijing_time(text: &str) -> Result<DateTime<Utc>, BillValueError> {
    let invalid = || BillValueError::Time(text.to_owned());
    let bytes = text.as_bytes();
    if bytes.len() != 19
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || bytes[10] != b' '
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return Err(invalid());
    }
    let number = |range: std::ops::Range<usize>| -> Result<u32, BillValueError> {
        bytes[range].iter().try_fold(0u32, |acc, &b| {
            if b.is_ascii_digit() {
                Ok(acc * 10 + u32::from(b - b'0'))
            } else {
                Err(invalid())
            }
        })
    };
    let year = i32::try_from(number(0..4)?).map_err(|_| invalid())?;
    let date = NaiveDate::from_ymd_opt(year, number(5..7)?, number(8..10)?).ok_or_else(invalid)?;
    let time = NaiveTime::from_hms_opt(number(11..13)?, number(14..16)?, number(17..19)?)
        .ok_or_else(invalid)?;
    Ok(beijing_to_utc(NaiveDateTime::new(date, time)))
}

/// The UTC instant of a Beijing wall-clock time (always unique: UTC+8 has no transitions).
pub fn beijing_to_utc(wall_clock: NaiveDateTime) -> DateTime<Utc> {
    (wall_clock - TimeDelta::hours(8)).and_utc()
}

/// The half-open UTC interval `[D 00:00 +08:00, D+1 00:00 +08:00)` that a bill for Beijing
/// day `D` covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BillDay {
    day: NaiveDate,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

impl BillDay {
    /// The window of Beijing calendar day `day`.
    pub fn new(day: NaiveDate) -> BillDay {
        let start = beijing_to_utc(day.and_time(NaiveTime::MIN));
        BillDay {
            day,
            start,
            end: start + TimeDelta::days(1),
        }
    }

    /// The Beijing calendar day that contains `instant` (not the UTC date: between 00:00 and
    /// 08:00 UTC the two differ).
    pub fn containing(instant: DateTime<Utc>) -> BillDay {
        BillDay::new(instant.with_timezone(&BEIJING).date_naive())
    }

    /// The Beijing calendar day.
    pub fn date(&self) -> NaiveDate {
        self.day
    }

    /// The first instant of the day.
    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    /// The first instant of the next day.
    pub fn end(&self) -> DateTime<Utc> {
        self.end
    }

    /// Whether `instant` lies in the day.
    pub fn contains(&self, instant: DateTime<Utc>) -> bool {
        self.start <= instant && instant < self.end
    }

    /// Whether `instant` lies within `margin` of either midnight that bounds the day, on
    /// either side: such an item may sit in the neighbouring day's bill.
    pub fn near_midnight(&self, instant: DateTime<Utc>, margin: TimeDelta) -> bool {
        (instant - self.start).abs() <= margin || (instant - self.end).abs() <= margin
    }
}

/// How a downloaded bill file is encoded, which decides the parser that reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BillFormat {
    /// A WeChat trade bill as plain UTF-8 text (v2 `downloadbill` without compression).
    WechatText,
    /// A WeChat trade bill, gzip-compressed (v2 `tar_type=GZIP`, v3 `tradebill` download).
    WechatGzip,
    /// An Alipay trade-bill zip (`业务明细` and `业务明细(汇总)` GBK CSV entries).
    AlipayZip,
}

impl BillFormat {
    /// The format a stored file has, told from its first bytes: the gzip magic `1f 8b`, the
    /// zip magic `PK\x03\x04`, anything else plain text. Lets a kept raw file be parsed
    /// again without remembering how it came.
    pub fn sniff(body: &[u8]) -> BillFormat {
        if body.starts_with(&[0x1f, 0x8b]) {
            BillFormat::WechatGzip
        } else if body.starts_with(b"PK\x03\x04") {
            BillFormat::AlipayZip
        } else {
            BillFormat::WechatText
        }
    }
}

/// A bill file as the provider sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadedBill {
    /// How the body is encoded.
    pub format: BillFormat,
    /// The bytes exactly as downloaded: kept as evidence, and what is parsed.
    pub body: Vec<u8>,
    /// Why the file failed the provider's own integrity check (the APIv3 apply answer's SHA1),
    /// when it did: the file is still kept as evidence, and its run fails with this reason.
    pub integrity_failure: Option<String>,
}

/// What asking a provider for one day's trade bill found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BillDownload {
    /// The bill file.
    File(DownloadedBill),
    /// The provider says there is no bill for the day (WeChat `No Bill Exist`,
    /// `NO_STATEMENT_EXIST`, Alipay `isp.bill_not_exist`): no trade that day, or the wrong
    /// merchant. Only an empty day if our books are empty too; Alipay also says this before
    /// its bill is made.
    NoBill,
    /// The bill is being generated (WeChat `Bill Creating`, `STATEMENT_CREATING`): ask again
    /// later.
    NotReady,
    /// This provider app offers no bill download.
    Unsupported,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_amounts_become_exact_signed_fen() {
        assert_eq!(parse_bill_yuan("0.53000"), Ok(53));
        assert_eq!(parse_bill_yuan("-0.12000"), Ok(-12));
        assert_eq!(parse_bill_yuan("100.00"), Ok(10000));
        assert_eq!(parse_bill_yuan("1.5"), Ok(150));
        assert_eq!(parse_bill_yuan("7"), Ok(700));
        assert_eq!(parse_bill_yuan("-32.00"), Ok(-3200));
    }

    #[test]
    fn malformed_and_sub_fen_amounts_are_refused() {
        for bad in [
            "", "-", ".5", "1.", "1,000.00", "+1.00", "1e3", " 1.00", "1.0a", "--1",
        ] {
            assert_eq!(
                parse_bill_yuan(bad),
                Err(BillValueError::Amount(bad.to_owned())),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_bill_yuan("0.53100"),
            Err(BillValueError::SubFen("0.53100".to_owned()))
        );
        assert!(parse_bill_fen("-1.00").is_err());
    }

    #[test]
    fn beijing_times_become_utc_instants() {
        let instant = parse_beijing_time("2024-01-15 00:00:07").unwrap();
        assert_eq!(instant.to_rfc3339(), "2024-01-14T16:00:07+00:00");
        for bad in [
            "2024-01-15T00:00:07",
            "2024-1-15 00:00:07",
            "2024-02-30 00:00:00",
            "2024-01-15 24:00:00",
        ] {
            assert!(parse_beijing_time(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_payment_seven_seconds_after_midnight_belongs_to_the_next_beijing_day() {
        let paid = parse_beijing_time("2024-01-15 00:00:07").unwrap();
        let day = BillDay::containing(paid);
        assert_eq!(day.date(), NaiveDate::from_ymd_opt(2024, 1, 15).unwrap());
        assert!(day.contains(paid));
        assert!(!BillDay::new(NaiveDate::from_ymd_opt(2024, 1, 14).unwrap()).contains(paid));
        assert!(day.near_midnight(paid, TimeDelta::minutes(5)));
        let noon = parse_beijing_time("2024-01-15 12:00:00").unwrap();
        assert!(!day.near_midnight(noon, TimeDelta::minutes(5)));
    }
}
