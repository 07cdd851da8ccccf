//! The v2 signature: every non-empty field except `sign`, sorted by byte order, joined as
//! `k=v&…`, then `&key=<API key>`, hashed with MD5 or HMAC-SHA256 and written as uppercase hex
//! (protocol notes §1).
//!
//! Values are signed raw: no trimming, no escaping, no type coercion. The API only takes
//! strings, which rules out the integer/float/null/boolean divergences the vectors record
//! between wechatpy, tenpay and axios-plugin.

use std::collections::BTreeMap;
use std::fmt;

use aws_lc_rs::hmac;
use md5::{Digest, Md5};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// A flat v2 parameter map. `BTreeMap<String, _>` iterates in byte order, which is exactly the
/// order the signature needs.
pub type Params = BTreeMap<String, String>;

/// The merchant's 32-character APIv2 key ("API密钥"), used both to sign and (hashed) to decrypt
/// refund notifies. Never the AppSecret and never the APIv3 key.
#[derive(Clone)]
pub struct ApiKey(SecretString);

impl ApiKey {
    /// Wraps the key text; it is used byte for byte, so case matters.
    pub fn new(key: impl Into<String>) -> Self {
        Self(SecretString::from(key.into()))
    }

    /// The key bytes, for the hash functions only.
    pub(crate) fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl From<SecretString> for ApiKey {
    fn from(secret: SecretString) -> Self {
        Self(secret)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([REDACTED])")
    }
}

/// The signature algorithm of a request, a notify or client pay params.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum SignType {
    /// MD5, WeChat's default when no `sign_type` field is sent.
    #[default]
    #[serde(rename = "MD5")]
    Md5,
    /// HMAC-SHA256 keyed with the API key; must be announced with `sign_type=HMAC-SHA256`.
    #[serde(rename = "HMAC-SHA256")]
    HmacSha256,
}

impl SignType {
    /// The wire value of `sign_type` / `signType`.
    pub const fn as_str(self) -> &'static str {
        match self {
            SignType::Md5 => "MD5",
            SignType::HmacSha256 => "HMAC-SHA256",
        }
    }

    /// Parses the wire value exactly (WeChat sends these spellings only).
    pub fn parse(text: &str) -> Option<SignType> {
        match text {
            "MD5" => Some(SignType::Md5),
            "HMAC-SHA256" => Some(SignType::HmacSha256),
            _ => None,
        }
    }

    /// The number of hex characters a signature of this type has (32 or 64).
    pub const fn signature_len(self) -> usize {
        match self {
            SignType::Md5 => 32,
            SignType::HmacSha256 => 64,
        }
    }

    /// Guesses the algorithm from a signature's length, for notifies that omit `sign_type`
    /// (HMAC notifies often do: WxJava#1585). `None` for any other length.
    pub fn from_signature_len(len: usize) -> Option<SignType> {
        match len {
            32 => Some(SignType::Md5),
            64 => Some(SignType::HmacSha256),
            _ => None,
        }
    }
}

impl fmt::Display for SignType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Builds `stringA`: the fields sorted by name in byte order, `sign` and empty values dropped,
/// joined as `k=v&…` with raw values. Takes any iteration order.
pub fn string_to_sign<'a, I>(params: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut fields: Vec<(&str, &str)> = params
        .into_iter()
        .filter(|(name, value)| *name != "sign" && !value.is_empty())
        .collect();
    fields.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut out = String::with_capacity(fields.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// Signs a parameter set (in any order) and returns the uppercase hex signature.
pub fn sign_pairs<'a, I>(params: I, key: &ApiKey, sign_type: SignType) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut message = string_to_sign(params);
    message.push_str("&key=");
    message.push_str(key.expose());
    digest_upper_hex(message.as_bytes(), key, sign_type)
}

/// Signs a parameter map; the value goes into the `sign` field (or `paySign` for JSAPI).
pub fn sign(params: &Params, key: &ApiKey, sign_type: SignType) -> String {
    sign_pairs(
        params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        key,
        sign_type,
    )
}

/// Checks `signature` against the map's own fields (everything except `sign`, including fields
/// this crate does not know) in constant time. A lowercase-hex signature does not verify, as
/// with every reference library (vector N07).
pub fn verify(params: &Params, key: &ApiKey, sign_type: SignType, signature: &str) -> bool {
    if signature.len() != sign_type.signature_len() {
        return false;
    }
    let expected = sign(params, key, sign_type);
    bool::from(expected.as_bytes().ct_eq(signature.as_bytes()))
}

/// Verifies the `sign` of a received document (notify or API response) and returns the
/// algorithm that verified it, or `None`. A declared `sign_type` is trusted because it is itself
/// signed; without one the expected algorithm is used unless the signature's length says
/// otherwise.
pub fn verify_received(fields: &Params, key: &ApiKey, expected: SignType) -> Option<SignType> {
    let signature = fields.get("sign")?;
    let sign_type = match fields.get("sign_type") {
        Some(declared) => SignType::parse(declared)?,
        None if signature.len() == expected.signature_len() => expected,
        None => SignType::from_signature_len(signature.len())?,
    };
    verify(fields, key, sign_type, signature).then_some(sign_type)
}

/// Signs `params` and stores the result in its `sign` field, announcing HMAC with `sign_type`
/// first (the `sign_type` field is itself signed).
pub fn sign_in_place(params: &mut Params, key: &ApiKey, sign_type: SignType) {
    params.remove("sign");
    if sign_type == SignType::HmacSha256 {
        params.insert("sign_type".into(), sign_type.as_str().into());
    }
    let signature = sign(params, key, sign_type);
    params.insert("sign".into(), signature);
}

fn digest_upper_hex(message: &[u8], key: &ApiKey, sign_type: SignType) -> String {
    match sign_type {
        SignType::Md5 => hex::encode_upper(Md5::digest(message)),
        SignType::HmacSha256 => {
            let hmac_key = hmac::Key::new(hmac::HMAC_SHA256, key.expose().as_bytes());
            hex::encode_upper(hmac::sign(&hmac_key, message).as_ref())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn official_example() -> Params {
        [
            ("appid", "wxd930ea5d5a258f4f"),
            ("mch_id", "10000100"),
            ("device_info", "1000"),
            ("body", "test"),
            ("nonce_str", "ibuaiVcKdpRxkhJA"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn the_official_4_3_example_signs_to_the_documented_values() {
        let key = ApiKey::new("192006250b4c09247ec02edce69f6a2d");
        let params = official_example();
        assert_eq!(
            sign(&params, &key, SignType::Md5),
            "9A0A8659F005D6984697E2CA0A9CF3B7"
        );
        assert_eq!(
            sign(&params, &key, SignType::HmacSha256),
            "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"
        );
    }

    #[test]
    fn verify_refuses_lowercase_truncated_and_wrong_algorithm_signatures() {
        let key = ApiKey::new("192006250b4c09247ec02edce69f6a2d");
        let params = official_example();
        assert!(verify(
            &params,
            &key,
            SignType::Md5,
            "9A0A8659F005D6984697E2CA0A9CF3B7"
        ));
        assert!(!verify(
            &params,
            &key,
            SignType::Md5,
            "9a0a8659f005d6984697e2ca0a9cf3b7"
        ));
        assert!(!verify(&params, &key, SignType::Md5, "9A0A8659"));
        assert!(!verify(
            &params,
            &key,
            SignType::HmacSha256,
            "9A0A8659F005D6984697E2CA0A9CF3B7"
        ));
    }

    #[test]
    fn hmac_signing_in_place_announces_its_type_inside_the_signed_string() {
        let key = ApiKey::new("192006250b4c09247ec02edce69f6a2d");
        let mut params = official_example();
        sign_in_place(&mut params, &key, SignType::HmacSha256);
        assert_eq!(params["sign_type"], "HMAC-SHA256");
        // Vector S08: S01 plus sign_type=HMAC-SHA256, signed with HMAC.
        assert_eq!(
            params["sign"],
            "2C9DF1156522C0B2B03B4DBF3BCA5CACB602CBD5CA0F9E112458CF3E9855303B"
        );
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let key = ApiKey::new("192006250b4c09247ec02edce69f6a2d");
        assert!(!format!("{key:?}").contains("1920"));
    }

    #[test]
    fn sign_type_guesses_only_the_two_known_lengths() {
        assert_eq!(SignType::from_signature_len(32), Some(SignType::Md5));
        assert_eq!(SignType::from_signature_len(64), Some(SignType::HmacSha256));
        assert_eq!(SignType::from_signature_len(40), None);
        assert_eq!(SignType::parse("hmac-sha256"), None);
    }

    proptest! {
        #[test]
        fn the_signature_does_not_depend_on_insertion_order(
            fields in proptest::collection::btree_map("[A-Za-z_][A-Za-z0-9_]{0,12}", "\\PC{0,16}", 0..12),
            seed in any::<u64>(),
        ) {
            let key = ApiKey::new("192006250b4c09247ec02edce69f6a2d");
            let mut pairs: Vec<(&str, &str)> =
                fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let sorted_md5 = sign_pairs(pairs.iter().copied(), &key, SignType::Md5);
            let sorted_hmac = sign_pairs(pairs.iter().copied(), &key, SignType::HmacSha256);
            // A deterministic shuffle driven by the seed.
            let mut state = seed | 1;
            for i in (1..pairs.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let j = usize::try_from(state % (i as u64 + 1)).unwrap_or(0);
                pairs.swap(i, j);
            }
            prop_assert_eq!(sign_pairs(pairs.iter().copied(), &key, SignType::Md5), sorted_md5);
            prop_assert_eq!(sign_pairs(pairs.iter().copied(), &key, SignType::HmacSha256), sorted_hmac);
        }
    }
}
