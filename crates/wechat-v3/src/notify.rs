//! Payment and refund notifies (protocol §3): verify over the raw body, then parse the
//! envelope, decrypt `resource` with the APIv3 key, and map the plaintext to paygate's facts.
//!
//! Nothing in the body is looked at before the size check and the signature: a notify is an
//! unauthenticated request. The decrypted transaction is turned into the same [`TradeFacts`]
//! every "mark paid" path checks with `TradeFacts::check_payment` (amount, appid, mchid,
//! out_trade_no, state); that comparison with the order is the gateway's job, not this
//! module's. A refund notify names no appid, so its `mchid` is checked here.
//!
//! The answer WeChat expects: 200/204 with an empty body on accept, any 4xx/5xx with
//! `{"code":"FAIL","message":…}` on reject, after which WeChat retries on its schedule.

use paygate_core::{Notice, NotifyError};
use serde::Deserialize;

use crate::aead::{ApiV3Key, DecryptError, EncryptedResource};
use crate::verify::{SignatureHeaders, VerifyError, WechatpayKeys};
use crate::wire::{FieldError, Refund, Transaction};

/// The largest notify body read; real ones are about 1 KiB, promotion details included well
/// under this.
pub const MAX_NOTIFY_BYTES: usize = 64 * 1024;

/// The notify's outer JSON, before decryption.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Envelope {
    /// The notify id; the same notify can arrive several times under it.
    pub id: String,
    /// When WeChat created it (RFC 3339).
    pub create_time: Option<String>,
    /// `TRANSACTION.SUCCESS`, `REFUND.SUCCESS`, `REFUND.ABNORMAL`, `REFUND.CLOSED`.
    pub event_type: String,
    /// `encrypt-resource`.
    pub resource_type: Option<String>,
    /// The encrypted object.
    pub resource: EncryptedResource,
}

/// A notify that verified, decrypted and parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedNotify {
    /// The notify id, for idempotent processing and the audit log.
    pub id: String,
    /// The event type as sent.
    pub event_type: String,
    /// The facts for the gateway.
    pub notice: Notice,
}

/// Why a notify was refused. Every variant means: change nothing, answer 4xx/5xx so WeChat
/// retries, keep the raw notify for audit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyRejection {
    /// The body exceeds [`MAX_NOTIFY_BYTES`].
    #[error("notify body of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// The signature headers or the signature itself (probe, stale, unknown serial, …).
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The verified body is not the envelope JSON, or the plaintext not the announced object.
    #[error("malformed notify: {0}")]
    Malformed(String),
    /// `resource` could not be decrypted (wrong APIv3 key, wrong associated data, tampering).
    #[error(transparent)]
    Decrypt(#[from] DecryptError),
    /// A field of the decrypted object is unusable.
    #[error("notify field {0}")]
    Field(#[from] FieldError),
    /// An event type paygate does not handle, or one that does not match its resource.
    #[error("unexpected event {event_type:?} with resource {original_type:?}")]
    UnexpectedEvent {
        /// The envelope's `event_type` (bounded).
        event_type: String,
        /// The resource's `original_type` (bounded).
        original_type: Option<String>,
    },
    /// A refund notify for another merchant.
    #[error("refund notify names merchant {0:?}, not ours")]
    WrongMerchant(String),
}

impl NotifyRejection {
    /// The HTTP status of the FAIL answer: 401 when the sender is not proven to be WeChat,
    /// 413 for an oversized body, 400 for a genuine notify we cannot read, 500 for a stale
    /// timestamp or a resource that does not decrypt (the vectors' replies), so WeChat retries.
    pub fn status(&self) -> u16 {
        match self {
            NotifyRejection::TooLarge(_) => 413,
            NotifyRejection::Verify(VerifyError::StaleTimestamp { .. }) => 500,
            NotifyRejection::Verify(_) => 401,
            NotifyRejection::Decrypt(_) => 500,
            NotifyRejection::Malformed(_)
            | NotifyRejection::Field(_)
            | NotifyRejection::UnexpectedEvent { .. }
            | NotifyRejection::WrongMerchant(_) => 400,
        }
    }
}

impl From<NotifyRejection> for NotifyError {
    fn from(rejection: NotifyRejection) -> Self {
        match rejection {
            NotifyRejection::TooLarge(size) => NotifyError::TooLarge(size),
            NotifyRejection::Verify(_) => NotifyError::BadSignature,
            NotifyRejection::Decrypt(e) => NotifyError::Decrypt(e.to_string()),
            NotifyRejection::Field(e) => NotifyError::BadField {
                field: e.field,
                reason: e.reason,
            },
            other => NotifyError::Malformed(other.to_string()),
        }
    }
}

/// The JSON body of a reject answer.
pub fn fail_body(message: &str) -> String {
    serde_json::json!({"code": "FAIL", "message": message}).to_string()
}

fn bounded(text: &str) -> String {
    text.chars().take(64).collect()
}

/// Verifies, decrypts and parses one notify. `headers` are the request's `(name, value)`
/// pairs, `body` its raw bytes, `now` Unix seconds and `mchid` this app's merchant id.
pub fn verify_notify<'a, I>(
    headers: I,
    body: &[u8],
    keys: &WechatpayKeys,
    apiv3_key: &ApiV3Key,
    mchid: &str,
    now: i64,
) -> Result<VerifiedNotify, NotifyRejection>
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    if body.len() > MAX_NOTIFY_BYTES {
        return Err(NotifyRejection::TooLarge(body.len()));
    }
    let signature = SignatureHeaders::from_pairs(headers)?;
    keys.verify(&signature, body, now)?;
    let envelope: Envelope = serde_json::from_slice(body)
        .map_err(|e| NotifyRejection::Malformed(format!("envelope: {e}")))?;
    let original_type = envelope.resource.original_type.as_deref();
    let unexpected = || NotifyRejection::UnexpectedEvent {
        event_type: bounded(&envelope.event_type),
        original_type: original_type.map(bounded),
    };
    let notice = match (envelope.event_type.as_str(), original_type) {
        ("TRANSACTION.SUCCESS", Some("transaction") | None) => {
            let plaintext = apiv3_key.decrypt(&envelope.resource)?;
            let transaction: Transaction = serde_json::from_str(&plaintext)
                .map_err(|e| NotifyRejection::Malformed(format!("transaction: {e}")))?;
            Notice::Payment(transaction.to_facts()?)
        }
        ("REFUND.SUCCESS" | "REFUND.ABNORMAL" | "REFUND.CLOSED", Some("refund") | None) => {
            let plaintext = apiv3_key.decrypt(&envelope.resource)?;
            let refund: Refund = serde_json::from_str(&plaintext)
                .map_err(|e| NotifyRejection::Malformed(format!("refund: {e}")))?;
            if refund.mchid.as_deref() != Some(mchid) {
                return Err(NotifyRejection::WrongMerchant(bounded(
                    refund.mchid.as_deref().unwrap_or(""),
                )));
            }
            Notice::Refund(refund.to_facts()?)
        }
        _ => return Err(unexpected()),
    };
    Ok(VerifiedNotify {
        id: bounded(&envelope.id),
        event_type: envelope.event_type,
        notice,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fail_body_is_the_documented_json() {
        let body: serde_json::Value = serde_json::from_str(&fail_body("失败")).unwrap();
        assert_eq!(body, serde_json::json!({"code": "FAIL", "message": "失败"}));
    }

    #[test]
    fn an_oversized_body_is_refused_before_anything_is_read() {
        let keys = WechatpayKeys::new();
        let key = ApiV3Key::new("iGKrJgaQQrqAjH9rApce0OdFkOSSBQuB").unwrap();
        let body = vec![b'{'; MAX_NOTIFY_BYTES + 1];
        let err = verify_notify([], &body, &keys, &key, "1", 0).unwrap_err();
        assert_eq!(err, NotifyRejection::TooLarge(MAX_NOTIFY_BYTES + 1));
        assert_eq!(err.status(), 413);
        let err = verify_notify([], b"{}", &keys, &key, "1", 0).unwrap_err();
        assert_eq!(err.status(), 401);
    }
}
