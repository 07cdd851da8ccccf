//! The JSON objects APIv3 returns (protocol §3.3, §5.3, §5.5) and their mapping into
//! paygate's trade and refund facts.
//!
//! A transaction reads the same from a query and from a decrypted payment notify; a refund
//! the same from the refund call, its query and a decrypted refund notify (whose state field
//! is `refund_status` rather than `status`). Unknown fields are ignored; an unknown state is
//! an error, never a guess. Amounts are integer fen on the wire and stay `Fen`.

use chrono::{DateTime, Utc};
use paygate_core::{Currency, Fen, ProviderKind, RefundFacts, RefundState, TradeFacts, TradeState};
use serde::Deserialize;

/// Why a verified object cannot be turned into facts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// The JSON field at fault.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl FieldError {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// `amount` of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TransactionAmount {
    /// The order total in fen.
    pub total: Option<i64>,
    /// What the payer paid in fen (after discounts).
    pub payer_total: Option<i64>,
    /// `CNY`.
    pub currency: Option<String>,
}

/// `payer` of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Payer {
    /// The payer's openid under the order's appid.
    pub openid: Option<String>,
}

/// A transaction: the query-order answer and the plaintext of a `TRANSACTION.SUCCESS` notify.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Transaction {
    /// The appid the order was placed under.
    pub appid: Option<String>,
    /// The merchant id.
    pub mchid: Option<String>,
    /// The merchant's order number.
    pub out_trade_no: String,
    /// WeChat's transaction id (absent before payment).
    pub transaction_id: Option<String>,
    /// `JSAPI`, `NATIVE`, `APP`, `MWEB`, …
    pub trade_type: Option<String>,
    /// `SUCCESS`, `REFUND`, `NOTPAY`, `CLOSED`, `REVOKED`, `USERPAYING`, `PAYERROR`.
    pub trade_state: String,
    /// When the payer paid (RFC 3339).
    pub success_time: Option<String>,
    /// The payer.
    pub payer: Option<Payer>,
    /// The amounts.
    pub amount: Option<TransactionAmount>,
    /// Echoed verbatim from the order.
    pub attach: Option<String>,
}

/// A refund: the refund answer, its query, and (with `refund_status`) a refund notify.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Refund {
    /// The merchant's order number.
    pub out_trade_no: String,
    /// The merchant's refund number.
    pub out_refund_no: String,
    /// WeChat's refund id.
    pub refund_id: Option<String>,
    /// WeChat's transaction id.
    pub transaction_id: Option<String>,
    /// The state in call and query answers.
    pub status: Option<String>,
    /// The state in refund notifies.
    pub refund_status: Option<String>,
    /// When the money went back (RFC 3339; `SUCCESS` only).
    pub success_time: Option<String>,
    /// The merchant id (refund notifies).
    pub mchid: Option<String>,
    /// The amounts.
    pub amount: Option<RefundAmount>,
}

/// `amount` of a refund.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RefundAmount {
    /// The refunded amount in fen.
    pub refund: Option<i64>,
    /// The order total in fen.
    pub total: Option<i64>,
}

fn fen(field: &'static str, value: Option<i64>) -> Result<Option<Fen>, FieldError> {
    value
        .map(|v| Fen::new(v).map_err(|e| FieldError::new(field, e.to_string())))
        .transpose()
}

/// Parses an RFC 3339 time with any offset (and fractional seconds) into UTC.
pub fn parse_time(field: &'static str, text: &str) -> Result<DateTime<Utc>, FieldError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| FieldError::new(field, format!("{text:?} is not RFC 3339: {e}")))
}

/// Formats a UTC instant as WeChat writes times: RFC 3339 at `+08:00`, whole seconds.
pub fn format_time(at: DateTime<Utc>) -> String {
    (at.naive_utc() + chrono::TimeDelta::hours(8))
        .format("%Y-%m-%dT%H:%M:%S+08:00")
        .to_string()
}

impl Transaction {
    /// The trade facts every "mark paid" path checks (amount, appid, mchid, out_trade_no,
    /// state).
    pub fn to_facts(&self) -> Result<TradeFacts, FieldError> {
        let state = match self.trade_state.as_str() {
            "SUCCESS" => TradeState::Paid,
            "REFUND" => TradeState::Refunded,
            "NOTPAY" | "USERPAYING" => TradeState::AwaitingPayment,
            "CLOSED" => TradeState::Closed,
            "REVOKED" | "PAYERROR" => TradeState::Failed,
            other => {
                return Err(FieldError::new(
                    "trade_state",
                    format!(
                        "unknown value {:?}",
                        other.chars().take(32).collect::<String>()
                    ),
                ));
            }
        };
        let amount = self.amount.as_ref();
        let currency = match amount.and_then(|a| a.currency.as_deref()) {
            None => Currency::Cny,
            Some(code) => Currency::parse(code)
                .map_err(|e| FieldError::new("amount.currency", e.to_string()))?,
        };
        Ok(TradeFacts {
            provider: ProviderKind::WECHAT,
            out_trade_no: self.out_trade_no.clone(),
            provider_trade_no: self.transaction_id.clone().filter(|s| !s.is_empty()),
            state,
            amount: fen("amount.total", amount.and_then(|a| a.total))?,
            currency,
            app_id: self.appid.clone(),
            merchant_id: self.mchid.clone(),
            payer_id: self
                .payer
                .as_ref()
                .and_then(|p| p.openid.clone())
                .filter(|s| !s.is_empty()),
            paid_at: self
                .success_time
                .as_deref()
                .map(|t| parse_time("success_time", t))
                .transpose()?,
        })
    }
}

impl Refund {
    /// The refund's facts. `ABNORMAL` (stuck, e.g. on a cancelled card) is **not** final in
    /// APIv3: it is reported as `Processing`, so the refunded amount stays reserved and the
    /// refund stays in flight until it succeeds or closes, instead of being released while the
    /// money may still go back.
    pub fn to_facts(&self) -> Result<RefundFacts, FieldError> {
        let (field, status) = match (&self.status, &self.refund_status) {
            (Some(status), _) => ("status", status.as_str()),
            (None, Some(status)) => ("refund_status", status.as_str()),
            (None, None) => return Err(FieldError::new("status", "missing")),
        };
        let state = match status {
            "SUCCESS" => RefundState::Succeeded,
            "PROCESSING" | "ABNORMAL" => RefundState::Processing,
            "CLOSED" => RefundState::Failed,
            other => {
                return Err(FieldError::new(
                    field,
                    format!(
                        "unknown value {:?}",
                        other.chars().take(32).collect::<String>()
                    ),
                ));
            }
        };
        Ok(RefundFacts {
            out_trade_no: self.out_trade_no.clone(),
            out_refund_no: self.out_refund_no.clone(),
            provider_refund_id: self.refund_id.clone().filter(|s| !s.is_empty()),
            amount: fen("amount.refund", self.amount.as_ref().and_then(|a| a.refund))?,
            state,
            succeeded_at: match state {
                RefundState::Succeeded => self
                    .success_time
                    .as_deref()
                    .map(|t| parse_time("success_time", t))
                    .transpose()?,
                _ => None,
            },
        })
    }

    /// Whether WeChat reported the refund as stuck (`ABNORMAL`), which needs a person.
    pub fn is_abnormal(&self) -> bool {
        self.status.as_deref().or(self.refund_status.as_deref()) == Some("ABNORMAL")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_take_any_offset_and_are_written_at_beijing_time() {
        let t = parse_time("t", "2025-01-01T12:00:30+08:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2025-01-01T04:00:30+00:00");
        assert_eq!(
            parse_time("t", "2025-01-01T04:00:30.123Z")
                .unwrap()
                .timestamp(),
            t.timestamp()
        );
        assert_eq!(format_time(t), "2025-01-01T12:00:30+08:00");
        assert!(parse_time("t", "2025-01-01 12:00:30").is_err());
    }

    #[test]
    fn every_trade_state_maps_and_an_unknown_one_is_an_error() {
        let tx = |state: &str| Transaction {
            appid: None,
            mchid: None,
            out_trade_no: "o".into(),
            transaction_id: None,
            trade_type: None,
            trade_state: state.into(),
            success_time: None,
            payer: None,
            amount: None,
            attach: None,
        };
        for (wire, state) in [
            ("SUCCESS", TradeState::Paid),
            ("REFUND", TradeState::Refunded),
            ("NOTPAY", TradeState::AwaitingPayment),
            ("USERPAYING", TradeState::AwaitingPayment),
            ("CLOSED", TradeState::Closed),
            ("REVOKED", TradeState::Failed),
            ("PAYERROR", TradeState::Failed),
        ] {
            assert_eq!(tx(wire).to_facts().unwrap().state, state, "{wire}");
        }
        assert_eq!(tx("PAID").to_facts().unwrap_err().field, "trade_state");
    }

    #[test]
    fn refund_states_map_with_abnormal_kept_in_flight() {
        let refund = |status: &str| Refund {
            out_trade_no: "o".into(),
            out_refund_no: "r".into(),
            refund_id: None,
            transaction_id: None,
            status: Some(status.into()),
            refund_status: None,
            success_time: Some("2025-01-01T13:00:05+08:00".into()),
            mchid: None,
            amount: Some(RefundAmount {
                refund: Some(-1),
                total: None,
            }),
        };
        assert_eq!(
            refund("SUCCESS").to_facts().unwrap_err().field,
            "amount.refund"
        );
        let ok = |status: &str| {
            let mut r = refund(status);
            r.amount = None;
            r.to_facts().unwrap()
        };
        assert_eq!(ok("SUCCESS").state, RefundState::Succeeded);
        assert!(ok("SUCCESS").succeeded_at.is_some());
        assert_eq!(ok("PROCESSING").state, RefundState::Processing);
        assert_eq!(ok("ABNORMAL").state, RefundState::Processing);
        assert!(ok("ABNORMAL").succeeded_at.is_none());
        assert_eq!(ok("CLOSED").state, RefundState::Failed);
        let mut unknown = refund("REFUNDCLOSE");
        unknown.amount = None;
        assert_eq!(unknown.to_facts().unwrap_err().field, "status");
    }
}
