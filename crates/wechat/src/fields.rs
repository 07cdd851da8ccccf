//! Reading typed values out of a verified field map, shared by notifies and API responses so
//! that an amount or a timestamp is parsed the same way wherever it arrives.

use chrono::{DateTime, Utc};
use paygate_core::{Currency, Fen, NotifyError};

use crate::sign::Params;
use crate::time::TimeError;

/// A field that is missing or does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field {field}: {reason}")]
pub struct FieldError {
    /// The field's wire name.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl FieldError {
    pub(crate) fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

impl From<FieldError> for NotifyError {
    fn from(error: FieldError) -> Self {
        NotifyError::BadField {
            field: error.field,
            reason: error.reason,
        }
    }
}

/// A non-empty field the document must carry.
pub(crate) fn required<'a>(fields: &'a Params, name: &'static str) -> Result<&'a str, FieldError> {
    fields
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| FieldError::new(name, "missing"))
}

/// A field that may be absent; empty counts as absent.
pub(crate) fn optional(fields: &Params, name: &str) -> Option<String> {
    fields.get(name).filter(|v| !v.is_empty()).cloned()
}

/// An integer fen amount, if present.
pub(crate) fn optional_fen(fields: &Params, name: &'static str) -> Result<Option<Fen>, FieldError> {
    match fields.get(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(text) => parse_fen(text)
            .map(Some)
            .ok_or_else(|| FieldError::new(name, format!("{text:?} is not an amount in fen"))),
    }
}

/// Parses WeChat's integer fen: ASCII digits only (no sign, decimals or spaces).
pub fn parse_fen(text: &str) -> Option<Fen> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<i64>().ok().and_then(|fen| Fen::new(fen).ok())
}

/// `fee_type` (CNY when absent, as WeChat documents).
pub(crate) fn currency(fields: &Params, name: &'static str) -> Result<Currency, FieldError> {
    match fields.get(name).filter(|v| !v.is_empty()) {
        None => Ok(Currency::Cny),
        Some(code) => Currency::parse(code).map_err(|e| FieldError::new(name, e.to_string())),
    }
}

/// A China-time timestamp, if present, as a UTC instant.
pub(crate) fn optional_time(
    fields: &Params,
    name: &'static str,
    parse: fn(&str) -> Result<DateTime<Utc>, TimeError>,
) -> Result<Option<DateTime<Utc>>, FieldError> {
    match fields.get(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(text) => parse(text)
            .map(Some)
            .map_err(|e| FieldError::new(name, e.to_string())),
    }
}
