//! RSA keys and X.509 certificates, parsed once at start-up with aws-lc-rs and x509-parser.
//!
//! APIv3 uses RSA-2048 with PKCS#1 v1.5 and SHA-256 in both directions: the merchant private
//! key signs requests and client pay params; the WeChat Pay public key (or a platform
//! certificate's key) verifies responses and notifies. Errors name what was expected and never
//! echo key material; `Debug` of a private key is redacted.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    KeyPair, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

/// Why a key or certificate cannot be used. The reasons are static texts or parser messages,
/// never key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The text is not the PEM block expected.
    #[error("not a PEM {expected} block: {reason}")]
    Pem {
        /// The PEM label expected (`PRIVATE KEY`, `PUBLIC KEY`, `CERTIFICATE`).
        expected: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// aws-lc-rs refused the private key.
    #[error("the private key is not an RSA PKCS#8 key of at least 2048 bits")]
    PrivateKey,
    /// aws-lc-rs refused the public key.
    #[error("the public key is not an RSA SubjectPublicKeyInfo of at least 2048 bits")]
    PublicKey,
    /// The certificate does not parse.
    #[error("the certificate does not parse: {0}")]
    Certificate(String),
    /// Signing failed inside aws-lc-rs.
    #[error("RSA signing failed")]
    Signing,
}

fn pem_block(text: &str, expected: &'static str) -> Result<Vec<u8>, KeyError> {
    let block = pem::parse(text.trim()).map_err(|e| KeyError::Pem {
        expected,
        reason: e.to_string(),
    })?;
    if block.tag() != expected {
        return Err(KeyError::Pem {
            expected,
            reason: format!("found a {} block", block.tag()),
        });
    }
    Ok(block.into_contents())
}

/// The merchant API private key (`apiclient_key.pem`, PKCS#8): signs requests and pay params.
/// aws-lc-rs signs in constant time with blinding; the `rsa` crate is not used
/// (RUSTSEC-2023-0071).
pub struct MerchantKey {
    key_pair: RsaKeyPair,
    rng: SystemRandom,
}

impl MerchantKey {
    /// Loads a PKCS#8 `PRIVATE KEY` PEM, the form WeChat's certificate tool writes.
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let der = secrecy::zeroize::Zeroizing::new(pem_block(text, "PRIVATE KEY")?);
        let key_pair = RsaKeyPair::from_pkcs8(&der).map_err(|_| KeyError::PrivateKey)?;
        Ok(Self {
            key_pair,
            rng: SystemRandom::new(),
        })
    }

    /// RSASSA-PKCS1-v1_5-SHA256 over `message`, standard base64 with padding on one line.
    pub fn sign_base64(&self, message: &[u8]) -> Result<String, KeyError> {
        let mut signature = vec![0u8; self.key_pair.public_modulus_len()];
        self.key_pair
            .sign(&RSA_PKCS1_SHA256, &self.rng, message, &mut signature)
            .map_err(|_| KeyError::Signing)?;
        Ok(BASE64.encode(signature))
    }

    /// The DER `RSAPublicKey` of this key, to compare with a certificate's.
    pub fn public_key_der(&self) -> &[u8] {
        self.key_pair.public_key().as_ref()
    }
}

impl fmt::Debug for MerchantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MerchantKey([REDACTED])")
    }
}

/// An RSA public key that verifies WeChat Pay's signatures: the WeChat Pay public key or a
/// platform certificate's key.
pub struct VerifyingKey {
    key: ParsedPublicKey,
}

impl VerifyingKey {
    /// Loads a `PUBLIC KEY` (SubjectPublicKeyInfo) PEM, the form the merchant platform hands out.
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        Self::from_spki_der(&pem_block(text, "PUBLIC KEY")?)
    }

    /// Loads a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let key = ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der)
            .map_err(|_| KeyError::PublicKey)?;
        Ok(Self { key })
    }

    /// Whether `signature` (raw bytes) is a valid SHA256withRSA signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(message, signature).is_ok()
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VerifyingKey(RSA)")
    }
}

/// What paygate needs from an X.509 certificate: its serial as WeChat writes it, its validity
/// and its public key.
#[derive(Debug)]
pub struct CertificateInfo {
    /// The serial as upper-case hex without leading zero bytes (`BigInteger.toString(16)`).
    pub serial: String,
    /// Start of validity.
    pub not_before: DateTime<Utc>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
    /// The DER SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
    /// The DER `RSAPublicKey` inside the SubjectPublicKeyInfo.
    pub rsa_public_key_der: Vec<u8>,
}

impl CertificateInfo {
    /// Parses one `CERTIFICATE` PEM.
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        Self::from_der(&pem_block(text, "CERTIFICATE")?)
    }

    /// Parses one DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| KeyError::Certificate(e.to_string()))?;
        let time = |t: x509_parser::time::ASN1Time| {
            DateTime::<Utc>::from_timestamp(t.timestamp(), 0)
                .ok_or_else(|| KeyError::Certificate("validity out of range".into()))
        };
        let spki = cert.public_key();
        Ok(Self {
            serial: serial_hex(cert.raw_serial()),
            not_before: time(cert.validity().not_before)?,
            not_after: time(cert.validity().not_after)?,
            spki_der: spki.raw.to_vec(),
            rsa_public_key_der: spki.subject_public_key.data.to_vec(),
        })
    }

    /// The certificate's key, for verifying what it signed.
    pub fn verifying_key(&self) -> Result<VerifyingKey, KeyError> {
        VerifyingKey::from_spki_der(&self.spki_der)
    }
}

/// A DER INTEGER's bytes as WeChat prints serials: upper-case hex, no leading zeros.
fn serial_hex(raw: &[u8]) -> String {
    let hex: String = raw.iter().map(|b| format!("{b:02X}")).collect();
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Normalises a certificate serial from a header or config: upper case, no leading zeros, so
/// that `3a41…` and `3A41…` name the same certificate.
pub fn normalise_serial(serial: &str) -> String {
    let upper = serial.trim().to_ascii_uppercase();
    let trimmed = upper.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_drop_leading_zeros_and_are_upper_case() {
        assert_eq!(serial_hex(&[0x00, 0x3a, 0x41]), "3A41");
        assert_eq!(serial_hex(&[0x00]), "0");
        assert_eq!(normalise_serial(" 003a41 "), "3A41");
    }

    #[test]
    fn a_key_in_the_wrong_pem_block_is_refused_without_echoing_it() {
        let err =
            MerchantKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")
                .unwrap_err();
        assert!(err.to_string().contains("PRIVATE KEY"), "{err}");
        assert!(!err.to_string().contains("AAAA"), "{err}");
        assert!(matches!(
            VerifyingKey::from_pem("not pem"),
            Err(KeyError::Pem { .. })
        ));
    }
}
