//! paygate's domain, with no I/O: money in fen, identifiers parsed once, the order and refund
//! state machines, and the [`Provider`] trait that the WeChat and Alipay crates implement.
//!
//! The gateway, the store and the provider crates all speak these types, so an amount is a
//! [`Fen`] from the merchant's JSON to the database row, and only a provider crate turns it
//! into a wire value (`total_fee` in fen, `total_amount` in yuan).

pub mod bill;
mod channel;
mod ids;
mod money;
mod order;
mod provider;
pub mod settings;
mod text;

pub use bill::{
    BillDay, BillDownload, BillFormat, BillLine, BillLineKind, BillValueError, DownloadedBill,
};
pub use channel::{Channel, ProviderKind};
pub use ids::{AppName, OrderId, OutRefundNo, OutTradeNo, RefundId};
pub use money::{Currency, Fen, MoneyError, ReportedYuan};
pub use order::{Order, OrderEvent, OrderStatus, RefundStatus, TransitionError};
pub use provider::{
    BuyerField, CallbackAck, CallbackOutcome, CallbackPurpose, CallbackRoute, Capabilities,
    ChannelSupport, CreatePayment, CreatedPayment, ErrorDetail, InboundCallback, MerchantIdentity,
    Notice, NotifyError, OutTradeNoRule, PayParams, PayerField, PaymentMismatch, Provider,
    ProviderError, RefundFacts, RefundQuery, RefundRequest, RefundState, TradeFacts, TradeRef,
    TradeState,
};
pub use text::{
    BuyerId, Description, MAX_DESCRIPTION_BYTES, MAX_OPENID_BYTES, MAX_REFUND_REASON_BYTES,
    MAX_RETURN_URL_BYTES, MAX_SUBJECT_BYTES, OpenId, RefundReason, ReturnUrl, Subject, TextError,
};

/// Errors from parsing domain values out of untrusted text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// An identifier does not have the allowed shape.
    #[error("invalid {kind}: {value:?}")]
    InvalidIdentifier {
        /// Which identifier.
        kind: &'static str,
        /// The rejected text.
        value: String,
    },
    /// An amount is not acceptable.
    #[error(transparent)]
    Money(#[from] MoneyError),
    /// A currency paygate does not support.
    #[error("unsupported currency {0:?}")]
    UnsupportedCurrency(String),
    /// A provider name paygate does not know.
    #[error("unknown provider {0:?}")]
    UnknownProvider(String),
    /// A channel name paygate does not know.
    #[error("unknown channel {0:?}")]
    UnknownChannel(String),
    /// A status name paygate does not know.
    #[error("unknown status {0:?}")]
    UnknownStatus(String),
}
