//! The store's one error type. The gateway maps variants to HTTP: `Duplicate*` → 409 with the
//! existing row (or 200 on an idempotent retry), `NotFound` → 404, `Unavailable` → 503,
//! `Corrupt`/`Query`/`TaskPanicked` → 500.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use paygate_core::{MoneyError, Order, OrderStatus, RefundStatus, TransitionError};

use crate::{Backend, Fen, Refund};

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `(app, out_trade_no)` already exists; carries the existing order and the fingerprint of
    /// the request that created it, so a retry of the same request can be answered with it.
    #[error("order {} already exists for app {}", existing.out_trade_no, existing.app)]
    DuplicateOrder {
        /// The order already stored under that number.
        existing: Box<Order>,
        /// The `request_hash` the existing order was created with.
        request_hash: String,
    },
    /// `out_refund_no` already exists; carries the existing refund.
    #[error("refund {} already exists", .0.out_refund_no)]
    DuplicateRefund(Box<Refund>),
    /// No row with that key.
    #[error("no {entity} {key}")]
    NotFound {
        /// Which kind of row was looked up.
        entity: &'static str,
        /// The key that was looked up.
        key: String,
    },
    /// The row is no longer in the status the caller expected.
    #[error("expected status {expected}, found {actual}")]
    StaleStatus {
        /// The status the caller required.
        expected: OrderStatus,
        /// The status the row has.
        actual: OrderStatus,
    },
    /// The order state machine refuses the event from the expected status.
    #[error(transparent)]
    IllegalTransition(#[from] TransitionError),
    /// Refunds only move from processing to a final status.
    #[error("a refund cannot move from {from:?} to {to:?}")]
    IllegalRefundTransition {
        /// The refund's status.
        from: RefundStatus,
        /// The requested status.
        to: RefundStatus,
    },
    /// The order is not in a status that allows refunds.
    #[error("an order that is {status} cannot be refunded")]
    NotRefundable {
        /// The order's status.
        status: OrderStatus,
    },
    /// The refund would take more than was paid, counting refunds still processing.
    #[error("refund exceeds what is left to refund ({refundable})")]
    RefundExceedsPaid {
        /// What may still be refunded.
        refundable: Fen,
    },
    /// A refund of zero fen was requested.
    #[error("a refund must be at least 1 fen")]
    ZeroRefund,
    /// A value the caller passed is refused before anything is written (a bill file too
    /// large to keep, an empty or oversized resolution note).
    #[error("refused: {0}")]
    Invalid(String),
    /// The database is down, overloaded or the pool timed out; the caller may retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Another process already serves this SQLite database. Two would each run a reconciler
    /// and a writer on one file (and, with embedded sandboxes, close each other's orders).
    #[error(
        "another paygate process already serves the SQLite database {path} (lock file {lock}); \
         run one process per SQLite file, or PostgreSQL for several replicas"
    )]
    AlreadyServed {
        /// The database file.
        path: String,
        /// The lock file held by the serving process.
        lock: String,
    },
    /// A stored row does not parse into a domain value.
    #[error("corrupt {table} row {id}: {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The row's id.
        id: String,
        /// What did not parse.
        reason: String,
    },
    /// An amount computation left the valid range.
    #[error(transparent)]
    Money(#[from] MoneyError),
    /// Applying the embedded migrations failed.
    #[error("migration failed: {0}")]
    Migration(String),
    /// The database's schema is not the one this binary was built for: migrations it does not
    /// know (a newer paygate migrated it), or tables lacking columns it uses (changed by hand).
    /// Serving on it would fail some writes or misread rows, so the gateway refuses.
    #[error("schema mismatch: {0}")]
    SchemaMismatch(String),
    /// The database could not be reached or opened.
    #[error("cannot connect to {backend} at {url}: {reason}")]
    Connect {
        /// The backend the URL named.
        backend: Backend,
        /// The URL with its password replaced by `***`.
        url: String,
        /// The driver's explanation.
        reason: String,
    },
    /// The URL names no backend paygate supports.
    #[error(
        "unsupported database URL scheme {scheme:?}: use postgres://, postgresql://, sqlite://, \
         sqlite::memory:, file: or a file path"
    )]
    UnsupportedUrl {
        /// The scheme that was given.
        scheme: String,
    },
    /// The blocking database task panicked; re-raised here instead of hanging the caller.
    #[error("database task panicked: {0}")]
    TaskPanicked(String),
    /// Any other query failure (a bug or an unexpected constraint).
    #[error("query failed: {0}")]
    Query(#[source] DieselError),
}

impl From<DieselError> for StoreError {
    fn from(error: DieselError) -> Self {
        match &error {
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                info,
            ) => StoreError::Unavailable(info.message().to_owned()),
            // SQLite reports a write lock held past busy_timeout as a generic error.
            DieselError::DatabaseError(DatabaseErrorKind::Unknown, info)
                if info.message().contains("database is locked")
                    || info.message().contains("database is busy") =>
            {
                StoreError::Unavailable(info.message().to_owned())
            }
            _ => StoreError::Query(error),
        }
    }
}

impl From<r2d2::Error> for StoreError {
    fn from(error: r2d2::Error) -> Self {
        StoreError::Unavailable(error.to_string())
    }
}
