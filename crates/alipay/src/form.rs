//! `application/x-www-form-urlencoded`, done by hand so that both directions are exact.
//!
//! Decoding happens **exactly once**: `+` is a space and `%XX` a byte, and the bytes must be
//! UTF-8. A second decode would break values such as a `passback_params` the merchant
//! URL-encoded itself (Node SDK bug alipay-sdk-nodejs-all#45). Pairs split on the first `=` only,
//! so a base64 `sign` ending in `=` survives.
//!
//! Encoding follows Java's `URLEncoder` (and PHP's `urlencode`): `A–Z a–z 0–9 * - . _` stay,
//! a space becomes `+`, every other byte becomes `%XX`. That is what Alipay's reference Java SDK
//! emits, and the receiving side decodes `+` and `%20` alike.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::AlipayError;

/// Whether a byte stays as it is in a form-encoded value (Java `URLEncoder`'s safe set).
fn is_form_safe(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'*' | b'-' | b'.' | b'_')
}

/// Form-encodes one value (or key), appending to `out`.
pub fn encode_component_into(text: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in text.as_bytes() {
        if is_form_safe(byte) {
            out.push(char::from(byte));
        } else if byte == b' ' {
            out.push('+');
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
}

/// Form-encodes one value (or key).
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3 / 2);
    encode_component_into(text, &mut out);
    out
}

/// Joins `k=v` pairs, each side form-encoded once, with `&`, in the order given.
pub fn encode_form<'a, I>(pairs: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut out = String::new();
    for (key, value) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        encode_component_into(key, &mut out);
        out.push('=');
        encode_component_into(value, &mut out);
    }
    out
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

fn not_utf8<T>(_: T) -> AlipayError {
    AlipayError::MalformedForm("a value is not UTF-8")
}

/// Decodes one component once: `+` → space, `%XX` → byte, then strict UTF-8. Borrows when
/// there is nothing to decode, which is most ids, amounts and times.
pub fn decode_component(raw: &[u8]) -> Result<Cow<'_, str>, AlipayError> {
    if !raw.iter().any(|&b| b == b'%' || b == b'+') {
        return std::str::from_utf8(raw)
            .map(Cow::Borrowed)
            .map_err(not_utf8);
    }
    let mut bytes = Vec::with_capacity(raw.len());
    append_decoded(raw, &mut bytes)?;
    String::from_utf8(bytes).map(Cow::Owned).map_err(not_utf8)
}

/// Appends the form-decoded bytes of `raw` to `out` (UTF-8 is the caller's to check).
pub fn append_decoded(raw: &[u8], out: &mut Vec<u8>) -> Result<(), AlipayError> {
    // A plain byte loop: escaped notify values are dense with '%' and '+', where a search
    // per escape costs more than it saves.
    out.reserve(raw.len());
    let mut index = 0;
    while let Some(&byte) = raw.get(index) {
        match byte {
            b'+' => out.push(b' '),
            b'%' => {
                let high = raw.get(index + 1).copied().and_then(hex_value);
                let low = raw.get(index + 2).copied().and_then(hex_value);
                let (Some(high), Some(low)) = (high, low) else {
                    return Err(AlipayError::MalformedForm(
                        "a % is not followed by two hex digits",
                    ));
                };
                out.push((high << 4) | low);
                index += 2;
            }
            other => out.push(other),
        }
        index += 1;
    }
    Ok(())
}

/// Splits a form body into raw `(key, value)` byte slices, in the order sent. Empty segments
/// (`a=1&&b=2`) are skipped; a segment without `=` is a key with an empty value, as browsers
/// treat it. The split is on the first `=` only, so a base64 `sign` ending in `=` survives.
pub fn raw_pairs(body: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    // memchr finds the separators with SIMD; this path runs on every notify.
    let ends = memchr::memchr_iter(b'&', body).chain(std::iter::once(body.len()));
    let mut start = 0;
    ends.filter_map(move |end| {
        let segment = body.get(start..end).unwrap_or_default();
        start = end + 1;
        if segment.is_empty() {
            return None;
        }
        Some(match memchr::memchr(b'=', segment) {
            Some(at) => (
                segment.get(..at).unwrap_or_default(),
                segment.get(at + 1..).unwrap_or_default(),
            ),
            None => (segment, &[][..]),
        })
    })
}

/// Decoded `(key, value)` pairs that borrow from the body wherever nothing was escaped.
pub type FormPairs<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

/// Decodes a whole form body into pairs, in the order sent, in one pass over the bytes.
/// Empty segments (`a=1&&b=2`) are skipped; a segment without `=` is a key with an empty
/// value, as browsers treat it.
pub fn decode_form_borrowed(body: &[u8]) -> Result<FormPairs<'_>, AlipayError> {
    raw_pairs(body)
        .map(|(key, value)| Ok((decode_component(key)?, decode_component(value)?)))
        .collect()
}

/// Decodes a whole form body into owned pairs, in the order sent.
pub fn decode_form(body: &[u8]) -> Result<Vec<(String, String)>, AlipayError> {
    Ok(decode_form_borrowed(body)?
        .into_iter()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect())
}

/// Decodes a form body whose keys must be unique, as every signed Alipay message's are (a
/// repeated key would let two readers see different values under one signature), sorted by
/// key bytes, the order signing needs.
pub fn decode_sorted_unique(body: &[u8]) -> Result<FormPairs<'_>, AlipayError> {
    let mut pairs = decode_form_borrowed(body)?;
    pairs.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    if let Some(twice) = pairs.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(AlipayError::DuplicateParam(twice[0].0.clone().into_owned()));
    }
    Ok(pairs)
}

/// Decodes a form body with unique keys into an owned, sorted parameter map.
pub fn decode_unique_form(body: &[u8]) -> Result<BTreeMap<String, String>, AlipayError> {
    Ok(decode_sorted_unique(body)?
        .into_iter()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plus_is_a_space_and_percent_2b_is_a_plus() {
        let pairs = decode_form(b"body=a%2Bb+%26+c%3Dd&x=%E6%B5%8B").unwrap();
        assert_eq!(
            pairs,
            vec![
                ("body".into(), "a+b & c=d".into()),
                ("x".into(), "测".into())
            ]
        );
    }

    #[test]
    fn a_sign_ending_in_equals_signs_is_kept_whole() {
        let pairs = decode_form(b"sign=abc==&k").unwrap();
        assert_eq!(
            pairs,
            vec![("sign".into(), "abc==".into()), ("k".into(), String::new())]
        );
    }

    #[test]
    fn broken_escapes_and_non_utf8_are_refused() {
        assert!(decode_form(b"a=%4").is_err());
        assert!(decode_form(b"a=%zz").is_err());
        assert!(decode_form(b"a=%FF").is_err());
    }

    #[test]
    fn duplicate_keys_are_refused() {
        assert_eq!(
            decode_unique_form(b"a=1&a=2"),
            Err(AlipayError::DuplicateParam("a".into()))
        );
    }

    #[test]
    fn encoding_matches_java_url_encoder() {
        // Java URLEncoder.encode("a+b & c=d / e ~*!'()", "UTF-8"), worked out by hand from its
        // documented rules: space→+, *-._ kept, everything else %XX.
        assert_eq!(
            encode_component("a+b & c=d / e ~*!'()"),
            "a%2Bb+%26+c%3Dd+%2F+e+%7E*%21%27%28%29"
        );
        assert_eq!(encode_component("测"), "%E6%B5%8B");
    }

    proptest! {
        #[test]
        fn decoding_an_encoded_form_gives_back_the_pairs(
            pairs in proptest::collection::vec((".{0,12}", ".{0,24}"), 0..8)
        ) {
            // Empty keys with empty values encode to a lone "=", which is a real (empty) pair;
            // keep them to check that too.
            let encoded = encode_form(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let decoded = decode_form(encoded.as_bytes()).unwrap();
            let expected: Vec<(String, String)> = pairs.clone();
            prop_assert_eq!(decoded, expected);
        }

        #[test]
        fn decoding_never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_form(&body);
        }
    }
}
