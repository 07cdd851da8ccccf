//! The `Provider` implementation end to end against the fake gateway.

use chrono::{TimeZone, Utc};
use paygate_alipay::order_string::verify_order_string;
use paygate_alipay::{Alipay, AlipayConfig, AlipayTrust, CertSource, DEFAULT_GATEWAY_URL};
use paygate_core::{
    CallbackPurpose, Channel, CreatePayment, Currency, Fen, InboundCallback, Notice, NotifyError,
    OutRefundNo, OutTradeNo, PayParams, Provider, ProviderError, RefundQuery, RefundRequest,
    RefundState, TradeRef, TradeState,
};
use secrecy::SecretString;

use crate::fake_gateway::{FakeGateway, Reply};
use crate::support::{app_verifying_key, case_where, cases, read_text, str_field, vectors_dir};

const ALL_CHANNELS: [Channel; 5] = [
    Channel::App,
    Channel::Wap,
    Channel::Page,
    Channel::Precreate,
    Channel::MiniProgram,
];

fn config(gateway_url: &str) -> AlipayConfig {
    AlipayConfig {
        app_id: "2021000000000001".into(),
        seller_id: "2088102177000000".into(),
        app_private_key: SecretString::from(read_text("keys/app_private_pkcs1.b64")),
        trust: AlipayTrust::PublicKey {
            alipay_public_key: read_text("keys/alipay_public.b64"),
        },
        gateway_url: gateway_url.into(),
        timeout_secs: 5,
        channels: ALL_CHANNELS.to_vec(),
        wap_quit_url: Some("https://merchant.example.com/cart".into()),
    }
}

fn cert_config(gateway_url: &str) -> AlipayConfig {
    let cert = |file: &str| CertSource::Path {
        path: vectors_dir().join("certs").join(file),
    };
    AlipayConfig {
        trust: AlipayTrust::Certificate {
            app_cert: cert("appCertPublicKey_test.crt"),
            alipay_cert: cert("alipayCertPublicKey_RSA2_test.crt"),
            alipay_root_cert: cert("alipayRootCert_test.crt"),
        },
        ..config(gateway_url)
    }
}

fn payment(channel: Channel) -> CreatePayment {
    CreatePayment {
        channel,
        out_trade_no: OutTradeNo::parse("ORDER_20240102_0001").unwrap(),
        amount: Fen::new(1999).unwrap(),
        currency: Currency::Cny,
        subject: "测试商品 Test+1 & 2=2 /x".into(),
        description: Some("a+b & c=d".into()),
        payer_id: None,
        client_ip: None,
        // 2024-01-02 11:30:00 in China.
        expires_at: Utc.with_ymd_and_hms(2024, 1, 2, 3, 30, 0).unwrap(),
        notify_url: "https://merchant.example.com/alipay/notify".into(),
        return_url: Some("https://merchant.example.com/paid".into()),
    }
}

fn biz_of(params: &paygate_alipay::sign::Params) -> serde_json::Value {
    serde_json::from_str(&params["biz_content"]).unwrap()
}

#[tokio::test]
async fn app_pay_returns_an_order_string_the_app_public_key_verifies() {
    let alipay = Alipay::new(config(DEFAULT_GATEWAY_URL)).unwrap();
    let created = alipay.create_payment(&payment(Channel::App)).await.unwrap();
    let PayParams::AlipayOrderString { order_string } = created.pay_params else {
        panic!("app pay must give an orderString");
    };
    let params = verify_order_string(&order_string, &app_verifying_key()).unwrap();
    assert_eq!(params["method"], "alipay.trade.app.pay");
    assert_eq!(params["sign_type"], "RSA2");
    assert_eq!(
        params["notify_url"],
        "https://merchant.example.com/alipay/notify"
    );
    let biz = biz_of(&params);
    assert_eq!(biz["total_amount"], "19.99");
    assert_eq!(biz["product_code"], "QUICK_MSECURITY_PAY");
    assert_eq!(biz["time_expire"], "2024-01-02 11:30:00");
    assert_eq!(biz["subject"], "测试商品 Test+1 & 2=2 /x");
    assert_eq!(biz["body"], "a+b & c=d");
}

#[tokio::test]
async fn wap_and_page_pay_give_signed_redirect_urls_without_calling_alipay() {
    let gateway = FakeGateway::start(Reply::HttpError(500)).await;
    let alipay = Alipay::new(config(&gateway.url)).unwrap();
    for (channel, method, product_code) in [
        (Channel::Wap, "alipay.trade.wap.pay", "QUICK_WAP_WAY"),
        (
            Channel::Page,
            "alipay.trade.page.pay",
            "FAST_INSTANT_TRADE_PAY",
        ),
    ] {
        let created = alipay.create_payment(&payment(channel)).await.unwrap();
        let PayParams::RedirectUrl { url } = created.pay_params else {
            panic!("{channel} must give a redirect URL");
        };
        let query = url.strip_prefix(&format!("{}?", gateway.url)).unwrap();
        let params = verify_order_string(query, &app_verifying_key()).unwrap();
        assert_eq!(params["method"], method);
        assert_eq!(params["return_url"], "https://merchant.example.com/paid");
        assert_eq!(biz_of(&params)["product_code"], product_code);
    }
    assert!(
        gateway.seen().is_empty(),
        "wap/page must not call the gateway"
    );
}

#[tokio::test]
async fn precreate_posts_a_signed_request_and_returns_the_qr_code() {
    let gateway = FakeGateway::start(Reply::signed(
        r#"{"code":"10000","msg":"Success","out_trade_no":"ORDER_20240102_0001","qr_code":"https:\/\/qr.alipay.com\/bax01234"}"#,
    ))
    .await;
    let alipay = Alipay::new(config(&gateway.url)).unwrap();
    let created = alipay
        .create_payment(&payment(Channel::Precreate))
        .await
        .unwrap();
    assert_eq!(
        created.pay_params,
        PayParams::QrCode {
            qr_code: "https://qr.alipay.com/bax01234".into()
        }
    );
    let seen = gateway.seen();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert!(
        request.signature_valid,
        "the gateway must accept our signature"
    );
    assert_eq!(request.http_method, "POST");
    assert_eq!(request.body_keys, ["biz_content"]);
    assert!(request.query_keys.contains(&"sign".to_owned()));
    assert!(!request.query_keys.contains(&"biz_content".to_owned()));
    assert_eq!(
        request.content_type.as_deref(),
        Some("application/x-www-form-urlencoded;charset=utf-8")
    );
    assert_eq!(request.params["method"], "alipay.trade.precreate");
    assert_eq!(biz_of(&request.params)["total_amount"], "19.99");
}

#[tokio::test]
async fn mini_program_needs_a_buyer_and_returns_the_trade_number() {
    let gateway = FakeGateway::start(Reply::signed(
        r#"{"code":"10000","msg":"Success","out_trade_no":"ORDER_20240102_0001","trade_no":"2024010222001446880501234567"}"#,
    ))
    .await;
    let alipay = Alipay::new(config(&gateway.url)).unwrap();
    let missing = alipay.create_payment(&payment(Channel::MiniProgram)).await;
    assert!(
        matches!(missing, Err(ProviderError::InvalidRequest(_))),
        "{missing:?}"
    );
    assert!(gateway.seen().is_empty());

    let mut request = payment(Channel::MiniProgram);
    request.payer_id = Some("2088102177846880".into());
    let created = alipay.create_payment(&request).await.unwrap();
    assert_eq!(
        created.pay_params,
        PayParams::TradeNo {
            trade_no: "2024010222001446880501234567".into()
        }
    );
    assert_eq!(
        created.provider_trade_no.as_deref(),
        Some("2024010222001446880501234567")
    );
    let seen = gateway.seen();
    assert_eq!(seen[0].params["method"], "alipay.trade.create");
    assert_eq!(biz_of(&seen[0].params)["buyer_id"], "2088102177846880");
}

#[tokio::test]
async fn query_maps_a_signed_vector_response_to_trade_facts() {
    let case = case_where("sync_response.json", "name", "query_success_plain");
    let gateway = FakeGateway::start(Reply::signed(str_field(&case, "signed_substring"))).await;
    let alipay = Alipay::new(config(&gateway.url)).unwrap();
    let facts = alipay
        .query_payment(&TradeRef::for_out_trade_no(
            OutTradeNo::parse("ORDER_20240102_0001").unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(facts.state, TradeState::Paid);
    assert_eq!(facts.amount, Some(Fen::new(8888).unwrap()));
    assert_eq!(
        facts.provider_trade_no.as_deref(),
        Some("2024010222001446880501234567")
    );
    assert_eq!(
        facts.paid_at,
        Some(Utc.with_ymd_and_hms(2024, 1, 1, 19, 4, 11).unwrap())
    );
    assert_eq!(facts.payer_id.as_deref(), Some("2088102177846880"));
    assert_eq!(
        biz_of(&gateway.seen()[0].params)["out_trade_no"],
        "ORDER_20240102_0001"
    );
}

#[tokio::test]
async fn a_forged_response_is_untrusted_never_success() {
    let gateway = FakeGateway::start(Reply::Forged {
        content: r#"{"code":"10000","msg":"Success","trade_status":"TRADE_SUCCESS","total_amount":"19.99"}"#.into(),
    })
    .await;
    let alipay = Alipay::new(config(&gateway.url)).unwrap();
    let result = alipay
        .query_payment(&TradeRef::for_out_trade_no(
            OutTradeNo::parse("ORDER_000001").unwrap(),
        ))
        .await;
    assert!(
        matches!(result, Err(ProviderError::UntrustedResponse(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn an_unsigned_success_is_untrusted_and_an_unsigned_gateway_error_is_configuration() {
    let gateway = FakeGateway::start(Reply::Unsigned {
        content: r#"{"code":"10000","msg":"Success","trade_status":"TRADE_SUCCESS"}"#.into(),
    })
    .await;
    let alipay = Alipay::new(config(&gateway.url)).unwrap();
    let order = OutTradeNo::parse("ORDER_000001").unwrap();
    let result = alipay
        .query_payment(&TradeRef::for_out_trade_no(order.clone()))
        .await;
    assert!(
        matches!(result, Err(ProviderError::UntrustedResponse(_))),
        "{result:?}"
    );
    gateway.set_reply(Reply::Unsigned {
        content: r#"{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-signature","sub_msg":"bad"}"#.into(),
    });
    let result = alipay
        .query_payment(&TradeRef::for_out_trade_no(order.clone()))
        .await;
    assert!(
        matches!(result, Err(ProviderError::Configuration(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn codes_map_to_unknown_outcomes_and_typed_refusals() {
    let gateway = FakeGateway::start(Reply::HttpError(502)).await;
    let alipay = Alipay::new(config(&gateway.url)).unwrap();
    let order = OutTradeNo::parse("ORDER_000001").unwrap();
    let result = alipay
        .query_payment(&TradeRef::for_out_trade_no(order.clone()))
        .await;
    assert!(
        matches!(result, Err(ProviderError::OutcomeUnknown(_))),
        "HTTP 502: {result:?}"
    );

    type Expectation = fn(&ProviderError) -> bool;
    let cases: [(&str, Expectation); 6] = [
        (
            r#"{"code":"20000","msg":"Service Currently Unavailable","sub_code":"isp.unknow-error"}"#,
            |e| e.outcome_unknown(),
        ),
        (
            r#"{"code":"40004","msg":"Business Failed","sub_code":"ACQ.SYSTEM_ERROR"}"#,
            |e| e.outcome_unknown(),
        ),
        (
            r#"{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_NOT_EXIST","sub_msg":"交易不存在"}"#,
            |e| *e == ProviderError::NotFound,
        ),
        (
            r#"{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_HAS_SUCCESS"}"#,
            |e| *e == ProviderError::AlreadyPaid,
        ),
        (
            r#"{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_HAS_CLOSE"}"#,
            |e| *e == ProviderError::AlreadyClosed,
        ),
        (
            r#"{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_STATUS_ERROR","sub_msg":"交易状态不合法"}"#,
            |e| matches!(e, ProviderError::Refused { code, retryable: false, .. } if code == "ACQ.TRADE_STATUS_ERROR"),
        ),
    ];
    for (content, expected) in cases {
        gateway.set_reply(Reply::signed(content));
        let error = alipay
            .close_payment(&TradeRef::for_out_trade_no(order.clone()))
            .await
            .unwrap_err();
        assert!(expected(&error), "{content}: {error:?}");
    }
    gateway.set_reply(Reply::signed(
        r#"{"code":"10000","msg":"Success","trade_no":"1"}"#,
    ));
    alipay
        .close_payment(&TradeRef::for_out_trade_no(order.clone()))
        .await
        .unwrap();
    assert!(gateway.seen().iter().all(|r| r.signature_valid));
}

#[tokio::test]
async fn the_vectors_40004_response_means_not_found() {
    let case = case_where("sync_response.json", "name", "query_business_failure_40004");
    let gateway = FakeGateway::start(Reply::signed(str_field(&case, "signed_substring"))).await;
    let alipay = Alipay::new(config(&gateway.url)).unwrap();
    let result = alipay
        .query_payment(&TradeRef::for_out_trade_no(
            OutTradeNo::parse("ORDER_NOPE").unwrap(),
        ))
        .await;
    assert_eq!(result, Err(ProviderError::NotFound));
}

fn refund_request() -> RefundRequest {
    RefundRequest {
        out_trade_no: OutTradeNo::parse("ORDER_20240102_0001").unwrap(),
        provider_trade_no: Some("2024010222001446880501234567".into()),
        out_refund_no: OutRefundNo::parse("REFUND_0001").unwrap(),
        refund_amount: Fen::new(1000).unwrap(),
        order_amount: Fen::new(8888).unwrap(),
        reason: Some("broken".into()),
        notify_url: None,
    }
}

#[tokio::test]
async fn a_partial_refund_sends_out_request_no_and_reports_this_refunds_amount() {
    let case = case_where("sync_response.json", "name", "refund_success_partial");
    let gateway = FakeGateway::start(Reply::signed(str_field(&case, "signed_substring"))).await;
    let alipay = Alipay::new(config(&gateway.url)).unwrap();
    let facts = alipay.refund(&refund_request()).await.unwrap();
    assert_eq!(facts.state, RefundState::Succeeded);
    assert_eq!(facts.amount, Some(Fen::new(1000).unwrap()));
    assert_eq!(
        facts.succeeded_at,
        Some(Utc.with_ymd_and_hms(2024, 1, 3, 2, 0, 0).unwrap())
    );
    let biz = biz_of(&gateway.seen()[0].params);
    assert_eq!(biz["out_request_no"], "REFUND_0001");
    assert_eq!(biz["refund_amount"], "10.00");
    assert_eq!(biz["trade_no"], "2024010222001446880501234567");

    gateway.set_reply(Reply::signed(
        r#"{"code":"40004","msg":"Business Failed","sub_code":"ACQ.SYSTEM_ERROR"}"#,
    ));
    let unknown = alipay.refund(&refund_request()).await.unwrap_err();
    assert!(unknown.outcome_unknown(), "{unknown:?}");
}

#[tokio::test]
async fn refund_query_reads_refund_status() {
    let case = case_where("sync_response.json", "name", "refund_query_success");
    let gateway = FakeGateway::start(Reply::signed(str_field(&case, "signed_substring"))).await;
    let alipay = Alipay::new(config(&gateway.url)).unwrap();
    let query = RefundQuery {
        out_trade_no: OutTradeNo::parse("ORDER_20240102_0001").unwrap(),
        out_refund_no: OutRefundNo::parse("REFUND_0001").unwrap(),
    };
    let facts = alipay.query_refund(&query).await.unwrap();
    assert_eq!(facts.state, RefundState::Succeeded);
    assert_eq!(facts.amount, Some(Fen::new(1000).unwrap()));
    assert_eq!(
        gateway.seen()[0].params["method"],
        "alipay.trade.fastpay.refund.query"
    );

    gateway.set_reply(Reply::signed(r#"{"code":"10000","msg":"Success","out_request_no":"REFUND_0001","out_trade_no":"ORDER_20240102_0001"}"#));
    assert_eq!(
        alipay.query_refund(&query).await.unwrap().state,
        RefundState::NotFound
    );
}

#[tokio::test]
async fn certificate_mode_sends_both_sns_and_checks_the_responding_certificate() {
    let gateway = FakeGateway::start(Reply::Signed {
        content: r#"{"code":"10000","msg":"Success","trade_no":"1"}"#.into(),
        cert_sn: Some("a5f759ef75bad2f490474659146cecb0".into()),
    })
    .await;
    let alipay = Alipay::new(cert_config(&gateway.url)).unwrap();
    let order = OutTradeNo::parse("ORDER_000001").unwrap();
    alipay
        .close_payment(&TradeRef::for_out_trade_no(order.clone()))
        .await
        .unwrap();
    let seen = gateway.seen();
    assert!(
        seen[0].signature_valid,
        "the SNs are signed like any parameter"
    );
    assert_eq!(
        seen[0].params["app_cert_sn"],
        "7e86c89fb5029c55d73c8bcfe631594b"
    );
    assert_eq!(
        seen[0].params["alipay_root_cert_sn"],
        "3d8f8237d0ae9d3d486306e0d4a7270d_ba2bbc4b491c92c63de16ccc7195ad01"
    );
    gateway.set_reply(Reply::Signed {
        content: r#"{"code":"10000","msg":"Success","trade_no":"1"}"#.into(),
        cert_sn: Some("00000000000000000000000000000000".into()),
    });
    let rotated = alipay
        .close_payment(&TradeRef::for_out_trade_no(order.clone()))
        .await;
    assert!(
        matches!(rotated, Err(ProviderError::UntrustedResponse(_))),
        "{rotated:?}"
    );
}

#[test]
fn notifies_become_payment_notices_and_forgeries_are_refused() {
    let alipay = Alipay::new(config(DEFAULT_GATEWAY_URL)).unwrap();
    for case in cases("notify.json") {
        let name = str_field(&case, "name");
        let callback = InboundCallback::of_body(
            CallbackPurpose::Payment,
            str_field(&case, "form_body").as_bytes(),
        );
        let result = alipay.verify_callback(&callback);
        match name {
            "valid_trade_success" => {
                let Ok(Notice::Payment(facts)) = result else {
                    panic!("{name}: {result:?}")
                };
                assert_eq!(facts.amount, Some(Fen::new(8888).unwrap()));
                assert_eq!(
                    facts.merchant_id.as_deref(),
                    Some(alipay.merchant().merchant_id.as_str())
                );
                assert_eq!(
                    facts.app_id.as_deref(),
                    Some(alipay.merchant().app_id.as_str())
                );
            }
            "tampered_total_amount"
            | "tampered_seller_id"
            | "signed_with_wrong_key"
            | "sign_removed"
            | "sign_empty"
            | "extra_param_added"
            | "signed_including_sign_type_v2" => {
                assert_eq!(result, Err(NotifyError::BadSignature), "{name}");
            }
            _ => assert!(result.is_ok(), "{name}: {result:?}"),
        }
    }
}

#[test]
fn oversized_and_undecodable_notifies_are_refused() {
    let alipay = Alipay::new(config(DEFAULT_GATEWAY_URL)).unwrap();
    let big = vec![b'a'; paygate_alipay::MAX_NOTIFY_BYTES + 1];
    let result = alipay.verify_callback(&InboundCallback::of_body(CallbackPurpose::Payment, &big));
    assert_eq!(result, Err(NotifyError::TooLarge(big.len())));
    let result = alipay.verify_callback(&InboundCallback::of_body(
        CallbackPurpose::Payment,
        b"a=%ZZ",
    ));
    assert!(
        matches!(result, Err(NotifyError::Malformed(_))),
        "{result:?}"
    );
}

#[test]
fn acknowledgements_are_the_exact_bodies_alipay_looks_for() {
    let alipay = Alipay::new(config(DEFAULT_GATEWAY_URL)).unwrap();
    use paygate_core::CallbackOutcome as Outcome;
    let accepted = alipay.acknowledge(Outcome::Accepted);
    assert_eq!((accepted.status, accepted.body.as_str()), (200, "success"));
    // A genuine notify that does not match the order is stopped: resending cannot change it.
    assert_eq!(alipay.acknowledge(Outcome::Unmatched), accepted);
    for (outcome, status) in [
        (Outcome::Rejected, 200),
        (Outcome::TooLarge, 413),
        (Outcome::RetryLater, 503),
    ] {
        let ack = alipay.acknowledge(outcome);
        assert_eq!(
            (ack.status, ack.body.as_str()),
            (status, "failure"),
            "{outcome:?}"
        );
    }
}

#[tokio::test]
async fn requests_outside_the_configuration_are_refused_before_signing() {
    let mut narrow = config(DEFAULT_GATEWAY_URL);
    narrow.channels = vec![Channel::App];
    let alipay = Alipay::new(narrow).unwrap();
    let result = alipay.create_payment(&payment(Channel::Page)).await;
    assert!(
        matches!(result, Err(ProviderError::InvalidRequest(_))),
        "{result:?}"
    );
    let mut zero = payment(Channel::App);
    zero.amount = Fen::ZERO;
    let result = alipay.create_payment(&zero).await;
    assert!(
        matches!(result, Err(ProviderError::InvalidRequest(_))),
        "{result:?}"
    );
}

#[test]
fn configuration_errors_surface_at_start_up_without_key_material() {
    let mut bad_key = config(DEFAULT_GATEWAY_URL);
    bad_key.app_private_key =
        SecretString::from("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA".to_owned());
    let err = Alipay::new(bad_key).unwrap_err().to_string();
    assert!(
        err.contains("PKCS#8") && !err.contains("MIIBIjANBgkq"),
        "{err}"
    );

    let mut wrong_channel = config(DEFAULT_GATEWAY_URL);
    wrong_channel.channels = vec![Channel::Jsapi];
    assert!(Alipay::new(wrong_channel).is_err());

    let debug = format!("{:?}", config(DEFAULT_GATEWAY_URL));
    let key_text = read_text("keys/app_private_pkcs1.b64");
    assert!(
        !debug.contains(&key_text.trim()[..24]),
        "config Debug leaks the private key"
    );
}

#[test]
fn the_configuration_reads_from_json_with_defaults() {
    let json = serde_json::json!({
        "app_id": "2021000000000001",
        "seller_id": "2088102177000000",
        "app_private_key": read_text("keys/app_private_pkcs8.b64"),
        "trust": { "mode": "public_key", "alipay_public_key": read_text("keys/alipay_public.pem") },
        "channels": ["app", "precreate"]
    });
    let config: AlipayConfig = serde_json::from_value(json).unwrap();
    assert_eq!(config.gateway_url, "https://openapi.alipay.com/gateway.do");
    assert_eq!(
        paygate_alipay::SANDBOX_GATEWAY_URL,
        "https://openapi-sandbox.dl.alipaydev.com/gateway.do"
    );
    let alipay = Alipay::new(config).unwrap();
    let offered: Vec<Channel> = alipay
        .capabilities()
        .channels
        .iter()
        .map(|c| c.channel)
        .collect();
    assert_eq!(offered, [Channel::App, Channel::Precreate]);
}

#[tokio::test]
async fn refund_answers_that_may_hide_a_carried_out_refund_are_never_definite_refusals() {
    let gateway = FakeGateway::start(Reply::HttpError(502)).await;
    let alipay = Alipay::new(config(&gateway.url)).unwrap();
    for in_flight in [
        Reply::HttpError(502),
        Reply::Forged {
            content: r#"{"code":"10000","msg":"Success","fund_change":"Y"}"#.into(),
        },
        Reply::signed(r#"{"code":"20000","msg":"Service Currently Unavailable"}"#),
        Reply::signed(r#"{"code":"40004","msg":"Business Failed","sub_code":"ACQ.SYSTEM_ERROR"}"#),
    ] {
        gateway.set_reply(in_flight);
        let error = alipay.refund(&refund_request()).await.unwrap_err();
        assert!(!error.is_definite_refusal(), "{error:?}");
    }
    gateway.set_reply(Reply::signed(
        r#"{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_NOT_ALLOW_REFUND"}"#,
    ));
    let refused = alipay.refund(&refund_request()).await.unwrap_err();
    assert!(refused.is_definite_refusal(), "{refused:?}");
}

#[tokio::test]
async fn query_amounts_are_compared_by_decimal_value() {
    let gateway = FakeGateway::start(Reply::HttpError(502)).await;
    let alipay = Alipay::new(config(&gateway.url)).unwrap();
    let order = OutTradeNo::parse("ORDER_000001").unwrap();
    for (total_amount, expected) in [
        ("19.9", Some(1990)),
        ("19.90", Some(1990)),
        ("19.900", Some(1990)),
        ("19.901", None),
    ] {
        gateway.set_reply(Reply::signed(&format!(
            r#"{{"code":"10000","msg":"Success","out_trade_no":"ORDER_000001","trade_no":"1","trade_status":"WAIT_BUYER_PAY","total_amount":"{total_amount}"}}"#
        )));
        let facts = alipay
            .query_payment(&TradeRef::for_out_trade_no(order.clone()))
            .await
            .unwrap();
        assert_eq!(
            facts.amount,
            expected.map(|fen| Fen::new(fen).unwrap()),
            "{total_amount}"
        );
    }
}
