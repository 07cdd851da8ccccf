//! Genuine paid notifies, signed the way WeChat Pay v2 and Alipay sign them, with the
//! sandbox's keys. The field sets mirror what the sandbox itself sends, so the gateway's
//! verify and match steps do the same work as in production.

use std::fmt;
use std::path::Path;

use chrono::{FixedOffset, Offset, Utc};
use paygate_alipay::keys::SigningKey;
use paygate_alipay::notify::build_notify_body;
use paygate_core::Fen;
use paygate_wechat::sign::{ApiKey, Params as WechatParams, SignType, sign_in_place};
use serde::Deserialize;

use crate::LoadError;

/// The gateway's app name for the embedded sandbox's merchant (`/notify/{provider}/sandbox`).
pub const SANDBOX_APP: &str = "sandbox";

/// The buyer every WeChat load order is placed for.
pub const OPENID: &str = "o_loadgen_buyer";

/// The part of the sandbox's keys file (`paygate-sandbox.json`) a notify signer needs.
#[derive(Deserialize)]
pub struct SandboxKeys {
    wechat_appid: String,
    wechat_mch_id: String,
    wechat_api_key: String,
    alipay_app_id: String,
    alipay_seller_id: String,
    /// The sandbox's "Alipay" private key: what Alipay signs notifies with.
    alipay_platform_private_key: String,
}

impl fmt::Debug for SandboxKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxKeys")
            .field("wechat_appid", &self.wechat_appid)
            .field("wechat_mch_id", &self.wechat_mch_id)
            .field("alipay_app_id", &self.alipay_app_id)
            .finish_non_exhaustive()
    }
}

impl SandboxKeys {
    /// Reads the keys file the embedded sandbox wrote.
    pub fn load(path: &Path) -> Result<SandboxKeys, LoadError> {
        let fail = |reason: String| LoadError::SandboxKeys {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| fail(e.to_string()))
    }
}

/// Signs notifies for orders the load generator created.
pub struct NotifySigner {
    keys: SandboxKeys,
    wechat_key: ApiKey,
    alipay_key: SigningKey,
}

impl fmt::Debug for NotifySigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifySigner")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

fn china_time() -> chrono::DateTime<FixedOffset> {
    let offset = FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| Utc.fix());
    Utc::now().with_timezone(&offset)
}

impl NotifySigner {
    /// Parses the keys once (RSA key parsing stays out of the per-notify work).
    pub fn new(keys: SandboxKeys) -> Result<NotifySigner, LoadError> {
        let alipay_key = SigningKey::parse(&keys.alipay_platform_private_key)
            .map_err(|e| LoadError::Sign(e.to_string()))?;
        let wechat_key = ApiKey::new(keys.wechat_api_key.clone());
        Ok(NotifySigner {
            keys,
            wechat_key,
            alipay_key,
        })
    }

    /// The XML body WeChat posts when the mini-program order `out_trade_no` is paid,
    /// HMAC-SHA256-signed as the gateway's sandbox app expects.
    pub fn wechat_paid(&self, out_trade_no: &str, amount: Fen) -> Result<String, LoadError> {
        let fee = amount.get().to_string();
        let mut params: WechatParams = [
            ("appid", self.keys.wechat_appid.clone()),
            ("bank_type", "CFT".to_owned()),
            ("cash_fee", fee.clone()),
            ("fee_type", "CNY".to_owned()),
            ("is_subscribe", "N".to_owned()),
            ("mch_id", self.keys.wechat_mch_id.clone()),
            ("nonce_str", ulid::Ulid::new().to_string()),
            ("openid", OPENID.to_owned()),
            ("out_trade_no", out_trade_no.to_owned()),
            ("result_code", "SUCCESS".to_owned()),
            ("return_code", "SUCCESS".to_owned()),
            ("sign_type", SignType::HmacSha256.as_str().to_owned()),
            ("time_end", china_time().format("%Y%m%d%H%M%S").to_string()),
            ("total_fee", fee),
            ("trade_type", "JSAPI".to_owned()),
            (
                "transaction_id",
                format!("42{}", digits_of(out_trade_no, 26)),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        sign_in_place(&mut params, &self.wechat_key, SignType::HmacSha256);
        paygate_wechat::xml::write(&params).map_err(|e| LoadError::Sign(e.to_string()))
    }

    /// The form body Alipay posts (`trade_status_sync`, `TRADE_SUCCESS`) when the order
    /// `out_trade_no` is paid, RSA2-signed with the sandbox's platform key.
    pub fn alipay_paid(
        &self,
        out_trade_no: &str,
        amount: Fen,
        subject: &str,
    ) -> Result<String, LoadError> {
        let yuan = amount.to_yuan_string();
        let now = china_time().format("%Y-%m-%d %H:%M:%S").to_string();
        let params: paygate_alipay::sign::Params = [
            ("notify_time", now.clone()),
            ("notify_type", "trade_status_sync".to_owned()),
            ("notify_id", format!("2026{}", digits_of(out_trade_no, 28))),
            ("app_id", self.keys.alipay_app_id.clone()),
            ("auth_app_id", self.keys.alipay_app_id.clone()),
            ("charset", "utf-8".to_owned()),
            ("version", "1.0".to_owned()),
            ("sign_type", "RSA2".to_owned()),
            ("trade_no", format!("2026{}", digits_of(out_trade_no, 24))),
            ("out_trade_no", out_trade_no.to_owned()),
            ("buyer_id", "2088000000000099".to_owned()),
            ("buyer_logon_id", "159****5620".to_owned()),
            ("seller_id", self.keys.alipay_seller_id.clone()),
            ("seller_email", "sandbox-seller@example.com".to_owned()),
            ("trade_status", "TRADE_SUCCESS".to_owned()),
            ("total_amount", yuan.clone()),
            ("receipt_amount", yuan.clone()),
            ("invoice_amount", yuan.clone()),
            ("buyer_pay_amount", yuan.clone()),
            ("point_amount", "0.00".to_owned()),
            ("subject", subject.to_owned()),
            ("gmt_create", now.clone()),
            ("gmt_payment", now),
            (
                "fund_bill_list",
                format!(r#"[{{"amount":"{yuan}","fundChannel":"ALIPAYACCOUNT"}}]"#),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        build_notify_body(params, &self.alipay_key).map_err(|e| LoadError::Sign(e.to_string()))
    }
}

/// A provider-style numeric trade number derived from our order number, so each order gets
/// its own and repeats of one notify carry the same one (as provider retries do).
fn digits_of(text: &str, len: usize) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for byte in text.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        out.push_str(&format!("{:019}", hash % 10_000_000_000_000_000_000));
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use paygate_alipay::keys::VerifyingKey;

    /// The Alipay crate's vendored key pair stands in for the sandbox's platform key.
    fn vector_key(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../alipay/tests/data/vectors/alipay/keys")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn signer() -> NotifySigner {
        let keys = serde_json::json!({
            "wechat_appid": "wx1234567890abcdef",
            "wechat_mch_id": "1230000109",
            "wechat_api_key": "192006250b4c09247ec02edce69f6a2d",
            "alipay_app_id": "2021000000000001",
            "alipay_seller_id": "2088000000000001",
            "alipay_platform_private_key": vector_key("alipay_private_pkcs8.b64").trim(),
        });
        NotifySigner::new(serde_json::from_value(keys).unwrap()).unwrap()
    }

    #[test]
    fn alipay_notifies_verify_with_the_platform_public_key_and_carry_the_order() {
        let body = signer()
            .alipay_paid("lg_a_1", Fen::new(1999).unwrap(), "Oolong tea")
            .unwrap();
        let public = VerifyingKey::parse(&vector_key("alipay_public.pem")).unwrap();
        let notify = paygate_alipay::notify::verify_trade_notify(body.as_bytes(), &public).unwrap();
        assert_eq!(notify.out_trade_no, "lg_a_1");
        assert_eq!(notify.seller_id.as_deref(), Some("2088000000000001"));
        assert_eq!(notify.total_amount.fen(), Some(Fen::new(1999).unwrap()));
    }

    #[test]
    fn wechat_notifies_verify_with_the_api_key_as_hmac_sha256() {
        let body = signer()
            .wechat_paid("lg_w_1", Fen::new(1999).unwrap())
            .unwrap();
        let fields = paygate_wechat::xml::parse(body.as_bytes()).unwrap();
        let key = ApiKey::new("192006250b4c09247ec02edce69f6a2d");
        assert_eq!(
            paygate_wechat::sign::verify_received(&fields, &key, SignType::Md5),
            Some(SignType::HmacSha256)
        );
        assert_eq!(fields["total_fee"], "1999");
        assert_eq!(fields["out_trade_no"], "lg_w_1");
        let wrong = ApiKey::new("0".repeat(32));
        assert_eq!(
            paygate_wechat::sign::verify_received(&fields, &wrong, SignType::Md5),
            None
        );
    }

    #[test]
    fn derived_trade_numbers_have_the_requested_length_and_only_digits() {
        let number = digits_of("lg_w_1", 26);
        assert_eq!(number.len(), 26);
        assert!(number.bytes().all(|b| b.is_ascii_digit()), "{number}");
        assert_ne!(digits_of("lg_w_1", 26), digits_of("lg_w_2", 26));
    }
}
