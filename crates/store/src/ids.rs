//! Ids of the rows only the store creates, and keyset pages.

use std::fmt;

use paygate_core::DomainError;

/// Declares a store-generated id: `prefix` + ULID, so ids sort by creation time.
macro_rules! store_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal, $what:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// A fresh id whose order follows creation time.
            pub fn generate() -> Self {
                Self(format!(concat!($prefix, "{}"), ulid::Ulid::new()))
            }

            /// Parses an id from untrusted text (a URL, a row).
            pub fn parse(text: &str) -> Result<Self, DomainError> {
                let valid = text
                    .strip_prefix($prefix)
                    .is_some_and(|rest| rest.len() == 26 && ulid::Ulid::from_string(rest).is_ok());
                if valid {
                    Ok(Self(text.to_owned()))
                } else {
                    Err(DomainError::InvalidIdentifier { kind: $what, value: text.to_owned() })
                }
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

store_id!(
    /// The id of one recorded provider callback (`cb_` + ULID).
    CallbackId,
    "cb_",
    "callback id"
);
store_id!(
    /// The id of one anomaly finance should look at (`anm_` + ULID).
    AnomalyId,
    "anm_",
    "anomaly id"
);
store_id!(
    /// The id of one API key (`key_` + ULID), shown in listings; never the secret.
    ApiKeyId,
    "key_",
    "API key id"
);
store_id!(
    /// The id of one outbox event (a bare ULID), which merchants may use to de-duplicate.
    EventId,
    "",
    "event id"
);

store_id!(
    /// The id of one stored provider bill file (`bill_` + ULID).
    BillFileId,
    "bill_",
    "bill file id"
);
store_id!(
    /// The id of one reconciliation run (`rec_` + ULID).
    ReconciliationRunId,
    "rec_",
    "reconciliation run id"
);
store_id!(
    /// The id of one reconciliation difference (`diff_` + ULID).
    DifferenceId,
    "diff_",
    "difference id"
);

/// Where the next page starts: the id of the last item of the previous page. Opaque to
/// callers; pass `next_cursor` back unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cursor(String);

impl Cursor {
    /// Wraps a cursor received from a client.
    pub fn new(text: impl Into<String>) -> Cursor {
        Cursor(text.into())
    }

    /// The cursor as text, for a response.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One page of a newest-first listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items, newest first.
    pub items: Vec<T>,
    /// Where the next page starts, or `None` on the last page.
    pub next_cursor: Option<Cursor>,
}

impl<T> Page<T> {
    /// Cuts the `limit + 1` fetched rows to a page; the extra row only says more exist.
    pub(crate) fn from_fetched(
        mut items: Vec<T>,
        limit: u32,
        id_of: impl Fn(&T) -> &str,
    ) -> Page<T> {
        let limit = limit.clamp(1, 1000) as usize;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|last| Cursor::new(id_of(last)))
        } else {
            None
        };
        Page { items, next_cursor }
    }
}
