//! RSA keys, parsed once at start-up with aws-lc-rs.
//!
//! Alipay hands keys out in several shapes: the app private key as PKCS#8 (`MIIEv…`, the "Java"
//! option) or PKCS#1 (`MIIEp…`), public keys as X.509 SubjectPublicKeyInfo (`MIIBIj…`), each
//! either PEM-armoured or as a bare base64 one-liner. The shape is detected from the DER
//! structure, not from the PEM label, because the one-liners carry no label. Errors say which
//! format was expected and never echo key material; `Debug` is redacted.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::zeroize::Zeroizing;

use crate::AlipayError;

/// What a DER blob is, judged from its first two elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DerShape {
    /// `RSAPrivateKey` (RFC 8017): version INTEGER 0, then the modulus INTEGER.
    Pkcs1PrivateKey,
    /// `PrivateKeyInfo` (RFC 5208): version INTEGER, then an `AlgorithmIdentifier` SEQUENCE.
    Pkcs8PrivateKey,
    /// `SubjectPublicKeyInfo` (RFC 5280): `AlgorithmIdentifier` SEQUENCE, then a BIT STRING.
    SubjectPublicKeyInfo,
    /// `RSAPublicKey` (RFC 8017): modulus INTEGER, exponent INTEGER.
    Pkcs1PublicKey,
    /// An X.509 certificate: `tbsCertificate` SEQUENCE, then a signature `AlgorithmIdentifier`.
    Certificate,
    /// Anything else.
    Unknown,
}

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_SEQUENCE: u8 = 0x30;

/// Reads one DER tag-length header, returning (tag, content, rest).
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first_len, rest) = rest.split_first()?;
    let (len, rest) = if first_len < 0x80 {
        (usize::from(first_len), rest)
    } else {
        let count = usize::from(first_len & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(count);
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (content, rest) = rest.split_at(len);
    Some((tag, content, rest))
}

fn der_shape(der: &[u8]) -> DerShape {
    let Some((TAG_SEQUENCE, body, _)) = der_element(der) else {
        return DerShape::Unknown;
    };
    let Some((first_tag, first, rest)) = der_element(body) else {
        return DerShape::Unknown;
    };
    let Some((second_tag, _, _)) = der_element(rest) else {
        return DerShape::Unknown;
    };
    match (first_tag, second_tag) {
        (TAG_INTEGER, TAG_INTEGER) if first == [0] => DerShape::Pkcs1PrivateKey,
        (TAG_INTEGER, TAG_INTEGER) => DerShape::Pkcs1PublicKey,
        (TAG_INTEGER, TAG_SEQUENCE) => DerShape::Pkcs8PrivateKey,
        (TAG_SEQUENCE, TAG_BIT_STRING) => DerShape::SubjectPublicKeyInfo,
        (TAG_SEQUENCE, TAG_SEQUENCE) => DerShape::Certificate,
        _ => DerShape::Unknown,
    }
}

/// Turns PEM or a bare base64 one-liner into DER. The error is a static reason so that it can
/// never carry key text.
fn pem_or_base64_to_der(text: &str) -> Result<Zeroizing<Vec<u8>>, &'static str> {
    let trimmed = text.trim();
    if trimmed.starts_with("-----BEGIN") {
        let parsed = pem::parse(trimmed).map_err(|_| "the PEM armour is malformed")?;
        return Ok(Zeroizing::new(parsed.into_contents()));
    }
    let compact: Zeroizing<String> =
        Zeroizing::new(trimmed.chars().filter(|c| !c.is_whitespace()).collect());
    if compact.is_empty() {
        return Err("the key is empty");
    }
    STANDARD
        .decode(compact.as_bytes())
        .map(Zeroizing::new)
        .map_err(|_| "it is neither PEM nor base64")
}

/// The app's RSA private key, ready to sign requests with RSA2 (PKCS#1 v1.5, SHA-256).
/// aws-lc-rs signs in constant time with blinding, unlike the `rsa` crate (RUSTSEC-2023-0071).
pub struct SigningKey {
    key_pair: RsaKeyPair,
    rng: SystemRandom,
}

impl SigningKey {
    /// Loads a PKCS#1 or PKCS#8 RSA private key given as PEM or as a bare base64 one-liner.
    pub fn parse(text: &str) -> Result<SigningKey, AlipayError> {
        let der = pem_or_base64_to_der(text).map_err(AlipayError::PrivateKey)?;
        SigningKey::from_der(&der)
    }

    /// Loads a PKCS#1 or PKCS#8 RSA private key from DER.
    pub fn from_der(der: &[u8]) -> Result<SigningKey, AlipayError> {
        let key_pair = match der_shape(der) {
            DerShape::Pkcs1PrivateKey => RsaKeyPair::from_der(der),
            DerShape::Pkcs8PrivateKey => RsaKeyPair::from_pkcs8(der),
            DerShape::SubjectPublicKeyInfo | DerShape::Pkcs1PublicKey => {
                return Err(AlipayError::PrivateKey(
                    "this is a public key; the app private key is needed to sign",
                ));
            }
            DerShape::Certificate => {
                return Err(AlipayError::PrivateKey(
                    "this is a certificate; the app private key is needed to sign",
                ));
            }
            DerShape::Unknown => {
                return Err(AlipayError::PrivateKey("the DER is not a key structure"));
            }
        }
        .map_err(|_| {
            AlipayError::PrivateKey("aws-lc-rs rejected it (not RSA, or under 2048 bits)")
        })?;
        Ok(SigningKey {
            key_pair,
            rng: SystemRandom::new(),
        })
    }

    /// Signs `message` with RSA2 and returns the standard base64 (padded, one line) that goes in
    /// `sign`. Takes about 0.75 ms for a 2048-bit key: call it off the async reactor.
    pub fn sign_base64(&self, message: &[u8]) -> Result<String, AlipayError> {
        let mut signature = vec![0u8; self.key_pair.public_modulus_len()];
        self.key_pair
            .sign(&RSA_PKCS1_SHA256, &self.rng, message, &mut signature)
            .map_err(|_| AlipayError::Signing)?;
        Ok(STANDARD.encode(signature))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted RSA private key>)")
    }
}

/// An RSA public key parsed once, for checking RSA2 signatures: Alipay's key for notifies and
/// responses, or the app's key when the sandbox plays Alipay's side.
pub struct VerifyingKey {
    key: ParsedPublicKey,
}

impl VerifyingKey {
    /// Loads an X.509 SubjectPublicKeyInfo given as PEM or as a bare base64 one-liner.
    pub fn parse(text: &str) -> Result<VerifyingKey, AlipayError> {
        let der = pem_or_base64_to_der(text).map_err(AlipayError::PublicKey)?;
        VerifyingKey::from_spki_der(&der)
    }

    /// Loads an X.509 SubjectPublicKeyInfo from DER. A PKCS#1 `RSAPublicKey` is refused: Alipay
    /// never issues one, so getting one means the wrong file was configured.
    pub fn from_spki_der(der: &[u8]) -> Result<VerifyingKey, AlipayError> {
        match der_shape(der) {
            DerShape::SubjectPublicKeyInfo => {}
            DerShape::Pkcs1PublicKey => {
                return Err(AlipayError::PublicKey(
                    "this is a PKCS#1 RSAPublicKey (`RSA PUBLIC KEY`), which Alipay does not issue",
                ));
            }
            DerShape::Pkcs1PrivateKey | DerShape::Pkcs8PrivateKey => {
                return Err(AlipayError::PublicKey(
                    "this is a private key; configure the public key instead",
                ));
            }
            DerShape::Certificate => {
                return Err(AlipayError::PublicKey(
                    "this is a certificate; use certificate mode for certificates",
                ));
            }
            DerShape::Unknown => {
                return Err(AlipayError::PublicKey("the DER is not a key structure"));
            }
        }
        let key = ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der).map_err(|_| {
            AlipayError::PublicKey("aws-lc-rs rejected it (not RSA, or under 2048 bits)")
        })?;
        Ok(VerifyingKey { key })
    }

    /// The key as SubjectPublicKeyInfo DER, for comparing keys or logging a fingerprint.
    pub fn spki_der(&self) -> &[u8] {
        self.key.as_ref()
    }

    /// Checks a base64 `sign` over `message` with RSA2. Any base64 or signature failure is the
    /// same [`AlipayError::BadSignature`]: callers must not learn which.
    pub fn verify_base64(&self, message: &[u8], sign: &str) -> Result<(), AlipayError> {
        if sign.is_empty() {
            return Err(AlipayError::MissingSignature);
        }
        let signature = STANDARD
            .decode(sign.as_bytes())
            .map_err(|_| AlipayError::BadSignature)?;
        self.key
            .verify_sig(message, &signature)
            .map_err(|_| AlipayError::BadSignature)
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VerifyingKey(RSA-2048+ SubjectPublicKeyInfo)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_and_public_key_shapes_are_told_apart_from_private_keys() {
        // A SEQUENCE of SEQUENCE + BIT STRING is an SPKI; of two INTEGERs starting at 0 a
        // PKCS#1 private key; INTEGER + SEQUENCE a PKCS#8 key.
        assert_eq!(
            der_shape(&[0x30, 0x04, 0x30, 0x00, 0x03, 0x00]),
            DerShape::SubjectPublicKeyInfo
        );
        assert_eq!(
            der_shape(&[0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x05]),
            DerShape::Pkcs1PrivateKey
        );
        assert_eq!(
            der_shape(&[0x30, 0x06, 0x02, 0x01, 0x07, 0x02, 0x01, 0x03]),
            DerShape::Pkcs1PublicKey
        );
        assert_eq!(
            der_shape(&[0x30, 0x05, 0x02, 0x01, 0x00, 0x30, 0x00]),
            DerShape::Pkcs8PrivateKey
        );
        assert_eq!(
            der_shape(&[0x30, 0x04, 0x30, 0x00, 0x30, 0x00]),
            DerShape::Certificate
        );
        assert_eq!(der_shape(&[0x30, 0x05, 0x02]), DerShape::Unknown);
        assert_eq!(der_shape(&[]), DerShape::Unknown);
    }

    #[test]
    fn garbage_is_refused_without_echoing_it() {
        let secretish = "NOT-A-KEY-但是很秘密";
        let err = SigningKey::parse(secretish).unwrap_err();
        assert!(!err.to_string().contains("NOT-A-KEY"), "{err}");
        assert!(err.to_string().contains("PKCS#8"), "{err}");
        let err = VerifyingKey::parse(secretish).unwrap_err();
        assert!(err.to_string().contains("SubjectPublicKeyInfo"), "{err}");
    }

    #[test]
    fn an_empty_signature_is_a_missing_signature() {
        let spki_b64 = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAsHBs6XPrh51s707ge0/hnrfWgpe2SJdU3Q3vtUtsPC9xGWD7857fSClr6avcqkxdLsoWvwUhs2z75G4576XzjQgJTtGZYEhapaOBfArn7IolHl43m7HIyOAoDuhtO8D0is3sdHyZjyJicRaFDyQUrBlgmuDTyvwUtVj5IiGwgQ4ynOisG7I05/dvgPghF/3evxlOAshSkVa5crT5hv3cqOOF2i3S6rkfdS5PDiWfefysaJdIljsQDIMFFsdgH5t2kxVAMpNXfUV1hU6bPueZ1TJlGdTIjxKMKDmVVPkDb5asnd0ITkfHdWOB1T2RU95xynyN0SyeZDfTcOfga1ghSQIDAQAB";
        let key = VerifyingKey::parse(spki_b64).unwrap();
        assert_eq!(
            key.verify_base64(b"x", ""),
            Err(AlipayError::MissingSignature)
        );
        assert_eq!(
            key.verify_base64(b"x", "!!"),
            Err(AlipayError::BadSignature)
        );
    }
}
