use paygate_alipay::cert::{
    CertMaterial, cert_public_key, cert_sn, cert_sn_preimage, root_cert_sn,
};
use paygate_alipay::keys::VerifyingKey;

use crate::support::{case_where, cases, read_text, str_field};

const FILE: &str = "cert_sn.json";

#[test]
fn every_certificate_gets_the_sn_of_the_java_and_node_rule() {
    for case in cases(FILE) {
        let file = str_field(&case, "file");
        let pem = read_text(&format!("certs/{file}"));
        let expected = str_field(&case, "expected_sn");
        let ours = if expected.contains('_') || file.starts_with("alipayRootCert") {
            root_cert_sn(&pem)
        } else {
            cert_sn("test", &pem)
        }
        .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(ours, expected, "{file}");
        // Where the libraries disagree, the expected SN is the Node/Java one.
        let node = case["node_official"]["sn"]
            .as_str()
            .or(case["node_official"]["root_sn"].as_str());
        assert_eq!(node, Some(expected), "{file}");
    }
}

#[test]
fn a_single_rsa_root_is_its_own_root_sn() {
    let case = case_where(FILE, "file", "root_rsa.crt");
    let pem = read_text("certs/root_rsa.crt");
    assert_eq!(root_cert_sn(&pem).unwrap(), str_field(&case, "expected_sn"));
}

#[test]
fn an_ec_only_bundle_has_no_root_sn() {
    let err = root_cert_sn(&read_text("certs/root_ec.crt")).unwrap_err();
    assert!(err.to_string().contains("no RSA-signed root"), "{err}");
}

#[test]
fn the_alipay_certificate_key_is_the_one_node_extracted() {
    let case = case_where(FILE, "file", "alipayCertPublicKey_RSA2_test.crt");
    let expected_key =
        VerifyingKey::parse(str_field(&case["node_official"], "public_key_b64")).unwrap();
    let from_cert = cert_public_key(
        "alipay_cert",
        &read_text("certs/alipayCertPublicKey_RSA2_test.crt"),
    )
    .unwrap();
    assert_eq!(from_cert.spki_der(), expected_key.spki_der());
}

#[test]
fn sn_preimages_are_the_rfc2253_issuer_and_decimal_serial() {
    let mut checked = 0;
    for case in cases(FILE) {
        let Some(preimage) = case["md5_preimage"].as_str() else {
            continue;
        };
        let file = str_field(&case, "file");
        let pem = read_text(&format!("certs/{file}"));
        assert_eq!(cert_sn_preimage("test", &pem).unwrap(), preimage, "{file}");
        checked += 1;
    }
    assert_eq!(checked, 3, "the vectors list three preimages");
}

#[test]
fn cert_material_gathers_both_sns_and_the_key() {
    let material = CertMaterial::from_pems(
        &read_text("certs/appCertPublicKey_test.crt"),
        &read_text("certs/alipayCertPublicKey_RSA2_test.crt"),
        &read_text("certs/alipayRootCert_test.crt"),
    )
    .unwrap();
    assert_eq!(material.app_cert_sn, "7e86c89fb5029c55d73c8bcfe631594b");
    assert_eq!(material.alipay_cert_sn, "a5f759ef75bad2f490474659146cecb0");
    assert_eq!(
        material.alipay_root_cert_sn,
        "3d8f8237d0ae9d3d486306e0d4a7270d_ba2bbc4b491c92c63de16ccc7195ad01"
    );
}
