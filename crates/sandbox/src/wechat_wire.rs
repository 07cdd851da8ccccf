//! WeChat Pay v2 wire rules, played from WeChat's side: the param-map signature (MD5 or
//! HMAC-SHA256 over `k=v&…&key=API_KEY`), the flat `<xml>` codec and the AES-256-ECB
//! `req_info` of refund notifies.
//!
//! TODO(lead): use paygate_wechat's sign/verify, XML codec and `encrypt_req_info` once public;
//! these are small private equivalents written while that crate was still being built.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use quick_xml::Reader;
use quick_xml::events::Event;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// A WeChat v2 parameter map; `BTreeMap` gives the byte-order sort the signature needs.
pub(crate) type WechatParams = BTreeMap<String, String>;

/// The two v2 signature algorithms, chosen per request by its `sign_type` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WechatSignType {
    /// `MD5`, the default when `sign_type` is absent.
    #[serde(rename = "MD5")]
    Md5,
    /// `HMAC-SHA256`.
    #[serde(rename = "HMAC-SHA256")]
    HmacSha256,
}

impl WechatSignType {
    /// Reads a request's `sign_type`; absent means MD5, anything unknown is refused.
    pub(crate) fn from_field(value: Option<&str>) -> Option<WechatSignType> {
        match value {
            None | Some("MD5") => Some(WechatSignType::Md5),
            Some("HMAC-SHA256") => Some(WechatSignType::HmacSha256),
            Some(_) => None,
        }
    }

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            WechatSignType::Md5 => "MD5",
            WechatSignType::HmacSha256 => "HMAC-SHA256",
        }
    }
}

/// Signs a parameter map: every field except `sign` and empty values, byte-sorted, raw values,
/// `&key=` appended, uppercase hex.
pub(crate) fn sign_params(
    params: &WechatParams,
    sign_type: WechatSignType,
    api_key: &str,
) -> String {
    let mut text = String::new();
    for (name, value) in params {
        if name == "sign" || value.is_empty() {
            continue;
        }
        text.push_str(name);
        text.push('=');
        text.push_str(value);
        text.push('&');
    }
    text.push_str("key=");
    text.push_str(api_key);
    match sign_type {
        WechatSignType::Md5 => hex::encode_upper(Md5::digest(text.as_bytes())),
        WechatSignType::HmacSha256 => {
            // HMAC accepts keys of any length, so this cannot fail; fall back to an
            // impossible signature rather than panic.
            match Hmac::<Sha256>::new_from_slice(api_key.as_bytes()) {
                Ok(mut mac) => {
                    mac.update(text.as_bytes());
                    hex::encode_upper(mac.finalize().into_bytes())
                }
                Err(_) => String::new(),
            }
        }
    }
}

/// Checks `sign` the way WeChat does: over every received field, in constant time, uppercase
/// hex only.
pub(crate) fn verify_params(
    params: &WechatParams,
    sign_type: WechatSignType,
    api_key: &str,
) -> bool {
    let Some(received) = params.get("sign") else {
        return false;
    };
    let expected = sign_params(params, sign_type, api_key);
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(received.as_bytes()))
}

/// Why a body is not a flat WeChat XML document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// DTDs are refused outright (WeChat's 2018 XXE advisory).
    #[error("DOCTYPE declarations are not allowed")]
    Doctype,
    /// Not well-formed, nested, or not rooted at `<xml>`/`<root>`.
    #[error("malformed XML: {0}")]
    Malformed(String),
}

/// Parses `<xml><k>v</k>…</xml>` (or `<root>` for decrypted refund notifies) into a map,
/// refusing DTDs and nesting; text and CDATA mean the same and values are not trimmed.
pub(crate) fn parse_xml(body: &str) -> Result<WechatParams, XmlError> {
    if body.contains("<!DOCTYPE") || body.contains("<!ENTITY") {
        return Err(XmlError::Doctype);
    }
    let mut reader = Reader::from_str(body);
    let mut params = WechatParams::new();
    let mut depth = 0usize;
    let mut field: Option<(String, String)> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| XmlError::Malformed(e.to_string()))?;
        match event {
            Event::Start(start) => {
                let name = start.name().as_ref().to_owned();
                depth += 1;
                match depth {
                    1 if name == "xml" || name == "root" => {}
                    1 => return Err(XmlError::Malformed(format!("root element <{name}>"))),
                    2 => field = Some((name, String::new())),
                    _ => return Err(XmlError::Malformed("nested element".into())),
                }
            }
            Event::Empty(start) if depth == 1 => {
                let name = start.name().as_ref().to_owned();
                params.insert(name, String::new());
            }
            Event::End(_) => {
                if depth == 2
                    && let Some((name, value)) = field.take()
                {
                    params.insert(name, value);
                }
                depth = depth.saturating_sub(1);
            }
            Event::Text(text) => {
                if let Some((_, value)) = field.as_mut() {
                    value.push_str(&text.xml10_content());
                } else if !text.xml10_content().trim().is_empty() {
                    return Err(XmlError::Malformed("text outside a field".into()));
                }
            }
            Event::CData(cdata) => {
                if let Some((_, value)) = field.as_mut() {
                    value.push_str(&cdata.xml10_content());
                }
            }
            Event::GeneralRef(reference) => {
                let Some((_, value)) = field.as_mut() else {
                    return Err(XmlError::Malformed("reference outside a field".into()));
                };
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(ch)) => ch,
                    Ok(None) => match reference.xml10_content().as_ref() {
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "quot" => '"',
                        "apos" => '\'',
                        other => return Err(XmlError::Malformed(format!("entity &{other};"))),
                    },
                    Err(e) => return Err(XmlError::Malformed(e.to_string())),
                };
                value.push(resolved);
            }
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Eof => break,
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::Empty(_) => {}
        }
    }
    if depth != 0 {
        return Err(XmlError::Malformed("unclosed element".into()));
    }
    Ok(params)
}

/// Writes a map as WeChat does: `<xml>` with one element per field, strings in CDATA (split if
/// they contain `]]>`), digit-only values bare.
pub(crate) fn to_xml(params: &WechatParams) -> String {
    to_xml_rooted("xml", params)
}

/// Same as [`to_xml`] with another root (`root` for the refund notify's plaintext).
pub(crate) fn to_xml_rooted(root: &str, params: &WechatParams) -> String {
    let mut out = format!("<{root}>");
    for (name, value) in params {
        out.push('<');
        out.push_str(name);
        out.push('>');
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(value);
        } else {
            out.push_str("<![CDATA[");
            out.push_str(&value.replace("]]>", "]]]]><![CDATA[>"));
            out.push_str("]]>");
        }
        out.push_str("</");
        out.push_str(name);
        out.push('>');
    }
    out.push_str(&format!("</{root}>"));
    out
}

/// Encrypts a refund notify's `<root>` plaintext into `req_info`: AES-256-ECB, PKCS#7, keyed
/// with the 32 ASCII bytes of lowercase hex `MD5(api_key)`, then base64.
pub(crate) fn encrypt_req_info(plaintext_xml: &str, api_key: &str) -> String {
    use aes::cipher::{BlockEncryptMut, KeyInit, block_padding::Pkcs7};
    use base64::Engine;
    let key_hex = hex::encode(Md5::digest(api_key.as_bytes()));
    let cipher = ecb::Encryptor::<aes::Aes256>::new(key_hex.as_bytes().into());
    let ciphertext = cipher.encrypt_padded_vec_mut::<Pkcs7>(plaintext_xml.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(ciphertext)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn official_example() -> WechatParams {
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
    fn the_official_4_3_example_signs_to_the_published_values() {
        let key = "192006250b4c09247ec02edce69f6a2d";
        assert_eq!(
            sign_params(&official_example(), WechatSignType::Md5, key),
            "9A0A8659F005D6984697E2CA0A9CF3B7"
        );
        assert_eq!(
            sign_params(&official_example(), WechatSignType::HmacSha256, key),
            "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"
        );
    }

    #[test]
    fn a_doctype_is_refused_before_parsing() {
        let body = r#"<!DOCTYPE xml [<!ENTITY x "y">]><xml><a>&x;</a></xml>"#;
        assert_eq!(parse_xml(body), Err(XmlError::Doctype));
    }

    #[test]
    fn a_value_containing_the_cdata_terminator_survives_a_round_trip() {
        let mut params = WechatParams::new();
        params.insert("attach".into(), "a]]>b & <c>".into());
        params.insert("total_fee".into(), "1".into());
        assert_eq!(parse_xml(&to_xml(&params)), Ok(params));
    }
}
