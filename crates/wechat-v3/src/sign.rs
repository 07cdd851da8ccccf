//! Request signing (protocol §1) and client pay parameters (§5.2).
//!
//! Every signed text is lines joined by `\n` with a final `\n`, signed with SHA256withRSA by
//! the merchant API private key. The URL line is the request-target exactly as it goes on the
//! wire (path plus `?query`, already percent-encoded) and the body line the exact body bytes,
//! so callers serialise once and send what was signed.

use paygate_core::PayParams;
use rand::Rng as _;

use crate::keys::{KeyError, MerchantKey};

/// The Authorization scheme of APIv3.
pub const AUTH_SCHEME: &str = "WECHATPAY2-SHA256-RSA2048";

/// The merchant side of signing: the merchant id, its API certificate serial and private key.
#[derive(Debug)]
pub struct MerchantSigner {
    mchid: String,
    serial_no: String,
    key: MerchantKey,
}

/// The signed text of a request: `METHOD\nURL\nTIMESTAMP\nNONCE\nBODY\n`.
pub fn request_message(
    method: &str,
    url: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut message = Vec::with_capacity(method.len() + url.len() + nonce.len() + body.len() + 20);
    for line in [
        method.as_bytes(),
        url.as_bytes(),
        timestamp.to_string().as_bytes(),
        nonce.as_bytes(),
        body,
    ] {
        message.extend_from_slice(line);
        message.push(b'\n');
    }
    message
}

/// A random 32-character nonce of upper-case letters and digits, as the official SDKs make.
pub fn nonce() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    (0..32)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

impl MerchantSigner {
    /// A signer for merchant `mchid` whose API certificate has serial `serial_no`.
    pub fn new(mchid: impl Into<String>, serial_no: impl Into<String>, key: MerchantKey) -> Self {
        Self {
            mchid: mchid.into(),
            serial_no: serial_no.into(),
            key,
        }
    }

    /// The merchant id.
    pub fn mchid(&self) -> &str {
        &self.mchid
    }

    /// The merchant API certificate serial sent as `serial_no`.
    pub fn serial_no(&self) -> &str {
        &self.serial_no
    }

    /// SHA256withRSA of `message`, base64.
    pub fn sign(&self, message: &[u8]) -> Result<String, KeyError> {
        self.key.sign_base64(message)
    }

    /// The `Authorization` header value for one request, in the field order of the official
    /// examples (mchid, nonce_str, signature, timestamp, serial_no).
    pub fn authorization(
        &self,
        method: &str,
        url: &str,
        timestamp: i64,
        nonce: &str,
        body: &[u8],
    ) -> Result<String, KeyError> {
        let signature = self.sign(&request_message(method, url, timestamp, nonce, body))?;
        Ok(format!(
            "{AUTH_SCHEME} mchid=\"{}\",nonce_str=\"{nonce}\",signature=\"{signature}\",timestamp=\"{timestamp}\",serial_no=\"{}\"",
            self.mchid, self.serial_no
        ))
    }

    /// `wx.requestPayment` / `WeixinJSBridge` parameters for a JSAPI or mini-program prepay:
    /// `paySign` over `appId\ntimeStamp\nnonceStr\nprepay_id=…\n`; `signType` is not signed.
    pub fn jsapi_pay_params(
        &self,
        appid: &str,
        prepay_id: &str,
        timestamp: i64,
        nonce: &str,
    ) -> Result<PayParams, KeyError> {
        let package = format!("prepay_id={prepay_id}");
        let time_stamp = timestamp.to_string();
        let pay_sign = self.sign(&lines(&[appid, &time_stamp, nonce, &package]))?;
        Ok(PayParams::WechatJsapi {
            app_id: appid.to_owned(),
            time_stamp,
            nonce_str: nonce.to_owned(),
            package,
            sign_type: "RSA".to_owned(),
            pay_sign,
        })
    }

    /// OpenSDK `PayReq` parameters for an APP prepay: `sign` over
    /// `appid\ntimestamp\nnoncestr\nprepayid\n` (the bare prepay id; `package` is not signed).
    pub fn app_pay_params(
        &self,
        appid: &str,
        prepay_id: &str,
        timestamp: i64,
        nonce: &str,
    ) -> Result<PayParams, KeyError> {
        let timestamp = timestamp.to_string();
        let sign = self.sign(&lines(&[appid, &timestamp, nonce, prepay_id]))?;
        Ok(PayParams::WechatApp {
            appid: appid.to_owned(),
            partnerid: self.mchid.clone(),
            prepayid: prepay_id.to_owned(),
            package: "Sign=WXPay".to_owned(),
            noncestr: nonce.to_owned(),
            timestamp,
            sign,
        })
    }
}

/// Joins `parts` with `\n`, ending with `\n`.
pub fn lines(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for part in parts {
        out.extend_from_slice(part.as_bytes());
        out.push(b'\n');
    }
    out
}

/// The five fields of an `Authorization` header, as the sandbox reads a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationFields {
    /// `mchid`.
    pub mchid: String,
    /// `serial_no`: the merchant certificate serial.
    pub serial_no: String,
    /// `nonce_str`.
    pub nonce_str: String,
    /// `timestamp`, as sent.
    pub timestamp: String,
    /// `signature`, base64.
    pub signature: String,
}

/// Parses `WECHATPAY2-SHA256-RSA2048 k="v",…` in any field order; `None` when the scheme is
/// wrong, a field is missing, repeated or unquoted.
pub fn parse_authorization(header: &str) -> Option<AuthorizationFields> {
    let rest = header.strip_prefix(AUTH_SCHEME)?.strip_prefix(' ')?;
    let mut fields: [Option<String>; 5] = Default::default();
    for pair in rest.split(',') {
        let (key, value) = pair.trim().split_once('=')?;
        let value = value.strip_prefix('"')?.strip_suffix('"')?;
        let slot = match key {
            "mchid" => 0,
            "serial_no" => 1,
            "nonce_str" => 2,
            "timestamp" => 3,
            "signature" => 4,
            _ => continue,
        };
        if fields[slot].replace(value.to_owned()).is_some() {
            return None;
        }
    }
    let [mchid, serial_no, nonce_str, timestamp, signature] = fields;
    Some(AuthorizationFields {
        mchid: mchid?,
        serial_no: serial_no?,
        nonce_str: nonce_str?,
        timestamp: timestamp?,
        signature: signature?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_32_upper_alphanumerics_and_differ() {
        let a = nonce();
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        );
        assert_ne!(a, nonce());
    }

    #[test]
    fn a_get_message_ends_with_an_empty_body_line() {
        assert_eq!(
            request_message("GET", "/v3/certificates", 1, "N", b""),
            b"GET\n/v3/certificates\n1\nN\n\n"
        );
    }

    #[test]
    fn authorization_parses_in_either_field_order_and_refuses_repeats() {
        let official = "WECHATPAY2-SHA256-RSA2048 mchid=\"1\",nonce_str=\"n\",signature=\"s\",timestamp=\"2\",serial_no=\"S\"";
        let axios = "WECHATPAY2-SHA256-RSA2048 mchid=\"1\",serial_no=\"S\",timestamp=\"2\",nonce_str=\"n\",signature=\"s\"";
        assert_eq!(parse_authorization(official), parse_authorization(axios));
        assert_eq!(parse_authorization(official).unwrap().serial_no, "S");
        assert_eq!(
            parse_authorization(
                "WECHATPAY2-SHA256-RSA2048 mchid=\"1\",mchid=\"2\",nonce_str=\"n\",signature=\"s\",timestamp=\"2\",serial_no=\"S\""
            ),
            None
        );
        assert_eq!(parse_authorization("Bearer x"), None);
        assert_eq!(
            parse_authorization("WECHATPAY2-SHA256-RSA2048 mchid=\"1\""),
            None
        );
    }
}
