//! The `alipay.trade.app.pay` orderString: the signed parameter string a native app hands to
//! the Alipay SDK (`payV2`). There is no HTTP call; the server only signs.
//!
//! Every value is form-encoded exactly once with Java `URLEncoder` rules, so a space becomes
//! `+`. That is the encoding of Alipay's Java, PHP and official Python SDKs, the majority of
//! what Alipay receives; the Node SDK's `%20` is accepted by the same decoder. Parameters are
//! emitted in sorted order with `sign` among them; order does not matter to the receiver,
//! which decodes, re-sorts and verifies over the decoded values.

use crate::AlipayError;
use crate::form::{decode_unique_form, encode_form};
use crate::keys::{SigningKey, VerifyingKey};
use crate::request::CommonParams;
use crate::sign::{Params, SignScope, verify_params};

/// The product code of app pay.
pub const APP_PAY_PRODUCT_CODE: &str = "QUICK_MSECURITY_PAY";
/// The API name of app pay.
pub const APP_PAY_METHOD: &str = "alipay.trade.app.pay";

/// Form-encodes signed parameters into an orderString.
pub fn encode_order_string(signed: &Params) -> String {
    encode_form(signed.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// Signs `biz_content` with the common parameters and returns the full orderString.
pub fn build_order_string(
    common: &CommonParams,
    biz_content: &str,
    key: &SigningKey,
) -> Result<String, AlipayError> {
    Ok(encode_order_string(
        &common.signed_params(biz_content, key)?,
    ))
}

/// Decodes an orderString (or any signed request query) into its parameters, once, refusing
/// repeated keys. Used by the sandbox and by tests to read what a client would send.
pub fn parse_order_string(order_string: &str) -> Result<Params, AlipayError> {
    decode_unique_form(order_string.as_bytes())
}

/// Decodes an orderString and checks its request signature with the app's public key, as
/// Alipay does on receipt; returns the decoded parameters.
pub fn verify_order_string(
    order_string: &str,
    app_key: &VerifyingKey,
) -> Result<Params, AlipayError> {
    let params = parse_order_string(order_string)?;
    verify_params(&params, SignScope::Request, app_key)?;
    Ok(params)
}
