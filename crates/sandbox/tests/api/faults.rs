//! Every fault the sandbox can inject, driven over HTTP and the Rust API.

use std::time::Duration;

use paygate_core::{
    CallbackPurpose, Channel, InboundCallback, OutTradeNo, Provider, ProviderKind, TradeRef,
};
use paygate_sandbox::{Fault, FaultKind, FaultTimes, NotifyDelivery, RunningSandbox};
use paygate_wechat::sign::{ApiKey, SignType};

use crate::helpers::{
    NotifyReceiver, WAIT, WECHAT_SUCCESS_XML, WechatMerchant, alipay_create, alipay_merchant,
    for_trade, get_json, spawn_sandbox, trade_no, wait_acknowledged,
};

/// A WeChat receiver that acknowledges only notifies whose signature verifies.
async fn verifying_wechat_receiver(sandbox: &RunningSandbox) -> NotifyReceiver {
    let key = ApiKey::new(sandbox.credentials().wechat.api_key.clone());
    NotifyReceiver::start(move |body| {
        let verified = paygate_wechat::xml::parse(body).ok().and_then(|fields| {
            paygate_wechat::sign::verify_received(&fields, &key, SignType::HmacSha256)
        });
        match verified {
            Some(_) => (200, WECHAT_SUCCESS_XML.to_owned()),
            None => (
                200,
                "<xml><return_code><![CDATA[FAIL]]></return_code></xml>".to_owned(),
            ),
        }
    })
    .await
}

/// Creates a WeChat order, adds `fault` for it, pays it and waits until `done`.
async fn pay_wechat_with_fault(
    sandbox: &RunningSandbox,
    receiver: &NotifyReceiver,
    kind: FaultKind,
    times: FaultTimes,
    done: impl Fn(&[&NotifyDelivery]) -> bool + Send + 'static,
) -> (String, Vec<NotifyDelivery>) {
    let merchant = WechatMerchant::of(sandbox);
    let no = trade_no("WXFAULT");
    merchant
        .jsapi_order(&no, "100", &receiver.url, SignType::HmacSha256)
        .await;
    sandbox.add_fault(Fault::once(kind).for_trade(&no).times(times));
    sandbox.pay(ProviderKind::WECHAT, &no).unwrap();
    let no_for_wait = no.clone();
    let deliveries = sandbox
        .wait_for_deliveries(WAIT, move |d| done(&for_trade(d, &no_for_wait)))
        .await
        .unwrap();
    let mine = for_trade(&deliveries, &no).into_iter().cloned().collect();
    (no, mine)
}

#[tokio::test]
async fn an_always_dropped_notify_is_attempted_on_the_whole_schedule_and_never_sent() {
    let sandbox = spawn_sandbox().await;
    let receiver = NotifyReceiver::always(WECHAT_SUCCESS_XML).await;
    // 1 first delivery + 15 retries, per WeChat's schedule.
    let (_, mine) = pay_wechat_with_fault(
        &sandbox,
        &receiver,
        FaultKind::DropNotify,
        FaultTimes::ALWAYS,
        |d| d.len() == 16,
    )
    .await;
    assert!(mine.iter().all(|d| d.dropped && !d.acknowledged));
    assert_eq!(mine.iter().map(|d| d.attempt).max(), Some(16));
    assert!(receiver.bodies().is_empty());
}

#[tokio::test]
async fn a_notify_dropped_once_is_delivered_by_the_first_retry() {
    let sandbox = spawn_sandbox().await;
    let receiver = NotifyReceiver::always(WECHAT_SUCCESS_XML).await;
    let (_, mine) = pay_wechat_with_fault(
        &sandbox,
        &receiver,
        FaultKind::DropNotify,
        FaultTimes::ONCE,
        |d| d.iter().any(|x| x.acknowledged),
    )
    .await;
    assert_eq!(mine.len(), 2);
    assert!(mine[0].dropped);
    assert!(mine[1].acknowledged && mine[1].attempt == 2);
    assert_eq!(receiver.bodies().len(), 1);
}

#[tokio::test]
async fn a_duplicated_notify_arrives_twice_with_the_same_body() {
    let sandbox = spawn_sandbox().await;
    let receiver = NotifyReceiver::always(WECHAT_SUCCESS_XML).await;
    let (_, mine) = pay_wechat_with_fault(
        &sandbox,
        &receiver,
        FaultKind::DuplicateNotify,
        FaultTimes::ONCE,
        |d| d.len() == 2,
    )
    .await;
    assert_eq!(receiver.bodies().len(), 2);
    assert_eq!(receiver.bodies()[0], receiver.bodies()[1]);
    assert!(mine.iter().all(|d| d.attempt == 1 && d.acknowledged));
}

#[tokio::test]
async fn concurrent_copies_all_arrive_for_the_same_attempt() {
    let sandbox = spawn_sandbox().await;
    let receiver = NotifyReceiver::always(WECHAT_SUCCESS_XML).await;
    let (_, mine) = pay_wechat_with_fault(
        &sandbox,
        &receiver,
        FaultKind::ConcurrentNotify { copies: 8 },
        FaultTimes::ONCE,
        |d| d.len() == 8,
    )
    .await;
    assert_eq!(receiver.bodies().len(), 8);
    let mut copies: Vec<u32> = mine.iter().map(|d| d.copy).collect();
    copies.sort_unstable();
    assert_eq!(copies, (1..=8).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_delayed_notify_still_arrives_and_records_the_delay() {
    let sandbox = spawn_sandbox().await;
    let receiver = NotifyReceiver::always(WECHAT_SUCCESS_XML).await;
    let (_, mine) = pay_wechat_with_fault(
        &sandbox,
        &receiver,
        FaultKind::DelayNotify { millis: 50 },
        FaultTimes::ONCE,
        |d| d.iter().any(|x| x.acknowledged),
    )
    .await;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].faults, vec![FaultKind::DelayNotify { millis: 50 }]);
}

#[tokio::test]
async fn a_bad_signature_is_refused_by_the_receiver_and_the_retry_is_accepted() {
    let sandbox = spawn_sandbox().await;
    let receiver = verifying_wechat_receiver(&sandbox).await;
    let (_, mine) = pay_wechat_with_fault(
        &sandbox,
        &receiver,
        FaultKind::BadSignature,
        FaultTimes::ONCE,
        |d| d.iter().any(|x| x.acknowledged),
    )
    .await;
    assert_eq!(mine.len(), 2, "acknowledged after exactly two deliveries");
    assert!(!mine[0].acknowledged);
    assert!(mine[1].acknowledged);
}

#[tokio::test]
async fn wrong_amount_appid_and_mch_id_notifies_are_genuinely_signed_but_say_something_else() {
    let sandbox = spawn_sandbox().await;
    let receiver = verifying_wechat_receiver(&sandbox).await;
    let credentials = sandbox.credentials().wechat.clone();
    for (kind, field, ours) in [
        (FaultKind::WrongAmount, "total_fee", "100".to_owned()),
        (FaultKind::WrongAppId, "appid", credentials.appid.clone()),
        (
            FaultKind::WrongMerchantId,
            "mch_id",
            credentials.mch_id.clone(),
        ),
    ] {
        let (_, mine) =
            pay_wechat_with_fault(&sandbox, &receiver, kind.clone(), FaultTimes::ONCE, |d| {
                d.iter().any(|x| x.acknowledged)
            })
            .await;
        assert_eq!(
            mine.len(),
            1,
            "{kind:?}: signature verified, so acknowledged at once"
        );
        let fields = paygate_wechat::xml::parse(mine[0].body.as_bytes()).unwrap();
        assert_ne!(fields[field], ours, "{kind:?} changes {field}");
    }
}

#[tokio::test]
async fn an_hmac_notify_without_sign_type_still_verifies_by_its_length() {
    let sandbox = spawn_sandbox().await;
    let receiver = verifying_wechat_receiver(&sandbox).await;
    let (_, mine) = pay_wechat_with_fault(
        &sandbox,
        &receiver,
        FaultKind::OmitSignType,
        FaultTimes::ONCE,
        |d| d.iter().any(|x| x.acknowledged),
    )
    .await;
    let fields = paygate_wechat::xml::parse(mine[0].body.as_bytes()).unwrap();
    assert!(!fields.contains_key("sign_type"));
    assert_eq!(fields["sign"].len(), 64);
}

#[tokio::test]
async fn api_faults_answer_5xx_systemerror_or_late_and_then_clear() {
    let sandbox = spawn_sandbox().await;
    let merchant = WechatMerchant::of(&sandbox);
    let http = reqwest::Client::new();
    // Posted over HTTP, as a reliability test in another process would.
    let post = |fault: serde_json::Value| {
        let http = http.clone();
        let url = format!("{}/sandbox/faults", sandbox.base_url());
        async move {
            http.post(url)
                .json(&fault)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        post(
            serde_json::json!({"fault": "http_status", "status": 503, "api": "/pay/unifiedorder"})
        )
        .await,
        201
    );
    let no = trade_no("WXAPI");
    let unavailable = merchant
        .http
        .post(format!("{}/pay/unifiedorder", merchant.base))
        .body("<xml></xml>")
        .send()
        .await
        .unwrap();
    assert_eq!(unavailable.status().as_u16(), 503);

    assert_eq!(
        post(
            serde_json::json!({"fault": "system_error", "provider": "wechat", "out_trade_no": no})
        )
        .await,
        201
    );
    let busy = merchant
        .jsapi_order(&no, "1", "http://127.0.0.1:9/n", SignType::Md5)
        .await;
    assert_eq!(busy["err_code"], "SYSTEMERROR");
    assert!(busy.contains_key("sign"));
    assert!(
        sandbox.trade(ProviderKind::WECHAT, &no).is_none(),
        "nothing was created"
    );

    // A processed timeout: the order exists although the caller gave up.
    sandbox.add_fault(
        Fault::once(FaultKind::Timeout { millis: 400 })
            .for_trade(&no)
            .after_processing(),
    );
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let timed_out = WechatMerchant {
        http: impatient,
        ..WechatMerchant::of(&sandbox)
    };
    let slow = timed_out
        .call_raw(
            "/pay/unifiedorder",
            &[
                ("body", "sandbox test"),
                ("out_trade_no", &no),
                ("total_fee", "1"),
                ("spbill_create_ip", "127.0.0.1"),
                ("notify_url", "http://127.0.0.1:9/n"),
                ("trade_type", "JSAPI"),
                ("openid", "oTestOpenid0001"),
            ],
            SignType::Md5,
        )
        .await;
    assert!(slow.is_err(), "the client timed out");
    assert!(
        sandbox.trade(ProviderKind::WECHAT, &no).is_some(),
        "but the provider processed it"
    );
    let retry = merchant
        .jsapi_order(&no, "1", "http://127.0.0.1:9/n", SignType::Md5)
        .await;
    assert_eq!(
        retry["result_code"], "SUCCESS",
        "a retry with the same parameters succeeds"
    );

    let cleared = http
        .delete(format!("{}/sandbox/faults", sandbox.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status().as_u16(), 204);
    let listed: serde_json::Value =
        get_json(format!("{}/sandbox/faults", sandbox.base_url())).await;
    assert_eq!(listed, serde_json::json!([]));
}

#[tokio::test]
async fn alipay_faults_answer_20000_and_bend_notifies() {
    let sandbox = spawn_sandbox().await;
    let merchant = std::sync::Arc::new(alipay_merchant(&sandbox));
    let verifier = std::sync::Arc::clone(&merchant);
    let receiver =
        NotifyReceiver::start(move |body| crate::helpers::merchant_answer(verifier.as_ref(), body))
            .await;
    let no = trade_no("APFAULT");
    merchant
        .create_payment(&alipay_create(Channel::Precreate, &no, 500, &receiver.url))
        .await
        .unwrap();

    sandbox.add_fault(
        Fault::once(FaultKind::SystemError)
            .for_provider(ProviderKind::ALIPAY)
            .for_api("alipay.trade.query"),
    );
    let unknown = merchant
        .query_payment(&TradeRef::for_out_trade_no(OutTradeNo::parse(&no).unwrap()))
        .await;
    assert!(
        unknown.is_err(),
        "20000 is an unknown outcome, never an answer"
    );
    assert!(
        merchant
            .query_payment(&TradeRef::for_out_trade_no(OutTradeNo::parse(&no).unwrap()))
            .await
            .is_ok(),
        "the fault fired once"
    );

    sandbox.add_fault(Fault::once(FaultKind::BadSignature).for_trade(&no));
    sandbox.add_fault(Fault::once(FaultKind::WrongMerchantId).for_trade(&no));
    sandbox.pay(ProviderKind::ALIPAY, &no).unwrap();
    let deliveries = wait_acknowledged(&sandbox, &no).await;
    let mine = for_trade(&deliveries, &no);
    assert_eq!(mine.len(), 2);
    assert!(!mine[0].acknowledged, "the corrupted signature is refused");
    assert!(mine[0].body.contains("seller_id=2088000000000000"));
    assert!(mine[1].acknowledged);
}

#[tokio::test]
async fn alipay_wrong_amount_and_app_id_notifies_verify_and_a_5xx_create_leaves_no_trade() {
    let sandbox = spawn_sandbox().await;
    let merchant = alipay_merchant(&sandbox);
    let receiver = NotifyReceiver::always("success").await;

    let refused = trade_no("APFIVE");
    sandbox.add_fault(
        Fault::once(FaultKind::HttpStatus { status: 502 }).for_api("alipay.trade.precreate"),
    );
    let created = merchant
        .create_payment(&alipay_create(
            Channel::Precreate,
            &refused,
            500,
            &receiver.url,
        ))
        .await;
    assert!(created.is_err());
    assert!(sandbox.trade(ProviderKind::ALIPAY, &refused).is_none());

    let no = trade_no("APBENT");
    merchant
        .create_payment(&alipay_create(Channel::Precreate, &no, 500, &receiver.url))
        .await
        .unwrap();
    sandbox.add_fault(Fault::once(FaultKind::WrongAmount).for_trade(&no));
    sandbox.add_fault(Fault::once(FaultKind::WrongAppId).for_trade(&no));
    sandbox.pay(ProviderKind::ALIPAY, &no).unwrap();
    let deliveries = wait_acknowledged(&sandbox, &no).await;
    let body = &for_trade(&deliveries, &no)[0].body;
    let fields: std::collections::BTreeMap<String, String> =
        url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
    assert_eq!(fields["total_amount"], "5.01");
    assert_ne!(fields["app_id"], sandbox.credentials().alipay.app_id);
    // Still genuinely signed: the client's check passes, so the gateway must compare fields.
    assert!(
        merchant
            .verify_callback(&InboundCallback::of_body(
                CallbackPurpose::Payment,
                body.as_bytes()
            ))
            .is_ok()
    );
}

/// The unusable answers a provider can give after doing the work, and the processed 5xx.
fn processed_unusable_faults() -> [FaultKind; 4] {
    [
        FaultKind::EmptyBody,
        FaultKind::TruncatedBody,
        FaultKind::BadAnswerSignature,
        FaultKind::HttpStatus { status: 502 },
    ]
}

/// Asserts the sandbox recorded the `index`-th 10-fen refund of `no` although `kind` fired.
fn assert_refund_carried_out(
    sandbox: &RunningSandbox,
    provider: ProviderKind,
    no: &str,
    out_refund_no: &str,
    index: usize,
    kind: &FaultKind,
) {
    let trade = sandbox.trade(provider, no).unwrap();
    assert_eq!(
        trade.refunds.last().map(|r| r.out_refund_no.as_str()),
        Some(out_refund_no),
        "{kind:?}: the refund was carried out"
    );
    assert_eq!(trade.refunded().get(), 10 * (index as i64 + 1));
}

/// Asserts no fault rule is left, so each one matched and fired.
async fn assert_every_fault_fired(sandbox: &RunningSandbox) {
    let left: serde_json::Value = get_json(format!("{}/sandbox/faults", sandbox.base_url())).await;
    assert_eq!(left, serde_json::json!([]), "every fault fired");
}

#[tokio::test]
async fn wechat_refunds_and_closes_are_carried_out_behind_an_unusable_answer() {
    let sandbox = spawn_sandbox().await;
    let merchant = WechatMerchant::of(&sandbox);
    let no = trade_no("WXUNUSABLE");
    merchant
        .jsapi_order(&no, "100", "http://127.0.0.1:9/n", SignType::Md5)
        .await;
    sandbox.pay(ProviderKind::WECHAT, &no).unwrap();

    for (index, kind) in processed_unusable_faults().into_iter().enumerate() {
        sandbox.add_fault(
            Fault::once(kind.clone())
                .for_api("/secapi/pay/refund")
                .for_trade(&no)
                .after_processing(),
        );
        let out_refund_no = format!("{no}R{index}");
        let answer = merchant
            .call_raw(
                "/secapi/pay/refund",
                &[
                    ("out_trade_no", &no),
                    ("out_refund_no", &out_refund_no),
                    ("total_fee", "100"),
                    ("refund_fee", "10"),
                ],
                SignType::Md5,
            )
            .await
            .unwrap();
        let fields = paygate_wechat::xml::parse(answer.as_bytes());
        match kind {
            FaultKind::EmptyBody | FaultKind::HttpStatus { .. } => {
                assert_eq!(answer, "", "{kind:?}")
            }
            FaultKind::TruncatedBody => assert!(fields.is_err(), "{kind:?}: {answer}"),
            _ => {
                let fields = fields.unwrap();
                assert_eq!(fields["result_code"], "SUCCESS", "the real answer");
                assert!(
                    paygate_wechat::sign::verify_received(&fields, &merchant.key, SignType::Md5)
                        .is_none(),
                    "but its signature does not verify"
                );
            }
        }
        assert_refund_carried_out(
            &sandbox,
            ProviderKind::WECHAT,
            &no,
            &out_refund_no,
            index,
            &kind,
        );
    }
    assert_every_fault_fired(&sandbox).await;

    let unpaid = trade_no("WXUNUSABLECLOSE");
    merchant
        .jsapi_order(&unpaid, "100", "http://127.0.0.1:9/n", SignType::Md5)
        .await;
    sandbox.add_fault(
        Fault::once(FaultKind::EmptyBody)
            .for_api("/pay/closeorder")
            .after_processing(),
    );
    let answer = merchant
        .call_raw(
            "/pay/closeorder",
            &[("out_trade_no", &unpaid)],
            SignType::Md5,
        )
        .await
        .unwrap();
    assert_eq!(answer, "");
    assert_eq!(
        sandbox.trade(ProviderKind::WECHAT, &unpaid).unwrap().status,
        paygate_sandbox::TradeStatus::Closed,
        "the close was carried out"
    );
}

#[tokio::test]
async fn alipay_refunds_and_closes_are_carried_out_behind_an_unusable_answer() {
    let sandbox = spawn_sandbox().await;
    let merchant = alipay_merchant(&sandbox);
    let no = trade_no("APUNUSABLE");
    merchant
        .create_payment(&alipay_create(
            Channel::Precreate,
            &no,
            100,
            "http://127.0.0.1:9/n",
        ))
        .await
        .unwrap();
    sandbox.pay(ProviderKind::ALIPAY, &no).unwrap();

    for (index, kind) in processed_unusable_faults().into_iter().enumerate() {
        sandbox.add_fault(
            Fault::once(kind.clone())
                .for_api("alipay.trade.refund")
                .for_trade(&no)
                .after_processing(),
        );
        let out_refund_no = format!("{no}R{index}");
        let answer = merchant
            .refund(&paygate_core::RefundRequest {
                out_trade_no: OutTradeNo::parse(&no).unwrap(),
                provider_trade_no: None,
                out_refund_no: paygate_core::OutRefundNo::parse(&out_refund_no).unwrap(),
                refund_amount: paygate_core::Fen::new(10).unwrap(),
                order_amount: paygate_core::Fen::new(100).unwrap(),
                reason: None,
                notify_url: None,
            })
            .await;
        assert!(
            answer.is_err(),
            "{kind:?}: the client cannot use the answer"
        );
        assert_refund_carried_out(
            &sandbox,
            ProviderKind::ALIPAY,
            &no,
            &out_refund_no,
            index,
            &kind,
        );
    }
    assert_every_fault_fired(&sandbox).await;

    let unpaid = trade_no("APUNUSABLECLOSE");
    merchant
        .create_payment(&alipay_create(
            Channel::Precreate,
            &unpaid,
            100,
            "http://127.0.0.1:9/n",
        ))
        .await
        .unwrap();
    sandbox.add_fault(
        Fault::once(FaultKind::BadAnswerSignature)
            .for_api("alipay.trade.close")
            .after_processing(),
    );
    let closed = merchant
        .close_payment(&TradeRef::for_out_trade_no(
            OutTradeNo::parse(&unpaid).unwrap(),
        ))
        .await;
    assert!(closed.is_err(), "the client cannot trust the answer");
    assert_eq!(
        sandbox.trade(ProviderKind::ALIPAY, &unpaid).unwrap().status,
        paygate_sandbox::TradeStatus::Closed,
        "the close was carried out"
    );
}
