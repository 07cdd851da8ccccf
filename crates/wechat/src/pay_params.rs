//! The parameters the buyer's client needs after `unifiedorder` (protocol notes §4). Each is a
//! second signature, distinct from the order's: reusing the unifiedorder `sign` fails
//! (node-tenpay#105).
//!
//! * JSAPI and mini-program: `appId`, `timeStamp`, `nonceStr`, `package=prepay_id=…`,
//!   `signType`, signed into `paySign`. Capital I and S matter: signing `timestamp` (the
//!   `wx.chooseWXPay` argument name) is the classic mistake (vector P04).
//! * APP: `appid`, `partnerid`, `prepayid`, `package=Sign=WXPay`, `noncestr`, `timestamp`, all
//!   lowercase, signed into `sign`; no sign type is signed, even for HMAC (vector A02).

use paygate_core::PayParams;
use rand::Rng;
use rand::distr::Alphanumeric;

use crate::sign::{self, ApiKey, SignType};

/// The length of generated nonces; `nonce_str` allows at most 32 characters.
pub const NONCE_LEN: usize = 32;

/// A fresh 32-character alphanumeric nonce from the thread-local CSPRNG (ChaCha, seeded from the
/// OS): nonces make every signed request and pay-param set unique.
pub fn nonce_str() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(NONCE_LEN)
        .map(char::from)
        .collect()
}

/// Signs the `wx.requestPayment` / `WeixinJSBridge` fields for `prepay_id`.
pub fn jsapi(
    appid: &str,
    prepay_id: &str,
    key: &ApiKey,
    sign_type: SignType,
    timestamp: i64,
    nonce: &str,
) -> PayParams {
    let time_stamp = timestamp.to_string();
    let package = format!("prepay_id={prepay_id}");
    let pay_sign = sign::sign_pairs(
        [
            ("appId", appid),
            ("timeStamp", time_stamp.as_str()),
            ("nonceStr", nonce),
            ("package", package.as_str()),
            ("signType", sign_type.as_str()),
        ],
        key,
        sign_type,
    );
    PayParams::WechatJsapi {
        app_id: appid.to_owned(),
        time_stamp,
        nonce_str: nonce.to_owned(),
        package,
        sign_type: sign_type.as_str().to_owned(),
        pay_sign,
    }
}

/// The literal `package` value of APP pay.
pub const APP_PACKAGE: &str = "Sign=WXPay";

/// Signs the APP SDK's `PayReq` fields for `prepay_id`.
pub fn app(
    appid: &str,
    mch_id: &str,
    prepay_id: &str,
    key: &ApiKey,
    sign_type: SignType,
    timestamp: i64,
    nonce: &str,
) -> PayParams {
    let timestamp = timestamp.to_string();
    let sign = sign::sign_pairs(
        [
            ("appid", appid),
            ("partnerid", mch_id),
            ("prepayid", prepay_id),
            ("package", APP_PACKAGE),
            ("noncestr", nonce),
            ("timestamp", timestamp.as_str()),
        ],
        key,
        sign_type,
    );
    PayParams::WechatApp {
        appid: appid.to_owned(),
        partnerid: mch_id.to_owned(),
        prepayid: prepay_id.to_owned(),
        package: APP_PACKAGE.to_owned(),
        noncestr: nonce.to_owned(),
        timestamp,
        sign,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_32_alphanumerics_and_do_not_repeat() {
        let a = nonce_str();
        let b = nonce_str();
        assert_eq!(a.len(), NONCE_LEN);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
