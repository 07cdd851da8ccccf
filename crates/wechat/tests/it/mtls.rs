//! Refunds over mutual TLS against a local HTTPS server that demands a client certificate, with
//! a throwaway CA, server and merchant certificate made by rcgen at test time.

use std::sync::{Arc, Mutex};

use paygate_core::Fen;
use paygate_wechat::client::{ApiClient, ApiError, TradeRef};
use paygate_wechat::config::{MerchantCertificate, WechatConfig};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use secrecy::SecretString;

use crate::client::refund_request;
use crate::fake_wechat::{API_KEY, APPID, FakeWechat, MCH_ID};

struct Pki {
    ca_pem: String,
    ca_der: Vec<u8>,
    server_der: Vec<u8>,
    server_key_der: Vec<u8>,
    merchant_pem: String,
    merchant_der: Vec<u8>,
    merchant_key_pem: String,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "paygate test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let mut server_params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = server_params.signed_by(&server_key, &ca).unwrap();

    let merchant_key = KeyPair::generate().unwrap();
    let mut merchant_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    merchant_params
        .distinguished_name
        .push(DnType::CommonName, MCH_ID);
    merchant_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let merchant = merchant_params.signed_by(&merchant_key, &ca).unwrap();

    Pki {
        ca_pem: ca.pem(),
        ca_der: ca.der().to_vec(),
        server_der: server.der().to_vec(),
        server_key_der: server_key.serialize_der(),
        merchant_pem: merchant.pem(),
        merchant_der: merchant.der().to_vec(),
        merchant_key_pem: merchant_key.serialize_pem(),
    }
}

fn tls_config(server: &FakeWechat, pki: &Pki) -> WechatConfig {
    let mut config = WechatConfig::new(APPID, MCH_ID, API_KEY);
    config.api_base = server.base_url.clone();
    config.extra_root_certificates_pem = Some(pki.ca_pem.clone());
    config.merchant_certificate = Some(MerchantCertificate::Pem {
        cert_pem: pki.merchant_pem.clone(),
        key_pem: SecretString::from(pki.merchant_key_pem.clone()),
    });
    config
}

/// A fresh PKI, a mutual-TLS fake server, what it saw, and a client configured for both.
async fn started() -> (Pki, FakeWechat, Arc<Mutex<Vec<Vec<u8>>>>, ApiClient) {
    let pki = pki();
    let (server, presented) = FakeWechat::start_mtls(
        pki.ca_der.clone(),
        pki.server_der.clone(),
        pki.server_key_der.clone(),
    )
    .await;
    let client = ApiClient::new(&tls_config(&server, &pki)).unwrap();
    (pki, server, presented, client)
}

#[tokio::test]
async fn a_refund_presents_the_merchant_certificate_to_the_server() {
    let (pki, server, presented, client) = started().await;
    let facts = client.refund(&refund_request("refund_21")).await.unwrap();
    assert_eq!(facts.amount, Some(Fen::new(500).unwrap()));
    assert_eq!(*presented.lock().unwrap(), vec![pki.merchant_der]);
    assert!(server.requests()[0].signature_ok);
}

#[tokio::test]
async fn calls_without_the_certificate_do_not_get_through_a_mutual_tls_server() {
    let (_, server, presented, client) = started().await;
    // Ordinary calls use the client without the merchant certificate.
    let error = client
        .order_query(TradeRef::OutTradeNo("order_ok_22"))
        .await
        .unwrap_err();
    assert!(matches!(error, ApiError::Transport(_)), "{error:?}");
    assert!(presented.lock().unwrap().is_empty());
    assert!(server.requests().is_empty());
}
