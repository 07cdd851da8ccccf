use paygate_alipay::AlipayError;
use paygate_alipay::keys::{SigningKey, VerifyingKey};

use crate::support::{load_json, read_text, str_field};

#[test]
fn every_app_private_key_encoding_gives_the_signature_the_sdks_agreed_on() {
    let vectors = load_json("app_pay_order_string.json");
    let content = str_field(&vectors, "expected_string_to_sign");
    let expected = str_field(&vectors, "expected_sign");
    for file in [
        "keys/app_private_pkcs1.pem",
        "keys/app_private_pkcs8.pem",
        "keys/app_private_pkcs1.b64",
        "keys/app_private_pkcs8.b64",
    ] {
        let key = SigningKey::parse(&read_text(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(
            key.sign_base64(content.as_bytes()).unwrap(),
            expected,
            "{file}"
        );
    }
}

#[test]
fn public_keys_load_from_pem_and_bare_base64() {
    let vectors = load_json("app_pay_order_string.json");
    let content = str_field(&vectors, "expected_string_to_sign");
    let sign = str_field(&vectors, "expected_sign");
    for file in ["keys/app_public.pem", "keys/app_public.b64"] {
        let key = VerifyingKey::parse(&read_text(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        key.verify_base64(content.as_bytes(), sign).unwrap();
    }
    for file in ["keys/alipay_public.pem", "keys/alipay_public.b64"] {
        let key = VerifyingKey::parse(&read_text(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(
            key.verify_base64(content.as_bytes(), sign),
            Err(AlipayError::BadSignature),
            "{file} is Alipay's key, not the app's"
        );
    }
}

#[test]
fn alipay_and_wrong_private_keys_load_in_every_shipped_encoding() {
    for file in [
        "keys/alipay_private_pkcs1.pem",
        "keys/alipay_private_pkcs8.pem",
        "keys/alipay_private_pkcs1.b64",
        "keys/alipay_private_pkcs8.b64",
        "keys/wrong_private_pkcs1.pem",
        "keys/wrong_private_pkcs8.pem",
    ] {
        SigningKey::parse(&read_text(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}

#[test]
fn a_pkcs1_public_key_is_refused_with_the_expected_format_named() {
    for file in ["keys/app_public_pkcs1.pem", "keys/alipay_public_pkcs1.b64"] {
        let text = read_text(file);
        let err = VerifyingKey::parse(&text).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("SubjectPublicKeyInfo"),
            "{file}: {message}"
        );
        assert!(message.contains("PKCS#1 RSAPublicKey"), "{file}: {message}");
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(!message.contains(&body[..20]), "{file}: key bytes leaked");
    }
}

#[test]
fn swapping_private_and_public_keys_gives_a_clear_error() {
    let err = SigningKey::parse(&read_text("keys/app_public.pem")).unwrap_err();
    assert!(err.to_string().contains("public key"), "{err}");
    let err = VerifyingKey::parse(&read_text("keys/app_private_pkcs8.b64")).unwrap_err();
    assert!(err.to_string().contains("private key"), "{err}");
    let err = VerifyingKey::parse(&read_text("certs/appCertPublicKey_test.crt")).unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[test]
fn keys_are_redacted_in_debug_output() {
    let text = read_text("keys/app_private_pkcs1.b64");
    let debug = format!("{:?}", SigningKey::parse(&text).unwrap());
    assert!(debug.contains("redacted"), "{debug}");
    assert!(!debug.contains(&text.trim()[..16]), "{debug}");
}
