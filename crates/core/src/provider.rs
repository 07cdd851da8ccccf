//! The boundary between paygate and a payment provider.
//!
//! A provider crate turns paygate's requests into its wire format and its responses and
//! callbacks back into the typed values here, and does nothing else: no database, no HTTP
//! server, no decisions about orders. Like hyperswitch's connectors, each flow is a
//! request → response transformer; unlike hyperswitch, two providers need no type-level flow
//! machinery, so each flow is one async method on an object-safe trait and the gateway keeps a
//! registry of `Arc<dyn Provider>`, one per configured app.
//!
//! Everything the gateway must cross-check before an order becomes paid (amount, currency,
//! app id, merchant id, out_trade_no, trade state) travels in [`TradeFacts`], and the check
//! itself is [`TradeFacts::check_payment`], written once for both providers.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::{BillDownload, Channel, Currency, Fen, Order, OutRefundNo, OutTradeNo, ProviderKind};

/// Who the merchant is at the provider; a callback naming anyone else is not ours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantIdentity {
    /// WeChat `appid` or Alipay `app_id`.
    pub app_id: String,
    /// WeChat `mch_id` or Alipay `seller_id` (the 2088… partner id).
    pub merchant_id: String,
}

/// What the gateway asks a provider to create.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatePayment {
    /// The payment product.
    pub channel: Channel,
    /// The merchant's order number.
    pub out_trade_no: OutTradeNo,
    /// The amount, already checked against the provider's cap.
    pub amount: Fen,
    /// The currency of `amount`.
    pub currency: Currency,
    /// Item name shown to the buyer.
    pub subject: String,
    /// Optional longer description.
    pub description: Option<String>,
    /// The buyer at the provider: WeChat openid (required for `jsapi`/`mini_program`) or Alipay
    /// buyer id (required for Alipay `mini_program`).
    pub payer_id: Option<String>,
    /// The buyer's IP (WeChat `spbill_create_ip`).
    pub client_ip: Option<IpAddr>,
    /// When the order stops being payable.
    pub expires_at: DateTime<Utc>,
    /// Where the provider posts the async notify.
    pub notify_url: String,
    /// Where a browser returns after paying (Alipay wap/page).
    pub return_url: Option<String>,
}

/// What the buyer's client needs to start paying, per channel. Serialised as the API's
/// `pay_params` and stored as issued, so an idempotent retry serves the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PayParams {
    /// Alipay app pay: the signed orderString for the Alipay SDK.
    AlipayOrderString {
        /// The orderString, every value URL-encoded once.
        order_string: String,
    },
    /// WeChat mini-program or JSAPI: the `wx.requestPayment` / `chooseWXPay` fields.
    WechatJsapi {
        /// The appid that was signed (not passed to `wx.requestPayment`, but signed).
        #[serde(rename = "appId")]
        app_id: String,
        /// Unix seconds as a string.
        #[serde(rename = "timeStamp")]
        time_stamp: String,
        /// Random string.
        #[serde(rename = "nonceStr")]
        nonce_str: String,
        /// `prepay_id=…`.
        package: String,
        /// `MD5` or `HMAC-SHA256`.
        #[serde(rename = "signType")]
        sign_type: String,
        /// The signature over the five fields above.
        #[serde(rename = "paySign")]
        pay_sign: String,
    },
    /// WeChat APP pay: the fields for the native SDK's `PayReq`.
    WechatApp {
        /// Open-platform appid.
        appid: String,
        /// mch_id.
        partnerid: String,
        /// The prepay id.
        prepayid: String,
        /// Always `Sign=WXPay`.
        package: String,
        /// Random string.
        noncestr: String,
        /// Unix seconds.
        timestamp: String,
        /// MD5/HMAC signature over the six fields above.
        sign: String,
    },
    /// WeChat NATIVE: the QR content.
    CodeUrl {
        /// `weixin://wxpay/…`.
        code_url: String,
    },
    /// Alipay precreate: the QR content.
    QrCode {
        /// `https://qr.alipay.com/…`.
        qr_code: String,
    },
    /// WeChat H5: the URL to send the mobile browser to.
    MwebUrl {
        /// The `mweb_url`.
        mweb_url: String,
    },
    /// Alipay wap/page: the signed `gateway.do?…` URL to redirect the browser to.
    RedirectUrl {
        /// The full GET URL.
        url: String,
    },
    /// Alipay mini program: the trade number for `my.tradePay({tradeNO})`.
    TradeNo {
        /// Alipay's `trade_no`.
        trade_no: String,
    },
}

/// What a successful create returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedPayment {
    /// What the client needs to pay.
    pub pay_params: PayParams,
    /// The provider's trade number when creating yields one (Alipay `trade.create`'s
    /// `trade_no`), stored on the order at once. Not a prepay id: that is no trade number.
    pub provider_trade_no: Option<String>,
}

/// A trade's state as the provider reports it, mapped exhaustively from the wire values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TradeState {
    /// Created, not paid yet (WeChat `NOTPAY`/`USERPAYING`, Alipay `WAIT_BUYER_PAY`).
    AwaitingPayment,
    /// Paid (WeChat `SUCCESS`, Alipay `TRADE_SUCCESS`/`TRADE_FINISHED`).
    Paid,
    /// Paid, then refunded in part or in full (WeChat `REFUND`).
    Refunded,
    /// Closed unpaid, or (Alipay `TRADE_CLOSED` after a payment) fully refunded.
    Closed,
    /// The payment failed (WeChat `PAYERROR`/`REVOKED`, notify `result_code=FAIL`).
    Failed,
}

/// The facts about one trade that a verified notify or a query carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeFacts {
    /// Which provider said it.
    pub provider: ProviderKind,
    /// The merchant's order number.
    pub out_trade_no: String,
    /// The provider's trade number.
    pub provider_trade_no: Option<String>,
    /// The trade's state.
    pub state: TradeState,
    /// The order total the provider holds (`total_fee` / `total_amount`), when reported.
    pub amount: Option<Fen>,
    /// The currency the provider holds (WeChat `fee_type`; Alipay is CNY-only).
    pub currency: Currency,
    /// `appid` / `app_id` as the provider reported it.
    pub app_id: Option<String>,
    /// `mch_id` / `seller_id` as the provider reported it.
    pub merchant_id: Option<String>,
    /// The buyer (openid / buyer_id).
    pub payer_id: Option<String>,
    /// When the buyer paid (`time_end` / `gmt_payment`), as a UTC instant.
    pub paid_at: Option<DateTime<Utc>>,
}

/// Why verified trade facts do not match the stored order; the callback is genuine but does
/// not describe this order, so nothing may change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "mismatch", rename_all = "snake_case")]
pub enum PaymentMismatch {
    /// A different provider reported it.
    #[error("provider {got} reported a trade of a {expected} order")]
    Provider {
        /// The order's provider.
        expected: ProviderKind,
        /// The reporting provider.
        got: ProviderKind,
    },
    /// Different merchant order number.
    #[error("out_trade_no {got:?} does not match the order's {expected:?}")]
    OutTradeNo {
        /// The order's number.
        expected: String,
        /// The reported number.
        got: String,
    },
    /// Different amount, or none at all.
    #[error("amount {} does not match the order's {expected}", got.map_or_else(|| "(none)".to_owned(), |f| f.to_string()))]
    Amount {
        /// The order's amount.
        expected: Fen,
        /// The reported amount.
        got: Option<Fen>,
    },
    /// Different currency.
    #[error("currency {got} does not match the order's {expected}")]
    Currency {
        /// The order's currency.
        expected: Currency,
        /// The reported currency.
        got: Currency,
    },
    /// Different (or missing) appid / app_id.
    #[error("app id {got:?} is not ours ({expected})")]
    AppId {
        /// Our configured app id.
        expected: String,
        /// The reported app id.
        got: Option<String>,
    },
    /// Different (or missing) mch_id / seller_id.
    #[error("merchant id {got:?} is not ours ({expected})")]
    MerchantId {
        /// Our configured merchant id.
        expected: String,
        /// The reported merchant id.
        got: Option<String>,
    },
    /// The trade is not in a paid state.
    #[error("trade state {got:?} is not a payment")]
    NotPaid {
        /// The reported state.
        got: TradeState,
    },
}

impl TradeFacts {
    /// Checks that these facts prove `order` was paid in full to `merchant`: provider,
    /// out_trade_no, amount, currency, app id, merchant id and state, in that order. Every
    /// path that marks an order paid (notify, sync, reconciler) goes through here.
    pub fn check_payment(
        &self,
        order: &Order,
        merchant: &MerchantIdentity,
    ) -> Result<(), PaymentMismatch> {
        if self.provider != order.provider {
            return Err(PaymentMismatch::Provider {
                expected: order.provider,
                got: self.provider,
            });
        }
        if self.out_trade_no != order.out_trade_no.as_str() {
            return Err(PaymentMismatch::OutTradeNo {
                expected: order.out_trade_no.to_string(),
                got: self.out_trade_no.clone(),
            });
        }
        if self.amount != Some(order.amount) {
            return Err(PaymentMismatch::Amount {
                expected: order.amount,
                got: self.amount,
            });
        }
        if self.currency != order.currency {
            return Err(PaymentMismatch::Currency {
                expected: order.currency,
                got: self.currency,
            });
        }
        if self.app_id.as_deref() != Some(merchant.app_id.as_str()) {
            return Err(PaymentMismatch::AppId {
                expected: merchant.app_id.clone(),
                got: self.app_id.clone(),
            });
        }
        if self.merchant_id.as_deref() != Some(merchant.merchant_id.as_str()) {
            return Err(PaymentMismatch::MerchantId {
                expected: merchant.merchant_id.clone(),
                got: self.merchant_id.clone(),
            });
        }
        match self.state {
            TradeState::Paid | TradeState::Refunded => Ok(()),
            got => Err(PaymentMismatch::NotPaid { got }),
        }
    }
}

/// A refund to send to the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    /// The order's number.
    pub out_trade_no: OutTradeNo,
    /// The provider's trade number, when known (preferred by both providers).
    pub provider_trade_no: Option<String>,
    /// The refund's idempotency key; a retry reuses it.
    pub out_refund_no: OutRefundNo,
    /// How much to give back.
    pub refund_amount: Fen,
    /// The order total (WeChat requires it as `total_fee`).
    pub order_amount: Fen,
    /// Shown to the buyer.
    pub reason: Option<String>,
    /// Where the provider posts the refund result (WeChat refund notify).
    pub notify_url: Option<String>,
}

/// Which refund to look up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundQuery {
    /// The order's number.
    pub out_trade_no: OutTradeNo,
    /// The refund's number.
    pub out_refund_no: OutRefundNo,
}

/// A refund's state as the provider reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundState {
    /// Accepted, not final (WeChat `PROCESSING`, an Alipay refund not yet visible).
    Processing,
    /// The money went back.
    Succeeded,
    /// Closed or abnormal (WeChat `REFUNDCLOSE`/`CHANGE`); needs a person.
    Failed,
    /// The provider has no such refund.
    NotFound,
}

/// The facts about one refund that a response, query or notify carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundFacts {
    /// The order's number.
    pub out_trade_no: String,
    /// The refund's number.
    pub out_refund_no: String,
    /// The provider's refund id, when it gives one.
    pub provider_refund_id: Option<String>,
    /// The refunded amount, when reported.
    pub amount: Option<Fen>,
    /// The refund's state.
    pub state: RefundState,
    /// When the money went back (UTC).
    pub succeeded_at: Option<DateTime<Utc>>,
}

/// A verified provider callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// A trade-status notify (WeChat pay notify, Alipay `trade_status_sync`).
    Payment(TradeFacts),
    /// A refund-result notify (WeChat encrypted refund notify; Alipay trade notifies that
    /// carry refund fields are reported as `Payment` with their trade state).
    Refund(RefundFacts),
}

/// Which of a provider's callback routes a callback came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackPurpose {
    /// Trade-status notifies (payment results; Alipay also reports refunds here).
    Payment,
    /// Refund-result notifies on a route of their own (WeChat).
    Refund,
}

/// A callback route a provider listens on: `POST /notify/{provider}/{app}` plus `suffix`
/// (`""` or `"/refund"`, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallbackRoute {
    /// Appended to `/notify/{provider}/{app}`; empty or starting with `/`.
    pub suffix: &'static str,
    /// What arrives on it.
    pub purpose: CallbackPurpose,
}

/// A callback as it reached the notify endpoint: the whole inbound HTTP request, so a provider
/// that signs in headers (WeChat APIv3) or in the query can verify it. The gateway has matched
/// the route (provider, app, purpose) and bounded the body; everything else is the provider's.
#[derive(Debug, Clone, Copy)]
pub struct InboundCallback<'a> {
    /// The HTTP method.
    pub method: &'a str,
    /// The route it came in on.
    pub purpose: CallbackPurpose,
    /// The raw query string, without the `?`.
    pub query: &'a str,
    /// Every header as received, names in any case.
    pub headers: &'a [(&'a str, &'a str)],
    /// The exact body bytes.
    pub body: &'a [u8],
}

impl<'a> InboundCallback<'a> {
    /// A `POST` of `body` alone, no headers and no query: all a provider that signs only the
    /// body needs (tests, tools replaying a stored callback).
    pub fn of_body(purpose: CallbackPurpose, body: &'a [u8]) -> InboundCallback<'a> {
        InboundCallback {
            method: "POST",
            purpose,
            query: "",
            headers: &[],
            body,
        }
    }

    /// The first header named `name` (case-insensitively), if any.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// The `Content-Type` header, if any.
    pub fn content_type(&self) -> Option<&'a str> {
        self.header("content-type")
    }
}

/// How the gateway took a callback, for the provider to phrase its acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackOutcome {
    /// Taken (applied, or a duplicate of what was applied): the provider should stop sending.
    Accepted,
    /// Refused (unverifiable, malformed, not ours): nothing changed.
    Rejected,
    /// Refused unread because the body is over the limit.
    TooLarge,
    /// Not handled now (the database is down): the provider should send it again later.
    RetryLater,
    /// Genuine, but it does not match our books (an unknown order, or an amount, app or
    /// merchant other than the order's): nothing changed and finance has an anomaly. Each
    /// provider decides whether to stop it (WeChat v2 and Alipay acknowledge it, as resending
    /// cannot change it) or to have it sent again (WeChat APIv3 refuses it, so that a corrected
    /// configuration can still take a later retry).
    Unmatched,
}

/// The HTTP answer a provider expects to a callback: its status, content type and exact body.
/// A provider that treats any 2xx as accepted (WeChat APIv3) must answer a refusal with a
/// 4xx/5xx or it never retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackAck {
    /// The HTTP status.
    pub status: u16,
    /// Content type of the reply.
    pub content_type: &'static str,
    /// The exact bytes the provider looks for.
    pub body: String,
}

/// A field of the create request that a channel needs from the merchant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuyerField {
    /// The buyer's WeChat openid (`openid`).
    OpenId,
    /// The buyer's Alipay id (`buyer_id`).
    BuyerId,
    /// The buyer's IP address (`client_ip`).
    ClientIp,
}

impl BuyerField {
    /// The create request's field name.
    pub const fn request_field(self) -> &'static str {
        match self {
            BuyerField::OpenId => "openid",
            BuyerField::BuyerId => "buyer_id",
            BuyerField::ClientIp => "client_ip",
        }
    }
}

/// The create-request field that names the buyer at the provider (stored as the order's payer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayerField {
    /// The buyer's WeChat openid (`openid`).
    OpenId,
    /// The buyer's Alipay id (`buyer_id`).
    BuyerId,
}

impl PayerField {
    /// The same field as a [`BuyerField`], for its name and missing-field code.
    pub const fn field(self) -> BuyerField {
        match self {
            PayerField::OpenId => BuyerField::OpenId,
            PayerField::BuyerId => BuyerField::BuyerId,
        }
    }
}

/// What one channel of an app needs and how it is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSupport {
    /// The channel.
    pub channel: Channel,
    /// The field that identifies the buyer at the provider (stored as the order's payer),
    /// when the channel needs one.
    pub payer: Option<PayerField>,
    /// Whether the buyer's IP is required.
    pub client_ip_required: bool,
    /// Whether creating only signs locally (no call to the provider), so it can run before
    /// the order is stored and the order be stored with its pay params in one write.
    pub signs_locally: bool,
}

/// The merchant order numbers a provider takes: a length range over ASCII letters, digits and
/// `extra_chars`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutTradeNoRule {
    /// Fewest characters.
    pub min_len: usize,
    /// Most characters.
    pub max_len: usize,
    /// Allowed besides ASCII letters and digits.
    pub extra_chars: &'static str,
}

impl OutTradeNoRule {
    /// Why `out_trade_no` is not acceptable to this provider, if it is not.
    pub fn check(&self, out_trade_no: &OutTradeNo) -> Result<(), String> {
        let text = out_trade_no.as_str();
        if !(self.min_len..=self.max_len).contains(&text.len()) {
            return Err(format!(
                "out_trade_no must be {} to {} characters",
                self.min_len, self.max_len
            ));
        }
        match text
            .chars()
            .find(|c| !c.is_ascii_alphanumeric() && !self.extra_chars.contains(*c))
        {
            Some(c) => Err(format!(
                "out_trade_no may hold letters, digits and {:?}, not {c:?}",
                self.extra_chars
            )),
            None => Ok(()),
        }
    }
}

/// What a configured provider app offers and needs, declared by the provider so the gateway
/// validates requests and routes callbacks without knowing which provider it talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// The channels this app is set up for, with what each needs.
    pub channels: Vec<ChannelSupport>,
    /// The largest single order.
    pub max_order_amount: Fen,
    /// Which merchant order numbers it takes.
    pub out_trade_no: OutTradeNoRule,
    /// The callback routes it listens on.
    pub callback_routes: &'static [CallbackRoute],
    /// The route refund results are posted to, when refunds have a notify of their own.
    pub refund_callback: Option<CallbackRoute>,
}

impl Capabilities {
    /// What `channel` needs, when this app offers it.
    pub fn channel(&self, channel: Channel) -> Option<&ChannelSupport> {
        self.channels.iter().find(|c| c.channel == channel)
    }

    /// The route with `suffix`, if the provider listens on it.
    pub fn callback_route(&self, suffix: &str) -> Option<CallbackRoute> {
        self.callback_routes
            .iter()
            .find(|route| route.suffix == suffix)
            .copied()
    }
}

/// The trade a query or close is about: paygate's number, the provider's when known (some
/// providers prefer or need it), and when the order was created (providers that shard by date
/// need it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeRef {
    /// The merchant's order number.
    pub out_trade_no: OutTradeNo,
    /// The provider's trade number, when known.
    pub provider_trade_no: Option<String>,
    /// When the order was created.
    pub created_at: DateTime<Utc>,
}

impl TradeRef {
    /// A reference by the merchant's order number alone, created now (for tools and tests
    /// that have no stored order).
    pub fn for_out_trade_no(out_trade_no: OutTradeNo) -> TradeRef {
        TradeRef {
            out_trade_no,
            provider_trade_no: None,
            created_at: Utc::now(),
        }
    }

    /// The reference to `order`'s trade.
    pub fn of(order: &Order) -> TradeRef {
        TradeRef {
            out_trade_no: order.out_trade_no.clone(),
            provider_trade_no: order.provider_trade_no.clone(),
            created_at: order.created_at,
        }
    }
}

/// Why a raw callback was refused. Every variant means "change nothing".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// The body exceeds the size limit.
    #[error("callback body of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// The body is not a well-formed document of the expected kind.
    #[error("malformed callback: {0}")]
    Malformed(String),
    /// The body declares a DTD or entity (XXE / billion-laughs attempt).
    #[error("callback declares a DTD or entity")]
    ForbiddenDtd,
    /// A field the provider always sends is missing or unparsable.
    #[error("callback field {field}: {reason}")]
    BadField {
        /// The field's wire name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The signature does not verify.
    #[error("callback signature does not verify")]
    BadSignature,
    /// The encrypted part could not be decrypted (wrong key or bad padding).
    #[error("callback could not be decrypted: {0}")]
    Decrypt(String),
    /// The provider reported a communication-level failure (`return_code=FAIL`).
    #[error("provider reported failure: {0}")]
    ProviderFailure(String),
}

/// What went wrong in a provider call, for operators: a message (never a secret), and the
/// lower-level error that caused it when there is one, kept so that logs and error reports can
/// walk the whole chain (`std::error::Error::source`) instead of a flattened string.
#[derive(Clone)]
pub struct ErrorDetail {
    message: String,
    cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl ErrorDetail {
    /// A detail with no underlying error (a provider's answer, a local check).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            cause: None,
        }
    }

    /// A detail caused by `cause`: its message is `context: cause`, and `cause` stays
    /// reachable as the error's source.
    pub fn caused_by(
        context: impl fmt::Display,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            message: format!("{context}: {cause}"),
            cause: Some(Arc::new(cause)),
        }
    }

    /// A detail that is the error `cause` itself (its message, and it as the source).
    pub fn from_error(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            message: cause.to_string(),
            cause: Some(Arc::new(cause)),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error that caused this one, if any (for downcasting: its text is already in the
    /// message).
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.cause.as_deref()
    }

    /// The first error of the cause's chain whose text is not already in the message: the
    /// message embeds the cause's own text, so the chain goes on with the cause's source.
    fn next_in_chain(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref().and_then(|cause| cause.source())
    }

    /// Whether the message contains `needle` (tests and log matching).
    pub fn contains(&self, needle: &str) -> bool {
        self.message.contains(needle)
    }
}

impl fmt::Display for ErrorDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for ErrorDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("ErrorDetail");
        debug.field("message", &self.message);
        if let Some(cause) = &self.cause {
            debug.field("cause", cause);
        }
        debug.finish()
    }
}

/// Two details are the same when they say the same thing; the cause object has no identity.
impl PartialEq for ErrorDetail {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message
    }
}

impl Eq for ErrorDetail {}

/// An error in its own right, so that error types of the provider crates can carry a detail
/// (e.g. a transport failure) and hand it to [`ProviderError`] whole.
impl std::error::Error for ErrorDetail {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.next_in_chain()
    }
}

impl From<String> for ErrorDetail {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for ErrorDetail {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

/// Why a provider call failed. The gateway decides from the variant whether an order may be
/// retried, must be queried, or is definitively refused. Details keep the lower-level error
/// that caused them as the error's source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderError {
    /// The request never got a definite answer (timeout, connection reset, 5xx, WeChat
    /// `SYSTEMERROR`, Alipay `20000`/`ACQ.SYSTEM_ERROR`): it may or may not have taken effect.
    /// Resolve by querying, or retry with identical parameters.
    OutcomeUnknown(ErrorDetail),
    /// The response's signature did not verify, or it was not the provider's shape: treat as
    /// an attack or a broken proxy, never as success.
    UntrustedResponse(ErrorDetail),
    /// The provider refused the request with a business or parameter error.
    Refused {
        /// The provider's code (`err_code`, `sub_code`).
        code: String,
        /// The provider's message.
        message: String,
        /// Whether the same request may be sent again later (e.g. `BIZERR_NEED_RETRY`,
        /// `FREQUENCY_LIMITED`).
        retryable: bool,
    },
    /// The trade is already paid (WeChat `ORDERPAID`, Alipay `ACQ.TRADE_HAS_SUCCESS`): query it
    /// and mark it paid.
    AlreadyPaid,
    /// The trade is closed at the provider.
    AlreadyClosed,
    /// The provider does not know the trade or refund.
    NotFound,
    /// paygate's request is not acceptable to this provider (missing openid, channel not
    /// offered, amount over the provider's cap); nothing was sent.
    InvalidRequest(String),
    /// The provider app is misconfigured (bad key, missing certificate).
    Configuration(ErrorDetail),
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProviderError::OutcomeUnknown(detail) => write!(f, "outcome unknown: {detail}"),
            ProviderError::UntrustedResponse(detail) => {
                write!(f, "provider response failed verification: {detail}")
            }
            ProviderError::Refused { code, message, .. } => {
                write!(f, "provider refused ({code}): {message}")
            }
            ProviderError::AlreadyPaid => f.write_str("trade already paid"),
            ProviderError::AlreadyClosed => f.write_str("trade already closed"),
            ProviderError::NotFound => f.write_str("trade not found at the provider"),
            ProviderError::InvalidRequest(reason) => write!(f, "invalid request: {reason}"),
            ProviderError::Configuration(detail) => write!(f, "provider configuration: {detail}"),
        }
    }
}

/// The source is where the detail's chain goes on, not the detail itself: the detail's message
/// (and its cause's) is already part of this error's own, and a chain that repeated it would
/// say everything twice.
impl std::error::Error for ProviderError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProviderError::OutcomeUnknown(detail)
            | ProviderError::UntrustedResponse(detail)
            | ProviderError::Configuration(detail) => detail.next_in_chain(),
            _ => None,
        }
    }
}

impl ProviderError {
    /// Whether the outcome is unknown and must be resolved by a query before anything else.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, ProviderError::OutcomeUnknown(_))
    }

    /// Whether the provider definitely did not carry out the request, so a refund may be
    /// recorded as failed (and its amount released) or a close as not done. Only a definite,
    /// non-retryable answer qualifies, or a request that was never sent. No answer, an
    /// unusable answer (empty, truncated, unverifiable, not ours) and a "try again" refusal
    /// (WeChat `SYSTEMERROR`/`BIZERR_NEED_RETRY`/`FREQUENCY_LIMITED`, Alipay
    /// `20000`/`ACQ.SYSTEM_ERROR`) may all hide a request the provider carried out: those
    /// leave the operation in flight, to be settled by query and re-sent with the same number.
    pub fn is_definite_refusal(&self) -> bool {
        match self {
            ProviderError::OutcomeUnknown(_) | ProviderError::UntrustedResponse(_) => false,
            ProviderError::Refused { retryable, .. } => !retryable,
            ProviderError::AlreadyPaid
            | ProviderError::AlreadyClosed
            | ProviderError::NotFound
            | ProviderError::InvalidRequest(_)
            | ProviderError::Configuration(_) => true,
        }
    }
}

/// One configured provider app. Implemented by `paygate-wechat` and `paygate-alipay`.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Which provider this is.
    fn kind(&self) -> ProviderKind;

    /// The merchant identity callbacks and queries must name.
    fn merchant(&self) -> &MerchantIdentity;

    /// What this app offers and needs: channels and their required fields, amount limit,
    /// order-number rule, callback routes.
    fn capabilities(&self) -> &Capabilities;

    /// Everything [`Provider::create_payment`] would refuse without asking the provider
    /// (channel, currency, amount, required buyer fields, missing app settings), checked
    /// before the order is stored, so a refused create leaves nothing behind and its
    /// corrected retry is a new order rather than a conflict.
    fn check_payment_request(&self, request: &CreatePayment) -> Result<(), ProviderError>;

    /// Creates the trade at the provider (or signs it locally, for Alipay app pay) and
    /// returns what the client needs.
    async fn create_payment(
        &self,
        request: &CreatePayment,
    ) -> Result<CreatedPayment, ProviderError>;

    /// Verifies an inbound callback's authenticity (over the raw bytes and whatever headers
    /// the provider signs) and parses it. It does not compare against any order; that is
    /// [`TradeFacts::check_payment`]'s job.
    fn verify_callback(&self, callback: &InboundCallback<'_>) -> Result<Notice, NotifyError>;

    /// The answer that tells the provider how its callback was taken, so it stops (or keeps)
    /// retrying: status, content type and body are the provider's to choose.
    fn acknowledge(&self, outcome: CallbackOutcome) -> CallbackAck;

    /// Asks the provider for a trade's current facts.
    async fn query_payment(&self, trade: &TradeRef) -> Result<TradeFacts, ProviderError>;

    /// Closes an unpaid trade at the provider.
    async fn close_payment(&self, trade: &TradeRef) -> Result<(), ProviderError>;

    /// Sends a refund; retries must reuse `out_refund_no`.
    async fn refund(&self, request: &RefundRequest) -> Result<RefundFacts, ProviderError>;

    /// Asks the provider for a refund's current facts.
    async fn query_refund(&self, query: &RefundQuery) -> Result<RefundFacts, ProviderError>;

    /// Downloads the merchant's trade bill (every payment and refund) of Beijing day `day`.
    /// Providers without a bill download keep this default, which sends nothing.
    async fn download_bill(&self, day: NaiveDate) -> Result<BillDownload, ProviderError> {
        let _ = day;
        Ok(BillDownload::Unsupported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AppName, OrderId, OrderStatus};

    /// A transport failure two levels deep: what a reqwest error over a refused connection is.
    #[derive(Debug, thiserror::Error)]
    #[error("error sending request")]
    struct SendFailed(#[source] std::io::Error);

    #[test]
    fn provider_errors_keep_their_causes_without_repeating_them() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let error = ProviderError::OutcomeUnknown(ErrorDetail::caused_by(
            "alipay.trade.query",
            SendFailed(refused),
        ));
        assert_eq!(
            error.to_string(),
            "outcome unknown: alipay.trade.query: error sending request"
        );
        let mut chain = Vec::new();
        let mut next = std::error::Error::source(&error);
        while let Some(cause) = next {
            chain.push(cause.to_string());
            next = cause.source();
        }
        assert_eq!(chain, vec!["refused".to_owned()]);
        let detail = match &error {
            ProviderError::OutcomeUnknown(detail) => detail,
            other => panic!("{other:?}"),
        };
        assert!(detail.cause().is_some_and(|cause| cause.is::<SendFailed>()));
        // Equality is by what the error says: a clone compares equal, and so does a plain one.
        assert_eq!(
            error.clone(),
            ProviderError::OutcomeUnknown("alipay.trade.query: error sending request".into())
        );
    }

    fn order() -> Order {
        Order {
            id: OrderId::generate(),
            provider: ProviderKind::ALIPAY,
            app: AppName::parse("shop").unwrap(),
            channel: Channel::App,
            out_trade_no: OutTradeNo::parse("order_0001").unwrap(),
            amount: Fen::new(1999).unwrap(),
            currency: Currency::Cny,
            subject: "tea".into(),
            description: None,
            status: OrderStatus::Pending,
            provider_trade_no: None,
            payer_id: None,
            pay_params: None,
            refunded_amount: Fen::ZERO,
            metadata: None,
            created_at: Utc::now(),
            paid_at: None,
            closed_at: None,
            expires_at: Utc::now(),
            version: 0,
        }
    }

    fn merchant() -> MerchantIdentity {
        MerchantIdentity {
            app_id: "2021000000000001".into(),
            merchant_id: "2088000000000001".into(),
        }
    }

    fn facts() -> TradeFacts {
        TradeFacts {
            provider: ProviderKind::ALIPAY,
            out_trade_no: "order_0001".into(),
            provider_trade_no: Some("2024010222001".into()),
            state: TradeState::Paid,
            amount: Some(Fen::new(1999).unwrap()),
            currency: Currency::Cny,
            app_id: Some("2021000000000001".into()),
            merchant_id: Some("2088000000000001".into()),
            payer_id: None,
            paid_at: None,
        }
    }

    #[test]
    fn matching_facts_prove_payment() {
        assert_eq!(facts().check_payment(&order(), &merchant()), Ok(()));
    }

    #[test]
    fn each_mismatch_is_named() {
        let o = order();
        let m = merchant();
        type Tamper = Box<dyn Fn(&mut TradeFacts)>;
        let cases: Vec<(Tamper, &str)> = vec![
            (Box::new(|f| f.provider = ProviderKind::WECHAT), "provider"),
            (
                Box::new(|f| f.out_trade_no = "order_0002".into()),
                "out_trade_no",
            ),
            (
                Box::new(|f| f.amount = Some(Fen::new(1).unwrap())),
                "amount",
            ),
            (Box::new(|f| f.amount = None), "amount"),
            (Box::new(|f| f.app_id = Some("2021999".into())), "app_id"),
            (Box::new(|f| f.app_id = None), "app_id"),
            (
                Box::new(|f| f.merchant_id = Some("2088999".into())),
                "merchant_id",
            ),
            (Box::new(|f| f.merchant_id = None), "merchant_id"),
            (
                Box::new(|f| f.state = TradeState::AwaitingPayment),
                "not_paid",
            ),
            (Box::new(|f| f.state = TradeState::Closed), "not_paid"),
            (Box::new(|f| f.state = TradeState::Failed), "not_paid"),
        ];
        for (tamper, name) in cases {
            let mut f = facts();
            tamper(&mut f);
            let err = f.check_payment(&o, &m).unwrap_err();
            let tag = serde_json::to_value(&err).unwrap()["mismatch"]
                .as_str()
                .unwrap()
                .to_owned();
            assert_eq!(tag, name, "{err}");
        }
    }

    #[test]
    fn pay_params_serialise_with_the_wire_names() {
        let p = PayParams::WechatJsapi {
            app_id: "wx1".into(),
            time_stamp: "1490840662".into(),
            nonce_str: "n".into(),
            package: "prepay_id=p".into(),
            sign_type: "MD5".into(),
            pay_sign: "S".into(),
        };
        let json = serde_json::to_value(&p).unwrap();
        for key in [
            "appId",
            "timeStamp",
            "nonceStr",
            "package",
            "signType",
            "paySign",
        ] {
            assert!(json.get(key).is_some(), "{key} missing in {json}");
        }
        let back: PayParams = serde_json::from_value(json).unwrap();
        assert_eq!(back, p);
    }

    struct Dummy(MerchantIdentity, Capabilities);

    fn capabilities() -> Capabilities {
        Capabilities {
            channels: vec![ChannelSupport {
                channel: Channel::App,
                payer: None,
                client_ip_required: false,
                signs_locally: true,
            }],
            max_order_amount: Fen::MAX_ORDER,
            out_trade_no: OutTradeNoRule {
                min_len: 6,
                max_len: 32,
                extra_chars: "_-",
            },
            callback_routes: &[CallbackRoute {
                suffix: "",
                purpose: CallbackPurpose::Payment,
            }],
            refund_callback: None,
        }
    }

    #[test]
    fn an_order_number_rule_names_what_it_refuses() {
        let rule = capabilities().out_trade_no;
        let no = |text: &str| OutTradeNo::parse(text).unwrap();
        assert_eq!(rule.check(&no("order-0001_a")), Ok(()));
        assert!(rule.check(&no("short")).unwrap_err().contains("6 to 32"));
        assert!(
            rule.check(&no(&"a".repeat(33)))
                .unwrap_err()
                .contains("6 to 32")
        );
        assert!(rule.check(&no("order|0001")).unwrap_err().contains("'|'"));
    }

    #[test]
    fn callback_headers_are_found_whatever_their_case() {
        let headers = [
            ("Content-Type", "text/xml"),
            ("wechatpay-serial", "PUB_KEY_ID_1"),
        ];
        let callback = InboundCallback {
            method: "POST",
            purpose: CallbackPurpose::Payment,
            query: "",
            headers: &headers,
            body: b"<xml/>",
        };
        assert_eq!(callback.content_type(), Some("text/xml"));
        assert_eq!(callback.header("Wechatpay-Serial"), Some("PUB_KEY_ID_1"));
        assert_eq!(callback.header("Wechatpay-Nonce"), None);
        assert_eq!(
            capabilities().callback_route("").map(|r| r.purpose),
            Some(CallbackPurpose::Payment)
        );
        assert_eq!(capabilities().callback_route("/refund"), None);
    }

    #[async_trait]
    impl Provider for Dummy {
        fn kind(&self) -> ProviderKind {
            ProviderKind::ALIPAY
        }
        fn merchant(&self) -> &MerchantIdentity {
            &self.0
        }
        fn capabilities(&self) -> &Capabilities {
            &self.1
        }
        fn check_payment_request(&self, _: &CreatePayment) -> Result<(), ProviderError> {
            Ok(())
        }
        async fn create_payment(&self, r: &CreatePayment) -> Result<CreatedPayment, ProviderError> {
            Err(ProviderError::InvalidRequest(r.subject.clone()))
        }
        fn verify_callback(&self, _: &InboundCallback<'_>) -> Result<Notice, NotifyError> {
            Err(NotifyError::BadSignature)
        }
        fn acknowledge(&self, outcome: CallbackOutcome) -> CallbackAck {
            let accepted = outcome == CallbackOutcome::Accepted;
            CallbackAck {
                status: if accepted { 200 } else { 400 },
                content_type: "text/plain",
                body: if accepted { "success" } else { "failure" }.into(),
            }
        }
        async fn query_payment(&self, _: &TradeRef) -> Result<TradeFacts, ProviderError> {
            Err(ProviderError::NotFound)
        }
        async fn close_payment(&self, _: &TradeRef) -> Result<(), ProviderError> {
            Err(ProviderError::AlreadyPaid)
        }
        async fn refund(&self, _: &RefundRequest) -> Result<RefundFacts, ProviderError> {
            Err(ProviderError::OutcomeUnknown("timeout".into()))
        }
        async fn query_refund(&self, _: &RefundQuery) -> Result<RefundFacts, ProviderError> {
            Err(ProviderError::NotFound)
        }
    }

    #[test]
    fn only_definite_non_retryable_answers_are_definite_refusals() {
        let refused = |retryable| ProviderError::Refused {
            code: "NOTENOUGH".into(),
            message: "balance".into(),
            retryable,
        };
        for definite in [
            refused(false),
            ProviderError::AlreadyPaid,
            ProviderError::AlreadyClosed,
            ProviderError::NotFound,
            ProviderError::InvalidRequest("no openid".into()),
            ProviderError::Configuration("bad key".into()),
        ] {
            assert!(definite.is_definite_refusal(), "{definite:?}");
        }
        for in_flight in [
            refused(true),
            ProviderError::OutcomeUnknown("timeout".into()),
            ProviderError::UntrustedResponse("empty body".into()),
        ] {
            assert!(!in_flight.is_definite_refusal(), "{in_flight:?}");
        }
    }

    #[tokio::test]
    async fn the_trait_is_object_safe() {
        let providers: Vec<std::sync::Arc<dyn Provider>> =
            vec![std::sync::Arc::new(Dummy(merchant(), capabilities()))];
        let p = &providers[0];
        assert_eq!(p.kind(), ProviderKind::ALIPAY);
        assert!(
            p.refund(&RefundRequest {
                out_trade_no: OutTradeNo::parse("order_0001").unwrap(),
                provider_trade_no: None,
                out_refund_no: OutRefundNo::parse("refund_01").unwrap(),
                refund_amount: Fen::new(1).unwrap(),
                order_amount: Fen::new(1).unwrap(),
                reason: None,
                notify_url: None,
            })
            .await
            .unwrap_err()
            .outcome_unknown()
        );
        assert_eq!(p.acknowledge(CallbackOutcome::Accepted).body, "success");
        assert_eq!(p.acknowledge(CallbackOutcome::Rejected).status, 400);
    }
}
