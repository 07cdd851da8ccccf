//! The string-to-sign and RSA2 over parameter maps.
//!
//! Requests: every parameter except `sign`, empty values dropped, sorted by key bytes, joined
//! as raw `k=v` with `&` (never URL-encoded); `sign_type` **is** included. Notifies (Java's
//! `rsaCheckV1`): the same, but `sign_type` is dropped too, and the algorithm is RSA2 from our
//! configuration, never the notify's `sign_type`. Values are never trimmed (smartwalle/alipay#83).

use std::collections::BTreeMap;

use crate::AlipayError;
use crate::keys::{SigningKey, VerifyingKey};

/// The parameter holding the signature.
pub const SIGN: &str = "sign";
/// The parameter naming the algorithm; signed in requests, unsigned in notifies.
pub const SIGN_TYPE: &str = "sign_type";
/// The only algorithm paygate speaks: SHA256withRSA.
pub const RSA2: &str = "RSA2";

/// Which parameters a signature leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignScope {
    /// Requests and `rsaCheckV2`: only `sign` is left out.
    Request,
    /// Payment notifies (`rsaCheckV1`): `sign` and `sign_type` are left out.
    NotifyV1,
}

impl SignScope {
    fn excludes(self, key: &str) -> bool {
        key == SIGN || (self == SignScope::NotifyV1 && key == SIGN_TYPE)
    }
}

/// Builds the string-to-sign from parameters in any order: drops excluded keys and empty
/// values, sorts by key bytes and joins raw `k=v` pairs with `&`.
pub fn canonical_string<'a, I>(params: I, scope: SignScope) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut kept: Vec<(&str, &str)> = params
        .into_iter()
        .filter(|(key, value)| !value.is_empty() && !scope.excludes(key))
        .collect();
    kept.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut out = String::with_capacity(kept.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (key, value) in kept {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// A parameter map whose iteration order is byte order of the keys, as signing needs.
pub type Params = BTreeMap<String, String>;

fn pairs(params: &Params) -> impl Iterator<Item = (&str, &str)> + Clone {
    params.iter().map(|(k, v)| (k.as_str(), v.as_str()))
}

/// Signs `params` under `scope` with `key` and stores the result under `sign`: requests use
/// [`SignScope::Request`] (`sign_type` must already be set, it is signed), and the sandbox
/// signs notifies as Alipay does with [`SignScope::NotifyV1`].
pub fn sign_params(
    params: &mut Params,
    scope: SignScope,
    key: &SigningKey,
) -> Result<(), AlipayError> {
    params.remove(SIGN);
    let content = canonical_string(pairs(params), scope);
    let sign = key.sign_base64(content.as_bytes())?;
    params.insert(SIGN.to_owned(), sign);
    Ok(())
}

/// Checks the `sign` among `params` (any order) under `scope` with `key`.
pub fn verify_signature<'a, I>(
    params: I,
    scope: SignScope,
    key: &VerifyingKey,
) -> Result<(), AlipayError>
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
    I::IntoIter: Clone,
{
    let params = params.into_iter();
    let sign = params
        .clone()
        .find_map(|(k, v)| (k == SIGN).then_some(v))
        .filter(|s| !s.is_empty())
        .ok_or(AlipayError::MissingSignature)?;
    let content = canonical_string(params, scope);
    key.verify_base64(content.as_bytes(), sign)
}

/// Checks the `sign` of a parameter map under `scope` with `key`.
pub fn verify_params(
    params: &Params,
    scope: SignScope,
    key: &VerifyingKey,
) -> Result<(), AlipayError> {
    verify_signature(pairs(params), scope, key)
}

/// A form body whose signature verified, decoded exactly once straight into its
/// string-to-sign; fields are read back out of that string without further copies.
///
/// Only the signed fields can be read: under [`SignScope::NotifyV1`] `sign_type` is not
/// among them, and empty values never are (they are unsigned, so they count as absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedForm {
    content: String,
    /// (key, value) byte ranges in `content`, sorted by key.
    fields: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
}

impl VerifiedForm {
    /// The exact string whose signature verified.
    pub fn content(&self) -> &str {
        &self.content
    }

    /// A signed field's decoded value.
    pub fn get(&self, key: &str) -> Option<&str> {
        let text =
            |range: &std::ops::Range<usize>| self.content.get(range.clone()).unwrap_or_default();
        self.fields
            .binary_search_by(|(k, _)| text(k).as_bytes().cmp(key.as_bytes()))
            .ok()
            .and_then(|at| self.fields.get(at))
            .map(|(_, v)| text(v))
    }
}

/// The first eight bytes of a key as a big-endian integer, zero-padded: ordering these
/// integers orders the keys by their first eight bytes.
fn key_prefix(key: &[u8]) -> u64 {
    let mut prefix = [0u8; 8];
    for (slot, byte) in prefix.iter_mut().zip(key) {
        *slot = *byte;
    }
    u64::from_be_bytes(prefix)
}

/// Decodes a form body once and checks its `sign` under `scope` with `key`.
///
/// This is the hot path of notify handling, so nothing is copied per value: raw pairs are
/// sorted by key, each value is decoded straight into the string-to-sign, and UTF-8 is
/// checked once over the result. The outcome is the same as decoding into a map and calling
/// [`verify_params`].
pub fn verify_form_body(
    body: &[u8],
    scope: SignScope,
    key: &VerifyingKey,
) -> Result<VerifiedForm, AlipayError> {
    use crate::form::{append_decoded, decode_component, raw_pairs};
    // Sorting compares the first eight key bytes as one integer before falling back to the
    // whole key: this is byte order all the same, at a fraction of the cost per comparison.
    let mut pairs = raw_pairs(body)
        .map(|(k, v)| {
            let key = decode_component(k)?;
            Ok((key_prefix(key.as_bytes()), key, v))
        })
        .collect::<Result<Vec<_>, AlipayError>>()?;
    pairs.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| a.1.as_bytes().cmp(b.1.as_bytes()))
    });
    if let Some(twice) = pairs.windows(2).find(|w| w[0].1 == w[1].1) {
        return Err(AlipayError::DuplicateParam(twice[0].1.clone().into_owned()));
    }
    let mut sign = None;
    let mut content = Vec::with_capacity(body.len());
    let mut fields = Vec::with_capacity(pairs.len());
    for (_, name, raw_value) in &pairs {
        if name == SIGN {
            sign = Some(decode_component(raw_value)?);
        }
        // A non-empty raw value always decodes to at least one byte.
        if raw_value.is_empty() || scope.excludes(name) {
            continue;
        }
        if !content.is_empty() {
            content.push(b'&');
        }
        let key_range = content.len()..content.len() + name.len();
        content.extend_from_slice(name.as_bytes());
        content.push(b'=');
        let value_start = content.len();
        append_decoded(raw_value, &mut content)?;
        fields.push((key_range, value_start..content.len()));
    }
    let sign = sign
        .filter(|s| !s.is_empty())
        .ok_or(AlipayError::MissingSignature)?;
    // Pieces joined by ASCII separators are valid UTF-8 exactly when each piece is.
    let content = String::from_utf8(content)
        .map_err(|_| AlipayError::MalformedForm("a value is not UTF-8"))?;
    key.verify_base64(content.as_bytes(), &sign)?;
    Ok(VerifiedForm { content, fields })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn request_scope_keeps_sign_type_and_drops_sign_and_empties() {
        let content = canonical_string(
            [
                ("sign", "x"),
                ("b", ""),
                ("sign_type", "RSA2"),
                ("a", " 1 "),
            ],
            SignScope::Request,
        );
        assert_eq!(content, "a= 1 &sign_type=RSA2");
    }

    #[test]
    fn notify_scope_drops_sign_type_too() {
        let content = canonical_string(
            [("sign", "x"), ("sign_type", "RSA2"), ("a", "1")],
            SignScope::NotifyV1,
        );
        assert_eq!(content, "a=1");
    }

    #[test]
    fn keys_sort_by_bytes_not_by_locale() {
        let content = canonical_string(
            [
                ("b", "1"),
                ("B", "2"),
                ("_", "3"),
                ("a_b", "4"),
                ("ab", "5"),
            ],
            SignScope::Request,
        );
        assert_eq!(content, "B=2&_=3&a_b=4&ab=5&b=1");
    }

    proptest! {
        #[test]
        fn prefix_then_key_order_is_byte_order(a in proptest::collection::vec(0u8..=255, 0..12), b in proptest::collection::vec(0u8..=255, 0..12)) {
            let by_prefix = key_prefix(&a).cmp(&key_prefix(&b)).then_with(|| a.cmp(&b));
            prop_assert_eq!(by_prefix, a.cmp(&b));
        }

        #[test]
        fn canonical_string_ignores_insertion_order(
            map in proptest::collection::btree_map("[a-z_]{1,8}", ".{0,8}", 0..12),
            seed in any::<u64>(),
        ) {
            let forward: Vec<(&str, &str)> = map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let mut shuffled = forward.clone();
            // A deterministic shuffle driven by the seed (Fisher–Yates with an LCG).
            let mut state = seed;
            for i in (1..shuffled.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let j = usize::try_from(state >> 33).unwrap() % (i + 1);
                shuffled.swap(i, j);
            }
            let mut reversed = forward.clone();
            reversed.reverse();
            let expected = canonical_string(forward, SignScope::Request);
            prop_assert_eq!(&canonical_string(shuffled, SignScope::Request), &expected);
            prop_assert_eq!(&canonical_string(reversed, SignScope::Request), &expected);
        }
    }
}
