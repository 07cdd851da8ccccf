//! `certificates.json`: the `/v3/certificates` answer decrypts to both listed certificates,
//! each with the listed serial, and its signature verifies with the platform certificate.

use paygate_wechat_v3::aead::ApiV3Key;
use paygate_wechat_v3::certificates::{CertificatesError, decrypt_certificates};
use paygate_wechat_v3::verify::{PlatformCertificate, SignatureHeaders, WechatpayKeys};

use crate::vectors::{cases, read, text};

#[test]
fn both_certificates_decrypt_with_their_listed_serials() {
    let case = cases("certificates.json").remove(0);
    let response = &case["response"];
    let body = text(response, "body");
    let apiv3 = ApiV3Key::new(&read("keys/apiv3_key.txt")).unwrap();
    let downloaded = decrypt_certificates(body.as_bytes(), &apiv3).unwrap();
    let expected = case["expected"]["decrypted"].as_array().unwrap();
    assert_eq!(downloaded.len(), expected.len());
    for (got, want) in downloaded.iter().zip(expected) {
        assert_eq!(got.certificate.serial, text(want, "serial_no"));
        assert_eq!(got.pem, read(text(want, "pem_file")));
        assert!(got.effective_time.is_some() && got.expire_time.is_some());
    }
    // The answer itself is signed by the first certificate.
    let keys = WechatpayKeys::new();
    keys.add_certificates([
        PlatformCertificate::from_pem(&read("keys/platform_cert.pem")).unwrap(),
    ]);
    let pairs: Vec<(&str, &str)> = response["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
        .collect();
    let headers = SignatureHeaders::from_pairs(pairs).unwrap();
    assert_eq!(
        keys.verify(
            &headers,
            body.as_bytes(),
            case["verify_at"].as_i64().unwrap()
        ),
        Ok(())
    );
    // A wrong APIv3 key cannot read the list.
    let wrong = ApiV3Key::new("0123456789abcdef0123456789abcdef").unwrap();
    assert!(matches!(
        decrypt_certificates(body.as_bytes(), &wrong),
        Err(CertificatesError::Decrypt { .. })
    ));
}

#[test]
fn a_certificate_listed_under_another_serial_is_refused() {
    let case = cases("certificates.json").remove(0);
    let body = text(&case["response"], "body").replacen(
        "3A414D8EE28675E1BDBF02E87A0B7F366202CC00",
        "78807E4FFB6ACC9303C16DDC7182294E37BEA45C",
        1,
    );
    let apiv3 = ApiV3Key::new(&read("keys/apiv3_key.txt")).unwrap();
    assert!(matches!(
        decrypt_certificates(body.as_bytes(), &apiv3),
        Err(CertificatesError::SerialMismatch { .. })
    ));
}
