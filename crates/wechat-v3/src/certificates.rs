//! The `GET /v3/certificates` answer (protocol §2.3): each entry's `encrypt_certificate`
//! decrypts with the APIv3 key (associated data `certificate`) to a certificate PEM whose
//! serial must equal the listed `serial_no`.
//!
//! Decryption authenticates the list with the APIv3 key, which only WeChat and the merchant
//! hold; that is what makes the very first download (no certificate held yet to check the
//! response signature with) trustworthy. Later downloads are also signature-checked by the
//! client.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::aead::{ApiV3Key, DecryptError, EncryptedResource};
use crate::keys::{KeyError, normalise_serial};
use crate::verify::PlatformCertificate;
use crate::wire::{FieldError, parse_time};

/// The largest `/v3/certificates` body read; one entry is under 2 KiB and WeChat lists two
/// during a rotation.
pub const MAX_CERTIFICATES_BYTES: usize = 64 * 1024;

#[derive(Debug, Deserialize)]
struct CertificateList {
    data: Vec<CertificateEntry>,
}

#[derive(Debug, Deserialize)]
struct CertificateEntry {
    serial_no: String,
    effective_time: Option<String>,
    expire_time: Option<String>,
    encrypt_certificate: EncryptedResource,
}

/// One decrypted platform certificate with the times WeChat listed it under.
#[derive(Debug)]
pub struct DownloadedCertificate {
    /// The parsed certificate.
    pub certificate: PlatformCertificate,
    /// The decrypted PEM, as the sandbox and tests compare it.
    pub pem: String,
    /// When WeChat starts signing with it (`effective_time`).
    pub effective_time: Option<DateTime<Utc>>,
    /// When WeChat stops (`expire_time`).
    pub expire_time: Option<DateTime<Utc>>,
}

/// Why a certificates answer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificatesError {
    /// The body is not the expected JSON.
    #[error("malformed /v3/certificates answer: {0}")]
    Malformed(String),
    /// An entry did not decrypt.
    #[error("certificate {serial_no}: {error}")]
    Decrypt {
        /// The listed serial.
        serial_no: String,
        /// Why.
        error: DecryptError,
    },
    /// A decrypted certificate does not parse.
    #[error("certificate {serial_no}: {error}")]
    Certificate {
        /// The listed serial.
        serial_no: String,
        /// Why.
        error: KeyError,
    },
    /// A decrypted certificate's serial differs from the listed one.
    #[error("listed serial {listed} but the certificate's is {actual}")]
    SerialMismatch {
        /// `serial_no`.
        listed: String,
        /// The certificate's own serial.
        actual: String,
    },
    /// A listed time does not parse.
    #[error(transparent)]
    Field(#[from] FieldError),
}

/// Decrypts and checks every entry of a `/v3/certificates` body.
pub fn decrypt_certificates(
    body: &[u8],
    apiv3_key: &ApiV3Key,
) -> Result<Vec<DownloadedCertificate>, CertificatesError> {
    if body.len() > MAX_CERTIFICATES_BYTES {
        return Err(CertificatesError::Malformed(format!(
            "{} bytes exceeds the limit",
            body.len()
        )));
    }
    let list: CertificateList =
        serde_json::from_slice(body).map_err(|e| CertificatesError::Malformed(e.to_string()))?;
    let mut out = Vec::with_capacity(list.data.len());
    for entry in list.data {
        let serial_no: String = entry.serial_no.chars().take(64).collect();
        let pem = apiv3_key
            .decrypt(&entry.encrypt_certificate)
            .map_err(|error| CertificatesError::Decrypt {
                serial_no: serial_no.clone(),
                error,
            })?;
        let certificate = PlatformCertificate::from_pem(&pem).map_err(|error| {
            CertificatesError::Certificate {
                serial_no: serial_no.clone(),
                error,
            }
        })?;
        if certificate.serial != normalise_serial(&serial_no) {
            return Err(CertificatesError::SerialMismatch {
                listed: serial_no,
                actual: certificate.serial,
            });
        }
        let time = |field, text: &Option<String>| {
            text.as_deref().map(|t| parse_time(field, t)).transpose()
        };
        out.push(DownloadedCertificate {
            effective_time: time("effective_time", &entry.effective_time)?,
            expire_time: time("expire_time", &entry.expire_time)?,
            certificate,
            pem,
        });
    }
    Ok(out)
}
