//! `WechatPayV3` through the `Provider` trait: capabilities, local checks, every vendored notify
//! through `verify_callback` on its route, the acknowledgements, and the calls against the fake
//! WeChat Pay.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{TimeZone, Utc};
use paygate_core::{
    CallbackAck, CallbackOutcome, CallbackPurpose, Channel, CreatePayment, Currency, Fen,
    InboundCallback, Notice, NotifyError, OutRefundNo, OutTradeNo, PayParams, PayerField, Provider,
    ProviderError, ProviderKind, RefundQuery, RefundRequest, RefundState, TradeRef, TradeState,
};
use paygate_wechat_v3::WechatPayV3;
use paygate_wechat_v3::verify::PlatformCertificate;
use serde_json::Value;

use crate::fake_wechat::{FakeWechat, NOW, Reply, client};
use crate::vectors::{cases, name, read, text};

fn provider(base: &str, extra: &str, now: Arc<AtomicI64>) -> WechatPayV3 {
    let provider = WechatPayV3::new(client(base, extra, now));
    // The vectors' cert-mode notifies are signed by the platform certificate: hold both, as
    // an app migrating between modes does.
    let certificate = PlatformCertificate::from_pem(&read("keys/platform_cert.pem")).unwrap();
    provider.api().app().keys.add_certificates([certificate]);
    provider
}

fn payment(channel: Channel) -> CreatePayment {
    CreatePayment {
        channel,
        out_trade_no: OutTradeNo::parse("ORD20250101120000001").unwrap(),
        amount: Fen::new(100).unwrap(),
        currency: Currency::Cny,
        subject: "QQ公仔".into(),
        description: None,
        payer_id: None,
        client_ip: None,
        expires_at: Utc.with_ymd_and_hms(2025, 1, 1, 6, 0, 0).unwrap(),
        notify_url: "https://shop.example/notify/wechat/shop".into(),
        return_url: None,
    }
}

fn headers(case: &Value) -> Vec<(&str, &str)> {
    case["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
        .collect()
}

#[test]
fn capabilities_follow_the_configured_channels() {
    let p = provider(
        "http://127.0.0.1:1",
        "channels = [\"jsapi\", \"mini_program\", \"native\", \"app\"]\n",
        Arc::new(AtomicI64::new(NOW)),
    );
    assert_eq!(p.kind(), ProviderKind::WECHAT);
    assert_eq!(p.merchant().app_id, "wxd678efh567hg6787");
    assert_eq!(p.merchant().merchant_id, "1230000109");
    let caps = p.capabilities();
    assert_eq!(caps.channels.len(), 4);
    assert!(caps.channel(Channel::H5).is_none());
    for channel in [Channel::Jsapi, Channel::MiniProgram] {
        let support = caps.channel(channel).unwrap();
        assert_eq!(support.payer, Some(PayerField::OpenId));
        assert!(support.client_ip_required);
    }
    assert!(!caps.channel(Channel::Native).unwrap().client_ip_required);
    assert_eq!(caps.channel(Channel::App).unwrap().payer, None);
    assert!(caps.channel(Channel::App).unwrap().client_ip_required);
    let rule = caps.out_trade_no;
    assert_eq!(rule.check(&OutTradeNo::parse("a|b*c-d_e").unwrap()), Ok(()));
    assert!(rule.check(&OutTradeNo::parse("abc").unwrap()).is_err());
    assert!(
        rule.check(&OutTradeNo::parse("a".repeat(33)).unwrap())
            .is_err()
    );
    assert_eq!(
        caps.callback_route("").map(|r| r.purpose),
        Some(CallbackPurpose::Payment)
    );
    assert_eq!(
        caps.callback_route("/refund").map(|r| r.purpose),
        Some(CallbackPurpose::Refund)
    );
    assert_eq!(caps.refund_callback.map(|r| r.suffix), Some("/refund"));
}

#[test]
fn requests_wechat_would_refuse_are_refused_before_sending() {
    let p = provider(
        "http://127.0.0.1:1",
        "channels = [\"jsapi\", \"native\"]\n",
        Arc::new(AtomicI64::new(NOW)),
    );
    assert_eq!(p.check_payment_request(&payment(Channel::Native)), Ok(()));
    let no_openid = p.check_payment_request(&payment(Channel::Jsapi));
    assert!(
        matches!(no_openid, Err(ProviderError::InvalidRequest(ref m)) if m.contains("openid")),
        "{no_openid:?}"
    );
    let mut with_openid = payment(Channel::Jsapi);
    with_openid.payer_id = Some("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".into());
    assert_eq!(p.check_payment_request(&with_openid), Ok(()));
    assert!(matches!(
        p.check_payment_request(&payment(Channel::App)),
        Err(ProviderError::InvalidRequest(_))
    ));
    let mut long = payment(Channel::Native);
    long.subject = "茶".repeat(128);
    assert!(matches!(
        p.check_payment_request(&long),
        Err(ProviderError::InvalidRequest(ref m)) if m.contains("description")
    ));
}

#[test]
fn every_vendored_notify_is_judged_on_its_route() {
    let now = Arc::new(AtomicI64::new(NOW));
    let p = provider("http://127.0.0.1:1", "", now.clone());
    for case in cases("notify.json") {
        now.store(case["verify_at"].as_i64().unwrap(), Ordering::SeqCst);
        let headers = headers(&case);
        let refund = text(&case, "event_type").starts_with("REFUND.");
        let (route, other) = if refund {
            (CallbackPurpose::Refund, CallbackPurpose::Payment)
        } else {
            (CallbackPurpose::Payment, CallbackPurpose::Refund)
        };
        let callback = |purpose| InboundCallback {
            method: "POST",
            purpose,
            query: "",
            headers: &headers,
            body: text(&case, "body").as_bytes(),
        };
        let got = p.verify_callback(&callback(route));
        match case["expected"]["verdict"].as_str().unwrap() {
            "accept" => {
                let notice = got.unwrap_or_else(|e| panic!("{}: {e}", name(&case)));
                let plain = &case["plaintext_object"];
                match notice {
                    Notice::Payment(facts) => {
                        assert!(!refund, "{}", name(&case));
                        assert_eq!(facts.provider, ProviderKind::WECHAT);
                        assert_eq!(facts.out_trade_no, text(plain, "out_trade_no"));
                        assert_eq!(facts.state, TradeState::Paid);
                    }
                    Notice::Refund(facts) => {
                        assert!(refund, "{}", name(&case));
                        assert_eq!(facts.out_refund_no, text(plain, "out_refund_no"));
                    }
                }
                let crossed = p.verify_callback(&callback(other));
                assert!(
                    matches!(crossed, Err(NotifyError::Malformed(_))),
                    "{}: {crossed:?}",
                    name(&case)
                );
            }
            "reject" => {
                let err = got.expect_err(name(&case));
                let signature_valid = case["expected"]["signature_valid"].as_bool().unwrap();
                let decrypt_ok = case["expected"]["decrypt_ok"].as_bool().unwrap();
                match err {
                    NotifyError::BadSignature => assert!(
                        !signature_valid
                            || !case["expected"]["timestamp_within_300s"].as_bool().unwrap(),
                        "{}",
                        name(&case)
                    ),
                    NotifyError::Decrypt(_) => assert!(!decrypt_ok, "{}", name(&case)),
                    other => panic!("{}: {other:?}", name(&case)),
                }
            }
            other => panic!("verdict {other}"),
        }
    }
}

#[test]
fn a_notify_without_its_headers_is_refused() {
    let p = provider("http://127.0.0.1:1", "", Arc::new(AtomicI64::new(NOW)));
    let case = &cases("notify.json")[0];
    let callback =
        InboundCallback::of_body(CallbackPurpose::Payment, text(case, "body").as_bytes());
    assert_eq!(p.verify_callback(&callback), Err(NotifyError::BadSignature));
}

#[test]
fn only_an_accept_is_a_2xx_and_every_refusal_carries_the_fail_json() {
    let p = provider("http://127.0.0.1:1", "", Arc::new(AtomicI64::new(NOW)));
    let CallbackAck { status, body, .. } = p.acknowledge(CallbackOutcome::Accepted);
    assert_eq!((status, body.as_str()), (204, ""));
    for (outcome, expected) in [
        (CallbackOutcome::Rejected, 400),
        (CallbackOutcome::Unmatched, 400),
        (CallbackOutcome::TooLarge, 413),
        (CallbackOutcome::RetryLater, 500),
    ] {
        let ack = p.acknowledge(outcome);
        assert_eq!(ack.status, expected, "{outcome:?}");
        let json: Value = serde_json::from_str(&ack.body).unwrap();
        assert_eq!(json["code"], "FAIL", "{outcome:?}");
        assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(ack.content_type, "application/json");
    }
}

const TRANSACTION: &str = r#"{"mchid":"1230000109","appid":"wxd678efh567hg6787","out_trade_no":"ORD20250101120000001","transaction_id":"4200002512202501010000000001","trade_type":"NATIVE","trade_state":"SUCCESS","trade_state_desc":"支付成功","success_time":"2025-01-01T12:00:30+08:00","payer":{"openid":"o1"},"amount":{"total":100,"payer_total":100,"currency":"CNY","payer_currency":"CNY"}}"#;

const REFUND: &str = r#"{"refund_id":"50000000382019052709732678859","out_refund_no":"R20250101000001","transaction_id":"4200002512202501010000000001","out_trade_no":"ORD20250101120000001","channel":"ORIGINAL","user_received_account":"招商银行信用卡0403","create_time":"2025-01-01T12:10:00+08:00","status":"PROCESSING","amount":{"total":100,"refund":40,"payer_total":100,"payer_refund":40,"currency":"CNY"}}"#;

#[tokio::test]
async fn create_query_close_refund_and_refund_query_go_to_their_paths() {
    let server = FakeWechat::start(|seen| match (seen.method.as_str(), seen.target.as_str()) {
        ("POST", "/v3/pay/transactions/native") => {
            Reply::ok(r#"{"code_url":"weixin://wxpay/bizpayurl?pr=abc"}"#)
        }
        ("GET", "/v3/pay/transactions/out-trade-no/ORD20250101120000001?mchid=1230000109")
        | ("GET", "/v3/pay/transactions/id/4200002512202501010000000001?mchid=1230000109") => {
            Reply::ok(TRANSACTION)
        }
        ("GET", "/v3/pay/transactions/id/4200000000000000000000000009?mchid=1230000109") => {
            Reply::status(404, r#"{"code":"ORDER_NOT_EXIST","message":"订单不存在"}"#)
        }
        ("POST", "/v3/pay/transactions/out-trade-no/ORD20250101120000001/close") => {
            Reply::status(204, "")
        }
        ("POST", "/v3/refund/domestic/refunds") => Reply::ok(REFUND),
        ("GET", "/v3/refund/domestic/refunds/R20250101000001") => Reply::ok(REFUND),
        ("GET", "/v3/refund/domestic/refunds/R20250101000002") => Reply::status(
            404,
            r#"{"code":"RESOURCE_NOT_EXISTS","message":"退款单不存在"}"#,
        ),
        other => panic!("unexpected {other:?}"),
    })
    .await;
    let p: Arc<dyn Provider> = Arc::new(provider(
        &server.base,
        "channels = [\"native\"]\n",
        Arc::new(AtomicI64::new(NOW)),
    ));
    let created = p.create_payment(&payment(Channel::Native)).await.unwrap();
    assert_eq!(
        created.pay_params,
        PayParams::CodeUrl {
            code_url: "weixin://wxpay/bizpayurl?pr=abc".into()
        }
    );

    let out_trade_no = OutTradeNo::parse("ORD20250101120000001").unwrap();
    let by_number = TradeRef::for_out_trade_no(out_trade_no.clone());
    let facts = p.query_payment(&by_number).await.unwrap();
    assert_eq!(facts.state, TradeState::Paid);
    assert_eq!(facts.amount, Some(Fen::new(100).unwrap()));
    let mut by_id = by_number.clone();
    by_id.provider_trade_no = Some("4200002512202501010000000001".into());
    assert_eq!(p.query_payment(&by_id).await.unwrap(), facts);
    by_id.provider_trade_no = Some("4200000000000000000000000009".into());
    assert_eq!(p.query_payment(&by_id).await, Err(ProviderError::NotFound));

    p.close_payment(&by_number).await.unwrap();

    let refund = p
        .refund(&RefundRequest {
            out_trade_no: out_trade_no.clone(),
            provider_trade_no: Some("4200002512202501010000000001".into()),
            out_refund_no: OutRefundNo::parse("R20250101000001").unwrap(),
            refund_amount: Fen::new(40).unwrap(),
            order_amount: Fen::new(100).unwrap(),
            reason: None,
            notify_url: Some("https://shop.example/notify/wechat/shop/refund".into()),
        })
        .await
        .unwrap();
    assert_eq!(refund.state, RefundState::Processing);
    assert_eq!(refund.amount, Some(Fen::new(40).unwrap()));
    let query = |no: &str| RefundQuery {
        out_trade_no: out_trade_no.clone(),
        out_refund_no: OutRefundNo::parse(no).unwrap(),
    };
    assert_eq!(
        p.query_refund(&query("R20250101000001")).await.unwrap(),
        refund
    );
    assert_eq!(
        p.query_refund(&query("R20250101000002"))
            .await
            .unwrap()
            .state,
        RefundState::NotFound
    );

    let sent = server.requests();
    let refund_body = sent
        .iter()
        .find(|s| s.target == "/v3/refund/domestic/refunds")
        .unwrap()
        .json();
    assert_eq!(
        refund_body["transaction_id"],
        "4200002512202501010000000001"
    );
    assert_eq!(
        refund_body["notify_url"],
        "https://shop.example/notify/wechat/shop/refund"
    );
}
