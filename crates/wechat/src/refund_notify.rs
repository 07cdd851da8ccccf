//! The refund-result notify (protocol notes §6): an unsigned outer `<xml>` whose `req_info` is
//! AES-256-ECB ciphertext of a `<root>` document. The AES key is the 32 ASCII bytes of the
//! lowercase hex MD5 of the API key; padding is strict PKCS#7 on 16-byte blocks.
//!
//! Authenticity rests on the decryption: only a holder of the API key can produce a ciphertext
//! that decrypts to valid padding and a well-formed `<root>`. Padding is therefore checked
//! strictly (wechatpy's and axios-plugin's lenient unpadding would accept garbage, vectors
//! X01/X02), and the outer appid/mch_id are returned for the caller to compare.

use aes::Aes256;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ecb::cipher::block_padding::Pkcs7;
use ecb::cipher::{BlockDecryptMut, BlockEncryptMut, KeyInit};
use md5::{Digest, Md5};
use paygate_core::{NotifyError, RefundFacts, RefundState};

use crate::fields::{FieldError, optional, optional_fen, optional_time, required};
use crate::notify::{notify_error_from_xml, require_return_success};
use crate::sign::{ApiKey, Params};
use crate::time;
use crate::xml::{self, DEFAULT_MAX_BYTES};

/// Why `req_info` could not be decrypted; every variant means the notify is not authentic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    /// `req_info` is not standard base64.
    #[error("req_info is not base64")]
    Base64,
    /// The ciphertext is empty or not a whole number of AES blocks.
    #[error("req_info is {0} bytes, not a positive multiple of 16")]
    Length(usize),
    /// The PKCS#7 padding is wrong: the wrong key, or a tampered or lenient-padded ciphertext.
    #[error("req_info padding is invalid (wrong key or tampered)")]
    BadPadding,
    /// The plaintext is not UTF-8.
    #[error("req_info plaintext is not UTF-8")]
    NotUtf8,
}

/// The AES-256 key for `req_info`: the ASCII bytes of lowercase hex `MD5(api key)`.
pub fn req_info_key(key: &ApiKey) -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Md5::digest(key.expose().as_bytes());
    let mut out = [0u8; 32];
    for (pair, byte) in out.chunks_exact_mut(2).zip(digest.iter()) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0x0f)];
    }
    out
}

/// Decrypts a base64 `req_info` into the inner `<root>` document's text.
pub fn decrypt_req_info(req_info: &str, key: &ApiKey) -> Result<String, DecryptError> {
    let ciphertext = BASE64
        .decode(req_info.trim_ascii())
        .map_err(|_| DecryptError::Base64)?;
    if ciphertext.is_empty() || ciphertext.len() % 16 != 0 {
        return Err(DecryptError::Length(ciphertext.len()));
    }
    let aes_key = req_info_key(key);
    let plaintext = ecb::Decryptor::<Aes256>::new(&aes_key.into())
        .decrypt_padded_vec_mut::<Pkcs7>(&ciphertext)
        .map_err(|_| DecryptError::BadPadding)?;
    String::from_utf8(plaintext).map_err(|_| DecryptError::NotUtf8)
}

/// Encrypts a `<root>` document into base64 `req_info` exactly as WeChat does (standard PKCS#7,
/// a full padding block when the plaintext is block-aligned); for the sandbox and tests.
pub fn encrypt_req_info(plaintext: &str, key: &ApiKey) -> String {
    let aes_key = req_info_key(key);
    let ciphertext = ecb::Encryptor::<Aes256>::new(&aes_key.into())
        .encrypt_padded_vec_mut::<Pkcs7>(plaintext.as_bytes());
    BASE64.encode(ciphertext)
}

/// A decrypted refund notify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundNotice {
    /// The refund's facts for the gateway.
    pub facts: RefundFacts,
    /// Outer `appid`, to compare with the configuration.
    pub appid: Option<String>,
    /// Outer `mch_id`, to compare with the configuration.
    pub mch_id: Option<String>,
    /// WeChat's `transaction_id` of the refunded trade.
    pub transaction_id: Option<String>,
    /// Every decrypted field.
    pub fields: Params,
}

/// Parses, decrypts and reads a raw refund notify body.
pub fn verify_refund_notify(body: &[u8], key: &ApiKey) -> Result<RefundNotice, NotifyError> {
    let outer = xml::parse(body).map_err(notify_error_from_xml)?;
    refund_notice_from_fields(&outer, key)
}

/// Decrypts and reads an already parsed outer refund notify.
pub fn refund_notice_from_fields(
    outer: &Params,
    key: &ApiKey,
) -> Result<RefundNotice, NotifyError> {
    require_return_success(outer)?;
    let plaintext = decrypt_req_info(required(outer, "req_info")?, key)
        .map_err(|e| NotifyError::Decrypt(e.to_string()))?;
    let fields = xml::parse_with_root(plaintext.as_bytes(), "root", DEFAULT_MAX_BYTES)
        .map_err(notify_error_from_xml)?;
    let state = match required(&fields, "refund_status")? {
        "SUCCESS" => RefundState::Succeeded,
        "CHANGE" | "REFUNDCLOSE" => RefundState::Failed,
        "PROCESSING" => RefundState::Processing,
        other => {
            return Err(
                FieldError::new("refund_status", format!("unknown value {other:?}")).into(),
            );
        }
    };
    let facts = RefundFacts {
        out_trade_no: required(&fields, "out_trade_no")?.to_owned(),
        out_refund_no: required(&fields, "out_refund_no")?.to_owned(),
        provider_refund_id: optional(&fields, "refund_id"),
        amount: optional_fen(&fields, "refund_fee")?,
        state,
        succeeded_at: optional_time(&fields, "success_time", time::parse_china_dashed)?,
    };
    Ok(RefundNotice {
        facts,
        appid: optional(outer, "appid"),
        mch_id: optional(outer, "mch_id"),
        transaction_id: optional(&fields, "transaction_id"),
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encryption_round_trips_and_another_key_or_broken_base64_is_refused() {
        let key = ApiKey::new("192006250b4c09247ec02edce69f6a2d");
        let text = "<root><out_refund_no>r</out_refund_no></root>";
        let sealed = encrypt_req_info(text, &key);
        assert_eq!(decrypt_req_info(&sealed, &key).as_deref(), Ok(text));
        assert_eq!(
            decrypt_req_info(&sealed, &ApiKey::new("another key")),
            Err(DecryptError::BadPadding)
        );
        assert_eq!(decrypt_req_info("%%%", &key), Err(DecryptError::Base64));
        assert_eq!(decrypt_req_info("", &key), Err(DecryptError::Length(0)));
        assert_eq!(decrypt_req_info("AAAA", &key), Err(DecryptError::Length(3)));
    }
}
