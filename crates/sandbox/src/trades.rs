//! The trades the sandbox holds, as the providers would: one book per provider keyed by
//! `out_trade_no`, behind a mutex that is never held across an `.await`, optionally persisted
//! as a JSON snapshot plus an append-only journal of changed trades.
//!
//! Why a journal: rewriting the whole snapshot on every change made each unified order cost
//! O(trades) under the book's mutex (266 WeChat creates/s through the embedded sandbox,
//! against 1,663/s with the same simulators in memory; docs/performance.md). Now a change
//! costs one line, written by a background thread; the snapshot is rewritten only at start,
//! from the old snapshot plus the journal.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc;

use chrono::{DateTime, Utc};
use paygate_core::{Fen, ProviderKind};
use serde::{Deserialize, Serialize};

use paygate_wechat::sign::{Params as WechatParams, SignType};

/// Where a trade is in its life at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TradeStatus {
    /// Created, the buyer has not paid (WeChat `NOTPAY`, Alipay `WAIT_BUYER_PAY`).
    AwaitingPayment,
    /// Paid; refunds may have followed (see [`Trade::refunded`]).
    Paid,
    /// Closed unpaid.
    Closed,
}

impl fmt::Display for TradeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TradeStatus::AwaitingPayment => "awaiting payment",
            TradeStatus::Paid => "paid",
            TradeStatus::Closed => "closed",
        })
    }
}

/// One refund of a trade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    /// The merchant's `out_refund_no` / `out_request_no`.
    pub out_refund_no: String,
    /// The provider's refund id.
    pub refund_id: String,
    /// This refund's amount.
    pub amount: Fen,
    /// When it succeeded.
    pub refunded_at: DateTime<Utc>,
}

/// What WeChat remembers about a unifiedorder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WechatTrade {
    /// The appid the order was placed under.
    pub appid: String,
    /// JSAPI / NATIVE / APP / MWEB.
    pub trade_type: String,
    /// The algorithm the order was signed with; notifies use it too.
    pub sign_type: SignType,
    /// The issued prepay id.
    pub prepay_id: String,
    /// `code_url` (NATIVE) or `mweb_url` (MWEB), when issued.
    pub pay_url: Option<String>,
    /// The payer's openid (given for JSAPI, invented at payment otherwise).
    pub openid: Option<String>,
    /// `attach`, echoed in queries and notifies.
    pub attach: Option<String>,
    /// SHA-256 of the request's business fields (all but `sign`, `sign_type`, `nonce_str`;
    /// see [`request_digest`]), to tell an identical re-submit (same prepay_id) from a
    /// conflicting one (`OUT_TRADE_NO_USED`). A digest rather than the fields themselves: the
    /// map was two thirds of a held trade's memory, and the embedded sandbox lives in the
    /// gateway's process.
    #[serde(default)]
    pub request_digest: String,
    /// True for an order placed through APIv3 (`/v3/pay/transactions/*`): its notifies are
    /// v3's (signed JSON with an encrypted resource). Either API queries, closes and refunds
    /// it, as WeChat does for one merchant.
    #[serde(default)]
    pub api_v3: bool,
}

/// The digest a unifiedorder's business fields are compared by: length-prefixed `key=value`
/// pairs in key order, so no two different field sets share an encoding.
pub fn request_digest(fields: &WechatParams) -> String {
    let mut hasher = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for (key, value) in fields {
        hasher.update(&key.len().to_le_bytes());
        hasher.update(key.as_bytes());
        hasher.update(&value.len().to_le_bytes());
        hasher.update(value.as_bytes());
    }
    hex::encode(hasher.finish())
}

/// What Alipay remembers about a trade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlipayTrade {
    /// The app_id the trade was created by.
    pub app_id: String,
    /// The API method that created it (`alipay.trade.app.pay`, `….precreate`, …).
    pub method: String,
    /// The buyer (given for `create`, invented at payment otherwise).
    pub buyer_id: Option<String>,
    /// `body`, echoed in notifies.
    pub body: Option<String>,
    /// `passback_params`, echoed verbatim in notifies.
    pub passback_params: Option<String>,
    /// The precreate QR content.
    pub qr_code: Option<String>,
}

/// The provider-specific part of a trade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "provider", rename_all = "snake_case")]
pub enum TradeDetail {
    /// A WeChat unifiedorder.
    Wechat(WechatTrade),
    /// An Alipay trade.
    Alipay(AlipayTrade),
}

/// One trade as the provider holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trade {
    /// Which provider holds it.
    pub provider: ProviderKind,
    /// The merchant's order number.
    pub out_trade_no: String,
    /// The order total.
    pub amount: Fen,
    /// Where it is.
    pub status: TradeStatus,
    /// `body` (WeChat) or `subject` (Alipay).
    pub subject: String,
    /// Where payment notifies go.
    pub notify_url: Option<String>,
    /// WeChat `transaction_id` (set at payment) or Alipay `trade_no` (set at creation).
    pub provider_trade_no: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When the buyer paid.
    pub paid_at: Option<DateTime<Utc>>,
    /// Refunds, oldest first.
    pub refunds: Vec<Refund>,
    /// Provider-specific details.
    pub detail: TradeDetail,
}

impl Trade {
    /// The sum of all refunds.
    pub fn refunded(&self) -> Fen {
        self.refunds
            .iter()
            .fold(Fen::ZERO, |sum, r| sum.checked_add(r.amount).unwrap_or(sum))
    }

    /// True once refunds add up to the whole amount (Alipay then reports `TRADE_CLOSED`).
    pub fn fully_refunded(&self) -> bool {
        self.status == TradeStatus::Paid && self.refunded() >= self.amount
    }

    pub(crate) fn wechat(&self) -> Option<&WechatTrade> {
        match &self.detail {
            TradeDetail::Wechat(w) => Some(w),
            TradeDetail::Alipay(_) => None,
        }
    }

    pub(crate) fn alipay(&self) -> Option<&AlipayTrade> {
        match &self.detail {
            TradeDetail::Alipay(a) => Some(a),
            TradeDetail::Wechat(_) => None,
        }
    }
}

type BookKey = (ProviderKind, String);

/// All trades, shared by the HTTP handlers and the Rust API.
pub(crate) struct TradeBook {
    trades: Mutex<BTreeMap<BookKey, Trade>>,
    journal: Option<Journal>,
}

impl TradeBook {
    /// Loads the state file and its journal if there are, folds the journal into a fresh
    /// snapshot, and starts journaling changes. Without a state file the book lives in memory.
    pub(crate) fn open(state_file: Option<PathBuf>) -> TradeBook {
        let Some(path) = state_file else {
            return TradeBook {
                trades: Mutex::new(BTreeMap::new()),
                journal: None,
            };
        };
        let journal_path = journal_path(&path);
        let mut trades: BTreeMap<BookKey, Trade> = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| serde_json::from_str::<Vec<Trade>>(&text).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|t| (book_key(&t), t))
            .collect();
        // Later lines win; a line cut short by a crash does not parse and is skipped.
        if let Ok(file) = std::fs::File::open(&journal_path) {
            for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
                if let Ok(trade) = serde_json::from_str::<Trade>(&line) {
                    trades.insert(book_key(&trade), trade);
                }
            }
        }
        let journal = match save_snapshot(&path, &trades)
            .and_then(|()| Journal::start(&journal_path))
        {
            Ok(journal) => Some(journal),
            Err(e) => {
                tracing::warn!(error = %e, path = %path.display(), "cannot persist sandbox trades; keeping them in memory");
                None
            }
        };
        TradeBook {
            trades: Mutex::new(trades),
            journal,
        }
    }

    /// Waits until every change so far is written to the journal (for a clean stop).
    pub(crate) fn flush(&self) {
        if let Some(journal) = &self.journal {
            journal.flush();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<BookKey, Trade>> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.trades
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A copy of one trade.
    pub(crate) fn get(&self, provider: ProviderKind, out_trade_no: &str) -> Option<Trade> {
        self.lock()
            .get(&(provider, out_trade_no.to_owned()))
            .cloned()
    }

    /// The first trade matching `predicate`.
    pub(crate) fn find(&self, predicate: impl Fn(&Trade) -> bool) -> Option<Trade> {
        self.lock().values().find(|t| predicate(t)).cloned()
    }

    /// Every trade, oldest first.
    pub(crate) fn list(&self) -> Vec<Trade> {
        let mut trades: Vec<Trade> = self.lock().values().cloned().collect();
        trades.sort_by_key(|t| t.created_at);
        trades
    }

    /// Runs `change` on the trade (or on `None` when absent) atomically and saves the book when
    /// the closure says it changed something.
    pub(crate) fn update<R>(
        &self,
        provider: ProviderKind,
        out_trade_no: &str,
        change: impl FnOnce(&mut Option<Trade>) -> (R, bool),
    ) -> R {
        let mut trades = self.lock();
        let key = (provider, out_trade_no.to_owned());
        let mut slot = trades.remove(&key);
        let (result, changed) = change(&mut slot);
        if let Some(trade) = slot {
            if changed && let Some(journal) = &self.journal {
                // Sent under the lock, so the journal has the changes in the order they happened.
                journal.record(trade.clone());
            }
            trades.insert(key, trade);
        }
        result
    }
}

fn book_key(trade: &Trade) -> BookKey {
    (trade.provider, trade.out_trade_no.clone())
}

/// `trades.json` → `trades.json.journal`.
fn journal_path(state_file: &Path) -> PathBuf {
    let mut name = state_file.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

/// Writes the snapshot to a temporary file and renames it over the old one, so a crash
/// mid-write leaves the previous snapshot rather than a truncated file.
fn save_snapshot(path: &Path, trades: &BTreeMap<BookKey, Trade>) -> std::io::Result<()> {
    let snapshot: Vec<&Trade> = trades.values().collect();
    let text = serde_json::to_string(&snapshot).map_err(std::io::Error::other)?;
    let temporary = path.with_extension("json.tmp");
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path)
}

/// What the journal thread is asked to do.
enum JournalEntry {
    /// Append this trade as it now is.
    Changed(Box<Trade>),
    /// Answer once everything before is written.
    Flush(mpsc::Sender<()>),
}

/// The append-only journal: a thread owning the file, fed through a channel so no handler
/// waits for the disk.
struct Journal {
    entries: mpsc::Sender<JournalEntry>,
}

impl Journal {
    /// Truncates the journal (its contents are in the fresh snapshot) and starts its thread.
    fn start(path: &Path) -> std::io::Result<Journal> {
        let file = std::fs::File::create(path)?;
        let (entries, queue) = mpsc::channel();
        let shown = path.display().to_string();
        std::thread::Builder::new()
            .name("sandbox-journal".into())
            .spawn(move || write_journal(file, &queue, &shown))?;
        Ok(Journal { entries })
    }

    fn send(&self, entry: JournalEntry) -> bool {
        self.entries.send(entry).is_ok()
    }

    fn record(&self, trade: Trade) {
        self.send(JournalEntry::Changed(Box::new(trade)));
    }

    fn flush(&self) {
        let (done, written) = mpsc::channel();
        if self.send(JournalEntry::Flush(done)) {
            let _ = written.recv();
        }
    }
}

/// The journal thread: append each changed trade as one JSON line, flushing whenever the queue
/// runs dry, until the book is dropped.
fn write_journal(file: std::fs::File, queue: &mpsc::Receiver<JournalEntry>, shown: &str) {
    let mut out = std::io::BufWriter::new(file);
    let mut failed = false;
    while let Ok(first) = queue.recv() {
        let mut next = Some(first);
        while let Some(entry) = next {
            match entry {
                JournalEntry::Changed(trade) => {
                    let written = serde_json::to_writer(&mut out, &trade)
                        .map_err(std::io::Error::other)
                        .and_then(|()| out.write_all(b"\n"));
                    if let Err(e) = written
                        && !failed
                    {
                        failed = true;
                        tracing::warn!(error = %e, path = shown, "cannot journal sandbox trades");
                    }
                }
                JournalEntry::Flush(done) => {
                    let _ = out.flush();
                    let _ = done.send(());
                }
            }
            next = queue.try_recv().ok();
        }
        if let Err(e) = out.flush()
            && !failed
        {
            failed = true;
            tracing::warn!(error = %e, path = shown, "cannot journal sandbox trades");
        }
    }
}

/// Why a refund was refused by the trade book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefundRefusal {
    /// No such trade.
    NoTrade,
    /// The trade is not paid.
    NotPaid,
    /// The refund number was used before with another amount.
    ConflictingRetry,
    /// More than what is left to refund.
    ExceedsRefundable,
}

/// A refund the book accepted: the trade after it, the refund, and whether it is new (false
/// for an idempotent retry of the same refund number).
pub(crate) type AcceptedRefund = (Trade, Refund, bool);

impl TradeBook {
    /// Records a refund atomically: a repeated refund number with the same amount returns the
    /// original refund (never a second one), and the total never exceeds the amount paid.
    pub(crate) fn refund(
        &self,
        provider: ProviderKind,
        out_trade_no: &str,
        out_refund_no: &str,
        amount: Fen,
        new_refund_id: impl FnOnce() -> String,
    ) -> Result<AcceptedRefund, RefundRefusal> {
        self.update(provider, out_trade_no, |slot| {
            let Some(trade) = slot.as_mut() else {
                return (Err(RefundRefusal::NoTrade), false);
            };
            if trade.status != TradeStatus::Paid {
                return (Err(RefundRefusal::NotPaid), false);
            }
            if let Some(existing) = trade
                .refunds
                .iter()
                .find(|r| r.out_refund_no == out_refund_no)
            {
                return if existing.amount == amount {
                    (Ok((trade.clone(), existing.clone(), false)), false)
                } else {
                    (Err(RefundRefusal::ConflictingRetry), false)
                };
            }
            let refundable = trade
                .amount
                .checked_sub(trade.refunded())
                .unwrap_or(Fen::ZERO);
            if amount > refundable {
                return (Err(RefundRefusal::ExceedsRefundable), false);
            }
            let refund = Refund {
                out_refund_no: out_refund_no.to_owned(),
                refund_id: new_refund_id(),
                amount,
                refunded_at: Utc::now(),
            };
            trade.refunds.push(refund.clone());
            (Ok((trade.clone(), refund, true)), true)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trade(out_trade_no: &str, amount: i64) -> Trade {
        Trade {
            provider: ProviderKind::ALIPAY,
            out_trade_no: out_trade_no.to_owned(),
            amount: Fen::new(amount).unwrap(),
            status: TradeStatus::AwaitingPayment,
            subject: "Tea".into(),
            notify_url: None,
            provider_trade_no: None,
            created_at: Utc::now(),
            paid_at: None,
            refunds: Vec::new(),
            detail: TradeDetail::Alipay(AlipayTrade {
                app_id: "2021000000000000".into(),
                method: "alipay.trade.app.pay".into(),
                buyer_id: None,
                body: None,
                passback_params: None,
                qr_code: None,
            }),
        }
    }

    fn put(book: &TradeBook, t: Trade) {
        let no = t.out_trade_no.clone();
        book.update(ProviderKind::ALIPAY, &no, |slot| {
            *slot = Some(t);
            ((), true)
        });
    }

    #[test]
    fn a_reopened_book_has_every_journaled_change_and_skips_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trades.json");
        let book = TradeBook::open(Some(path.clone()));
        put(&book, trade("no_1", 1));
        put(&book, trade("no_2", 2));
        book.update(ProviderKind::ALIPAY, "no_1", |slot| {
            slot.as_mut().unwrap().status = TradeStatus::Paid;
            ((), true)
        });
        book.flush();
        drop(book);
        // A crash in the middle of a line leaves half a trade at the end of the journal.
        let journal = journal_path(&path);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&journal)
            .unwrap();
        file.write_all(br#"{"provider":"alipay","out_tra"#).unwrap();
        drop(file);

        let reopened = TradeBook::open(Some(path.clone()));

        let first = reopened.get(ProviderKind::ALIPAY, "no_1").unwrap();
        assert_eq!(first.status, TradeStatus::Paid, "the later line wins");
        assert_eq!(
            reopened
                .get(ProviderKind::ALIPAY, "no_2")
                .unwrap()
                .amount
                .get(),
            2
        );
        assert_eq!(reopened.list().len(), 2);
        // The journal was folded into the snapshot and starts empty again.
        assert_eq!(std::fs::read_to_string(&journal).unwrap(), "");
        let snapshot: Vec<Trade> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(snapshot.len(), 2);
    }

    #[test]
    fn unchanged_updates_write_nothing_to_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trades.json");
        let book = TradeBook::open(Some(path.clone()));
        put(&book, trade("no_1", 1));
        book.update(ProviderKind::ALIPAY, "no_1", |_| ((), false));
        book.flush();

        let lines = std::fs::read_to_string(journal_path(&path)).unwrap();
        assert_eq!(lines.lines().count(), 1, "{lines}");
    }

    #[test]
    fn the_request_digest_tells_field_sets_apart() {
        let fields = |pairs: &[(&str, &str)]| -> WechatParams {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let order = fields(&[("body", "Tea"), ("total_fee", "1")]);
        assert_eq!(request_digest(&order), request_digest(&order.clone()));
        assert_ne!(
            request_digest(&order),
            request_digest(&fields(&[("body", "Tea"), ("total_fee", "2")]))
        );
        // Moving a character between key and value is another request.
        assert_ne!(
            request_digest(&fields(&[("ab", "c")])),
            request_digest(&fields(&[("a", "bc")]))
        );
    }
}
