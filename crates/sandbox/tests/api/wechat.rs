//! WeChat flows over HTTP: unifiedorder → pay → notify → query → refund → refund notify, and
//! the business errors WeChat answers with.

use paygate_core::ProviderKind;
use paygate_wechat::sign::SignType;

use crate::helpers::{
    NotifyReceiver, WECHAT_SUCCESS_XML, WechatMerchant, assert_refunded, for_trade, get_json,
    pay_over_http, spawn_sandbox, trade_no, wait_acknowledged, wait_refunds_acknowledged,
};

fn field<'a>(params: &'a paygate_wechat::sign::Params, name: &str) -> &'a str {
    params.get(name).map(String::as_str).unwrap_or("")
}

#[tokio::test]
async fn a_jsapi_order_is_paid_notified_queried_and_refunded() {
    // Arrange
    let sandbox = spawn_sandbox().await;
    let merchant = WechatMerchant::of(&sandbox);
    let receiver = NotifyReceiver::always(WECHAT_SUCCESS_XML).await;
    let no = trade_no("WXFLOW");

    // Act: order
    let created = merchant
        .jsapi_order(&no, "101", &receiver.url, SignType::HmacSha256)
        .await;
    assert_eq!(field(&created, "return_code"), "SUCCESS");
    assert_eq!(field(&created, "result_code"), "SUCCESS");
    let prepay_id = field(&created, "prepay_id").to_owned();
    assert!(prepay_id.starts_with("wx"));
    let before = merchant
        .call("/pay/orderquery", &[("out_trade_no", &no)], SignType::Md5)
        .await;
    assert_eq!(field(&before, "trade_state"), "NOTPAY");

    // Act: the buyer pays by prepay_id
    assert_eq!(
        pay_over_http(&sandbox, serde_json::json!({"prepay_id": prepay_id})).await,
        200
    );
    let deliveries = wait_acknowledged(&sandbox, &no).await;

    // Assert: acknowledged after exactly one delivery, and the query agrees
    let mine = for_trade(&deliveries, &no);
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].attempt, 1);
    assert_eq!(receiver.bodies().len(), 1);
    let paid = merchant
        .call("/pay/orderquery", &[("out_trade_no", &no)], SignType::Md5)
        .await;
    assert_eq!(field(&paid, "trade_state"), "SUCCESS");
    assert_eq!(field(&paid, "total_fee"), "101");
    assert_eq!(field(&paid, "transaction_id").len(), 28);

    // Act: partial refund with a refund notify_url
    let refund = merchant
        .call(
            "/secapi/pay/refund",
            &[
                ("out_trade_no", &no),
                ("out_refund_no", &format!("{no}R1")),
                ("total_fee", "101"),
                ("refund_fee", "40"),
                ("notify_url", &receiver.url),
            ],
            SignType::Md5,
        )
        .await;
    assert_eq!(field(&refund, "result_code"), "SUCCESS");
    assert_eq!(field(&refund, "refund_fee"), "40");
    wait_refunds_acknowledged(&sandbox, &no, 1).await;
    let refunds = merchant
        .call("/pay/refundquery", &[("out_trade_no", &no)], SignType::Md5)
        .await;
    assert_eq!(field(&refunds, "refund_count"), "1");
    assert_eq!(field(&refunds, "refund_fee_0"), "40");
    assert_eq!(field(&refunds, "refund_status_0"), "SUCCESS");
    let after = merchant
        .call("/pay/orderquery", &[("out_trade_no", &no)], SignType::Md5)
        .await;
    assert_eq!(field(&after, "trade_state"), "REFUND");
    sandbox.stop().await;
}

#[tokio::test]
async fn an_identical_resubmit_gets_the_same_prepay_id_and_a_changed_one_is_refused() {
    let sandbox = spawn_sandbox().await;
    let merchant = WechatMerchant::of(&sandbox);
    let no = trade_no("WXDUP");
    let first = merchant
        .jsapi_order(&no, "100", "http://127.0.0.1:9/n", SignType::Md5)
        .await;
    let again = merchant
        .jsapi_order(&no, "100", "http://127.0.0.1:9/n", SignType::Md5)
        .await;
    let changed = merchant
        .jsapi_order(&no, "200", "http://127.0.0.1:9/n", SignType::Md5)
        .await;
    assert_eq!(field(&first, "prepay_id"), field(&again, "prepay_id"));
    assert_eq!(field(&changed, "result_code"), "FAIL");
    assert_eq!(field(&changed, "err_code"), "OUT_TRADE_NO_USED");
}

#[tokio::test]
async fn jsapi_without_openid_is_refused_with_param_error() {
    let sandbox = spawn_sandbox().await;
    let merchant = WechatMerchant::of(&sandbox);
    let answer = merchant
        .call(
            "/pay/unifiedorder",
            &[
                ("body", "x"),
                ("out_trade_no", &trade_no("WXNOOPENID")),
                ("total_fee", "1"),
                ("spbill_create_ip", "127.0.0.1"),
                ("notify_url", "http://127.0.0.1:9/n"),
                ("trade_type", "JSAPI"),
            ],
            SignType::Md5,
        )
        .await;
    assert_eq!(field(&answer, "return_code"), "SUCCESS");
    assert_eq!(field(&answer, "result_code"), "FAIL");
    assert_eq!(field(&answer, "err_code"), "PARAM_ERROR");
}

#[tokio::test]
async fn native_and_h5_orders_get_a_code_url_and_an_mweb_url() {
    let sandbox = spawn_sandbox().await;
    let merchant = WechatMerchant::of(&sandbox);
    for (trade_type, url_field, extra) in [
        ("NATIVE", "code_url", ("product_id", "P1")),
        (
            "MWEB",
            "mweb_url",
            ("scene_info", r#"{"h5_info":{"type":"Wap"}}"#),
        ),
    ] {
        let answer = merchant
            .call(
                "/pay/unifiedorder",
                &[
                    ("body", "x"),
                    ("out_trade_no", &trade_no("WXURL")),
                    ("total_fee", "1"),
                    ("spbill_create_ip", "127.0.0.1"),
                    ("notify_url", "http://127.0.0.1:9/n"),
                    ("trade_type", trade_type),
                    extra,
                ],
                SignType::Md5,
            )
            .await;
        assert_eq!(field(&answer, "result_code"), "SUCCESS", "{trade_type}");
        assert!(
            !field(&answer, url_field).is_empty(),
            "{trade_type} has {url_field}"
        );
    }
}

#[tokio::test]
async fn a_wrong_signature_or_foreign_mch_id_is_answered_with_return_code_fail() {
    let sandbox = spawn_sandbox().await;
    let mut merchant = WechatMerchant::of(&sandbox);
    let real_key = merchant.key.clone();
    merchant.key = paygate_wechat::sign::ApiKey::new("0123456789abcdef0123456789abcdef");
    let wrong_key = merchant
        .jsapi_order(
            &trade_no("WXSIG"),
            "1",
            "http://127.0.0.1:9/n",
            SignType::Md5,
        )
        .await;
    assert_eq!(field(&wrong_key, "return_code"), "FAIL");
    assert_eq!(field(&wrong_key, "return_msg"), "签名错误");
    assert!(!wrong_key.contains_key("sign"));

    merchant.key = real_key;
    merchant.mch_id = "1900000109".into();
    let wrong_mch = merchant
        .jsapi_order(
            &trade_no("WXMCH"),
            "1",
            "http://127.0.0.1:9/n",
            SignType::Md5,
        )
        .await;
    assert_eq!(field(&wrong_mch, "return_code"), "FAIL");
}

#[tokio::test]
async fn a_paid_order_answers_orderpaid_and_a_closed_one_orderclosed() {
    let sandbox = spawn_sandbox().await;
    let merchant = WechatMerchant::of(&sandbox);
    let paid_no = trade_no("WXPAID");
    merchant
        .jsapi_order(&paid_no, "5", "http://127.0.0.1:9/n", SignType::Md5)
        .await;
    sandbox.pay(ProviderKind::WECHAT, &paid_no).unwrap();
    let reorder = merchant
        .jsapi_order(&paid_no, "5", "http://127.0.0.1:9/n", SignType::Md5)
        .await;
    assert_eq!(field(&reorder, "err_code"), "ORDERPAID");
    let close_paid = merchant
        .call(
            "/pay/closeorder",
            &[("out_trade_no", &paid_no)],
            SignType::Md5,
        )
        .await;
    assert_eq!(field(&close_paid, "err_code"), "ORDERPAID");

    let closed_no = trade_no("WXCLOSED");
    merchant
        .jsapi_order(&closed_no, "5", "http://127.0.0.1:9/n", SignType::Md5)
        .await;
    let close = merchant
        .call(
            "/pay/closeorder",
            &[("out_trade_no", &closed_no)],
            SignType::Md5,
        )
        .await;
    assert_eq!(field(&close, "result_code"), "SUCCESS");
    let reorder_closed = merchant
        .jsapi_order(&closed_no, "5", "http://127.0.0.1:9/n", SignType::Md5)
        .await;
    assert_eq!(field(&reorder_closed, "err_code"), "ORDERCLOSED");
    assert_eq!(
        pay_over_http(
            &sandbox,
            serde_json::json!({"provider": "wechat", "out_trade_no": closed_no})
        )
        .await,
        409
    );
}

#[tokio::test]
async fn refunds_are_idempotent_by_out_refund_no_and_never_exceed_the_total() {
    let sandbox = spawn_sandbox().await;
    let merchant = WechatMerchant::of(&sandbox);
    let no = trade_no("WXREF");
    merchant
        .jsapi_order(&no, "100", "http://127.0.0.1:9/n", SignType::Md5)
        .await;
    sandbox.pay(ProviderKind::WECHAT, &no).unwrap();
    let refund = |out_refund_no: String, fee: &'static str| {
        let merchant = &merchant;
        let no = no.clone();
        async move {
            merchant
                .call(
                    "/secapi/pay/refund",
                    &[
                        ("out_trade_no", &no),
                        ("out_refund_no", &out_refund_no),
                        ("total_fee", "100"),
                        ("refund_fee", fee),
                    ],
                    SignType::Md5,
                )
                .await
        }
    };
    let first = refund(format!("{no}A"), "60").await;
    let retry = refund(format!("{no}A"), "60").await;
    let too_much = refund(format!("{no}B"), "41").await;
    let rest = refund(format!("{no}C"), "40").await;
    assert_eq!(field(&first, "refund_id"), field(&retry, "refund_id"));
    assert_eq!(field(&too_much, "result_code"), "FAIL");
    assert_eq!(field(&rest, "result_code"), "SUCCESS");
    assert_refunded(&sandbox, ProviderKind::WECHAT, &no, 2, 100);
}

#[tokio::test]
async fn login_codes_give_one_stable_openid_once_and_tokens_unlock_jsapi_tickets() {
    let sandbox = spawn_sandbox().await;
    let credentials = sandbox.credentials().wechat.clone();
    let session = |code: &'static str| {
        get_json(format!(
            "{}/sns/jscode2session?appid={}&secret={}&js_code={code}&grant_type=authorization_code",
            credentials.login_base, credentials.appid, credentials.app_secret
        ))
    };
    let first = session("code-1").await;
    assert_eq!(first["openid"], sandbox.openid_for_code("code-1"));
    assert!(first["session_key"].is_string());
    assert_eq!(session("code-1").await["errcode"], 40163);
    let bad_secret = get_json(format!(
        "{}/sns/jscode2session?appid={}&secret=nope&js_code=c2&grant_type=authorization_code",
        credentials.login_base, credentials.appid
    ))
    .await;
    assert_eq!(bad_secret["errcode"], 40125);

    let token: serde_json::Value = get_json(format!(
        "{}/cgi-bin/token?grant_type=client_credential&appid={}&secret={}",
        credentials.login_base, credentials.appid, credentials.app_secret
    ))
    .await;
    let access_token = token["access_token"].as_str().unwrap();
    let ticket: serde_json::Value = get_json(format!(
        "{}/cgi-bin/ticket/getticket?access_token={access_token}&type=jsapi",
        credentials.login_base
    ))
    .await;
    assert_eq!(ticket["errcode"], 0);
    assert!(ticket["ticket"].is_string());
    let forged: serde_json::Value = get_json(format!(
        "{}/cgi-bin/ticket/getticket?access_token=forged&type=jsapi",
        credentials.login_base
    ))
    .await;
    assert_eq!(forged["errcode"], 40001);
}

/// paygate-wechat's client, configured from the sandbox's exported TOML (the gateway's config
/// shape) plus the channels to serve.
fn wechat_client_from_exported_toml(
    sandbox: &paygate_sandbox::RunningSandbox,
) -> paygate_wechat::WechatPay {
    let exported: toml::Table = sandbox
        .credentials()
        .export_toml("sandbox")
        .parse()
        .unwrap();
    let mut app = exported["wechat"]["sandbox"].as_table().unwrap().clone();
    // The gateway's config takes the certificate as flat `cert_pem`/`key_pem`; the client's
    // own config nests it.
    let mut certificate = toml::Table::new();
    certificate.insert("format".into(), "pem".into());
    certificate.insert("cert_pem".into(), app.remove("cert_pem").unwrap());
    certificate.insert("key_pem".into(), app.remove("key_pem").unwrap());
    app.insert(
        "merchant_certificate".into(),
        toml::Value::Table(certificate),
    );
    app.insert(
        "channels".into(),
        toml::Value::Array(vec!["mini_program".into(), "jsapi".into(), "native".into()]),
    );
    let config: paygate_wechat::config::WechatConfig = toml::Value::Table(app).try_into().unwrap();
    paygate_wechat::WechatPay::new(config).unwrap()
}

#[tokio::test]
async fn the_paygate_wechat_client_configured_from_the_exported_toml_pays_refunds_and_logs_in() {
    use std::sync::Arc;

    use paygate_core::{
        CallbackPurpose, Channel, CreatePayment, Currency, Fen, InboundCallback, Notice,
        OutRefundNo, OutTradeNo, PayParams, Provider, RefundQuery, RefundRequest, RefundState,
        TradeRef, TradeState,
    };

    // Arrange: the client plays the merchant, its own verification plays the gateway's receiver
    let sandbox = spawn_sandbox().await;
    let client = Arc::new(wechat_client_from_exported_toml(&sandbox));
    let verifier = Arc::clone(&client);
    let receiver =
        NotifyReceiver::start(move |body| crate::helpers::merchant_answer(verifier.as_ref(), body))
            .await;
    let login = client
        .login()
        .jscode2session(
            "wx-login-code",
            paygate_wechat::login::SessionKeyUse::Discard,
        )
        .await
        .unwrap();
    assert_eq!(login.openid, sandbox.openid_for_code("wx-login-code"));
    let no = trade_no("WXCLIENT");
    let out_trade_no = OutTradeNo::parse(&no).unwrap();

    // Act: create a mini-program payment and pay it by prepay_id
    let created = client
        .create_payment(&CreatePayment {
            channel: Channel::MiniProgram,
            out_trade_no: out_trade_no.clone(),
            amount: Fen::new(2500).unwrap(),
            currency: Currency::Cny,
            subject: "sandbox test".into(),
            description: None,
            payer_id: Some(login.openid.clone()),
            client_ip: Some("127.0.0.1".parse().unwrap()),
            expires_at: chrono::Utc::now() + chrono::Duration::minutes(30),
            notify_url: receiver.url.clone(),
            return_url: None,
        })
        .await
        .unwrap();
    let PayParams::WechatJsapi { package, .. } = created.pay_params else {
        panic!("mini-program pay params");
    };
    let prepay_id = package.strip_prefix("prepay_id=").unwrap();
    assert_eq!(
        pay_over_http(&sandbox, serde_json::json!({"prepay_id": prepay_id})).await,
        200
    );
    let deliveries = wait_acknowledged(&sandbox, &no).await;

    // Assert: the client's own notify check accepted the first delivery; the query agrees
    assert_eq!(for_trade(&deliveries, &no).len(), 1);
    let facts = client
        .query_payment(&TradeRef::for_out_trade_no(out_trade_no.clone()))
        .await
        .unwrap();
    assert_eq!(facts.state, TradeState::Paid);
    assert_eq!(facts.amount, Some(Fen::new(2500).unwrap()));

    // Act: refund with a notify_url; the encrypted refund notify must pass the client's check
    let out_refund_no = OutRefundNo::parse(format!("{no}R")).unwrap();
    client
        .refund(&RefundRequest {
            out_trade_no: out_trade_no.clone(),
            provider_trade_no: facts.provider_trade_no.clone(),
            out_refund_no: out_refund_no.clone(),
            refund_amount: Fen::new(500).unwrap(),
            order_amount: Fen::new(2500).unwrap(),
            reason: None,
            notify_url: Some(receiver.url.clone()),
        })
        .await
        .unwrap();
    wait_refunds_acknowledged(&sandbox, &no, 1).await;
    let refund_body = receiver.body_containing("req_info");
    let notice = client
        .verify_callback(&InboundCallback::of_body(
            CallbackPurpose::Payment,
            &refund_body,
        ))
        .unwrap();
    assert!(
        matches!(notice, Notice::Refund(ref refund) if refund.amount == Some(Fen::new(500).unwrap()))
    );
    let queried = client
        .query_refund(&RefundQuery {
            out_trade_no,
            out_refund_no,
        })
        .await
        .unwrap();
    assert_eq!(queried.state, RefundState::Succeeded);
}
