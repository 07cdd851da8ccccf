//! `WechatPay` as a `dyn Provider`: every channel against the fake server, the refusals that
//! happen before anything is sent, notices of both kinds, and the acknowledgements.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use paygate_core::{
    CallbackPurpose, Channel, CreatePayment, Currency, Fen, InboundCallback, Notice, NotifyError,
    OutRefundNo, OutTradeNo, PayParams, Provider, ProviderError, ProviderKind, RefundQuery,
    RefundState, TradeRef, TradeState,
};
use paygate_wechat::WechatPay;
use paygate_wechat::config::{H5Scene, WechatConfig};
use paygate_wechat::notify::build_signed_xml;
use paygate_wechat::sign::{self, ApiKey, Params, SignType};
use paygate_wechat::xml;

use crate::client::{config, refund_request};
use crate::fake_wechat::{API_KEY, APPID, FakeWechat, MCH_ID};
use crate::vectors::{list, load, text};

fn provider(server: &FakeWechat) -> Arc<dyn Provider> {
    let mut config = config(server);
    config.channels = paygate_wechat::CHANNELS.to_vec();
    config.h5_scene = Some(H5Scene {
        wap_url: "https://shop.example.com".into(),
        wap_name: "茶店".into(),
    });
    Arc::new(WechatPay::new(config).unwrap())
}

fn payment(channel: Channel, out_trade_no: &str) -> CreatePayment {
    CreatePayment {
        channel,
        out_trade_no: OutTradeNo::parse(out_trade_no).unwrap(),
        amount: Fen::new(1999).unwrap(),
        currency: Currency::Cny,
        subject: "茶叶".into(),
        description: None,
        payer_id: Some("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".into()),
        client_ip: Some("123.12.12.123".parse().unwrap()),
        expires_at: Utc.with_ymd_and_hms(2024, 1, 1, 4, 0, 0).unwrap(),
        notify_url: "https://gateway.example.com/notify/wechat/shop".into(),
        return_url: None,
    }
}

#[tokio::test]
async fn mini_program_and_jsapi_payments_return_signed_request_payment_fields() {
    let server = FakeWechat::start().await;
    let provider = provider(&server);
    for (channel, no) in [
        (Channel::MiniProgram, "order_ok_11"),
        (Channel::Jsapi, "order_ok_12"),
    ] {
        let created = provider
            .create_payment(&payment(channel, no))
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
            panic!("{channel}: wrong params");
        };
        assert_eq!(app_id, APPID);
        assert_eq!(package, "prepay_id=wx201410272009395522657a690389285100");
        assert_eq!(sign_type, "MD5");
        let signed: Params = [
            ("appId", app_id.as_str()),
            ("timeStamp", time_stamp.as_str()),
            ("nonceStr", nonce_str.as_str()),
            ("package", package.as_str()),
            ("signType", sign_type.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert!(sign::verify(
            &signed,
            &ApiKey::new(API_KEY),
            SignType::Md5,
            &pay_sign
        ));
    }
    let sent = server.requests();
    assert!(
        sent.iter()
            .all(|r| r.signature_ok && r.fields["trade_type"] == "JSAPI")
    );
    // Noon Beijing time.
    assert_eq!(sent[0].fields["time_expire"], "20240101120000");
}

#[tokio::test]
async fn app_native_and_h5_payments_return_their_own_params() {
    let server = FakeWechat::start().await;
    let provider = provider(&server);
    let app = provider
        .create_payment(&payment(Channel::App, "order_ok_13"))
        .await
        .unwrap();
    let PayParams::WechatApp {
        partnerid,
        package,
        prepayid,
        ..
    } = app.pay_params
    else {
        panic!("app params");
    };
    assert_eq!(
        (partnerid.as_str(), package.as_str()),
        (MCH_ID, "Sign=WXPay")
    );
    assert_eq!(prepayid, "wx201410272009395522657a690389285100");

    let native = provider
        .create_payment(&payment(Channel::Native, "order_ok_14"))
        .await
        .unwrap();
    assert!(
        matches!(native.pay_params, PayParams::CodeUrl { ref code_url } if code_url.starts_with("weixin://"))
    );

    let h5 = provider
        .create_payment(&payment(Channel::H5, "order_ok_15"))
        .await
        .unwrap();
    assert!(matches!(h5.pay_params, PayParams::MwebUrl { .. }));
    let sent = server.requests();
    let mweb = sent
        .iter()
        .find(|r| r.fields["trade_type"] == "MWEB")
        .unwrap();
    let scene: serde_json::Value = serde_json::from_str(&mweb.fields["scene_info"]).unwrap();
    assert_eq!(scene["h5_info"]["type"], "Wap");
    assert_eq!(scene["h5_info"]["wap_name"], "茶店");
    let native_sent = sent
        .iter()
        .find(|r| r.fields["trade_type"] == "NATIVE")
        .unwrap();
    assert_eq!(native_sent.fields["product_id"], "order_ok_14");
}

#[tokio::test]
async fn requests_wechat_cannot_take_are_refused_before_sending() {
    let server = FakeWechat::start().await;
    let provider = provider(&server);
    let mut no_openid = payment(Channel::MiniProgram, "order_ok_16");
    no_openid.payer_id = None;
    let mut too_big = payment(Channel::Native, "order_ok_17");
    too_big.amount = Fen::new(i64::from(i32::MAX) + 1).unwrap();
    let alipay_channel = payment(Channel::Wap, "order_ok_18");
    let mut no_ip = payment(Channel::App, "order_ok_19");
    no_ip.client_ip = None;
    for request in [no_openid, too_big, alipay_channel, no_ip] {
        let error = provider.create_payment(&request).await.unwrap_err();
        assert!(
            matches!(error, ProviderError::InvalidRequest(_)),
            "{error:?}"
        );
    }
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn a_forged_unifiedorder_answer_never_becomes_pay_params() {
    let server = FakeWechat::start().await;
    let provider = provider(&server);
    let error = provider
        .create_payment(&payment(Channel::Jsapi, "order_forged"))
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::UntrustedResponse(_)));
}

#[tokio::test]
async fn queries_close_and_refunds_map_to_the_trait_results() {
    let server = FakeWechat::start().await;
    let provider = provider(&server);
    let facts = provider
        .query_payment(&TradeRef::for_out_trade_no(
            OutTradeNo::parse("order_ok_20").unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(facts.state, TradeState::Paid);
    assert_eq!(facts.provider, ProviderKind::WECHAT);
    provider
        .close_payment(&TradeRef::for_out_trade_no(
            OutTradeNo::parse("order_ok_21").unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(
        provider
            .close_payment(&TradeRef::for_out_trade_no(
                OutTradeNo::parse("order_paid").unwrap()
            ))
            .await,
        Err(ProviderError::AlreadyPaid)
    );
    assert!(matches!(
        provider.refund(&refund_request("refund_11")).await,
        Err(ProviderError::Configuration(_))
    ));
    let refund = provider
        .query_refund(&RefundQuery {
            out_trade_no: OutTradeNo::parse("order_ok_01").unwrap(),
            out_refund_no: OutRefundNo::parse("refund_12").unwrap(),
        })
        .await
        .unwrap();
    assert_eq!(refund.state, RefundState::Succeeded);
}

/// A provider configured as the notify vectors' merchant.
fn vector_merchant() -> WechatPay {
    WechatPay::new(WechatConfig::new("wx2421b1c4370ec43b", "10000100", API_KEY)).unwrap()
}

#[test]
fn payment_and_refund_notifies_become_notices() {
    let provider = vector_merchant();
    let doc = load("notify.json");
    let n01 = &list(&doc, "cases")[0];
    let callback =
        InboundCallback::of_body(CallbackPurpose::Payment, text(n01, "notify_xml").as_bytes());
    let Notice::Payment(facts) = provider.verify_callback(&callback).unwrap() else {
        panic!("payment")
    };
    assert_eq!(facts.amount, Some(Fen::new(1).unwrap()));

    let refunds = load("refund_notify.json");
    let f01 = &list(&refunds, "cases")[0];
    let callback = InboundCallback::of_body(
        CallbackPurpose::Payment,
        text(f01, "outer_notify_xml").as_bytes(),
    );
    let Notice::Refund(refund) = provider.verify_callback(&callback).unwrap() else {
        panic!("refund")
    };
    assert_eq!(refund.out_refund_no, "131811191610442717309");
    assert_eq!(refund.state, RefundState::Succeeded);

    // The same refund notify addressed to another merchant's appid is refused.
    let other = WechatPay::new(WechatConfig::new("wx_other", "10000100", API_KEY)).unwrap();
    assert!(matches!(
        other.verify_callback(&callback),
        Err(NotifyError::BadField { field: "appid", .. })
    ));
}

#[test]
fn hmac_apps_accept_hmac_notifies_that_omit_sign_type() {
    let mut config = WechatConfig::new("wx2421b1c4370ec43b", "10000100", API_KEY);
    config.sign_type = SignType::HmacSha256;
    let provider = WechatPay::new(config).unwrap();
    let doc = load("notify.json");
    let n08 = list(&doc, "cases")
        .into_iter()
        .find(|c| c["id"] == "N08_hmac_signed_no_sign_type_field")
        .unwrap();
    let callback = InboundCallback::of_body(
        CallbackPurpose::Payment,
        text(&n08, "notify_xml").as_bytes(),
    );
    assert!(matches!(
        provider.verify_callback(&callback),
        Ok(Notice::Payment(_))
    ));
}

#[test]
fn oversized_and_dtd_bodies_are_refused_with_their_own_errors() {
    let provider = vector_merchant();
    let big = vec![b' '; 64 * 1024];
    assert!(matches!(
        provider.verify_callback(&InboundCallback::of_body(CallbackPurpose::Payment, &big)),
        Err(NotifyError::TooLarge(_))
    ));
    let mut fields = Params::new();
    fields.insert("return_code".into(), "SUCCESS".into());
    let body = build_signed_xml(fields, &ApiKey::new(API_KEY), SignType::Md5).unwrap();
    let with_dtd = format!("<!DOCTYPE xml>{body}");
    assert_eq!(
        provider.verify_callback(&InboundCallback::of_body(
            CallbackPurpose::Payment,
            with_dtd.as_bytes()
        )),
        Err(NotifyError::ForbiddenDtd)
    );
}

#[test]
fn acknowledgements_are_the_exact_success_and_a_fail_document() {
    let provider = vector_merchant();
    let doc = load("notify.json");
    use paygate_core::CallbackOutcome as Outcome;
    let accepted = provider.acknowledge(Outcome::Accepted);
    assert_eq!(accepted.body, text(&doc, "success_reply_xml"));
    assert_eq!(accepted.status, 200);
    // A genuine notify that does not match the order is stopped: resending cannot change it.
    assert_eq!(provider.acknowledge(Outcome::Unmatched), accepted);
    // v2 reads the body: a refusal is FAIL with 200 (413 / 503 for a body too large or a
    // gateway that cannot take it now), and WeChat retries every FAIL.
    for (outcome, status) in [
        (Outcome::Rejected, 200),
        (Outcome::TooLarge, 413),
        (Outcome::RetryLater, 503),
    ] {
        let ack = provider.acknowledge(outcome);
        assert_eq!(ack.status, status, "{outcome:?}");
        assert_eq!(
            xml::parse(ack.body.as_bytes()).unwrap()["return_code"],
            "FAIL"
        );
    }
}

#[test]
fn the_provider_debug_output_hides_the_key() {
    let provider = vector_merchant();
    assert!(!format!("{provider:?}").contains(&API_KEY[..8]));
}
