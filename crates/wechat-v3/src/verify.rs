//! Verifying what WeChat Pay signs: every response and notify (protocol §2).
//!
//! The message is `Wechatpay-Timestamp\nWechatpay-Nonce\nBODY\n` over the **raw** body bytes,
//! checked before any JSON parsing. The steps run in the protocol's order: the four headers
//! must be present (a missing `Wechatpay-Signature-Type` is taken as the only scheme there is,
//! any other value refused); a `WECHATPAY/SIGNTEST/` probe is refused without being decoded;
//! the timestamp must be within 300 s of now (the clock is a parameter, so tests pin it); the
//! key is chosen by `Wechatpay-Serial` alone — the configured `PUB_KEY_ID_…`, else a held
//! platform certificate — and never by trying every key; the base64 must decode strictly.
//!
//! Both key modes can be configured at once, which is what the migration from platform
//! certificates to the public key needs (§2.4): notifies switch gradually and some keep coming
//! certificate-signed for days.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};

use crate::keys::{CertificateInfo, KeyError, VerifyingKey, normalise_serial};

/// The only signature type APIv3 uses.
pub const SIGNATURE_TYPE: &str = "WECHATPAY2-SHA256-RSA2048";
/// The prefix of WeChat Pay's signature-probe traffic (§2.5).
pub const PROBE_PREFIX: &str = "WECHATPAY/SIGNTEST/";
/// The largest accepted difference between `Wechatpay-Timestamp` and now, in seconds.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;
/// Header values longer than this are refused before anything else looks at them; a real
/// signature is 344 characters.
const MAX_HEADER_LEN: usize = 1024;

/// The header names, as WeChat spells them (compared case-insensitively).
pub mod header {
    /// Unix seconds when WeChat signed.
    pub const TIMESTAMP: &str = "Wechatpay-Timestamp";
    /// WeChat's random nonce.
    pub const NONCE: &str = "Wechatpay-Nonce";
    /// The base64 signature.
    pub const SIGNATURE: &str = "Wechatpay-Signature";
    /// The key id: `PUB_KEY_ID_…` or a platform certificate serial.
    pub const SERIAL: &str = "Wechatpay-Serial";
    /// Always `WECHATPAY2-SHA256-RSA2048`.
    pub const SIGNATURE_TYPE: &str = "Wechatpay-Signature-Type";
    /// WeChat's request id, to quote to WeChat support.
    pub const REQUEST_ID: &str = "Request-ID";
}

/// Why a signed message was refused. Each one means: do not parse, do not act.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// One of the four `Wechatpay-*` headers is absent (a 2xx without them is forged).
    #[error("header {0} is missing")]
    MissingHeader(&'static str),
    /// A header is present but unusable (not a number, too long).
    #[error("header {0} is malformed")]
    MalformedHeader(&'static str),
    /// `Wechatpay-Signature-Type` names another scheme.
    #[error("unsupported Wechatpay-Signature-Type")]
    UnsupportedSignatureType,
    /// A `WECHATPAY/SIGNTEST/` probe: WeChat checking that we verify.
    #[error("signature probe (WECHATPAY/SIGNTEST/)")]
    Probe,
    /// The timestamp is more than 300 s away from now (replay, or a wrong clock).
    #[error("Wechatpay-Timestamp is {skew_secs} s away from now (limit {MAX_CLOCK_SKEW_SECS} s)")]
    StaleTimestamp {
        /// now − timestamp, in seconds (negative: from the future).
        skew_secs: i64,
    },
    /// No configured key has this id.
    #[error("unknown Wechatpay-Serial {0:?}")]
    UnknownSerial(String),
    /// The platform certificate with this serial has expired: it verifies nothing any more.
    #[error("platform certificate {0:?} has expired")]
    ExpiredCertificate(String),
    /// The signature is not base64 or does not verify over the raw bytes.
    #[error("signature does not verify")]
    BadSignature,
}

impl VerifyError {
    /// Whether a platform-certificate client should download `/v3/certificates` once and try
    /// again (a rotated certificate is listed 24 h before WeChat signs with it; a rotation may
    /// have been missed while downloads failed).
    pub fn wants_certificate_refresh(&self) -> bool {
        matches!(
            self,
            VerifyError::UnknownSerial(_) | VerifyError::ExpiredCertificate(_)
        )
    }
}

/// The signature headers of one response or notify, read and bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    /// `Wechatpay-Timestamp` as sent (it is signed as text).
    pub timestamp: String,
    /// `Wechatpay-Nonce`.
    pub nonce: String,
    /// `Wechatpay-Signature`.
    pub signature: String,
    /// `Wechatpay-Serial`.
    pub serial: String,
}

impl SignatureHeaders {
    /// Reads the headers from `(name, value)` pairs, names compared case-insensitively.
    pub fn from_pairs<'a, I>(headers: I) -> Result<Self, VerifyError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut found: [Option<&str>; 5] = [None; 5];
        let names = [
            header::TIMESTAMP,
            header::NONCE,
            header::SIGNATURE,
            header::SERIAL,
            header::SIGNATURE_TYPE,
        ];
        for (name, value) in headers {
            if let Some(slot) = names.iter().position(|n| n.eq_ignore_ascii_case(name)) {
                if value.len() > MAX_HEADER_LEN {
                    return Err(VerifyError::MalformedHeader(names[slot]));
                }
                found[slot] = Some(value);
            }
        }
        let [timestamp, nonce, signature, serial, signature_type] = found;
        let need = |value: Option<&str>, name| {
            value
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .ok_or(VerifyError::MissingHeader(name))
        };
        let headers = Self {
            timestamp: need(timestamp, header::TIMESTAMP)?,
            nonce: need(nonce, header::NONCE)?,
            signature: need(signature, header::SIGNATURE)?,
            serial: need(serial, header::SERIAL)?,
        };
        if signature_type.is_some_and(|t| t != SIGNATURE_TYPE) {
            return Err(VerifyError::UnsupportedSignatureType);
        }
        Ok(headers)
    }

    /// The signed text: `TIMESTAMP\nNONCE\nBODY\n`.
    pub fn message(&self, body: &[u8]) -> Vec<u8> {
        let mut message =
            Vec::with_capacity(self.timestamp.len() + self.nonce.len() + body.len() + 3);
        for line in [self.timestamp.as_bytes(), self.nonce.as_bytes(), body] {
            message.extend_from_slice(line);
            message.push(b'\n');
        }
        message
    }
}

/// A platform certificate held for verification.
#[derive(Debug)]
pub struct PlatformCertificate {
    /// Upper-case hex serial, the `Wechatpay-Serial` it signs under.
    pub serial: String,
    /// End of validity (the certificate's `notAfter`, or the `expire_time` WeChat listed it
    /// under when earlier); it verifies nothing from then on and is dropped.
    pub not_after: DateTime<Utc>,
    /// Start of validity.
    pub not_before: DateTime<Utc>,
    key: VerifyingKey,
}

impl PlatformCertificate {
    /// Loads a certificate PEM (from config or decrypted from `/v3/certificates`).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let info = CertificateInfo::from_pem(pem)?;
        Ok(Self {
            key: info.verifying_key()?,
            serial: info.serial,
            not_after: info.not_after,
            not_before: info.not_before,
        })
    }
}

/// The keys a merchant holds to verify WeChat Pay: the public key with its id, platform
/// certificates by serial, or both during a migration. Cheap to share (`Arc` inside); the
/// certificate set can be replaced while requests verify.
#[derive(Debug, Clone, Default)]
pub struct WechatpayKeys {
    public_key: Option<Arc<(String, VerifyingKey)>>,
    certificates: Arc<RwLock<HashMap<String, Arc<PlatformCertificate>>>>,
}

impl WechatpayKeys {
    /// No keys yet; add the public key and/or certificates.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the WeChat Pay public key with its `PUB_KEY_ID_…`.
    pub fn with_public_key(mut self, id: impl Into<String>, key: VerifyingKey) -> Self {
        self.public_key = Some(Arc::new((id.into(), key)));
        self
    }

    /// The configured public key id, sent as `Wechatpay-Serial` on requests so that responses
    /// come signed with the public key.
    pub fn public_key_id(&self) -> Option<&str> {
        self.public_key.as_ref().map(|k| k.0.as_str())
    }

    /// Adds (or replaces) platform certificates.
    pub fn add_certificates(&self, certificates: impl IntoIterator<Item = PlatformCertificate>) {
        let mut held = self
            .certificates
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for cert in certificates {
            held.insert(cert.serial.clone(), Arc::new(cert));
        }
    }

    /// Drops certificates that expired before `now`.
    pub fn drop_expired(&self, now: DateTime<Utc>) {
        self.certificates
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, cert| cert.not_after > now);
    }

    /// The serials and expiries of the held certificates.
    pub fn certificate_expiries(&self) -> Vec<(String, DateTime<Utc>)> {
        self.certificates
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .map(|c| (c.serial.clone(), c.not_after))
            .collect()
    }

    /// Whether any key is held at all.
    pub fn is_empty(&self) -> bool {
        self.public_key.is_none()
            && self
                .certificates
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .is_empty()
    }

    /// Verifies `body` under `headers` at Unix time `now`, in the protocol's order.
    pub fn verify(
        &self,
        headers: &SignatureHeaders,
        body: &[u8],
        now: i64,
    ) -> Result<(), VerifyError> {
        if headers.signature.starts_with(PROBE_PREFIX) {
            return Err(VerifyError::Probe);
        }
        let timestamp: i64 = headers
            .timestamp
            .parse()
            .map_err(|_| VerifyError::MalformedHeader(header::TIMESTAMP))?;
        let skew_secs = now.saturating_sub(timestamp);
        if skew_secs.abs() > MAX_CLOCK_SKEW_SECS {
            return Err(VerifyError::StaleTimestamp { skew_secs });
        }
        let message = headers.message(body);
        if let Some(public) = self.public_key.as_ref().filter(|k| k.0 == headers.serial) {
            return check(&public.1, &message, &headers.signature);
        }
        let serial = normalise_serial(&headers.serial);
        let certificate = self
            .certificates
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&serial)
            .cloned();
        match certificate {
            // Held until dropped, but never trusted past its end: the refresh may be late.
            Some(cert) if cert.not_after.timestamp() <= now => {
                Err(VerifyError::ExpiredCertificate(cert.serial.clone()))
            }
            Some(cert) => check(&cert.key, &message, &headers.signature),
            None => Err(VerifyError::UnknownSerial(
                headers.serial.chars().take(64).collect(),
            )),
        }
    }
}

/// Strict base64, then RSA verification.
fn check(key: &VerifyingKey, message: &[u8], signature_b64: &str) -> Result<(), VerifyError> {
    let signature = BASE64
        .decode(signature_b64.as_bytes())
        .map_err(|_| VerifyError::BadSignature)?;
    if key.verifies(message, &signature) {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

/// Whether `id` has the shape of a WeChat Pay public key id: `PUB_KEY_ID_` then digits. The
/// protocol notes advise against pinning the digit count, so only the shape is checked.
pub fn is_public_key_id(id: &str) -> bool {
    id.strip_prefix("PUB_KEY_ID_").is_some_and(|digits| {
        !digits.is_empty() && digits.len() <= 64 && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs() -> Vec<(&'static str, &'static str)> {
        vec![
            ("wechatpay-timestamp", "1"),
            ("WECHATPAY-NONCE", "n"),
            ("Wechatpay-Signature", "c2ln"),
            ("Wechatpay-Serial", "S"),
        ]
    }

    #[test]
    fn header_names_are_case_insensitive_and_each_is_required() {
        let read = SignatureHeaders::from_pairs(pairs()).unwrap();
        assert_eq!(read.message(b"{}"), b"1\nn\n{}\n");
        for drop in 0..4 {
            let mut some = pairs();
            let (name, _) = some.remove(drop);
            let err = SignatureHeaders::from_pairs(some).unwrap_err();
            assert!(
                matches!(err, VerifyError::MissingHeader(n) if n.eq_ignore_ascii_case(name)),
                "{err:?}"
            );
        }
    }

    #[test]
    fn another_signature_type_is_refused_and_an_absent_one_accepted() {
        let mut other = pairs();
        other.push(("Wechatpay-Signature-Type", "WECHATPAY2-SM2-WITH-SM3"));
        assert_eq!(
            SignatureHeaders::from_pairs(other),
            Err(VerifyError::UnsupportedSignatureType)
        );
    }

    #[test]
    fn oversized_header_values_are_refused() {
        let long = "A".repeat(MAX_HEADER_LEN + 1);
        let mut some = pairs();
        some.push(("Wechatpay-Nonce", long.as_str()));
        assert_eq!(
            SignatureHeaders::from_pairs(some),
            Err(VerifyError::MalformedHeader(header::NONCE))
        );
    }

    #[test]
    fn public_key_ids_are_checked_by_shape_only() {
        assert!(is_public_key_id(
            "PUB_KEY_ID_0112300001092025010100000000000001"
        ));
        assert!(is_public_key_id("PUB_KEY_ID_1"));
        for bad in [
            "",
            "PUB_KEY_ID_",
            "PUB_KEY_ID_12a",
            "pub_key_id_1",
            "3A414D8E",
        ] {
            assert!(!is_public_key_id(bad), "{bad}");
        }
    }

    #[test]
    fn no_keys_means_every_serial_is_unknown() {
        let keys = WechatpayKeys::new();
        assert!(keys.is_empty());
        let headers = SignatureHeaders::from_pairs(pairs()).unwrap();
        assert_eq!(
            keys.verify(&headers, b"", 1),
            Err(VerifyError::UnknownSerial("S".into()))
        );
        assert_eq!(
            keys.verify(&headers, b"", 302),
            Err(VerifyError::StaleTimestamp { skew_secs: 301 })
        );
    }
}
