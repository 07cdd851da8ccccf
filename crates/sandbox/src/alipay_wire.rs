//! Alipay openapi wire rules, played from Alipay's side: RSA2 keys (aws-lc-rs), the sorted
//! `k=v&…` string-to-sign (requests keep `sign_type`, notifies drop it), form encoding and the
//! `{"<method>_response":{…},"sign":"…"}` envelope signed over its exact text.
//!
//! TODO(lead): use paygate_alipay's key parsing, canonical string, sign/verify and form codec
//! once public; these are small private equivalents written while that crate was being built.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{
    KeyPair as _, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, UnparsedPublicKey,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Why a key could not be generated or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Neither PEM nor bare base64.
    #[error("key is not PEM or base64")]
    Encoding,
    /// The DER is not an RSA key of an accepted shape.
    #[error("key is not an RSA PKCS#1/PKCS#8 private key or SPKI public key")]
    Rejected,
    /// aws-lc-rs failed to generate or serialise a key.
    #[error("RSA key generation failed")]
    Generation,
}

/// Which fields an Alipay signature leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignScope {
    /// Requests: only `sign` is excluded (`sign_type` is signed).
    Request,
    /// Async notifies (rsaCheckV1): `sign` and `sign_type` are excluded.
    Notify,
}

/// Decodes PEM (any label) or a bare base64 one-liner to DER.
fn key_der(text: &str) -> Result<Vec<u8>, KeyError> {
    let body: String = text
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .flat_map(|line| line.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(body).map_err(|_| KeyError::Encoding)
}

/// An RSA private key that signs with SHA256withRSA (RSA2).
pub(crate) struct RsaSigner {
    key: KeyPair,
}

impl RsaSigner {
    /// A fresh 2048-bit key.
    pub(crate) fn generate() -> Result<RsaSigner, KeyError> {
        KeyPair::generate(KeySize::Rsa2048)
            .map(|key| RsaSigner { key })
            .map_err(|_| KeyError::Generation)
    }

    /// Reads PKCS#8 or PKCS#1, PEM or bare base64.
    pub(crate) fn parse(text: &str) -> Result<RsaSigner, KeyError> {
        let der = key_der(text)?;
        KeyPair::from_pkcs8(&der)
            .or_else(|_| KeyPair::from_der(&der))
            .map(|key| RsaSigner { key })
            .map_err(|_| KeyError::Rejected)
    }

    /// The private key as bare base64 PKCS#8, the "Java" form Alipay's key tool prints.
    pub(crate) fn pkcs8_base64(&self) -> Result<String, KeyError> {
        let der = self.key.as_der().map_err(|_| KeyError::Generation)?;
        Ok(STANDARD.encode(der.as_ref()))
    }

    /// The public half as bare base64 SPKI, the form Alipay's console shows.
    pub(crate) fn public_spki_base64(&self) -> Result<String, KeyError> {
        let der = self
            .key
            .public_key()
            .as_der()
            .map_err(|_| KeyError::Generation)?;
        Ok(STANDARD.encode(der.as_ref()))
    }

    /// Signs UTF-8 bytes, giving base64.
    pub(crate) fn sign_base64(&self, message: &[u8]) -> Result<String, KeyError> {
        let mut signature = vec![0u8; self.key.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.key
            .sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)
            .map_err(|_| KeyError::Generation)?;
        Ok(STANDARD.encode(signature))
    }
}

/// An RSA public key (SPKI or PKCS#1 DER inside PEM or base64) that checks RSA2 signatures.
pub(crate) struct RsaVerifier {
    der: Vec<u8>,
}

impl RsaVerifier {
    /// Reads SPKI (or PKCS#1) PEM or bare base64.
    pub(crate) fn parse(text: &str) -> Result<RsaVerifier, KeyError> {
        Ok(RsaVerifier {
            der: key_der(text)?,
        })
    }

    /// True when `sign` (base64) is a valid RSA2 signature of `message`.
    pub(crate) fn verify_base64(&self, message: &[u8], sign: &str) -> bool {
        let Ok(signature) = STANDARD.decode(sign) else {
            return false;
        };
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &self.der)
            .verify(message, &signature)
            .is_ok()
    }
}

/// The string-to-sign: drop `sign` (and `sign_type` for notifies) and empty values, sort by
/// key bytes, join raw `k=v` with `&`.
pub(crate) fn canonical_string(params: &[(String, String)], scope: SignScope) -> String {
    let mut kept: Vec<&(String, String)> = params
        .iter()
        .filter(|(k, v)| {
            !v.is_empty() && k != "sign" && !(scope == SignScope::Notify && k == "sign_type")
        })
        .collect();
    kept.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    kept.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Encodes pairs as `application/x-www-form-urlencoded` (space as `+`), as Alipay posts notifies.
pub(crate) fn encode_form(params: &[(String, String)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        serializer.append_pair(k, v);
    }
    serializer.finish()
}

/// Decodes a form body or query string exactly once (`+` and `%20` both mean space).
pub(crate) fn decode_form(text: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(text).into_owned().collect()
}

/// Builds a sync response body: the `<method>_response` object written once, then `sign` over
/// exactly that text, so clients can extract and verify the raw substring.
pub(crate) fn signed_response(
    method: &str,
    content: &serde_json::Value,
    signer: Option<&RsaSigner>,
) -> Result<String, KeyError> {
    let response_key = format!("{}_response", method.replace('.', "_"));
    let content_text = content.to_string();
    let key_json = serde_json::Value::String(response_key).to_string();
    match signer {
        Some(signer) => {
            let sign = signer.sign_base64(content_text.as_bytes())?;
            let sign_json = serde_json::Value::String(sign).to_string();
            Ok(format!(
                "{{{key_json}:{content_text},\"sign\":{sign_json}}}"
            ))
        }
        None => Ok(format!("{{{key_json}:{content_text}}}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_sign_sign_type_but_notifies_do_not() {
        let params = vec![
            ("b".to_owned(), "2".to_owned()),
            ("sign_type".to_owned(), "RSA2".to_owned()),
            ("a".to_owned(), "1".to_owned()),
            ("sign".to_owned(), "xyz".to_owned()),
            ("empty".to_owned(), String::new()),
        ];
        assert_eq!(
            canonical_string(&params, SignScope::Request),
            "a=1&b=2&sign_type=RSA2"
        );
        assert_eq!(canonical_string(&params, SignScope::Notify), "a=1&b=2");
    }

    #[test]
    fn a_generated_key_verifies_its_own_signature_and_rejects_another_message() {
        let signer = RsaSigner::generate().unwrap();
        let verifier = RsaVerifier::parse(&signer.public_spki_base64().unwrap()).unwrap();
        let sign = signer.sign_base64(b"hello").unwrap();
        assert!(verifier.verify_base64(b"hello", &sign));
        assert!(!verifier.verify_base64(b"hellO", &sign));
        let reloaded = RsaSigner::parse(&signer.pkcs8_base64().unwrap()).unwrap();
        assert!(verifier.verify_base64(b"x", &reloaded.sign_base64(b"x").unwrap()));
    }
}
