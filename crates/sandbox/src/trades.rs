//! The trades the sandbox holds, as the providers would: one book per provider keyed by
//! `out_trade_no`, behind a mutex that is never held across an `.await`, optionally
//! snapshotted to a JSON file after each change.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;

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
    /// The request's business fields (all but `sign`, `sign_type`, `nonce_str`), to tell an
    /// identical re-submit (same prepay_id) from a conflicting one (`OUT_TRADE_NO_USED`).
    pub request_fields: WechatParams,
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

fn provider_key(provider: ProviderKind) -> u8 {
    match provider {
        ProviderKind::Wechat => 0,
        ProviderKind::Alipay => 1,
    }
}

type BookKey = (u8, String);

/// All trades, shared by the HTTP handlers and the Rust API.
pub(crate) struct TradeBook {
    trades: Mutex<BTreeMap<BookKey, Trade>>,
    state_file: Option<PathBuf>,
}

impl TradeBook {
    /// Loads the state file if there is one.
    pub(crate) fn open(state_file: Option<PathBuf>) -> TradeBook {
        let trades = state_file
            .as_ref()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .and_then(|text| serde_json::from_str::<Vec<Trade>>(&text).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|t| ((provider_key(t.provider), t.out_trade_no.clone()), t))
            .collect();
        TradeBook {
            trades: Mutex::new(trades),
            state_file,
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
            .get(&(provider_key(provider), out_trade_no.to_owned()))
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
        let key = (provider_key(provider), out_trade_no.to_owned());
        let mut slot = trades.remove(&key);
        let (result, changed) = change(&mut slot);
        if let Some(trade) = slot {
            trades.insert(key, trade);
        }
        if changed && let Some(path) = &self.state_file {
            let snapshot: Vec<&Trade> = trades.values().collect();
            // Written to a temporary file and renamed over the old one, so a crash mid-write
            // leaves the previous snapshot rather than a truncated file.
            let temporary = path.with_extension("json.tmp");
            if let Ok(text) = serde_json::to_string(&snapshot)
                && let Err(e) = std::fs::write(&temporary, text)
                    .and_then(|()| std::fs::rename(&temporary, path))
            {
                tracing::warn!(error = %e, path = %path.display(), "cannot save sandbox trades");
            }
        }
        result
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
