//! WeChat Pay's side of APIv3, for the sandbox and tests that play it: checking a merchant's
//! `Authorization`, signing answers and notifies, sealing notify resources and the
//! `/v3/certificates` list with the APIv3 key.
//!
//! It is the mirror of [`crate::sign`], [`crate::verify`], [`crate::notify`] and
//! [`crate::certificates`], built from the same message functions so the two sides cannot drift.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::json;

use crate::aead::{ALGORITHM, ApiV3Key, DecryptError};
use crate::keys::{KeyError, MerchantKey, VerifyingKey, normalise_serial};
use crate::sign::{lines, parse_authorization, request_message};
use crate::verify::{MAX_CLOCK_SKEW_SECS, SIGNATURE_TYPE, header};

/// Why WeChat Pay would answer `401 SIGN_ERROR`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestAuthError {
    /// No `Authorization`, another scheme, or a malformed field list.
    #[error("missing or malformed Authorization")]
    Malformed,
    /// `mchid` is not the merchant's.
    #[error("mchid does not match")]
    WrongMerchant,
    /// `serial_no` is not the merchant certificate's.
    #[error("serial_no is not the merchant certificate's")]
    WrongSerial,
    /// The timestamp is more than 5 minutes away.
    #[error("timestamp out of range")]
    StaleTimestamp,
    /// The signature does not verify over the rebuilt message.
    #[error("signature does not verify")]
    BadSignature,
}

/// The merchant a request must come from.
#[derive(Debug)]
pub struct RequestingMerchant<'a> {
    /// The merchant id.
    pub mchid: &'a str,
    /// The merchant certificate serial.
    pub serial_no: &'a str,
    /// The merchant certificate's public key.
    pub public_key: &'a VerifyingKey,
}

/// Checks a request's `Authorization` the way WeChat does: rebuild the message from the
/// method, the raw request-target and the raw body, and verify with the merchant's key.
pub fn check_request(
    authorization: Option<&str>,
    method: &str,
    target: &str,
    body: &[u8],
    merchant: &RequestingMerchant<'_>,
    now: i64,
) -> Result<(), RequestAuthError> {
    let fields = authorization
        .and_then(parse_authorization)
        .ok_or(RequestAuthError::Malformed)?;
    if fields.mchid != merchant.mchid {
        return Err(RequestAuthError::WrongMerchant);
    }
    if normalise_serial(&fields.serial_no) != normalise_serial(merchant.serial_no) {
        return Err(RequestAuthError::WrongSerial);
    }
    let timestamp: i64 = fields
        .timestamp
        .parse()
        .map_err(|_| RequestAuthError::Malformed)?;
    if now.saturating_sub(timestamp).abs() > MAX_CLOCK_SKEW_SECS {
        return Err(RequestAuthError::StaleTimestamp);
    }
    let signature = BASE64
        .decode(fields.signature.as_bytes())
        .map_err(|_| RequestAuthError::BadSignature)?;
    let message = request_message(method, target, timestamp, &fields.nonce_str, body);
    if merchant.public_key.verifies(&message, &signature) {
        Ok(())
    } else {
        Err(RequestAuthError::BadSignature)
    }
}

/// The JSON body of a `401 SIGN_ERROR` answer.
pub fn sign_error_body(error: &RequestAuthError) -> String {
    json!({"code": "SIGN_ERROR", "message": error.to_string()}).to_string()
}

/// The five `Wechatpay-*` headers for an answer or notify `body`, signed with `key` under
/// `serial` (a `PUB_KEY_ID_…` or a platform certificate serial).
pub fn signature_headers(
    key: &MerchantKey,
    serial: &str,
    body: &[u8],
    timestamp: i64,
    nonce: &str,
) -> Result<Vec<(&'static str, String)>, KeyError> {
    let timestamp = timestamp.to_string();
    let mut message = lines(&[&timestamp, nonce]);
    message.extend_from_slice(body);
    message.push(b'\n');
    let signature = key.sign_base64(&message)?;
    Ok(vec![
        (header::TIMESTAMP, timestamp),
        (header::NONCE, nonce.to_owned()),
        (header::SIGNATURE, signature),
        (header::SERIAL, serial.to_owned()),
        (header::SIGNATURE_TYPE, SIGNATURE_TYPE.to_owned()),
    ])
}

/// A notify body: the envelope with `plaintext` sealed under the APIv3 key. `original_type`
/// is `transaction` or `refund` and is also the associated data, as WeChat sends it.
pub fn seal_notify(
    apiv3_key: &ApiV3Key,
    id: &str,
    create_time: &str,
    event_type: &str,
    original_type: &str,
    plaintext: &str,
    nonce: &str,
) -> Result<String, DecryptError> {
    let ciphertext = apiv3_key.encrypt(nonce, original_type, plaintext.as_bytes())?;
    let summary = match event_type {
        "TRANSACTION.SUCCESS" => "支付成功",
        "REFUND.SUCCESS" => "退款成功",
        "REFUND.ABNORMAL" => "退款异常",
        _ => "退款关闭",
    };
    Ok(json!({
        "id": id,
        "create_time": create_time,
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": summary,
        "resource": {
            "original_type": original_type,
            "algorithm": ALGORITHM,
            "ciphertext": ciphertext,
            "associated_data": original_type,
            "nonce": nonce,
        },
    })
    .to_string())
}

/// One certificate to list in `/v3/certificates`.
#[derive(Debug, Clone)]
pub struct ListedCertificate<'a> {
    /// Its serial.
    pub serial_no: &'a str,
    /// Its PEM.
    pub pem: &'a str,
    /// When WeChat starts signing with it (RFC 3339).
    pub effective_time: &'a str,
    /// When it expires (RFC 3339).
    pub expire_time: &'a str,
    /// The 12-character nonce to seal it under.
    pub nonce: &'a str,
}

/// The `/v3/certificates` body listing `certificates`, each sealed with associated data
/// `certificate`.
pub fn seal_certificates(
    apiv3_key: &ApiV3Key,
    certificates: &[ListedCertificate<'_>],
) -> Result<String, DecryptError> {
    let data = certificates
        .iter()
        .map(|c| {
            Ok(json!({
                "serial_no": c.serial_no,
                "effective_time": c.effective_time,
                "expire_time": c.expire_time,
                "encrypt_certificate": {
                    "algorithm": ALGORITHM,
                    "nonce": c.nonce,
                    "associated_data": "certificate",
                    "ciphertext": apiv3_key.encrypt(c.nonce, "certificate", c.pem.as_bytes())?,
                },
            }))
        })
        .collect::<Result<Vec<_>, DecryptError>>()?;
    Ok(json!({"data": data}).to_string())
}
