//! The crate's one error type. Variants carry static reasons or provider text, never key bytes,
//! so an error can be logged as it is.

/// Everything that can go wrong inside the Alipay crate, before it is mapped onto the
/// provider-neutral [`paygate_core::ProviderError`] / [`paygate_core::NotifyError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlipayError {
    /// The app private key could not be loaded.
    #[error(
        "app private key: expected an RSA private key in PKCS#1 (`RSA PRIVATE KEY`, `MIIEp…`) or \
         PKCS#8 (`PRIVATE KEY`, `MIIEv…`), as PEM or Alipay's bare base64 one-liner: {0}"
    )]
    PrivateKey(&'static str),
    /// A public key (Alipay's, or the app's when playing Alipay's side) could not be loaded.
    #[error(
        "public key: expected an RSA X.509 SubjectPublicKeyInfo (`PUBLIC KEY`, `MIIBIj…`), as PEM \
         or Alipay's bare base64 one-liner: {0}"
    )]
    PublicKey(&'static str),
    /// A certificate (certificate mode) could not be read.
    #[error("certificate {what}: {reason}")]
    Certificate {
        /// Which certificate (`app_cert`, `alipay_cert`, `alipay_root_cert`).
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The configuration is incomplete or contradictory.
    #[error("alipay configuration: {0}")]
    Config(String),
    /// aws-lc-rs refused to sign (only on a broken key; never expected at run time).
    #[error("RSA signing failed")]
    Signing,
    /// A message carried no `sign`, or an empty one.
    #[error("message carries no signature")]
    MissingSignature,
    /// The signature is not valid base64 or does not verify with the configured key.
    #[error("signature does not verify")]
    BadSignature,
    /// A form body is not valid `application/x-www-form-urlencoded` UTF-8.
    #[error("malformed form body: {0}")]
    MalformedForm(&'static str),
    /// A parameter appears twice; a signed message must be unambiguous.
    #[error("parameter {0:?} appears more than once")]
    DuplicateParam(String),
    /// A field is missing or has an unexpected value.
    #[error("field {field}: {reason}")]
    BadField {
        /// The field's wire name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A gateway response is not the `{"…_response":{…},"sign":"…"}` shape.
    #[error("malformed gateway response: {0}")]
    MalformedResponse(&'static str),
    /// The gateway could not be reached or answered without a usable body.
    #[error("gateway transport: {0}")]
    Transport(String),
}
