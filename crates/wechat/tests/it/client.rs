//! The API client against the fake WeChat server: signed requests, verified responses, the
//! error table, the timeout path, and refunds with a PEM or `.p12` merchant certificate.

use chrono::{TimeZone, Utc};
use paygate_core::{
    Fen, OutRefundNo, OutTradeNo, ProviderError, RefundQuery, RefundRequest, RefundState,
    TradeState,
};
use paygate_wechat::client::{ApiClient, ApiError, TradeRef, TradeType, UnifiedOrder};
use paygate_wechat::config::{MerchantCertificate, WechatConfig};
use paygate_wechat::sign::SignType;
use paygate_wechat::xml::XmlError;
use secrecy::SecretString;

use crate::fake_wechat::{API_KEY, APPID, FakeWechat, MCH_ID};

pub fn config(server: &FakeWechat) -> WechatConfig {
    let mut config = WechatConfig::new(APPID, MCH_ID, API_KEY);
    config.api_base = server.base_url.clone();
    config.request_timeout_ms = 500;
    config
}

fn order(out_trade_no: &str) -> UnifiedOrder {
    UnifiedOrder {
        trade_type: TradeType::Jsapi,
        body: "茶叶".into(),
        out_trade_no: out_trade_no.into(),
        total_fee: Fen::new(1999).unwrap(),
        fee_type: None,
        spbill_create_ip: "123.12.12.123".into(),
        notify_url: "https://example.com/notify".into(),
        openid: Some("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".into()),
        product_id: None,
        scene_info: None,
        attach: Some("a]]>b".into()),
        time_start: None,
        time_expire: Some(Utc.with_ymd_and_hms(2024, 1, 1, 16, 30, 0).unwrap()),
    }
}

#[tokio::test]
async fn a_unified_order_is_signed_sent_and_its_verified_prepay_id_returned() {
    let server = FakeWechat::start().await;
    let client = ApiClient::new(&config(&server)).unwrap();
    let prepay = client.unified_order(&order("order_ok_01")).await.unwrap();
    assert_eq!(prepay.prepay_id, "wx201410272009395522657a690389285100");
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert!(sent.signature_ok);
    assert_eq!(sent.path, "/pay/unifiedorder");
    assert_eq!(sent.fields["trade_type"], "JSAPI");
    assert_eq!(sent.fields["total_fee"], "1999");
    // 16:30 UTC is 00:30 the next day in Beijing.
    assert_eq!(sent.fields["time_expire"], "20240102003000");
    assert_eq!(sent.fields["attach"], "a]]>b");
    assert_eq!(sent.fields["nonce_str"].len(), 32);
    assert!(!sent.fields.contains_key("sign_type"));
}

#[tokio::test]
async fn hmac_apps_announce_their_algorithm_and_verify_hmac_responses() {
    let server = FakeWechat::start().await;
    let mut config = config(&server);
    config.sign_type = SignType::HmacSha256;
    let client = ApiClient::new(&config).unwrap();
    client.unified_order(&order("order_ok_02")).await.unwrap();
    let sent = &server.requests()[0];
    assert!(sent.signature_ok);
    assert_eq!(sent.fields["sign_type"], "HMAC-SHA256");
    assert_eq!(sent.fields["sign"].len(), 64);
}

#[tokio::test]
async fn native_and_h5_orders_return_their_urls() {
    let server = FakeWechat::start().await;
    let client = ApiClient::new(&config(&server)).unwrap();
    let mut native = order("order_ok_03");
    native.trade_type = TradeType::Native;
    native.openid = None;
    native.product_id = Some("order_ok_03".into());
    let result = client.unified_order(&native).await.unwrap();
    assert!(result.code_url.unwrap().starts_with("weixin://wxpay/"));
    let mut h5 = order("order_ok_04");
    h5.trade_type = TradeType::Mweb;
    h5.scene_info = Some(r#"{"h5_info":{"type":"Wap"}}"#.into());
    let result = client.unified_order(&h5).await.unwrap();
    assert!(result.mweb_url.unwrap().contains("checkmweb"));
}

#[tokio::test]
async fn a_forged_success_response_is_an_error_not_a_prepay_id() {
    let server = FakeWechat::start().await;
    let client = ApiClient::new(&config(&server)).unwrap();
    let error = client
        .unified_order(&order("order_forged"))
        .await
        .unwrap_err();
    assert_eq!(error, ApiError::BadSignature);
    assert!(matches!(
        ProviderError::from(error),
        ProviderError::UntrustedResponse(_)
    ));
}

#[tokio::test]
async fn fail_and_business_errors_keep_their_codes_and_retry_semantics() {
    let server = FakeWechat::start().await;
    let client = ApiClient::new(&config(&server)).unwrap();
    let fail = client
        .unified_order(&order("order_fail"))
        .await
        .unwrap_err();
    assert_eq!(fail, ApiError::ReturnFail("参数格式校验错误".into()));
    assert!(!fail.retryable());

    let system = client
        .unified_order(&order("order_syserr"))
        .await
        .unwrap_err();
    assert!(system.retryable());
    assert!(ProviderError::from(system).outcome_unknown());

    let used = client
        .unified_order(&order("order_used"))
        .await
        .unwrap_err();
    assert!(!used.retryable());
    assert!(matches!(
        ProviderError::from(used),
        ProviderError::Refused { ref code, retryable: false, .. } if code == "OUT_TRADE_NO_USED"
    ));

    let paid = client.close_order("order_paid").await.unwrap_err();
    assert_eq!(ProviderError::from(paid), ProviderError::AlreadyPaid);
}

#[tokio::test]
async fn an_oversized_answer_is_refused_unread() {
    let server = FakeWechat::start().await;
    let client = ApiClient::new(&config(&server)).unwrap();
    let error = client
        .unified_order(&order("order_huge"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ApiError::Xml(XmlError::TooLarge { .. })),
        "{error:?}"
    );
    assert!(matches!(
        ProviderError::from(error),
        ProviderError::UntrustedResponse(_)
    ));
}

#[tokio::test]
async fn a_request_signed_with_the_wrong_key_is_refused_by_the_server() {
    let server = FakeWechat::start().await;
    let mut config = config(&server);
    config.api_key = SecretString::from("Abcdefghijklmnopqrstuvwxyz012345".to_owned());
    let client = ApiClient::new(&config).unwrap();
    let error = client
        .unified_order(&order("order_ok_05"))
        .await
        .unwrap_err();
    assert_eq!(error, ApiError::ReturnFail("签名错误".into()));
    assert!(!server.requests()[0].signature_ok);
}

#[tokio::test]
async fn a_slow_answer_is_a_timeout_with_unknown_outcome() {
    let server = FakeWechat::start().await;
    let client = ApiClient::new(&config(&server)).unwrap();
    let error = client
        .unified_order(&order("order_slow"))
        .await
        .unwrap_err();
    assert_eq!(error, ApiError::Timeout);
    assert!(error.retryable());
    assert!(ProviderError::from(error).outcome_unknown());
}

#[tokio::test]
async fn an_unreachable_server_is_an_unknown_outcome() {
    // A port that was just free and is closed again: the connection is refused at once.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let mut config = WechatConfig::new(APPID, MCH_ID, API_KEY);
    config.api_base = format!("http://{address}");
    let client = ApiClient::new(&config).unwrap();
    let error = client
        .order_query(TradeRef::OutTradeNo("order_ok_06"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ApiError::Transport(_) | ApiError::Timeout),
        "{error:?}"
    );
    assert!(ProviderError::from(error).outcome_unknown());
}

#[tokio::test]
async fn orderquery_returns_the_verified_trade_facts() {
    let server = FakeWechat::start().await;
    let client = ApiClient::new(&config(&server)).unwrap();
    let facts = client
        .order_query(TradeRef::OutTradeNo("order_ok_07"))
        .await
        .unwrap();
    assert_eq!(facts.state, TradeState::Paid);
    assert_eq!(facts.amount, Some(Fen::new(1999).unwrap()));
    assert_eq!(facts.out_trade_no, "order_ok_07");
    assert_eq!(facts.app_id.as_deref(), Some(APPID));
    assert_eq!(
        facts.paid_at,
        Some(Utc.with_ymd_and_hms(2024, 1, 1, 4, 0, 0).unwrap())
    );
}

pub fn refund_request(out_refund_no: &str) -> RefundRequest {
    RefundRequest {
        out_trade_no: OutTradeNo::parse("order_ok_01").unwrap(),
        provider_trade_no: None,
        out_refund_no: OutRefundNo::parse(out_refund_no).unwrap(),
        refund_amount: Fen::new(500).unwrap(),
        order_amount: Fen::new(1999).unwrap(),
        reason: Some("退货".into()),
        notify_url: None,
    }
}

/// A throwaway merchant certificate made at test time.
pub fn throwaway_certificate() -> (String, String, Vec<u8>, Vec<u8>) {
    let certified = rcgen::generate_simple_self_signed(vec!["10000100".into()]).unwrap();
    (
        certified.cert.pem(),
        certified.signing_key.serialize_pem(),
        certified.cert.der().to_vec(),
        certified.signing_key.serialize_der(),
    )
}

#[tokio::test]
async fn refunds_need_the_merchant_certificate() {
    let server = FakeWechat::start().await;
    let client = ApiClient::new(&config(&server)).unwrap();
    let error = client
        .refund(&refund_request("refund_01"))
        .await
        .unwrap_err();
    assert_eq!(error, ApiError::MissingCertificate);
    assert!(matches!(
        ProviderError::from(error),
        ProviderError::Configuration(_)
    ));
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn a_refund_with_a_pem_certificate_is_accepted_as_processing() {
    let server = FakeWechat::start().await;
    let (cert_pem, key_pem, _, _) = throwaway_certificate();
    let mut config = config(&server);
    config.merchant_certificate = Some(MerchantCertificate::Pem {
        cert_pem,
        key_pem: SecretString::from(key_pem),
    });
    let client = ApiClient::new(&config).unwrap();
    let facts = client.refund(&refund_request("refund_02")).await.unwrap();
    assert_eq!(facts.state, RefundState::Processing);
    assert_eq!(facts.amount, Some(Fen::new(500).unwrap()));
    let sent = &server.requests()[0];
    assert_eq!(sent.path, "/secapi/pay/refund");
    assert!(sent.signature_ok);
    assert_eq!(sent.fields["out_refund_no"], "refund_02");
    assert_eq!(sent.fields["total_fee"], "1999");
    assert_eq!(sent.fields["refund_fee"], "500");
    assert_eq!(sent.fields["refund_desc"], "退货");
}

#[tokio::test]
async fn a_p12_certificate_with_its_password_loads_and_a_wrong_password_does_not() {
    let server = FakeWechat::start().await;
    let (_, _, cert_der, key_der) = throwaway_certificate();
    let chain = p12_keystore::PrivateKeyChain::new(
        vec![1u8; 20],
        p12_keystore::PrivateKey::from_der(&key_der).unwrap(),
        [p12_keystore::Certificate::from_der(&cert_der).unwrap()],
    );
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry(
        "apiclient",
        p12_keystore::KeyStoreEntry::PrivateKeyChain(chain),
    );
    let p12 = store.writer(MCH_ID).write().unwrap();

    let mut config = config(&server);
    config.merchant_certificate = Some(MerchantCertificate::Pkcs12 {
        der: p12.clone(),
        password: SecretString::from(MCH_ID.to_owned()),
    });
    let client = ApiClient::new(&config).unwrap();
    let facts = client.refund(&refund_request("refund_03")).await.unwrap();
    assert_eq!(facts.out_refund_no, "refund_03");

    config.merchant_certificate = Some(MerchantCertificate::Pkcs12 {
        der: p12,
        password: SecretString::from("wrong".to_owned()),
    });
    assert!(ApiClient::new(&config).is_err());
}

#[tokio::test]
async fn refundquery_reports_success_and_unknown_refunds() {
    let server = FakeWechat::start().await;
    let client = ApiClient::new(&config(&server)).unwrap();
    let query = |no: &str| RefundQuery {
        out_trade_no: OutTradeNo::parse("order_ok_01").unwrap(),
        out_refund_no: OutRefundNo::parse(no).unwrap(),
    };
    let facts = client.refund_query(&query("refund_04")).await.unwrap();
    assert_eq!(facts.state, RefundState::Succeeded);
    assert_eq!(facts.amount, Some(Fen::new(500).unwrap()));
    let missing = client.refund_query(&query("refund_missing")).await.unwrap();
    assert_eq!(missing.state, RefundState::NotFound);
}
