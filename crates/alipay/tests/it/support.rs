//! Loading the vendored vectors; every loader fails loudly on a missing file or an empty case
//! list, so a vector file cannot silently stop being exercised.

use std::path::PathBuf;

use paygate_alipay::keys::{SigningKey, VerifyingKey};
use serde_json::Value;

pub fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/vectors/alipay")
}

pub fn read_text(relative: &str) -> String {
    let path = vectors_dir().join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("vector file {} missing: {e}", path.display()))
}

pub fn load_json(file: &str) -> Value {
    serde_json::from_str(&read_text(file)).unwrap_or_else(|e| panic!("{file} is not JSON: {e}"))
}

/// The `cases` array of a vector file; panics when it is missing or empty.
pub fn cases(file: &str) -> Vec<Value> {
    let cases = load_json(file)["cases"]
        .as_array()
        .unwrap_or_else(|| panic!("{file} has no cases array"))
        .clone();
    assert!(!cases.is_empty(), "{file} has zero cases");
    cases
}

/// The case of `file` whose `key` field equals `value`; panics when there is none.
pub fn case_where(file: &str, key: &str, value: &str) -> Value {
    cases(file)
        .into_iter()
        .find(|c| c[key] == value)
        .unwrap_or_else(|| panic!("{file} has no case with {key} = {value}"))
}

pub fn str_field<'a>(case: &'a Value, field: &str) -> &'a str {
    case[field]
        .as_str()
        .unwrap_or_else(|| panic!("case {} lacks string {field}", case["name"]))
}

pub fn app_signing_key() -> SigningKey {
    SigningKey::parse(&read_text("keys/app_private_pkcs8.pem")).unwrap()
}

pub fn app_verifying_key() -> VerifyingKey {
    VerifyingKey::parse(&read_text("keys/app_public.pem")).unwrap()
}

pub fn alipay_signing_key() -> SigningKey {
    SigningKey::parse(&read_text("keys/alipay_private_pkcs1.pem")).unwrap()
}

pub fn alipay_verifying_key() -> VerifyingKey {
    VerifyingKey::parse(&read_text("keys/alipay_public.pem")).unwrap()
}
