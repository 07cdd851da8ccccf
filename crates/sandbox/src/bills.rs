//! The bills the simulated providers serve: one Beijing day of the sandbox's own trades and
//! refunds, written byte for byte in the real formats (bills.md §3, §4) so paygate's parsers
//! read them exactly as they read WeChat's and Alipay's.
//!
//! * WeChat: the `bill_type=ALL` text (27 columns, a backtick before every field, CRLF, the
//!   7-field summary), gzip-compressed as `tar_type=GZIP` asks.
//! * Alipay: a zip of the GBK `业务明细` and `业务明细(汇总)` CSV files, entry names GBK with the
//!   zip UTF-8 flag clear. The `zip` crate cannot write a name that is not UTF-8, so the few
//!   bytes of a deflated two-entry zip are laid out here (the reading side uses the crate).
//!
//! Fees are 0.6 % of the amount, rounded half up to the fen, charged on payments and returned
//! on refunds. A payment's line is dated by its payment time, a refund's by its refund time.
//! Free text is cleaned of what the formats cannot carry (backticks, commas, line breaks).

use std::io::Write;

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use encoding_rs::GBK;
use flate2::Compression;
use flate2::write::{DeflateEncoder, GzEncoder};
use paygate_core::{BillDay, Fen, ProviderKind};
use paygate_wechat::sign::SignType;

use crate::faults::{Fault, FaultKind};
use crate::state::china_time;
use crate::trades::{AlipayTrade, Trade, TradeDetail, TradeStatus, WechatTrade};

/// How long an APIv3 `download_url` works (the 2024 doc's five minutes).
pub(crate) const DOWNLOAD_URL_LIFETIME: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// The most download URLs alive at once: the files are kept in memory until they expire.
const MAX_ISSUED_BILLS: usize = 64;

/// Issued files by token: when each expires, and its bytes.
type IssuedFiles = std::collections::HashMap<String, (DateTime<Utc>, Vec<u8>)>;

/// The APIv3 bill files behind the download URLs handed out, by token, until they expire.
#[derive(Debug, Default)]
pub(crate) struct IssuedBills {
    files: std::sync::Mutex<IssuedFiles>,
}

impl IssuedBills {
    fn lock(&self) -> std::sync::MutexGuard<'_, IssuedFiles> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `body` under `token` until `now` + [`DOWNLOAD_URL_LIFETIME`]; the expired ones
    /// go, and the oldest when too many are alive.
    pub(crate) fn issue(&self, token: String, body: Vec<u8>, now: DateTime<Utc>) {
        let mut files = self.lock();
        files.retain(|_, (expires, _)| *expires > now);
        while files.len() >= MAX_ISSUED_BILLS {
            let oldest = files
                .iter()
                .min_by_key(|(_, (expires, _))| *expires)
                .map(|(token, _)| token.clone());
            match oldest {
                Some(token) => files.remove(&token),
                None => break,
            };
        }
        files.insert(token, (now + DOWNLOAD_URL_LIFETIME, body));
    }

    /// The file behind `token`, unless it expired.
    pub(crate) fn get(&self, token: &str, now: DateTime<Utc>) -> Option<Vec<u8>> {
        self.lock()
            .get(token)
            .filter(|(expires, _)| *expires > now)
            .map(|(_, body)| body.clone())
    }
}

/// Lower-case hex SHA1 of `text`: the `hash_value` of an APIv3 bill, which covers the file
/// before compression.
pub(crate) fn sha1_hex(text: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        text,
    ))
}

/// Bill-content faults, applied to the trades a bill is built from.
#[derive(Debug, Default)]
pub(crate) struct BillEdits {
    faults: Vec<Fault>,
}

impl BillEdits {
    /// The edits the bill-content `faults` ask for.
    pub(crate) fn new(faults: Vec<Fault>) -> BillEdits {
        BillEdits { faults }
    }

    /// `trades` as the edited bill shows them: omitted payments lose their payment time,
    /// shifted ones their amount, and foreign trades are added, paid within `day`.
    pub(crate) fn apply(
        &self,
        mut trades: Vec<Trade>,
        provider: ProviderKind,
        day: NaiveDate,
        now: DateTime<Utc>,
    ) -> Vec<Trade> {
        let window = BillDay::new(day);
        for fault in &self.faults {
            let Some(no) = fault.out_trade_no.clone() else {
                continue;
            };
            let existing = trades
                .iter_mut()
                .find(|t| t.provider == provider && t.out_trade_no == no);
            match (&fault.kind, existing) {
                (FaultKind::BillOmitTrade, Some(trade)) => trade.paid_at = None,
                (FaultKind::BillAmountDelta { fen }, Some(trade)) => {
                    if let Ok(amount) = Fen::new(trade.amount.get() + fen) {
                        trade.amount = amount;
                    }
                }
                (FaultKind::BillForeignTrade { fen }, None) => {
                    let Ok(amount) = Fen::new(*fen) else { continue };
                    let paid_at = if window.contains(now) {
                        now
                    } else {
                        window.start() + chrono::TimeDelta::hours(12)
                    };
                    trades.push(foreign_trade(provider, no, amount, paid_at));
                }
                _ => {}
            }
        }
        trades
    }
}

/// A paid trade made outside paygate on the same merchant account.
fn foreign_trade(provider: ProviderKind, no: String, amount: Fen, paid_at: DateTime<Utc>) -> Trade {
    let detail = if provider == ProviderKind::WECHAT {
        TradeDetail::Wechat(WechatTrade {
            appid: "wx_other_system".into(),
            trade_type: "NATIVE".into(),
            sign_type: SignType::Md5,
            prepay_id: String::new(),
            pay_url: None,
            openid: None,
            attach: None,
            request_digest: String::new(),
            api_v3: false,
        })
    } else {
        TradeDetail::Alipay(AlipayTrade {
            app_id: "other_system".into(),
            method: "alipay.trade.precreate".into(),
            buyer_id: None,
            body: None,
            passback_params: None,
            qr_code: None,
        })
    };
    Trade {
        provider,
        provider_trade_no: Some(format!("4200{}", crate::state::digits(24))),
        out_trade_no: no,
        amount,
        status: TradeStatus::Paid,
        subject: "another system".into(),
        notify_url: None,
        created_at: paid_at,
        paid_at: Some(paid_at),
        refunds: Vec::new(),
        detail,
    }
}

/// One line of a bill before formatting.
struct Line<'a> {
    trade: &'a Trade,
    /// `None` for the payment, the refund's index otherwise.
    refund: Option<usize>,
    at: DateTime<Utc>,
}

/// The payments and refunds of `provider` on Beijing day `day`, in time order.
fn lines<'a>(trades: &'a [Trade], provider: ProviderKind, day: NaiveDate) -> Vec<Line<'a>> {
    let window = BillDay::new(day);
    let mut lines = Vec::new();
    for trade in trades.iter().filter(|t| t.provider == provider) {
        if trade.status == TradeStatus::Paid
            && let Some(paid_at) = trade.paid_at.filter(|at| window.contains(*at))
        {
            lines.push(Line {
                trade,
                refund: None,
                at: paid_at,
            });
        }
        for (index, refund) in trade.refunds.iter().enumerate() {
            if window.contains(refund.refunded_at) {
                lines.push(Line {
                    trade,
                    refund: Some(index),
                    at: refund.refunded_at,
                });
            }
        }
    }
    lines.sort_by_key(|line| line.at);
    lines
}

/// Whether the provider has anything to bill on `day`.
pub(crate) fn has_lines(trades: &[Trade], provider: ProviderKind, day: NaiveDate) -> bool {
    !lines(trades, provider, day).is_empty()
}

/// 0.6 % of `fen`, rounded half up.
fn fee(fen: i64) -> i64 {
    (fen * 6 + 500) / 1000
}

/// Signed yuan with two decimals.
fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", fen.abs() / 100, fen.abs() % 100)
}

/// Signed yuan with five decimals, as WeChat prints fees.
fn yuan5(fen: i64) -> String {
    format!("{}000", yuan(fen))
}

fn beijing(at: DateTime<Utc>) -> String {
    china_time(at).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Free text as the bill can carry it.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '`' | ',' | '\r' | '\n' | '\t' => ' ',
            other => other,
        })
        .collect()
}

const WECHAT_HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注";
const WECHAT_SUMMARY_HEADER: &str =
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额";

/// The WeChat `bill_type=ALL` text of `day` for merchant `mch_id`, uncompressed.
pub(crate) fn wechat_bill_text(trades: &[Trade], mch_id: &str, day: NaiveDate) -> String {
    let mut out = String::new();
    out.push_str(WECHAT_HEADER);
    out.push_str("\r\n");
    let (mut settled, mut refunded, mut fees, mut ordered, mut requested) = (0, 0, 0, 0, 0);
    let all = lines(trades, ProviderKind::WECHAT, day);
    for line in &all {
        let trade = line.trade;
        let (appid, openid, trade_type, attach) = match &trade.detail {
            TradeDetail::Wechat(w) => (
                w.appid.as_str(),
                w.openid.clone().unwrap_or_default(),
                w.trade_type.as_str(),
                w.attach.clone().unwrap_or_default(),
            ),
            TradeDetail::Alipay(_) => ("", String::new(), "", String::new()),
        };
        let amount = trade.amount.get();
        let (
            status,
            settlement,
            order,
            refund_id,
            out_refund_no,
            refund,
            refund_type,
            refund_status,
            line_fee,
        ) = match line.refund.and_then(|i| trade.refunds.get(i)) {
            None => (
                "SUCCESS",
                amount,
                amount,
                "0".to_owned(),
                "0".to_owned(),
                0,
                "",
                "",
                fee(amount),
            ),
            Some(r) => (
                "REFUND",
                0,
                0,
                r.refund_id.clone(),
                r.out_refund_no.clone(),
                r.amount.get(),
                "ORIGINAL",
                "SUCCESS",
                -fee(r.amount.get()),
            ),
        };
        settled += settlement;
        refunded += refund;
        fees += line_fee;
        ordered += order;
        requested += refund;
        let fields = [
            beijing(line.at),
            appid.to_owned(),
            mch_id.to_owned(),
            "0".to_owned(),
            String::new(),
            trade.provider_trade_no.clone().unwrap_or_default(),
            trade.out_trade_no.clone(),
            openid,
            trade_type.to_owned(),
            status.to_owned(),
            "OTHERS".to_owned(),
            "CNY".to_owned(),
            yuan(settlement),
            yuan(0),
            refund_id,
            out_refund_no,
            yuan(refund),
            yuan(0),
            refund_type.to_owned(),
            refund_status.to_owned(),
            clean(&trade.subject),
            clean(&attach),
            yuan5(line_fee),
            "0.60%".to_owned(),
            yuan(order),
            yuan(refund),
            String::new(),
        ];
        push_backticked(&mut out, &fields);
    }
    out.push_str(WECHAT_SUMMARY_HEADER);
    out.push_str("\r\n");
    let summary = [
        all.len().to_string(),
        yuan(settled),
        yuan(refunded),
        yuan(0),
        yuan5(fees),
        yuan(ordered),
        yuan(requested),
    ];
    push_backticked(&mut out, &summary);
    out
}

fn push_backticked(out: &mut String, fields: &[String]) {
    let cells: Vec<String> = fields.iter().map(|f| format!("`{f}")).collect();
    out.push_str(&cells.join(","));
    out.push_str("\r\n");
}

/// `text` gzip-compressed (with mtime 0, so the same bill is the same bytes).
pub(crate) fn gzip(text: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(text)?;
    encoder.finish()
}

const ALIPAY_HEADER: &str = "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注";
const ALIPAY_SUMMARY_HEADER: &str = "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,商家优惠（元）,卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）";
const DETAIL_START: &str = "#-----------------------------------------业务明细列表----------------------------------------";
const DETAIL_END: &str = "#-----------------------------------------业务明细列表结束------------------------------------";
const SUMMARY_START: &str = "#-----------------------------------------业务汇总列表----------------------------------------";
const SUMMARY_END: &str = "#----------------------------------------业务汇总列表结束-------------------------------------";

fn chinese_day(day: NaiveDate) -> String {
    format!(
        "{}年{:02}月{:02}日 00:00:00",
        day.year(),
        day.month(),
        day.day()
    )
}

/// The Alipay trade-bill zip of `day` for account `account` (PID + `0156`), exported `now`.
pub(crate) fn alipay_bill_zip(
    trades: &[Trade],
    account: &str,
    day: NaiveDate,
    now: DateTime<Utc>,
) -> std::io::Result<Vec<u8>> {
    let next = day.succ_opt().unwrap_or(day);
    let period = format!(
        "#起始日期：[{}]   终止日期：[{}]",
        chinese_day(day),
        chinese_day(next)
    );
    let exported = format!(
        "#导出时间：[{}]",
        china_time(now).format("%Y年%m月%d日 %H:%M:%S")
    );
    let mut detail = vec![
        "#支付宝业务明细查询".to_owned(),
        format!("#账号：[{account}]"),
        period.clone(),
        DETAIL_START.to_owned(),
        ALIPAY_HEADER.to_owned(),
    ];
    let (mut trade_count, mut trade_received, mut refund_count, mut refund_received) = (0, 0, 0, 0);
    let (mut order_sum, mut fee_sum) = (0, 0);
    for line in lines(trades, ProviderKind::ALIPAY, day) {
        let trade = line.trade;
        let (kind, amount, request_no) = match line.refund.and_then(|i| trade.refunds.get(i)) {
            None => ("交易", trade.amount.get(), String::new()),
            Some(r) => ("退款", -r.amount.get(), r.out_refund_no.clone()),
        };
        // 服务费 is negative when charged (payments) and positive when returned (refunds).
        let service_fee = if amount >= 0 {
            -fee(amount)
        } else {
            fee(-amount)
        };
        if amount >= 0 {
            trade_count += 1;
            trade_received += amount;
        } else {
            refund_count += 1;
            refund_received += amount;
        }
        order_sum += amount;
        fee_sum += service_fee;
        let subject = clean(&trade.subject);
        let remark = match &trade.detail {
            TradeDetail::Alipay(a) => clean(a.body.as_deref().unwrap_or_default()),
            TradeDetail::Wechat(_) => String::new(),
        };
        let cells = [
            format!("{}\t", trade.provider_trade_no.clone().unwrap_or_default()),
            format!("{}\t", trade.out_trade_no),
            format!("{kind}\t"),
            subject,
            beijing(trade.created_at),
            beijing(line.at),
            "\t".to_owned(),
            "\t".to_owned(),
            "\t".to_owned(),
            "\t".to_owned(),
            "**买(sandbox***@example.com)\t".to_owned(),
            yuan(amount),
            yuan(amount),
            yuan(0),
            yuan(0),
            yuan(0),
            yuan(0),
            yuan(0),
            String::new(),
            format!("{}\t", yuan(0)),
            yuan(0),
            format!("{request_no}\t"),
            yuan(service_fee),
            yuan(0),
            remark,
        ];
        detail.push(cells.join(","));
    }
    detail.push(DETAIL_END.to_owned());
    detail.push(format!(
        "#交易合计：{trade_count}笔，商家实收共{}元，商家优惠共0.00元",
        yuan(trade_received)
    ));
    detail.push(format!(
        "#退款合计：{refund_count}笔，商家实收退款共{}元，商家优惠退款共0.00元",
        yuan(refund_received)
    ));
    detail.push(exported.clone());

    let received = trade_received + refund_received;
    let totals = |label: [&str; 2]| {
        [
            label[0].to_owned(),
            label[1].to_owned(),
            trade_count.to_string(),
            refund_count.to_string(),
            yuan(order_sum),
            yuan(received),
            yuan(0),
            yuan(0),
            yuan(0),
            yuan(fee_sum),
            yuan(0),
            yuan(received + fee_sum),
        ]
        .join(",")
    };
    let mut summary = vec![
        "#支付宝业务汇总查询".to_owned(),
        format!("#账号：[{account}]"),
        period,
        SUMMARY_START.to_owned(),
        ALIPAY_SUMMARY_HEADER.to_owned(),
    ];
    // Every sandbox trade is made without a store: one store row, then the total.
    summary.push(totals(["\t", "\t"]));
    summary.push(totals(["合计", ""]));
    summary.push(SUMMARY_END.to_owned());
    summary.push(exported);

    let date = day.format("%Y%m%d");
    let detail_name = format!("{account}_{date}_业务明细.csv");
    let summary_name = format!("{account}_{date}_业务明细(汇总).csv");
    let entries = [
        (gbk(&detail_name), gbk(&crlf(&detail))),
        (gbk(&summary_name), gbk(&crlf(&summary))),
    ];
    zip_gbk(&entries, now)
}

fn crlf(lines: &[String]) -> String {
    let mut text = lines.join("\r\n");
    text.push_str("\r\n");
    text
}

fn gbk(text: &str) -> Vec<u8> {
    GBK.encode(text).0.into_owned()
}

/// A zip of deflated `entries` whose names are raw (GBK) bytes with the UTF-8 flag clear.
fn zip_gbk(entries: &[(Vec<u8>, Vec<u8>)], now: DateTime<Utc>) -> std::io::Result<Vec<u8>> {
    let local = china_time(now);
    let dos_time =
        u16::try_from((local.hour() << 11) | (local.minute() << 5) | (local.second() / 2))
            .unwrap_or(0);
    let dos_date = u16::try_from(
        (((local.year() - 1980).max(0) as u32) << 9) | (local.month() << 5) | local.day(),
    )
    .unwrap_or(0);
    let too_large = || std::io::Error::other("bill entry too large for a zip without zip64");
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data)?;
        let compressed = encoder.finish()?;
        let mut crc = flate2::Crc::new();
        crc.update(data);
        let offset = u32::try_from(out.len()).map_err(|_| too_large())?;
        let csize = u32::try_from(compressed.len()).map_err(|_| too_large())?;
        let usize_ = u32::try_from(data.len()).map_err(|_| too_large())?;
        let name_len = u16::try_from(name.len()).map_err(|_| too_large())?;
        // version needed 2.0, flags 0 (bit 11 clear: the name is not UTF-8), deflate.
        let common = |buffer: &mut Vec<u8>| {
            for half in [20u16, 0, 8, dos_time, dos_date] {
                buffer.extend_from_slice(&half.to_le_bytes());
            }
            for word in [crc.sum(), csize, usize_] {
                buffer.extend_from_slice(&word.to_le_bytes());
            }
            buffer.extend_from_slice(&name_len.to_le_bytes());
        };
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        common(&mut out);
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&compressed);

        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes());
        common(&mut central);
        // extra, comment, disk, internal attributes; external attributes; offset.
        for half in [0u16, 0, 0, 0] {
            central.extend_from_slice(&half.to_le_bytes());
        }
        central.extend_from_slice(&0u32.to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name);
    }
    let central_offset = u32::try_from(out.len()).map_err(|_| too_large())?;
    let central_size = u32::try_from(central.len()).map_err(|_| too_large())?;
    let count = u16::try_from(entries.len()).map_err(|_| too_large())?;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    for half in [0u16, 0, count, count] {
        out.extend_from_slice(&half.to_le_bytes());
    }
    out.extend_from_slice(&central_size.to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trades::Refund;
    use chrono::TimeZone;
    use paygate_core::BillLineKind;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        // 2024-01-15 h:m Beijing.
        Utc.with_ymd_and_hms(2024, 1, 15, h, m, 0).unwrap() - chrono::Duration::hours(8)
    }

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 1, 15).unwrap()
    }

    fn trade(provider: ProviderKind, no: &str, fen: i64, paid: Option<DateTime<Utc>>) -> Trade {
        let detail = if provider == ProviderKind::WECHAT {
            TradeDetail::Wechat(WechatTrade {
                appid: "wx1".into(),
                trade_type: "JSAPI".into(),
                sign_type: SignType::Md5,
                prepay_id: "p".into(),
                pay_url: None,
                openid: Some("o1".into()),
                attach: Some("{\"a\":1}".into()),
                request_digest: String::new(),
                api_v3: false,
            })
        } else {
            TradeDetail::Alipay(AlipayTrade {
                app_id: "2021".into(),
                method: "alipay.trade.precreate".into(),
                buyer_id: None,
                body: None,
                passback_params: None,
                qr_code: None,
            })
        };
        Trade {
            provider,
            out_trade_no: no.into(),
            amount: Fen::new(fen).unwrap(),
            status: if paid.is_some() {
                TradeStatus::Paid
            } else {
                TradeStatus::AwaitingPayment
            },
            subject: "茶, `好`".into(),
            notify_url: None,
            provider_trade_no: Some(format!("42{no}")),
            created_at: at(0, 1),
            paid_at: paid,
            refunds: Vec::new(),
            detail,
        }
    }

    fn book(provider: ProviderKind) -> Vec<Trade> {
        let mut refunded = trade(provider, "T2", 5000, Some(at(10, 0)));
        refunded.refunds.push(Refund {
            out_refund_no: "R2-1".into(),
            refund_id: "5000001".into(),
            amount: Fen::new(2000).unwrap(),
            refunded_at: at(15, 30),
        });
        vec![
            trade(provider, "T1", 1999, Some(at(9, 0))),
            refunded,
            trade(provider, "T3", 700, None),
            // The next day: not in this bill.
            trade(
                provider,
                "T4",
                800,
                Some(at(23, 59) + chrono::Duration::minutes(2)),
            ),
        ]
    }

    #[test]
    fn the_wechat_bill_reads_back_through_paygates_parser() {
        let text = wechat_bill_text(&book(ProviderKind::WECHAT), "10000100", day());
        let gz = gzip(text.as_bytes()).unwrap();
        let expectation = paygate_wechat::bill::BillExpectation {
            mch_id: Some("10000100".into()),
            day: Some(day()),
        };
        let mut reader =
            paygate_wechat::bill::TradeBillReader::from_gzip(&gz[..], expectation).unwrap();
        let mut seen = Vec::new();
        while let Some(row) = reader.next_row().unwrap() {
            let line = row.bill_line();
            seen.push((
                line.kind,
                line.out_trade_no.to_owned(),
                line.amount.get(),
                line.fee_fen,
            ));
        }
        assert_eq!(
            seen,
            [
                (BillLineKind::Payment, "T1".into(), 1999, 12),
                (BillLineKind::Payment, "T2".into(), 5000, 30),
                (BillLineKind::Refund, "T2".into(), 2000, -12),
            ]
        );
        assert!(text.starts_with("交易时间,"));
        assert!(text.contains("`茶   好 ,"), "free text cleaned: {text}");
    }

    #[test]
    fn a_v3_download_url_works_for_five_minutes_and_the_oldest_go_first() {
        let issued = IssuedBills::default();
        let now = at(10, 0);
        issued.issue("t1".into(), b"bill".to_vec(), now);
        assert_eq!(
            issued.get("t1", now + chrono::Duration::minutes(4)),
            Some(b"bill".to_vec())
        );
        assert_eq!(issued.get("t1", now + DOWNLOAD_URL_LIFETIME), None);
        assert_eq!(issued.get("nope", now), None);
        for n in 0..MAX_ISSUED_BILLS {
            issued.issue(
                format!("n{n}"),
                Vec::new(),
                now + chrono::Duration::seconds(n as i64 + 1),
            );
        }
        assert_eq!(issued.get("t1", now), None, "the oldest made room");
        assert!(issued.get("n0", now).is_some());
    }

    #[test]
    fn the_alipay_zip_reads_back_through_paygates_parser() {
        let zip = alipay_bill_zip(
            &book(ProviderKind::ALIPAY),
            "20881234567890120156",
            day(),
            at(23, 0) + chrono::Duration::hours(7),
        )
        .unwrap();
        let expectation = paygate_alipay::bill::BillExpectation {
            account: Some("20881234567890120156".into()),
            day: Some(day()),
        };
        let mut seen = Vec::new();
        let bill = paygate_alipay::bill::read_trade_bill_zip(
            std::io::Cursor::new(zip.clone()),
            &expectation,
            |row| {
                let line = row.bill_line();
                seen.push((line.kind, line.out_trade_no.to_owned(), line.amount.get()));
            },
        )
        .unwrap();
        assert_eq!(
            seen,
            [
                (BillLineKind::Payment, "T1".into(), 1999),
                (BillLineKind::Payment, "T2".into(), 5000),
                (BillLineKind::Refund, "T2".into(), 2000),
            ]
        );
        assert_eq!(bill.totals.payments_count, 2);
        // The entry names are GBK with the UTF-8 flag clear, as in Alipay's zips.
        let name = gbk("20881234567890120156_20240115_业务明细.csv");
        assert!(zip.windows(name.len()).any(|w| w == name.as_slice()));
        assert_eq!(&zip[6..8], &[0, 0], "general purpose flags");
    }
}
