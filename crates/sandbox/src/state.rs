//! The sandbox's shared state and the buyer-side operations (pay, refund notifies) that both
//! the HTTP routes and the Rust API use.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, FixedOffset, Utc};
use paygate_core::ProviderKind;
use rand::Rng;

use crate::credentials::ServerKeys;
use crate::error::SandboxError;
use crate::faults::FaultBook;
use crate::notify::{DispatchContext, Dispatcher, NotifyJob, NotifyKind, NotifyLog, NotifyPayload};
use crate::trades::{Refund, Trade, TradeBook, TradeDetail, TradeStatus};
use paygate_alipay::sign::Params as AlipayParams;
use paygate_wechat::sign::{Params as WechatParams, SignType};

/// Login-side state of the simulated WeChat: codes are single-use, tokens must have been issued.
#[derive(Default)]
pub(crate) struct LoginState {
    pub(crate) used_codes: HashSet<String>,
    /// OAuth codes the authorize page handed out, with the scope granted, until exchanged.
    pub(crate) oauth_codes: HashMap<String, &'static str>,
    pub(crate) access_tokens: HashSet<String>,
}

/// Everything the handlers share.
pub(crate) struct SandboxState {
    pub(crate) keys: Arc<ServerKeys>,
    pub(crate) trades: TradeBook,
    pub(crate) faults: Arc<FaultBook>,
    pub(crate) log: Arc<NotifyLog>,
    pub(crate) dispatcher: Arc<Dispatcher>,
    pub(crate) context: Arc<DispatchContext>,
    pub(crate) base_url: String,
    pub(crate) login: Mutex<LoginState>,
    /// APIv3 bill files behind the download URLs handed out, until they expire.
    pub(crate) issued_bills: crate::bills::IssuedBills,
}

/// `count` random decimal digits.
pub(crate) fn digits(count: usize) -> String {
    let mut rng = rand::rng();
    (0..count)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

/// 16–32 random letters and digits for `nonce_str`.
pub(crate) fn nonce() -> String {
    hex::encode(rand::rng().random::<[u8; 16]>())
}

/// Beijing time (UTC+8), the zone both providers write timestamps in.
pub(crate) fn china_time(instant: DateTime<Utc>) -> DateTime<FixedOffset> {
    match FixedOffset::east_opt(8 * 3600) {
        Some(offset) => instant.with_timezone(&offset),
        // Unreachable: +08:00 is a valid offset; fall back to UTC rather than panic.
        None => instant.fixed_offset(),
    }
}

impl SandboxState {
    /// Marks a trade paid and sends its payment notify.
    pub(crate) fn pay(
        &self,
        provider: ProviderKind,
        out_trade_no: &str,
    ) -> Result<Trade, SandboxError> {
        let paid = self.trades.update(provider, out_trade_no, |slot| {
            let Some(trade) = slot.as_mut() else {
                return (
                    Err(SandboxError::TradeNotFound {
                        provider,
                        reference: out_trade_no.to_owned(),
                    }),
                    false,
                );
            };
            if trade.status != TradeStatus::AwaitingPayment {
                return (
                    Err(SandboxError::NotPayable {
                        out_trade_no: trade.out_trade_no.clone(),
                        status: trade.status,
                    }),
                    false,
                );
            }
            trade.status = TradeStatus::Paid;
            trade.paid_at = Some(Utc::now());
            match &mut trade.detail {
                TradeDetail::Wechat(wechat) => {
                    trade.provider_trade_no = Some(format!("4200{}", digits(24)));
                    if wechat.openid.is_none() {
                        wechat.openid = Some(format!("oSbx{}", &nonce()[..24]));
                    }
                }
                TradeDetail::Alipay(alipay) => {
                    if alipay.buyer_id.is_none() {
                        alipay.buyer_id = Some(format!("2088{}", digits(12)));
                    }
                }
            }
            (Ok(trade.clone()), true)
        })?;
        self.send_payment_notify(&paid);
        Ok(paid)
    }

    /// Pays the WeChat trade that was issued `prepay_id`.
    pub(crate) fn pay_prepay_id(&self, prepay_id: &str) -> Result<Trade, SandboxError> {
        let trade = self
            .trades
            .find(|t| t.wechat().is_some_and(|w| w.prepay_id == prepay_id))
            .ok_or_else(|| SandboxError::TradeNotFound {
                provider: ProviderKind::WECHAT,
                reference: prepay_id.to_owned(),
            })?;
        self.pay(ProviderKind::WECHAT, &trade.out_trade_no)
    }

    fn dispatch(&self, job: NotifyJob) {
        self.dispatcher.spawn(job, Arc::clone(&self.context));
    }

    fn send_payment_notify(&self, trade: &Trade) {
        let Some(url) = trade.notify_url.clone() else {
            return;
        };
        let payload = match &trade.detail {
            TradeDetail::Wechat(w) if w.api_v3 => NotifyPayload::WechatV3 {
                id: format!("EV-{}", digits(20)),
                event_type: "TRANSACTION.SUCCESS",
                original_type: "transaction",
                resource: crate::routes::wechat_v3::transaction_json(trade, &self.keys.v3.mchid),
            },
            TradeDetail::Wechat(_) => self.wechat_payment_notify(trade),
            TradeDetail::Alipay(_) => self.alipay_notify(trade, None),
        };
        self.dispatch(NotifyJob {
            provider: trade.provider,
            kind: NotifyKind::Payment,
            out_trade_no: trade.out_trade_no.clone(),
            out_refund_no: None,
            url,
            payload,
        });
    }

    /// Sends the refund notify: WeChat's encrypted one to `wechat_notify_url` (the refund
    /// request's `notify_url`), Alipay's refund-carrying trade notify to the trade's notify_url.
    pub(crate) fn send_refund_notify(
        &self,
        trade: &Trade,
        refund: &Refund,
        wechat_notify_url: Option<String>,
    ) {
        let (url, payload) = match &trade.detail {
            TradeDetail::Wechat(w) if w.api_v3 => match wechat_notify_url {
                Some(url) => (
                    url,
                    NotifyPayload::WechatV3 {
                        id: format!("EV-{}", digits(20)),
                        event_type: "REFUND.SUCCESS",
                        original_type: "refund",
                        resource: crate::routes::wechat_v3::refund_notify_json(
                            trade,
                            refund,
                            &self.keys.v3.mchid,
                        ),
                    },
                ),
                None => return,
            },
            TradeDetail::Wechat(_) => match wechat_notify_url {
                Some(url) => (url, self.wechat_refund_notify(trade, refund)),
                None => return,
            },
            TradeDetail::Alipay(_) => match trade.notify_url.clone() {
                Some(url) => (url, self.alipay_notify(trade, Some(refund))),
                None => return,
            },
        };
        self.dispatch(NotifyJob {
            provider: trade.provider,
            kind: NotifyKind::Refund,
            out_trade_no: trade.out_trade_no.clone(),
            out_refund_no: Some(refund.out_refund_no.clone()),
            url,
            payload,
        });
    }

    fn wechat_payment_notify(&self, trade: &Trade) -> NotifyPayload {
        let keys = &self.keys.keys;
        let (sign_type, trade_type, openid, attach, appid) = match trade.wechat() {
            Some(w) => (
                w.sign_type,
                w.trade_type.clone(),
                w.openid.clone().unwrap_or_default(),
                w.attach.clone(),
                w.appid.clone(),
            ),
            None => (
                SignType::Md5,
                String::new(),
                String::new(),
                None,
                keys.wechat_appid.clone(),
            ),
        };
        let fee = trade.amount.get().to_string();
        let time_end = china_time(trade.paid_at.unwrap_or_else(Utc::now))
            .format("%Y%m%d%H%M%S")
            .to_string();
        let mut params: WechatParams = [
            ("appid", appid),
            ("bank_type", "CFT".to_owned()),
            ("cash_fee", fee.clone()),
            ("fee_type", "CNY".to_owned()),
            ("is_subscribe", "N".to_owned()),
            ("mch_id", keys.wechat_mch_id.clone()),
            ("nonce_str", nonce()),
            ("openid", openid),
            ("out_trade_no", trade.out_trade_no.clone()),
            ("result_code", "SUCCESS".to_owned()),
            ("return_code", "SUCCESS".to_owned()),
            ("time_end", time_end),
            ("total_fee", fee),
            ("trade_type", trade_type),
            (
                "transaction_id",
                trade.provider_trade_no.clone().unwrap_or_default(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if let Some(attach) = attach {
            params.insert("attach".into(), attach);
        }
        if sign_type == SignType::HmacSha256 {
            params.insert("sign_type".into(), sign_type.as_str().into());
        }
        NotifyPayload::WechatPayment { params, sign_type }
    }

    fn wechat_refund_notify(&self, trade: &Trade, refund: &Refund) -> NotifyPayload {
        let keys = &self.keys.keys;
        let appid = trade
            .wechat()
            .map_or_else(|| keys.wechat_appid.clone(), |w| w.appid.clone());
        let outer: WechatParams = [
            ("return_code", "SUCCESS".to_owned()),
            ("appid", appid),
            ("mch_id", keys.wechat_mch_id.clone()),
            ("nonce_str", nonce()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let total = trade.amount.get().to_string();
        let refund_fee = refund.amount.get().to_string();
        let inner: WechatParams = [
            (
                "transaction_id",
                trade.provider_trade_no.clone().unwrap_or_default(),
            ),
            ("out_trade_no", trade.out_trade_no.clone()),
            ("refund_id", refund.refund_id.clone()),
            ("out_refund_no", refund.out_refund_no.clone()),
            ("total_fee", total.clone()),
            ("settlement_total_fee", total),
            ("refund_fee", refund_fee.clone()),
            ("settlement_refund_fee", refund_fee.clone()),
            ("cash_refund_fee", refund_fee),
            ("refund_status", "SUCCESS".to_owned()),
            (
                "success_time",
                china_time(refund.refunded_at)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string(),
            ),
            ("refund_recv_accout", "支付用户零钱".to_owned()),
            ("refund_account", "REFUND_SOURCE_RECHARGE_FUNDS".to_owned()),
            ("refund_request_source", "API".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        NotifyPayload::WechatRefund { outer, inner }
    }

    /// Alipay's `trade_status_sync` notify; with `refund`, the refund-carrying variant
    /// (`refund_fee` cumulative, `gmt_refund`, `out_biz_no`, `TRADE_CLOSED` once fully refunded).
    fn alipay_notify(&self, trade: &Trade, refund: Option<&Refund>) -> NotifyPayload {
        let keys = &self.keys.keys;
        let amount = trade.amount.to_yuan_string();
        let when = |t: DateTime<Utc>| china_time(t).format("%Y-%m-%d %H:%M:%S").to_string();
        let now = Utc::now();
        let status = if refund.is_some() && trade.fully_refunded() {
            "TRADE_CLOSED"
        } else {
            "TRADE_SUCCESS"
        };
        let alipay = trade.alipay();
        let mut params: AlipayParams = [
            ("notify_time", when(now)),
            ("notify_type", "trade_status_sync".to_owned()),
            (
                "notify_id",
                format!("{}{}", now.format("%Y%m%d"), digits(26)),
            ),
            (
                "app_id",
                alipay.map_or_else(|| keys.alipay_app_id.clone(), |a| a.app_id.clone()),
            ),
            ("auth_app_id", keys.alipay_app_id.clone()),
            ("charset", "utf-8".to_owned()),
            ("version", "1.0".to_owned()),
            ("sign_type", "RSA2".to_owned()),
            (
                "trade_no",
                trade.provider_trade_no.clone().unwrap_or_default(),
            ),
            ("out_trade_no", trade.out_trade_no.clone()),
            (
                "buyer_id",
                alipay.and_then(|a| a.buyer_id.clone()).unwrap_or_default(),
            ),
            ("buyer_logon_id", "159****5620".to_owned()),
            ("seller_id", keys.alipay_seller_id.clone()),
            ("seller_email", "sandbox-seller@example.com".to_owned()),
            ("trade_status", status.to_owned()),
            ("total_amount", amount.clone()),
            ("receipt_amount", amount.clone()),
            ("invoice_amount", amount.clone()),
            ("buyer_pay_amount", amount.clone()),
            ("point_amount", "0.00".to_owned()),
            ("subject", trade.subject.clone()),
            ("gmt_create", when(trade.created_at)),
            ("gmt_payment", when(trade.paid_at.unwrap_or(now))),
            (
                "fund_bill_list",
                format!(r#"[{{"amount":"{amount}","fundChannel":"ALIPAYACCOUNT"}}]"#),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if let Some(body) = alipay.and_then(|a| a.body.clone()) {
            params.insert("body".into(), body);
        }
        if let Some(passback) = alipay.and_then(|a| a.passback_params.clone()) {
            params.insert("passback_params".into(), passback);
        }
        if let Some(refund) = refund {
            params.insert("refund_fee".into(), trade.refunded().to_yuan_string());
            params.insert(
                "gmt_refund".into(),
                china_time(refund.refunded_at)
                    .format("%Y-%m-%d %H:%M:%S%.3f")
                    .to_string(),
            );
            params.insert("out_biz_no".into(), refund.out_refund_no.clone());
            if status == "TRADE_CLOSED" {
                params.insert("gmt_close".into(), when(refund.refunded_at));
            }
        }
        NotifyPayload::Alipay { params }
    }
}
