//! Alipay key material for the sandbox. Signing, verifying, the string-to-sign, form coding and
//! response envelopes come from `paygate_alipay`; only key *generation* (which a merchant-side
//! crate never needs) lives here, with aws-lc-rs.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use paygate_alipay::keys::{SigningKey, VerifyingKey};

/// Why a key could not be generated or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// aws-lc-rs failed to generate or serialise a key.
    #[error("RSA key generation failed")]
    Generation,
    /// A stored private key is not bare base64 PKCS#8 (the form the keys file uses).
    #[error("stored private key is not base64 PKCS#8")]
    NotPkcs8,
    /// A stored key could not be parsed.
    #[error("stored key rejected: {0}")]
    Rejected(#[from] paygate_alipay::AlipayError),
}

/// A fresh 2048-bit RSA private key as bare base64 PKCS#8, the "Java" form Alipay's key tool
/// prints.
pub(crate) fn generate_private_key() -> Result<String, KeyError> {
    let key = KeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Generation)?;
    let der = key.as_der().map_err(|_| KeyError::Generation)?;
    Ok(STANDARD.encode(der.as_ref()))
}

/// The public half of a base64 PKCS#8 private key, as bare base64 SPKI (Alipay's console form).
pub(crate) fn public_key_of(private_key: &str) -> Result<String, KeyError> {
    let der = STANDARD
        .decode(private_key.trim())
        .map_err(|_| KeyError::NotPkcs8)?;
    let key = KeyPair::from_pkcs8(&der).map_err(|_| KeyError::NotPkcs8)?;
    let spki = key
        .public_key()
        .as_der()
        .map_err(|_| KeyError::Generation)?;
    Ok(STANDARD.encode(spki.as_ref()))
}

/// Parses both halves for use: the signer and the verifier of one stored private key.
pub(crate) fn key_pair(private_key: &str) -> Result<(SigningKey, VerifyingKey), KeyError> {
    let signer = SigningKey::parse(private_key)?;
    let verifier = VerifyingKey::parse(&public_key_of(private_key)?)?;
    Ok((signer, verifier))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_verifies_its_own_signature_and_rejects_another_message() {
        let private_key = generate_private_key().unwrap();
        let (signer, verifier) = key_pair(&private_key).unwrap();
        let sign = signer.sign_base64(b"hello").unwrap();
        assert!(verifier.verify_base64(b"hello", &sign).is_ok());
        assert!(verifier.verify_base64(b"hellO", &sign).is_err());
    }
}
