//! The API client against the fake WeChat Pay: requests signed and accepted by the server,
//! answers verified before use, errors mapped to the retry table, certificates downloaded.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use base64::Engine as _;
use chrono::{TimeZone, Utc};
use paygate_core::{
    Channel, CreatePayment, Currency, Fen, OutRefundNo, OutTradeNo, PayParams, ProviderError,
    RefundRequest, RefundState, TradeState,
};
use paygate_wechat_v3::client::ApiError;
use paygate_wechat_v3::keys::VerifyingKey;
use paygate_wechat_v3::sign::lines;
use paygate_wechat_v3::verify::VerifyError;

use crate::fake_wechat::{
    FakeWechat, NOW, PUB_KEY_ID, Reply, SignAs, client, client_with, settings,
};
use crate::vectors::{cases, dir, read, text};

fn clock() -> Arc<AtomicI64> {
    Arc::new(AtomicI64::new(NOW))
}

fn payment(channel: Channel) -> CreatePayment {
    CreatePayment {
        channel,
        out_trade_no: OutTradeNo::parse("ORD20250101120000001").unwrap(),
        amount: Fen::new(100).unwrap(),
        currency: Currency::Cny,
        subject: "Image形象店-深圳腾大-QQ公仔".into(),
        description: None,
        payer_id: Some("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".into()),
        client_ip: Some("203.0.113.7".parse().unwrap()),
        expires_at: Utc.with_ymd_and_hms(2025, 1, 1, 6, 0, 0).unwrap(),
        notify_url: "https://shop.example/wechat/v3/notify".into(),
        return_url: None,
    }
}

const TRANSACTION: &str = r#"{"mchid":"1230000109","appid":"wxd678efh567hg6787","out_trade_no":"ORD20250101120000001","transaction_id":"4200002512202501010000000001","trade_type":"JSAPI","trade_state":"SUCCESS","trade_state_desc":"支付成功","bank_type":"OTHERS","attach":"","success_time":"2025-01-01T12:00:30+08:00","payer":{"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},"amount":{"total":100,"payer_total":100,"currency":"CNY","payer_currency":"CNY"}}"#;

#[tokio::test]
async fn a_jsapi_order_is_signed_accepted_and_returns_rsa_pay_params() {
    let server = FakeWechat::start(|seen| {
        assert_eq!(seen.target, "/v3/pay/transactions/jsapi");
        Reply::ok(r#"{"prepay_id":"wx20250101120000a1b2c3d4e5f6a7b8c900"}"#)
    })
    .await;
    let client = client(&server.base, "", clock());
    let created = client
        .create_payment(&payment(Channel::MiniProgram))
        .await
        .unwrap();
    assert_eq!(
        created.provider_trade_no, None,
        "a prepay id is no trade number"
    );
    let PayParams::WechatJsapi {
        app_id,
        time_stamp,
        nonce_str,
        package,
        sign_type,
        pay_sign,
    } = created.pay_params
    else {
        panic!("not JSAPI params");
    };
    assert_eq!(sign_type, "RSA");
    assert_eq!(package, "prepay_id=wx20250101120000a1b2c3d4e5f6a7b8c900");
    assert_eq!(time_stamp, NOW.to_string());
    let merchant = VerifyingKey::from_pem(&read("keys/merchant_public.pem")).unwrap();
    let signature = base64::engine::general_purpose::STANDARD
        .decode(pay_sign)
        .unwrap();
    assert!(merchant.verifies(
        &lines(&[&app_id, &time_stamp, &nonce_str, &package]),
        &signature
    ));

    let request = &server.requests()[0];
    assert_eq!(request.header("wechatpay-serial"), Some(PUB_KEY_ID));
    assert_eq!(request.header("accept"), Some("application/json"));
    assert!(
        request
            .header("user-agent")
            .unwrap()
            .starts_with("paygate/")
    );
    let body = request.json();
    assert_eq!(
        body["amount"],
        serde_json::json!({"total": 100, "currency": "CNY"})
    );
    assert_eq!(body["payer"]["openid"], "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o");
    assert_eq!(body["time_expire"], "2025-01-01T14:00:00+08:00");
    assert_eq!(body["mchid"], "1230000109");
}

#[tokio::test]
async fn app_native_and_h5_orders_return_their_own_params() {
    let server = FakeWechat::start(|seen| match seen.target.as_str() {
        "/v3/pay/transactions/app" => Reply::ok(r#"{"prepay_id":"wx2025app"}"#),
        "/v3/pay/transactions/native" => {
            Reply::ok(r#"{"code_url":"weixin://wxpay/bizpayurl?pr=abc"}"#)
        }
        "/v3/pay/transactions/h5" => {
            assert_eq!(seen.json()["scene_info"]["h5_info"]["type"], "Wap");
            assert_eq!(seen.json()["scene_info"]["payer_client_ip"], "203.0.113.7");
            Reply::ok(
                r#"{"h5_url":"https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=x"}"#,
            )
        }
        other => panic!("unexpected {other}"),
    })
    .await;
    let client = client(
        &server.base,
        "channels = [\"app\", \"native\", \"h5\"]\n[h5_info]\ntype = \"Wap\"\napp_name = \"shop\"\napp_url = \"https://shop.example\"\n",
        clock(),
    );
    let app = client.create_payment(&payment(Channel::App)).await.unwrap();
    assert!(
        matches!(app.pay_params, PayParams::WechatApp { ref package, ref prepayid, .. } if package == "Sign=WXPay" && prepayid == "wx2025app")
    );
    let native = client
        .create_payment(&payment(Channel::Native))
        .await
        .unwrap();
    assert_eq!(
        native.pay_params,
        PayParams::CodeUrl {
            code_url: "weixin://wxpay/bizpayurl?pr=abc".into()
        }
    );
    let h5 = client.create_payment(&payment(Channel::H5)).await.unwrap();
    assert!(matches!(h5.pay_params, PayParams::MwebUrl { .. }));
    // A channel not configured is refused before sending.
    let refused = client
        .create_payment(&payment(Channel::Jsapi))
        .await
        .unwrap_err();
    assert!(matches!(refused, ApiError::InvalidRequest(_)));
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn forged_unsigned_stale_and_probe_answers_are_never_used() {
    let body = r#"{"prepay_id":"wx2025forged"}"#;
    let cases = [
        (
            Reply::ok(body).signed(SignAs::Attacker),
            "signature does not verify",
        ),
        (Reply::ok(body).signed(SignAs::Unsigned), "missing"),
        (Reply::ok(body).signed(SignAs::Probe), "probe"),
        (
            Reply::ok(body).signed(SignAs::Platform),
            "unknown Wechatpay-Serial",
        ),
        (
            Reply {
                timestamp: NOW - 301,
                ..Reply::ok(body)
            },
            "300 s",
        ),
    ];
    for (reply, expected) in cases {
        let server = FakeWechat::start(move |_| reply.clone()).await;
        let client = client(&server.base, "", clock());
        let err = client
            .create_payment(&payment(Channel::Jsapi))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(expected), "{expected}: {err}");
        let provider = ProviderError::from(err);
        assert!(
            matches!(provider, ProviderError::UntrustedResponse(_)),
            "{provider:?}"
        );
        assert!(!provider.is_definite_refusal());
    }
}

#[tokio::test]
async fn queries_sign_the_query_string_and_return_trade_facts() {
    let server = FakeWechat::start(|seen| {
        assert!(
            seen.target
                == "/v3/pay/transactions/out-trade-no/ORD20250101120000001?mchid=1230000109"
                || seen.target
                    == "/v3/pay/transactions/id/4200002512202501010000000001?mchid=1230000109",
            "{}",
            seen.target
        );
        assert!(seen.body.is_empty());
        Reply::ok(TRANSACTION)
    })
    .await;
    let client = client(&server.base, "", clock());
    let facts = client
        .query_by_out_trade_no("ORD20250101120000001")
        .await
        .unwrap();
    assert_eq!(facts.state, TradeState::Paid);
    assert_eq!(facts.amount, Some(Fen::new(100).unwrap()));
    assert_eq!(facts.app_id.as_deref(), Some("wxd678efh567hg6787"));
    let by_id = client
        .query_by_transaction_id("4200002512202501010000000001")
        .await
        .unwrap();
    assert_eq!(by_id, facts);
}

#[tokio::test]
async fn close_takes_a_signed_204_and_errors_follow_the_retry_table() {
    let server = FakeWechat::start(|seen| match seen.target.as_str() {
        "/v3/pay/transactions/out-trade-no/open_0001/close" => {
            assert_eq!(seen.json(), serde_json::json!({"mchid": "1230000109"}));
            Reply::status(204, "")
        }
        "/v3/pay/transactions/out-trade-no/paid_0001/close" => {
            Reply::status(400, r#"{"code":"ORDERPAID","message":"订单已支付"}"#)
                .signed(SignAs::Unsigned)
        }
        "/v3/pay/transactions/out-trade-no/busy_0001/close" => {
            Reply::status(429, r#"{"code":"FREQUENCY_LIMITED","message":"频率超限"}"#)
        }
        "/v3/pay/transactions/out-trade-no/down_0001/close" => {
            Reply::status(500, r#"{"code":"SYSTEM_ERROR","message":"系统错误"}"#)
        }
        "/v3/pay/transactions/out-trade-no/gone_0001/close" => {
            Reply::status(400, r#"{"code":"ORDER_CLOSED","message":"订单已关闭"}"#)
        }
        "/v3/pay/transactions/out-trade-no/junk_0001/close" => {
            Reply::status(502, "<html>bad gateway</html>").signed(SignAs::Unsigned)
        }
        "/v3/pay/transactions/out-trade-no/lie_0001/close" => {
            Reply::status(400, r#"{"code":"ORDERPAID","message":"x"}"#).signed(SignAs::Attacker)
        }
        other => panic!("unexpected {other}"),
    })
    .await;
    let client = client(&server.base, "", clock());
    client.close("open_0001").await.unwrap();
    let close = |no: &'static str| {
        let client = &client;
        async move { ProviderError::from(client.close(no).await.unwrap_err()) }
    };
    assert_eq!(close("paid_0001").await, ProviderError::AlreadyPaid);
    assert!(matches!(
        close("busy_0001").await,
        ProviderError::Refused {
            retryable: true,
            ..
        }
    ));
    assert!(close("down_0001").await.outcome_unknown());
    assert_eq!(close("gone_0001").await, ProviderError::AlreadyClosed);
    assert!(close("junk_0001").await.outcome_unknown());
    // A signed error whose signature is wrong is not believed.
    assert!(matches!(
        close("lie_0001").await,
        ProviderError::UntrustedResponse(_)
    ));
}

#[tokio::test]
async fn refunds_and_refund_queries_map_to_refund_facts() {
    let server = FakeWechat::start(|seen| match (seen.method.as_str(), seen.target.as_str()) {
        ("POST", "/v3/refund/domestic/refunds") => {
            let body = seen.json();
            assert_eq!(body["transaction_id"], "4200002512202501010000000001");
            assert_eq!(body["amount"], serde_json::json!({"refund": 40, "total": 100, "currency": "CNY"}));
            if body["out_refund_no"] == "RF_poor" {
                return Reply::status(403, r#"{"code":"NOT_ENOUGH","message":"余额不足"}"#);
            }
            Reply::ok(r#"{"refund_id":"50300002512025010100000000001","out_refund_no":"RF_0001","transaction_id":"4200002512202501010000000001","out_trade_no":"ORD20250101120000001","channel":"ORIGINAL","status":"PROCESSING","amount":{"total":100,"refund":40,"payer_total":100,"payer_refund":40,"currency":"CNY"}}"#)
        }
        ("GET", "/v3/refund/domestic/refunds/RF_0001") => Reply::ok(r#"{"refund_id":"50300002512025010100000000001","out_refund_no":"RF_0001","out_trade_no":"ORD20250101120000001","status":"SUCCESS","success_time":"2025-01-01T13:00:05+08:00","amount":{"total":100,"refund":40}}"#),
        ("GET", "/v3/refund/domestic/refunds/RF_none") => {
            Reply::status(404, r#"{"code":"RESOURCE_NOT_EXISTS","message":"退款单不存在"}"#)
        }
        other => panic!("unexpected {other:?}"),
    })
    .await;
    let client = client(&server.base, "", clock());
    let request = |no: &str| RefundRequest {
        out_trade_no: OutTradeNo::parse("ORD20250101120000001").unwrap(),
        provider_trade_no: Some("4200002512202501010000000001".into()),
        out_refund_no: OutRefundNo::parse(no).unwrap(),
        refund_amount: Fen::new(40).unwrap(),
        order_amount: Fen::new(100).unwrap(),
        reason: Some("broken".into()),
        notify_url: Some("https://shop.example/wechat/v3/refund-notify".into()),
    };
    let accepted = client.refund(&request("RF_0001")).await.unwrap();
    assert_eq!(accepted.state, RefundState::Processing);
    assert_eq!(accepted.amount, Some(Fen::new(40).unwrap()));
    let poor = ProviderError::from(client.refund(&request("RF_poor")).await.unwrap_err());
    assert!(poor.is_definite_refusal(), "{poor:?}");
    let done = client
        .query_refund("ORD20250101120000001", "RF_0001")
        .await
        .unwrap();
    assert_eq!(done.state, RefundState::Succeeded);
    assert!(done.succeeded_at.is_some());
    let none = client
        .query_refund("ORD20250101120000001", "RF_none")
        .await
        .unwrap();
    assert_eq!(none.state, RefundState::NotFound);
}

#[tokio::test]
async fn a_request_the_server_cannot_verify_gets_sign_error_as_a_configuration_problem() {
    let server = FakeWechat::start(|_| Reply::ok(TRANSACTION)).await;
    let keys = dir().join("keys");
    // The merchant certificate belongs to this key, but the server knows the real merchant's.
    let mut settings = settings(
        &server.base,
        &format!(
            "public_key_id = \"{PUB_KEY_ID}\"\npublic_key_file = \"{}\"\n",
            keys.join("wechatpay_pub_key.pem").display()
        ),
    );
    settings.mchid = "1230000110".into();
    let client = client_with(settings, clock());
    let err = ProviderError::from(
        client
            .query_by_out_trade_no("ORD20250101120000001")
            .await
            .unwrap_err(),
    );
    assert!(
        matches!(err, ProviderError::Configuration(ref m) if m.contains("SIGN_ERROR")),
        "{err:?}"
    );
}

#[tokio::test]
async fn certificate_mode_downloads_the_certificates_and_refreshes_on_a_rotated_serial() {
    let vector = cases("certificates.json").remove(0);
    let cert_body = text(&vector["response"], "body").to_owned();
    let cert_headers: Vec<(String, String)> = vector["response"]["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    let cert_time = vector["verify_at"].as_i64().unwrap();
    let server = FakeWechat::start(move |seen| match seen.target.as_str() {
        "/v3/certificates" => Reply {
            raw_headers: Some(cert_headers.clone()),
            ..Reply::ok(cert_body.clone())
        },
        "/v3/pay/transactions/out-trade-no/ORD20250101120000001?mchid=1230000109" => Reply {
            timestamp: cert_time,
            ..Reply::ok(TRANSACTION).signed(SignAs::Platform)
        },
        "/v3/pay/transactions/id/4200002512202501010000000001?mchid=1230000109" => Reply {
            timestamp: cert_time + 120,
            ..Reply::ok(TRANSACTION).signed(SignAs::NewPlatform)
        },
        other => panic!("unexpected {other}"),
    })
    .await;
    let now = Arc::new(AtomicI64::new(cert_time));
    let client = client_with(
        settings(&server.base, "platform_certificates = true\n"),
        now.clone(),
    );
    let facts = client
        .query_by_out_trade_no("ORD20250101120000001")
        .await
        .unwrap();
    assert_eq!(facts.state, TradeState::Paid);
    let downloads = |server: &FakeWechat| {
        server
            .requests()
            .iter()
            .filter(|r| r.target == "/v3/certificates")
            .count()
    };
    assert_eq!(downloads(&server), 1);
    // Both listed certificates were taken, so the rotated serial verifies without a download.
    now.store(cert_time + 120, Ordering::SeqCst);
    client
        .query_by_transaction_id("4200002512202501010000000001")
        .await
        .unwrap();
    assert_eq!(downloads(&server), 1);
    assert_eq!(client.app().keys.certificate_expiries().len(), 2);
}

#[tokio::test]
async fn an_unknown_serial_in_certificate_mode_triggers_one_download_a_minute() {
    let vector = cases("certificates.json").remove(0);
    let cert_time = vector["verify_at"].as_i64().unwrap();
    let cert_body = text(&vector["response"], "body").to_owned();
    let cert_headers: Vec<(String, String)> = vector["response"]["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    let server = FakeWechat::start(move |seen| match seen.target.as_str() {
        "/v3/certificates" => Reply {
            raw_headers: Some(cert_headers.clone()),
            ..Reply::ok(cert_body.clone())
        },
        _ => Reply {
            timestamp: cert_time,
            ..Reply::ok(TRANSACTION).signed(SignAs::PublicKey)
        },
    })
    .await;
    let client = client_with(
        settings(&server.base, "platform_certificates = true\n"),
        Arc::new(AtomicI64::new(cert_time + 100)),
    );
    // Signed under PUB_KEY_ID, which this certificate-only client does not hold.
    let err = client
        .query_by_out_trade_no("ORD20250101120000001")
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::Unverified(VerifyError::UnknownSerial(_))),
        "{err:?}"
    );
    // The first download happened before the call, the unknown serial caused one more (it
    // could have been listed since); another unknown serial within the minute causes none.
    let downloads = || {
        server
            .requests()
            .iter()
            .filter(|r| r.target == "/v3/certificates")
            .count()
    };
    assert_eq!(downloads(), 2);
    client
        .query_by_out_trade_no("ORD20250101120000001")
        .await
        .unwrap_err();
    assert_eq!(downloads(), 2);
}

#[tokio::test]
async fn a_certificate_mode_notify_under_an_unheld_serial_downloads_the_certificates_once() {
    let vector = cases("certificates.json").remove(0);
    let cert_time = vector["verify_at"].as_i64().unwrap();
    let cert_body = text(&vector["response"], "body").to_owned();
    let cert_headers: Vec<(String, String)> = vector["response"]["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    let server = FakeWechat::start(move |_| Reply {
        raw_headers: Some(cert_headers.clone()),
        ..Reply::ok(cert_body.clone())
    })
    .await;
    // The vectors' certificate-signed payment notify, received before any API call.
    let notify = cases("notify.json")
        .into_iter()
        .find(|c| text(c, "name") == "transaction_success_cjk_attach_cert_mode")
        .unwrap();
    let now = Arc::new(AtomicI64::new(cert_time + 21));
    assert_eq!(notify["verify_at"].as_i64().unwrap(), cert_time + 21);
    let client = client_with(
        settings(&server.base, "platform_certificates = true\n"),
        now,
    );
    let headers: Vec<(&str, &str)> = notify["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
        .collect();
    let verified = client
        .verify_notify(&headers, text(&notify, "body").as_bytes())
        .await
        .unwrap();
    assert!(
        matches!(verified.notice, paygate_core::Notice::Payment(ref f) if f.state == TradeState::Paid)
    );
    // Again: the certificate is held now, no second download.
    client
        .verify_notify(&headers, text(&notify, "body").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        server
            .requests()
            .iter()
            .filter(|r| r.target == "/v3/certificates")
            .count(),
        1
    );
}
