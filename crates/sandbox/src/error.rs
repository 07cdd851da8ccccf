//! The sandbox's one error type, for starting it and for its Rust control API.

use std::path::PathBuf;

use crate::alipay_keys::KeyError;

/// Why the sandbox could not start or could not do what its control API was asked.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Binding the listen address failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The requested address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The keys file could not be read, parsed or written.
    #[error("keys file {path}: {reason}")]
    KeysFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The trade state file is in use by another sandbox process, or cannot be locked.
    #[error("sandbox state file {path} is not ours to use: {reason}")]
    StateInUse {
        /// The state file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The merchant API certificate could not be generated.
    #[error("cannot generate the merchant certificate: {0}")]
    Certificate(String),
    /// An RSA key could not be generated or parsed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// `pay` named a trade the sandbox does not hold.
    #[error("no {provider} trade {reference:?}")]
    TradeNotFound {
        /// Which provider's trades were searched.
        provider: paygate_core::ProviderKind,
        /// The out_trade_no, prepay_id or orderString searched for.
        reference: String,
    },
    /// `pay` named a trade that is already paid or closed.
    #[error("trade {out_trade_no:?} cannot be paid: it is {status}")]
    NotPayable {
        /// The trade.
        out_trade_no: String,
        /// Its status.
        status: crate::trades::TradeStatus,
    },
    /// An orderString handed to app pay failed Alipay's checks.
    #[error("orderString rejected: {0}")]
    OrderStringRejected(String),
    /// The HTTP client that delivers notifies could not be built.
    #[error("cannot build the notify HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// A wait for notify deliveries gave up.
    #[error("gave up waiting for notify deliveries after {0:?}")]
    WaitTimedOut(std::time::Duration),
}
