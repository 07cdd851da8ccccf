//! AEAD_AES_256_GCM with the APIv3 key (protocol §3.2): notify `resource`s and the
//! certificates of `/v3/certificates`.
//!
//! The key is the 32 **ASCII bytes** of the APIv3 key as set on the merchant platform, never
//! hex- or base64-decoded. The nonce and associated data are the UTF-8 bytes of their strings
//! (an empty associated data is legal); the ciphertext is base64 of `ciphertext || tag` with a
//! 16-byte tag. aws-lc-rs pins the tag length, so a truncated tag cannot authenticate.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;

/// The only algorithm APIv3 encrypts resources with.
pub const ALGORITHM: &str = "AEAD_AES_256_GCM";
/// The length of the APIv3 key in bytes.
pub const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;

/// Why an APIv3 key cannot be used. It never carries the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the APIv3 key must be exactly {KEY_LEN} bytes, got {0}")]
pub struct KeyLengthError(pub usize);

/// Why a resource could not be decrypted. Every case means: refuse, change nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    /// `algorithm` is not `AEAD_AES_256_GCM`.
    #[error("unsupported algorithm {0:?}")]
    Algorithm(String),
    /// The nonce is not 12 bytes.
    #[error("the nonce must be {NONCE_LEN} bytes, got {0}")]
    NonceLength(usize),
    /// The ciphertext is not base64, or too short to hold a tag.
    #[error("the ciphertext is not base64 of at least {TAG_LEN} bytes")]
    Ciphertext,
    /// GCM authentication failed: a wrong APIv3 key, a wrong associated data, or tampering.
    #[error("AEAD_AES_256_GCM authentication failed")]
    Authentication,
    /// The plaintext is not UTF-8.
    #[error("the plaintext is not UTF-8")]
    NotUtf8,
}

/// An encrypted resource as it appears in notifies (`resource`) and `/v3/certificates`
/// (`encrypt_certificate`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct EncryptedResource {
    /// `AEAD_AES_256_GCM`.
    pub algorithm: String,
    /// base64 of ciphertext and tag.
    pub ciphertext: String,
    /// The associated data; absent means empty.
    #[serde(default)]
    pub associated_data: String,
    /// The 12-character nonce.
    pub nonce: String,
    /// What the plaintext is (`transaction`, `refund`); absent in `/v3/certificates`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_type: Option<String>,
}

/// The 32-byte APIv3 key, expanded once into an AES-256-GCM key held by aws-lc-rs.
pub struct ApiV3Key(LessSafeKey);

impl ApiV3Key {
    /// Takes the key as configured; anything but 32 bytes is refused (a wrong length is the
    /// classic `invalid key size` mistake).
    pub fn new(text: &str) -> Result<Self, KeyLengthError> {
        if text.len() != KEY_LEN {
            return Err(KeyLengthError(text.len()));
        }
        let unbound = UnboundKey::new(&AES_256_GCM, text.as_bytes())
            .map_err(|_| KeyLengthError(text.len()))?;
        Ok(Self(LessSafeKey::new(unbound)))
    }

    /// Decrypts `resource`, checking its algorithm and authenticating its associated data.
    pub fn decrypt(&self, resource: &EncryptedResource) -> Result<String, DecryptError> {
        if resource.algorithm != ALGORITHM {
            return Err(DecryptError::Algorithm(
                resource.algorithm.chars().take(32).collect(),
            ));
        }
        let nonce = Nonce::try_assume_unique_for_key(resource.nonce.as_bytes())
            .map_err(|_| DecryptError::NonceLength(resource.nonce.len()))?;
        let mut in_out = BASE64
            .decode(resource.ciphertext.as_bytes())
            .map_err(|_| DecryptError::Ciphertext)?;
        if in_out.len() < TAG_LEN {
            return Err(DecryptError::Ciphertext);
        }
        let plaintext = self
            .0
            .open_in_place(
                nonce,
                Aad::from(resource.associated_data.as_bytes()),
                &mut in_out,
            )
            .map_err(|_| DecryptError::Authentication)?;
        let len = plaintext.len();
        in_out.truncate(len);
        String::from_utf8(in_out).map_err(|_| DecryptError::NotUtf8)
    }

    /// Encrypts `plaintext` as WeChat does, for the sandbox and tests playing WeChat's side.
    pub fn encrypt(
        &self,
        nonce: &str,
        associated_data: &str,
        plaintext: &[u8],
    ) -> Result<String, DecryptError> {
        let nonce_value = Nonce::try_assume_unique_for_key(nonce.as_bytes())
            .map_err(|_| DecryptError::NonceLength(nonce.len()))?;
        let mut in_out = plaintext.to_vec();
        self.0
            .seal_in_place_append_tag(
                nonce_value,
                Aad::from(associated_data.as_bytes()),
                &mut in_out,
            )
            .map_err(|_| DecryptError::Authentication)?;
        Ok(BASE64.encode(in_out))
    }
}

impl fmt::Debug for ApiV3Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiV3Key([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "iGKrJgaQQrqAjH9rApce0OdFkOSSBQuB";

    fn resource(ciphertext: String, associated_data: &str) -> EncryptedResource {
        EncryptedResource {
            algorithm: ALGORITHM.into(),
            ciphertext,
            associated_data: associated_data.into(),
            nonce: "fdasflkja484".into(),
            original_type: None,
        }
    }

    #[test]
    fn keys_of_any_other_length_are_refused_without_echoing_them() {
        for bad in ["", "short-key", &format!("{KEY}x")] {
            let err = ApiV3Key::new(bad).unwrap_err();
            assert_eq!(err, KeyLengthError(bad.len()));
            if !bad.is_empty() {
                assert!(!err.to_string().contains(bad));
            }
        }
        assert!(!format!("{:?}", ApiV3Key::new(KEY).unwrap()).contains(KEY));
    }

    #[test]
    fn sealing_then_opening_round_trips_and_any_change_fails() {
        let key = ApiV3Key::new(KEY).unwrap();
        let sealed = key
            .encrypt("fdasflkja484", "transaction", b"{\"a\":1}")
            .unwrap();
        assert_eq!(
            key.decrypt(&resource(sealed.clone(), "transaction"))
                .unwrap(),
            "{\"a\":1}"
        );
        assert_eq!(
            key.decrypt(&resource(sealed.clone(), "refund")),
            Err(DecryptError::Authentication)
        );
        let other = ApiV3Key::new("0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(
            other.decrypt(&resource(sealed.clone(), "transaction")),
            Err(DecryptError::Authentication)
        );
        let mut truncated = BASE64.decode(&sealed).unwrap();
        truncated.truncate(TAG_LEN - 1);
        assert_eq!(
            key.decrypt(&resource(BASE64.encode(truncated), "transaction")),
            Err(DecryptError::Ciphertext)
        );
        let mut wrong_alg = resource(sealed, "transaction");
        wrong_alg.algorithm = "AEAD_AES_128_GCM".into();
        assert!(matches!(
            key.decrypt(&wrong_alg),
            Err(DecryptError::Algorithm(_))
        ));
    }
}
