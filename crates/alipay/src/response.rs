//! Signed `gateway.do` responses: `{"<method>_response":{…},"sign":"…"}`.
//!
//! The signed bytes are the exact raw text of the `*_response` value, from its `{` to the
//! matching `}`, with every `\uXXXX` and `\/` escape kept as sent; re-serialising parsed JSON
//! would change them. The top-level object is walked by a small quote- and escape-aware scanner
//! (the Java SDK's approach), so a `}` or a `"sign"` inside a string value cannot confuse it and
//! members may come in any order (certificate mode puts `alipay_cert_sn` in between).
//!
//! When the raw text does not verify and contains `\/`, verification is retried once with
//! `\/` replaced by `/`, as the Java and PHP SDKs do: Alipay has signed some responses before
//! escaping slashes (`query_signed_over_unescaped_slashes` in the vectors), and the two texts
//! mean the same JSON, so nothing an attacker could change goes unsigned.

use serde_json::{Map, Value};

use crate::AlipayError;
use crate::keys::{SigningKey, VerifyingKey};

/// The member name of a gateway-level error, used instead of `<method>_response`.
pub const ERROR_RESPONSE: &str = "error_response";

/// The member holding `<method>`'s result, e.g. `alipay_trade_query_response`.
pub fn response_key(method: &str) -> String {
    let mut key = method.replace('.', "_");
    key.push_str("_response");
    key
}

/// The parts of a response body, as raw as they came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractedResponse<'a> {
    /// Whether the body held `error_response` instead of `<method>_response`.
    pub is_error_response: bool,
    /// The exact raw text of the response object: what Alipay signed.
    pub content: &'a str,
    /// The top-level `sign`, unescaped, if present.
    pub sign: Option<String>,
    /// Certificate mode: the SN of the certificate whose key signed this response.
    pub alipay_cert_sn: Option<String>,
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn skip_whitespace(&mut self) {
        while matches!(self.bytes.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), AlipayError> {
        self.skip_whitespace();
        if self.bytes.get(self.pos) == Some(&byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(AlipayError::MalformedResponse(what))
        }
    }

    fn slice(&self, start: usize, end: usize) -> Result<&'a str, AlipayError> {
        self.text
            .get(start..end)
            .ok_or(AlipayError::MalformedResponse(
                "a member is cut in the middle",
            ))
    }

    /// Skips a string starting at `pos` (a `"`), returning its raw text with quotes.
    fn string(&mut self) -> Result<&'a str, AlipayError> {
        let start = self.pos;
        self.pos += 1;
        loop {
            match self.bytes.get(self.pos) {
                None => return Err(AlipayError::MalformedResponse("a string never ends")),
                Some(b'\\') => self.pos += 2,
                Some(b'"') => {
                    self.pos += 1;
                    return self.slice(start, self.pos);
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    /// Skips an object or array starting at `pos`, honouring strings and escapes.
    fn nested(&mut self) -> Result<&'a str, AlipayError> {
        let start = self.pos;
        let mut depth = 0usize;
        loop {
            match self.bytes.get(self.pos) {
                None => return Err(AlipayError::MalformedResponse("an object never closes")),
                Some(b'"') => {
                    self.string()?;
                    continue;
                }
                Some(b'{' | b'[') => depth += 1,
                Some(b'}' | b']') => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        self.pos += 1;
                        return self.slice(start, self.pos);
                    }
                }
                Some(_) => {}
            }
            self.pos += 1;
        }
    }

    fn value(&mut self) -> Result<&'a str, AlipayError> {
        self.skip_whitespace();
        match self.bytes.get(self.pos) {
            Some(b'"') => self.string(),
            Some(b'{' | b'[') => self.nested(),
            Some(_) => {
                let start = self.pos;
                while !matches!(
                    self.bytes.get(self.pos),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.pos += 1;
                }
                if start == self.pos {
                    return Err(AlipayError::MalformedResponse("a member has no value"));
                }
                self.slice(start, self.pos)
            }
            None => Err(AlipayError::MalformedResponse("the body ends after a key")),
        }
    }

    /// Walks the top-level object, returning each member's raw key (with quotes) and value.
    fn members(mut self) -> Result<Vec<(&'a str, &'a str)>, AlipayError> {
        self.expect(b'{', "the body is not a JSON object")?;
        let mut members = Vec::new();
        self.skip_whitespace();
        if self.bytes.get(self.pos) == Some(&b'}') {
            return Ok(members);
        }
        loop {
            self.skip_whitespace();
            if self.bytes.get(self.pos) != Some(&b'"') {
                return Err(AlipayError::MalformedResponse(
                    "a member name is not a string",
                ));
            }
            let key = self.string()?;
            self.expect(b':', "a member name is not followed by ':'")?;
            let value = self.value()?;
            members.push((key, value));
            self.skip_whitespace();
            match self.bytes.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'}') => return Ok(members),
                _ => {
                    return Err(AlipayError::MalformedResponse(
                        "members are not separated by ','",
                    ));
                }
            }
        }
    }
}

fn json_string(raw: &str) -> Result<String, AlipayError> {
    serde_json::from_str::<String>(raw)
        .map_err(|_| AlipayError::MalformedResponse("a member that must be a string is not one"))
}

/// Finds the response object of `method` (or `error_response`), the `sign` and the
/// `alipay_cert_sn` in a raw body, without re-serialising anything. Never panics on any input.
pub fn extract_response<'a>(
    body: &'a str,
    method: &str,
) -> Result<ExtractedResponse<'a>, AlipayError> {
    let wanted = response_key(method);
    let scanner = Scanner {
        text: body,
        bytes: body.as_bytes(),
        pos: 0,
    };
    let mut response = None;
    let mut error_response = None;
    let mut sign = None;
    let mut alipay_cert_sn = None;
    for (raw_key, raw_value) in scanner.members()? {
        let key = json_string(raw_key)?;
        let slot = if key == wanted {
            &mut response
        } else if key == ERROR_RESPONSE {
            &mut error_response
        } else if key == "sign" {
            &mut sign
        } else if key == "alipay_cert_sn" {
            &mut alipay_cert_sn
        } else {
            continue;
        };
        if slot.replace(raw_value).is_some() {
            return Err(AlipayError::MalformedResponse("a member appears twice"));
        }
    }
    let (is_error_response, content) = match (response, error_response) {
        (Some(content), _) => (false, content),
        (None, Some(content)) => (true, content),
        (None, None) => return Err(AlipayError::MalformedResponse("no *_response member")),
    };
    if !content.starts_with('{') {
        return Err(AlipayError::MalformedResponse(
            "the *_response member is not an object",
        ));
    }
    Ok(ExtractedResponse {
        is_error_response,
        content,
        sign: sign.map(json_string).transpose()?,
        alipay_cert_sn: alipay_cert_sn.map(json_string).transpose()?,
    })
}

impl ExtractedResponse<'_> {
    /// Checks the signature over the raw response text (with the Java SDK's `\/` retry).
    pub fn verify(&self, alipay_key: &VerifyingKey) -> Result<(), AlipayError> {
        let sign = self
            .sign
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or(AlipayError::MissingSignature)?;
        match alipay_key.verify_base64(self.content.as_bytes(), sign) {
            Err(AlipayError::BadSignature) if self.content.contains("\\/") => {
                let unescaped = self.content.replace("\\/", "/");
                alipay_key.verify_base64(unescaped.as_bytes(), sign)
            }
            other => other,
        }
    }

    /// Parses the response object's members (call only after [`Self::verify`]).
    pub fn fields(&self) -> Result<Map<String, Value>, AlipayError> {
        serde_json::from_str(self.content)
            .map_err(|_| AlipayError::MalformedResponse("the *_response member is not valid JSON"))
    }
}

/// Builds a signed response body the way Alipay does, for the sandbox: `content` is the raw
/// JSON object text, signed as is.
pub fn sign_response_body(
    method: &str,
    content: &str,
    alipay_key: &SigningKey,
    alipay_cert_sn: Option<&str>,
) -> Result<String, AlipayError> {
    let sign = alipay_key.sign_base64(content.as_bytes())?;
    let key = Value::String(response_key(method));
    let cert = alipay_cert_sn
        .map(|sn| format!(",\"alipay_cert_sn\":{}", Value::String(sn.to_owned())))
        .unwrap_or_default();
    Ok(format!(
        "{{{key}:{content}{cert},\"sign\":{}}}",
        Value::String(sign)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn response_keys_follow_the_method_name() {
        assert_eq!(
            response_key("alipay.trade.fastpay.refund.query"),
            "alipay_trade_fastpay_refund_query_response"
        );
    }

    #[test]
    fn gateway_errors_are_found_under_error_response() {
        let body = r#"{"error_response":{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-app-id"},"sign":"x"}"#;
        let extracted = extract_response(body, "alipay.trade.query").unwrap();
        assert!(extracted.is_error_response);
        assert_eq!(
            extracted.content,
            r#"{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-app-id"}"#
        );
    }

    #[test]
    fn a_repeated_response_member_is_refused() {
        let body = r#"{"a_response":{"code":"10000"},"a_response":{"code":"40004"},"sign":"x"}"#;
        assert!(extract_response(body, "a").is_err());
    }

    #[test]
    fn non_object_bodies_are_refused() {
        for body in [
            "",
            "[]",
            "\"x\"",
            "{",
            r#"{"a_response":"x"}"#,
            r#"{"a_response":{"code":"1"}"#,
        ] {
            assert!(extract_response(body, "a").is_err(), "{body:?}");
        }
    }

    proptest! {
        #[test]
        fn the_extractor_never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let text = String::from_utf8_lossy(&body);
            let _ = extract_response(&text, "alipay.trade.query");
        }

        #[test]
        fn the_extractor_never_panics_on_json_like_text(
            body in r#"[{}\[\]":,\\ a-z_0-9]{0,80}"#
        ) {
            let _ = extract_response(&body, "a");
            let _ = extract_response(&format!(r#"{{"a_response":{body}"#), "a");
        }
    }
}
