//! Fault injection for reliability tests: rules that bend notify deliveries or API answers,
//! each matched by provider, API (WeChat path or Alipay method) and out_trade_no, and each
//! consumed once per matching delivery attempt or API call until its count runs out.

use std::sync::Mutex;

use paygate_core::ProviderKind;
use serde::{Deserialize, Serialize};

/// What goes wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum FaultKind {
    /// The notify delivery attempt is never sent (recorded as dropped).
    DropNotify,
    /// The attempt is sent twice, one after the other.
    DuplicateNotify,
    /// The attempt is sent as `copies` concurrent requests.
    ConcurrentNotify {
        /// How many copies race.
        copies: u32,
    },
    /// The attempt waits `millis` (not scaled) before it is sent.
    DelayNotify {
        /// The delay.
        millis: u64,
    },
    /// The notify is genuinely signed but carries the amount plus one fen.
    WrongAmount,
    /// The notify is genuinely signed but names another appid / app_id.
    WrongAppId,
    /// The notify is genuinely signed but names another mch_id / seller_id.
    WrongMerchantId,
    /// APIv3 notifies only: genuinely signed and sealed, but the transaction or refund names
    /// another `out_trade_no` (this one with `_X` appended).
    WrongOutTradeNo,
    /// The notify's signature is corrupted (WeChat refund notifies: `req_info` encrypted with
    /// the wrong key).
    BadSignature,
    /// A WeChat HMAC notify leaves out `sign_type`, as WeChat sometimes does.
    OmitSignType,
    /// APIv3 notifies only: `Wechatpay-Signature` is a `WECHATPAY/SIGNTEST/` probe (the
    /// prefix before a signature that would verify), as WeChat's probe traffic sends.
    ProbeSignature,
    /// APIv3 notifies only: genuinely signed, but `Wechatpay-Serial` names a key the merchant
    /// was never given.
    UnknownSerial,
    /// APIv3 notifies only: genuinely signed at a `Wechatpay-Timestamp` six minutes old.
    StaleTimestamp,
    /// APIv3 notifies only: genuinely signed at a `Wechatpay-Timestamp` six minutes ahead.
    FutureTimestamp,
    /// APIv3 notifies only: genuinely signed over a `resource.ciphertext` with one byte
    /// flipped, so AES-GCM authentication fails.
    TamperedCiphertext,
    /// APIv3 notifies only: genuinely signed, but `resource.associated_data` is not what the
    /// resource was sealed with, so AES-GCM authentication fails.
    WrongAssociatedData,
    /// APIv3 notifies only: genuinely signed and sealed, but the plaintext is not JSON.
    NonJsonPlaintext,
    /// APIv3 notifies only: the body is changed after signing (the event id).
    TamperedBody,
    /// APIv3 notifies only: sent without `Wechatpay-Signature`.
    MissingSignatureHeader,
    /// The API answers with this HTTP status and an empty body.
    HttpStatus {
        /// e.g. 500, 502, 503.
        status: u16,
    },
    /// The API sleeps `millis` (not scaled) before answering, to outlast the client's timeout.
    Timeout {
        /// The delay.
        millis: u64,
    },
    /// The API answers a signed business failure saying "try again": WeChat `SYSTEMERROR`,
    /// Alipay code `20000` (`isp.unknow-error`).
    SystemError,
    /// The API answers HTTP 200 with an empty body (a proxy that swallowed the answer).
    EmptyBody,
    /// The API answers HTTP 200 with only the first half of its signed answer (a truncating
    /// proxy or a connection cut mid-body).
    TruncatedBody,
    /// The API answers HTTP 200 with its whole answer but a signature that does not verify.
    BadAnswerSignature,
    /// The API answers a signed, definite business refusal with this code (WeChat `err_code`,
    /// Alipay `40004` `sub_code`), e.g. WeChat `NOTENOUGH` or Alipay
    /// `ACQ.TRADE_NOT_ALLOW_REFUND`.
    Refused {
        /// The provider's code.
        code: String,
    },
    /// A bill download answers "not generated yet" (WeChat `Bill Creating`; Alipay
    /// `isp.bill_not_exist`, its only answer for a missing bill).
    BillNotReady,
    /// A bill download answers "no bill" (WeChat `No Bill Exist`, Alipay
    /// `isp.bill_not_exist`) whatever the day's trades.
    NoBill,
    /// The next bill leaves out the payment line of the rule's `out_trade_no`.
    BillOmitTrade,
    /// The next bill prints the payment of the rule's `out_trade_no` with `fen` more.
    BillAmountDelta {
        /// Added to the amount (may be negative).
        fen: i64,
    },
    /// The next bill carries a paid trade of `fen` under the rule's `out_trade_no` that the
    /// merchant's books never saw (an order from another system on the same account).
    BillForeignTrade {
        /// Its amount.
        fen: i64,
    },
}

impl FaultKind {
    /// True for faults that bend notify deliveries, false for API faults.
    pub fn is_notify_fault(&self) -> bool {
        !matches!(
            self,
            FaultKind::HttpStatus { .. }
                | FaultKind::Timeout { .. }
                | FaultKind::SystemError
                | FaultKind::EmptyBody
                | FaultKind::TruncatedBody
                | FaultKind::BadAnswerSignature
                | FaultKind::Refused { .. }
                | FaultKind::BillNotReady
                | FaultKind::NoBill
                | FaultKind::BillOmitTrade
                | FaultKind::BillAmountDelta { .. }
                | FaultKind::BillForeignTrade { .. }
        )
    }

    /// True for faults that change a bill's content (taken per bill, not per request).
    pub fn is_bill_edit(&self) -> bool {
        matches!(
            self,
            FaultKind::BillOmitTrade
                | FaultKind::BillAmountDelta { .. }
                | FaultKind::BillForeignTrade { .. }
        )
    }
}

/// How many times a fault fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FaultTimes {
    /// `"once"` / `"always"`.
    Named(NamedTimes),
    /// A number of times.
    Count(u32),
}

impl FaultTimes {
    /// Fires once (the default).
    pub const ONCE: FaultTimes = FaultTimes::Named(NamedTimes::Once);
    /// Fires until cleared.
    pub const ALWAYS: FaultTimes = FaultTimes::Named(NamedTimes::Always);
}

impl Default for FaultTimes {
    fn default() -> Self {
        FaultTimes::ONCE
    }
}

/// The named counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NamedTimes {
    /// Fires once.
    Once,
    /// Fires until cleared.
    Always,
}

impl FaultTimes {
    fn remaining(self) -> Option<u32> {
        match self {
            FaultTimes::Named(NamedTimes::Always) => None,
            FaultTimes::Named(NamedTimes::Once) => Some(1),
            FaultTimes::Count(n) => Some(n),
        }
    }
}

/// One fault rule, as posted to `POST /sandbox/faults`, e.g.
/// `{"fault":"drop_notify","provider":"wechat","out_trade_no":"T1","times":"always"}`,
/// `{"fault":"http_status","status":503,"api":"/pay/unifiedorder"}` or, for a refund the
/// provider carries out but whose answer is unusable,
/// `{"fault":"empty_body","api":"alipay.trade.refund","processed":true}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// What goes wrong.
    #[serde(flatten)]
    pub kind: FaultKind,
    /// Only this provider's traffic (any when absent).
    #[serde(default)]
    pub provider: Option<ProviderKind>,
    /// API faults only: the WeChat path (`/pay/unifiedorder`) or Alipay method
    /// (`alipay.trade.query`) (any when absent).
    #[serde(default)]
    pub api: Option<String>,
    /// Only this trade (any when absent): makes a rule per-trade instead of per-request.
    #[serde(default)]
    pub out_trade_no: Option<String>,
    /// How many times it fires (once by default).
    #[serde(default)]
    pub times: FaultTimes,
    /// API faults only: run the operation anyway before answering badly, so the outcome is
    /// real but unknown to the caller (a timeout after the provider did the work).
    #[serde(default)]
    pub processed: bool,
}

impl Fault {
    /// A rule for `kind` that fires once for any matching traffic.
    pub fn once(kind: FaultKind) -> Fault {
        Fault {
            kind,
            provider: None,
            api: None,
            out_trade_no: None,
            times: FaultTimes::ONCE,
            processed: false,
        }
    }

    /// Restricts the rule to one provider.
    pub fn for_provider(mut self, provider: ProviderKind) -> Fault {
        self.provider = Some(provider);
        self
    }

    /// Restricts the rule to one trade.
    pub fn for_trade(mut self, out_trade_no: impl Into<String>) -> Fault {
        self.out_trade_no = Some(out_trade_no.into());
        self
    }

    /// Restricts an API rule to one WeChat path or Alipay method.
    pub fn for_api(mut self, api: impl Into<String>) -> Fault {
        self.api = Some(api.into());
        self
    }

    /// Sets how many times it fires.
    pub fn times(mut self, times: FaultTimes) -> Fault {
        self.times = times;
        self
    }

    /// Makes an API fault run the operation before answering badly.
    pub fn after_processing(mut self) -> Fault {
        self.processed = true;
        self
    }

    fn matches(
        &self,
        provider: ProviderKind,
        api: Option<&str>,
        out_trade_no: Option<&str>,
    ) -> bool {
        self.provider.is_none_or(|p| p == provider)
            && self.api.as_deref().is_none_or(|a| Some(a) == api)
            && self
                .out_trade_no
                .as_deref()
                .is_none_or(|o| Some(o) == out_trade_no)
    }
}

struct ActiveFault {
    fault: Fault,
    remaining: Option<u32>,
}

/// The active rules.
#[derive(Default)]
pub(crate) struct FaultBook {
    rules: Mutex<Vec<ActiveFault>>,
}

impl FaultBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ActiveFault>> {
        self.rules
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn add(&self, fault: Fault) {
        let remaining = fault.times.remaining();
        self.lock().push(ActiveFault { fault, remaining });
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    pub(crate) fn list(&self) -> Vec<Fault> {
        self.lock().iter().map(|a| a.fault.clone()).collect()
    }

    /// Consumes and returns the notify faults that apply to one delivery attempt.
    pub(crate) fn take_notify_faults(
        &self,
        provider: ProviderKind,
        out_trade_no: &str,
    ) -> Vec<FaultKind> {
        self.take(provider, None, Some(out_trade_no), true)
            .into_iter()
            .map(|f| f.kind)
            .collect()
    }

    /// Consumes and returns the first API fault that applies to one call.
    pub(crate) fn take_api_fault(
        &self,
        provider: ProviderKind,
        api: &str,
        out_trade_no: Option<&str>,
    ) -> Option<Fault> {
        self.take(provider, Some(api), out_trade_no, false)
            .into_iter()
            .next()
    }

    /// The bill-content rules for `provider`'s bill API `api`, whatever trade they name,
    /// each consumed once: they shape the next bill built.
    pub(crate) fn take_bill_edits(&self, provider: ProviderKind, api: &str) -> Vec<Fault> {
        let mut rules = self.lock();
        let mut fired = Vec::new();
        for rule in rules.iter_mut() {
            let named = rule.fault.out_trade_no.as_deref();
            if !rule.fault.kind.is_bill_edit()
                || rule.remaining == Some(0)
                || !rule.fault.matches(provider, Some(api), named)
            {
                continue;
            }
            if let Some(n) = rule.remaining.as_mut() {
                *n -= 1;
            }
            fired.push(rule.fault.clone());
        }
        fired
    }

    fn take(
        &self,
        provider: ProviderKind,
        api: Option<&str>,
        out_trade_no: Option<&str>,
        notify: bool,
    ) -> Vec<Fault> {
        let mut rules = self.lock();
        let mut fired = Vec::new();
        for rule in rules.iter_mut() {
            if rule.fault.kind.is_notify_fault() != notify
                || rule.fault.kind.is_bill_edit()
                || rule.remaining == Some(0)
                || !rule.fault.matches(provider, api, out_trade_no)
            {
                continue;
            }
            if let Some(n) = rule.remaining.as_mut() {
                *n -= 1;
            }
            fired.push(rule.fault.clone());
            if !notify {
                break;
            }
        }
        rules.retain(|r| r.remaining != Some(0));
        fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_posted_as_json_reads_its_count_and_target() {
        let fault: Fault = serde_json::from_str(
            r#"{"fault":"concurrent_notify","copies":5,"provider":"wechat","out_trade_no":"T1","times":3}"#,
        )
        .unwrap();
        assert_eq!(fault.kind, FaultKind::ConcurrentNotify { copies: 5 });
        assert_eq!(fault.times, FaultTimes::Count(3));
        assert_eq!(fault.out_trade_no.as_deref(), Some("T1"));
        let always: Fault =
            serde_json::from_str(r#"{"fault":"drop_notify","times":"always"}"#).unwrap();
        assert_eq!(always.times, FaultTimes::Named(NamedTimes::Always));
        let default: Fault = serde_json::from_str(r#"{"fault":"system_error"}"#).unwrap();
        assert_eq!(default.times, FaultTimes::ONCE);
    }

    #[test]
    fn a_once_fault_fires_for_the_matching_trade_only_and_then_is_gone() {
        let book = FaultBook::default();
        book.add(Fault::once(FaultKind::DropNotify).for_trade("T1"));
        assert!(
            book.take_notify_faults(ProviderKind::WECHAT, "T2")
                .is_empty()
        );
        assert_eq!(
            book.take_notify_faults(ProviderKind::WECHAT, "T1"),
            vec![FaultKind::DropNotify]
        );
        assert!(
            book.take_notify_faults(ProviderKind::WECHAT, "T1")
                .is_empty()
        );
        assert!(book.list().is_empty());
    }

    proptest::proptest! {
        #[test]
        fn a_fault_with_a_count_fires_exactly_that_many_times(count in 0u32..20, calls in 0u32..40) {
            let book = FaultBook::default();
            book.add(Fault::once(FaultKind::DuplicateNotify).times(FaultTimes::Count(count)));
            let fired = (0..calls)
                .filter(|_| !book.take_notify_faults(ProviderKind::ALIPAY, "T").is_empty())
                .count();
            proptest::prop_assert_eq!(fired as u32, count.min(calls));
        }
    }

    #[test]
    fn unusable_answer_faults_read_from_json_and_bend_api_calls_only() {
        for (name, kind) in [
            ("empty_body", FaultKind::EmptyBody),
            ("truncated_body", FaultKind::TruncatedBody),
            ("bad_answer_signature", FaultKind::BadAnswerSignature),
        ] {
            let fault: Fault = serde_json::from_str(&format!(
                r#"{{"fault":"{name}","api":"/secapi/pay/refund","processed":true}}"#
            ))
            .unwrap();
            assert_eq!(fault.kind, kind);
            assert!(fault.processed);
            assert!(!kind.is_notify_fault(), "{name} is an API fault");
        }
        let refused: Fault =
            serde_json::from_str(r#"{"fault":"refused","code":"NOTENOUGH"}"#).unwrap();
        assert_eq!(
            refused.kind,
            FaultKind::Refused {
                code: "NOTENOUGH".into()
            }
        );
    }

    #[test]
    fn api_faults_and_notify_faults_do_not_consume_each_other() {
        let book = FaultBook::default();
        book.add(Fault::once(FaultKind::SystemError).for_api("alipay.trade.query"));
        assert!(
            book.take_notify_faults(ProviderKind::ALIPAY, "T1")
                .is_empty()
        );
        assert!(
            book.take_api_fault(ProviderKind::ALIPAY, "alipay.trade.close", None)
                .is_none()
        );
        assert!(
            book.take_api_fault(ProviderKind::ALIPAY, "alipay.trade.query", None)
                .is_some()
        );
    }
}
