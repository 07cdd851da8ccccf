//! The sandbox's APIv3, driven by paygate-wechat-v3's own client configured from the
//! sandbox's exported v3 TOML: every product, queries, close, refunds with their notifies, the
//! `Authorization` check, certificate download and rotation, the notify faults and the retry
//! schedule.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{TimeDelta, Utc};
use paygate_core::{
    Channel, CreatePayment, Currency, Fen, Notice, OutRefundNo, OutTradeNo, PayParams,
    RefundRequest, RefundState, TradeState,
};
use paygate_sandbox::{Fault, FaultKind, NotifyDelivery, NotifyKind, RunningSandbox};
use paygate_wechat_v3::client::{ApiClient, ApiError};
use paygate_wechat_v3::config::WechatV3Settings;
use paygate_wechat_v3::notify::{NotifyRejection, VerifiedNotify};
use paygate_wechat_v3::verify::VerifyError;

use crate::helpers::{NotifyReceiver, WAIT, spawn_sandbox, trade_no};

/// The gateway's v3 settings for the sandbox merchant, read from `export_v3_toml`;
/// `edit` adjusts the table first (say, to drop the public key).
fn settings(sandbox: &RunningSandbox, edit: impl FnOnce(&mut toml::Table)) -> WechatV3Settings {
    let exported: toml::Table = sandbox
        .credentials()
        .export_v3_toml("sandbox-v3")
        .parse()
        .unwrap();
    let mut app = exported["wechat"]["sandbox-v3"].as_table().unwrap().clone();
    edit(&mut app);
    app.try_into().unwrap()
}

fn client(sandbox: &RunningSandbox) -> ApiClient {
    ApiClient::new(settings(sandbox, |_| {}).load().unwrap()).unwrap()
}

fn payment(channel: Channel, out_trade_no: &str, notify_url: &str) -> CreatePayment {
    CreatePayment {
        channel,
        out_trade_no: OutTradeNo::parse(out_trade_no).unwrap(),
        amount: Fen::new(1999).unwrap(),
        currency: Currency::Cny,
        subject: "Oolong tea".into(),
        description: None,
        payer_id: matches!(channel, Channel::Jsapi | Channel::MiniProgram)
            .then(|| "o_v3_buyer".to_owned()),
        client_ip: Some([203, 0, 113, 7].into()),
        expires_at: Utc::now() + TimeDelta::hours(2),
        notify_url: notify_url.to_owned(),
        return_url: None,
    }
}

fn refund_request(
    out_trade_no: &str,
    out_refund_no: &str,
    amount: i64,
    url: &str,
) -> RefundRequest {
    RefundRequest {
        out_trade_no: OutTradeNo::parse(out_trade_no).unwrap(),
        provider_trade_no: None,
        out_refund_no: OutRefundNo::parse(out_refund_no).unwrap(),
        refund_amount: Fen::new(amount).unwrap(),
        order_amount: Fen::new(1999).unwrap(),
        reason: Some("sandbox".into()),
        notify_url: Some(url.to_owned()),
    }
}

/// A receiver that takes every notify (APIv3 wants any 2xx).
async fn accepting_receiver() -> NotifyReceiver {
    NotifyReceiver::start(|_| (204, String::new())).await
}

/// Verifies one recorded delivery with the merchant crate's notify check.
async fn verify(
    client: &ApiClient,
    delivery: &NotifyDelivery,
) -> Result<VerifiedNotify, NotifyRejection> {
    let headers: Vec<(&str, &str)> = delivery
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    client
        .verify_notify(&headers, delivery.body.as_bytes())
        .await
}

/// Waits for the first delivery of `kind` for `out_trade_no`.
async fn first_delivery(
    sandbox: &RunningSandbox,
    out_trade_no: &str,
    kind: NotifyKind,
) -> NotifyDelivery {
    let no = out_trade_no.to_owned();
    sandbox
        .wait_for_deliveries(WAIT, move |d| {
            d.iter().any(|x| x.out_trade_no == no && x.kind == kind)
        })
        .await
        .unwrap()
        .into_iter()
        .find(|x| x.out_trade_no == out_trade_no && x.kind == kind)
        .unwrap()
}

#[tokio::test]
async fn every_product_orders_pays_notifies_and_queries_through_apiv3() {
    let sandbox = spawn_sandbox().await;
    let receiver = accepting_receiver().await;
    let client = client(&sandbox);
    let credentials = &sandbox.credentials().wechat_v3;
    for channel in [
        Channel::MiniProgram,
        Channel::Jsapi,
        Channel::App,
        Channel::H5,
        Channel::Native,
    ] {
        let no = trade_no("v3prod");
        // One request, sent twice below: time_expire is part of it, so a second
        // `payment(…)` a second later would be a different order (OUT_TRADE_NO_USED).
        let request = payment(channel, &no, &receiver.url);
        let created = client
            .create_payment(&request)
            .await
            .unwrap_or_else(|e| panic!("{channel}: {e}"));
        match (&created.pay_params, channel) {
            (
                PayParams::WechatJsapi {
                    package, sign_type, ..
                },
                Channel::MiniProgram | Channel::Jsapi,
            ) => {
                assert!(package.starts_with("prepay_id=wx"), "{package}");
                assert_eq!(sign_type, "RSA");
            }
            (
                PayParams::WechatApp {
                    prepayid,
                    partnerid,
                    ..
                },
                Channel::App,
            ) => {
                assert!(prepayid.starts_with("wx"));
                assert_eq!(partnerid, &credentials.mchid);
            }
            (PayParams::MwebUrl { mweb_url }, Channel::H5) => {
                assert!(mweb_url.contains("/sandbox?prepay_id="), "{mweb_url}");
            }
            (PayParams::CodeUrl { code_url }, Channel::Native) => {
                assert!(
                    code_url.starts_with("weixin://wxpay/bizpayurl"),
                    "{code_url}"
                );
            }
            (other, _) => panic!("{channel}: unexpected pay params {other:?}"),
        }
        // Ordering again with identical parameters returns the same order.
        let again = client.create_payment(&request).await.unwrap();
        assert_eq!(order_of(&again.pay_params), order_of(&created.pay_params));

        let unpaid = client.query_by_out_trade_no(&no).await.unwrap();
        assert_eq!(unpaid.state, TradeState::AwaitingPayment, "{channel}");

        let paid = sandbox
            .pay(paygate_core::ProviderKind::WECHAT, &no)
            .unwrap();
        let delivery = first_delivery(&sandbox, &no, NotifyKind::Payment).await;
        assert!(
            delivery.acknowledged,
            "{channel}: a 204 acknowledges a v3 notify"
        );
        let notice = verify(&client, &delivery).await.unwrap().notice;
        let Notice::Payment(facts) = notice else {
            panic!("{channel}: not a payment notice");
        };
        assert_eq!(facts.state, TradeState::Paid);
        assert_eq!(facts.amount, Some(Fen::new(1999).unwrap()));
        assert_eq!(facts.app_id.as_deref(), Some(credentials.appid.as_str()));
        assert_eq!(
            facts.merchant_id.as_deref(),
            Some(credentials.mchid.as_str())
        );
        assert_eq!(facts.out_trade_no, no);
        assert_eq!(facts.provider_trade_no, paid.provider_trade_no);

        let by_no = client.query_by_out_trade_no(&no).await.unwrap();
        assert_eq!(by_no.state, TradeState::Paid);
        let transaction_id = by_no.provider_trade_no.clone().unwrap();
        let by_id = client
            .query_by_transaction_id(&transaction_id)
            .await
            .unwrap();
        assert_eq!(
            by_id, by_no,
            "{channel}: both queries read the same transaction"
        );
    }
    sandbox.stop().await;
}

/// What names the order in pay params (their timestamp, nonce and signature are fresh per
/// call).
fn order_of(params: &PayParams) -> String {
    match params {
        PayParams::WechatJsapi { package, .. } => package.clone(),
        PayParams::WechatApp { prepayid, .. } => prepayid.clone(),
        PayParams::MwebUrl { mweb_url } => mweb_url.clone(),
        PayParams::CodeUrl { code_url } => code_url.clone(),
        other => format!("{other:?}"),
    }
}

#[tokio::test]
async fn orders_close_with_204_and_paid_or_reused_numbers_get_the_documented_codes() {
    let sandbox = spawn_sandbox().await;
    let receiver = accepting_receiver().await;
    let client = client(&sandbox);

    let no = trade_no("v3close");
    client
        .create_payment(&payment(Channel::Native, &no, &receiver.url))
        .await
        .unwrap();
    client.close(&no).await.unwrap();
    client.close(&no).await.unwrap();
    assert_eq!(
        client.query_by_out_trade_no(&no).await.unwrap().state,
        TradeState::Closed
    );
    assert!(
        sandbox
            .pay(paygate_core::ProviderKind::WECHAT, &no)
            .is_err()
    );
    let reorder = client
        .create_payment(&payment(Channel::Native, &no, &receiver.url))
        .await
        .unwrap_err();
    assert!(
        matches!(&reorder, ApiError::Api { status: 400, code, .. } if code == "ORDER_CLOSED"),
        "{reorder}"
    );

    let paid = trade_no("v3close");
    client
        .create_payment(&payment(Channel::App, &paid, &receiver.url))
        .await
        .unwrap();
    sandbox
        .pay(paygate_core::ProviderKind::WECHAT, &paid)
        .unwrap();
    let refused = client.close(&paid).await.unwrap_err();
    assert!(
        matches!(&refused, ApiError::Api { code, .. } if code == "ORDERPAID"),
        "{refused}"
    );

    let used = trade_no("v3close");
    client
        .create_payment(&payment(Channel::App, &used, &receiver.url))
        .await
        .unwrap();
    let mut different = payment(Channel::App, &used, &receiver.url);
    different.amount = Fen::new(1).unwrap();
    let conflict = client.create_payment(&different).await.unwrap_err();
    assert!(
        matches!(&conflict, ApiError::Api { status: 403, code, .. } if code == "OUT_TRADE_NO_USED"),
        "{conflict}"
    );

    let unknown = client
        .query_by_out_trade_no("never_ordered_01")
        .await
        .unwrap_err();
    assert!(
        matches!(&unknown, ApiError::Api { status: 404, code, .. } if code == "ORDER_NOT_EXIST"),
        "{unknown}"
    );
    sandbox.stop().await;
}

#[tokio::test]
async fn a_refund_is_accepted_processing_then_notified_and_queried_as_succeeded() {
    let sandbox = spawn_sandbox().await;
    let receiver = accepting_receiver().await;
    let client = client(&sandbox);
    let no = trade_no("v3refund");
    client
        .create_payment(&payment(Channel::Jsapi, &no, &receiver.url))
        .await
        .unwrap();

    let early = client
        .refund(&refund_request(&no, "RF_v3_early", 500, &receiver.url))
        .await
        .unwrap_err();
    assert!(
        matches!(&early, ApiError::Api { status: 404, code, .. } if code == "RESOURCE_NOT_EXISTS"),
        "an unpaid order: {early}"
    );

    sandbox
        .pay(paygate_core::ProviderKind::WECHAT, &no)
        .unwrap();
    let refund_no = format!("RF{no}");
    let accepted = client
        .refund(&refund_request(&no, &refund_no, 500, &receiver.url))
        .await
        .unwrap();
    assert_eq!(accepted.state, RefundState::Processing);
    assert_eq!(accepted.amount, Some(Fen::new(500).unwrap()));

    let delivery = first_delivery(&sandbox, &no, NotifyKind::Refund).await;
    let Notice::Refund(facts) = verify(&client, &delivery).await.unwrap().notice else {
        panic!("not a refund notice");
    };
    assert_eq!(facts.state, RefundState::Succeeded);
    assert_eq!(facts.out_refund_no, refund_no);
    assert_eq!(facts.amount, Some(Fen::new(500).unwrap()));
    assert!(facts.succeeded_at.is_some());

    let queried = client.query_refund(&no, &refund_no).await.unwrap();
    assert_eq!(queried.state, RefundState::Succeeded);
    assert_eq!(queried.provider_refund_id, facts.provider_refund_id);
    let retried = client
        .refund(&refund_request(&no, &refund_no, 500, &receiver.url))
        .await
        .unwrap();
    assert_eq!(
        retried.provider_refund_id, facts.provider_refund_id,
        "the same refund number is the same refund"
    );
    let too_much = client
        .refund(&refund_request(&no, "RF_v3_too_much", 1999, &receiver.url))
        .await
        .unwrap_err();
    assert!(
        matches!(&too_much, ApiError::Api { status: 400, .. }),
        "{too_much}"
    );
    let unknown = client.query_refund(&no, "RF_v3_unknown").await.unwrap();
    assert_eq!(unknown.state, RefundState::NotFound);
    assert_eq!(
        client.query_by_out_trade_no(&no).await.unwrap().state,
        TradeState::Refunded
    );
    sandbox.stop().await;
}

/// Sends one raw request to the sandbox with the given headers.
async fn raw(
    sandbox: &RunningSandbox,
    method: reqwest::Method,
    target: &str,
    headers: &[(&str, String)],
    body: &str,
) -> (u16, serde_json::Value) {
    let mut request =
        reqwest::Client::new().request(method, format!("{}{target}", sandbox.base_url()));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.body(body.to_owned()).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test]
async fn requests_are_checked_like_wechat_checks_them() {
    let sandbox = spawn_sandbox().await;
    let app = settings(&sandbox, |_| {}).load().unwrap();
    let mchid = app.mchid.clone();
    let now = Utc::now().timestamp();
    let target = format!("/v3/pay/transactions/out-trade-no/never_ordered_02?mchid={mchid}");
    let common = |authorization: String| {
        vec![
            ("authorization", authorization),
            ("accept", "application/json".to_owned()),
            ("user-agent", "sandbox-test".to_owned()),
        ]
    };

    let good = app
        .signer
        .authorization("GET", &target, now, "N1", b"")
        .unwrap();
    let (status, body) = raw(
        &sandbox,
        reqwest::Method::GET,
        &target,
        &common(good.clone()),
        "",
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("ORDER_NOT_EXIST")),
        "a well-signed GET reaches the order book"
    );

    // The classic mistake: the query string left out of the signed URL.
    let path_only = target.split('?').next().unwrap();
    let no_query = app
        .signer
        .authorization("GET", path_only, now, "N2", b"")
        .unwrap();
    let (status, body) = raw(
        &sandbox,
        reqwest::Method::GET,
        &target,
        &common(no_query),
        "",
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (401, Some("SIGN_ERROR")));

    let stale = app
        .signer
        .authorization("GET", &target, now - 600, "N3", b"")
        .unwrap();
    let (status, _) = raw(&sandbox, reqwest::Method::GET, &target, &common(stale), "").await;
    assert_eq!(status, 401, "a timestamp ten minutes old");

    let (status, _) = raw(
        &sandbox,
        reqwest::Method::GET,
        &target,
        &common("WECHATPAY2-SHA256-RSA2048 mchid=\"1\"".into()),
        "",
    )
    .await;
    assert_eq!(status, 401, "a malformed Authorization");

    // A signed body that was changed on the way.
    let close = "/v3/pay/transactions/out-trade-no/never_ordered_02/close";
    let signed_body = format!("{{\"mchid\":\"{mchid}\"}}");
    let authorization = app
        .signer
        .authorization("POST", close, now, "N4", signed_body.as_bytes())
        .unwrap();
    let mut headers = common(authorization);
    headers.push(("content-type", "application/json".to_owned()));
    let (status, _) = raw(
        &sandbox,
        reqwest::Method::POST,
        close,
        &headers,
        &format!("{{\"mchid\": \"{mchid}\"}}"),
    )
    .await;
    assert_eq!(status, 401);

    let no_agent: Vec<(&str, String)> = common(good)
        .into_iter()
        .filter(|(n, _)| *n != "user-agent")
        .collect();
    let (status, body) = raw(&sandbox, reqwest::Method::GET, &target, &no_agent, "").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("INVALID_REQUEST"))
    );
    sandbox.stop().await;
}

#[tokio::test]
async fn platform_certificates_are_downloaded_and_a_rotation_is_followed() {
    let sandbox = spawn_sandbox().await;
    let receiver = accepting_receiver().await;
    // Certificate mode only: no public key, so every answer is checked by certificate.
    let certificate_only = settings(&sandbox, |app| {
        app.remove("public_key_id");
        app.remove("public_key");
    });
    let client = ApiClient::new(certificate_only.load().unwrap()).unwrap();
    let first = sandbox.wechat_v3_certificate_serials();
    assert_eq!(
        first,
        [sandbox
            .credentials()
            .wechat_v3
            .platform_certificate_serial
            .clone()]
    );

    let no = trade_no("v3cert");
    client
        .create_payment(&payment(Channel::Native, &no, &receiver.url))
        .await
        .unwrap();
    let held: Vec<String> = client
        .app()
        .keys
        .certificate_expiries()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(held, first, "the first call downloaded the list");

    let rotated = sandbox.rotate_wechat_v3_certificate().unwrap();
    assert_ne!(rotated, first[0]);
    assert_eq!(sandbox.wechat_v3_certificate_serials().len(), 2);
    // Answers are now signed under the new serial. The client downloads the list again (on
    // its own at most once a minute after an unknown serial; here at once), and they verify.
    assert_eq!(client.refresh_certificates().await.unwrap(), 2);
    client.query_by_out_trade_no(&no).await.unwrap();

    // Notifies signed by the newest certificate verify in certificate mode.
    sandbox.set_wechat_v3_notify_signer(paygate_sandbox::V3NotifySigner::Certificate);
    sandbox
        .pay(paygate_core::ProviderKind::WECHAT, &no)
        .unwrap();
    let delivery = first_delivery(&sandbox, &no, NotifyKind::Payment).await;
    let serial = delivery
        .headers
        .iter()
        .find(|(n, _)| n == "Wechatpay-Serial")
        .unwrap()
        .1
        .clone();
    assert_eq!(serial, rotated);
    verify(&client, &delivery).await.unwrap();

    // A public-key-only merchant cannot check a certificate-signed notify.
    let public_only = settings(&sandbox, |app| {
        app.insert("platform_certificates".into(), false.into());
    });
    let public_client = ApiClient::new(public_only.load().unwrap()).unwrap();
    assert!(matches!(
        verify(&public_client, &delivery).await,
        Err(NotifyRejection::Verify(VerifyError::UnknownSerial(_)))
    ));
    sandbox.stop().await;
}

/// Whether a rejection is the one a fault should cause.
type RejectionCheck = fn(&NotifyRejection) -> bool;

#[tokio::test]
async fn each_notify_fault_breaks_exactly_the_check_it_targets() {
    let sandbox = spawn_sandbox().await;
    let receiver = accepting_receiver().await;
    let client = client(&sandbox);
    let cases: [(FaultKind, RejectionCheck); 14] = [
        (FaultKind::ProbeSignature, |r| {
            matches!(r, NotifyRejection::Verify(VerifyError::Probe))
        }),
        (FaultKind::UnknownSerial, |r| {
            matches!(r, NotifyRejection::Verify(VerifyError::UnknownSerial(_)))
        }),
        (FaultKind::StaleTimestamp, |r| {
            matches!(
                r,
                NotifyRejection::Verify(VerifyError::StaleTimestamp { .. })
            )
        }),
        (FaultKind::BadSignature, |r| {
            matches!(r, NotifyRejection::Verify(VerifyError::BadSignature))
        }),
        (FaultKind::TamperedBody, |r| {
            matches!(r, NotifyRejection::Verify(VerifyError::BadSignature))
        }),
        (FaultKind::MissingSignatureHeader, |r| {
            matches!(r, NotifyRejection::Verify(VerifyError::MissingHeader(_)))
        }),
        (FaultKind::TamperedCiphertext, |r| {
            matches!(r, NotifyRejection::Decrypt(_))
        }),
        (FaultKind::FutureTimestamp, |r| {
            matches!(
                r,
                NotifyRejection::Verify(VerifyError::StaleTimestamp { skew_secs }) if *skew_secs < 0
            )
        }),
        (FaultKind::WrongAssociatedData, |r| {
            matches!(r, NotifyRejection::Decrypt(_))
        }),
        (FaultKind::NonJsonPlaintext, |r| {
            matches!(r, NotifyRejection::Malformed(_))
        }),
        // These verify and decrypt: the gateway's comparison with the order refuses them.
        (FaultKind::WrongAmount, |_| false),
        (FaultKind::WrongAppId, |_| false),
        (FaultKind::WrongMerchantId, |_| false),
        (FaultKind::WrongOutTradeNo, |_| false),
    ];
    for (fault, expected) in cases {
        let no = trade_no("v3fault");
        client
            .create_payment(&payment(Channel::App, &no, &receiver.url))
            .await
            .unwrap();
        sandbox.add_fault(Fault::once(fault.clone()).for_trade(no.clone()));
        sandbox
            .pay(paygate_core::ProviderKind::WECHAT, &no)
            .unwrap();
        let delivery = first_delivery(&sandbox, &no, NotifyKind::Payment).await;
        assert_eq!(delivery.faults, std::slice::from_ref(&fault));
        match verify(&client, &delivery).await {
            Err(rejection) => assert!(expected(&rejection), "{fault:?}: {rejection:?}"),
            Ok(verified) => {
                let Notice::Payment(facts) = verified.notice else {
                    panic!("{fault:?}")
                };
                let amount = Fen::new(1999).unwrap();
                let app = client.app();
                let bent = match fault {
                    FaultKind::WrongAmount => facts.amount != Some(amount),
                    FaultKind::WrongAppId => facts.app_id.as_deref() != Some(app.appid.as_str()),
                    FaultKind::WrongMerchantId => {
                        facts.merchant_id.as_deref() != Some(app.mchid.as_str())
                    }
                    FaultKind::WrongOutTradeNo => facts.out_trade_no == format!("{no}_X"),
                    _ => false,
                };
                assert!(bent, "{fault:?} verified unchanged: {facts:?}");
            }
        }
    }
    sandbox.stop().await;
}

#[tokio::test]
async fn a_refused_notify_is_retried_on_the_scaled_schedule_until_a_2xx() {
    let sandbox = spawn_sandbox().await;
    let answered = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&answered);
    // 500, then 400, then 200 with a body: APIv3 takes any 2xx.
    let receiver = NotifyReceiver::start(move |_| match count.fetch_add(1, Ordering::SeqCst) {
        0 => (500, "{\"code\":\"FAIL\",\"message\":\"失败\"}".to_owned()),
        1 => (400, "{\"code\":\"FAIL\",\"message\":\"失败\"}".to_owned()),
        _ => (200, "{\"code\":\"SUCCESS\"}".to_owned()),
    })
    .await;
    let client = client(&sandbox);
    let no = trade_no("v3retry");
    client
        .create_payment(&payment(Channel::Native, &no, &receiver.url))
        .await
        .unwrap();
    sandbox
        .pay(paygate_core::ProviderKind::WECHAT, &no)
        .unwrap();
    let deliveries = crate::helpers::wait_acknowledged(&sandbox, &no).await;
    let attempts: Vec<(u32, Option<u16>, bool)> = crate::helpers::for_trade(&deliveries, &no)
        .iter()
        .map(|d| (d.attempt, d.response_status, d.acknowledged))
        .collect();
    assert_eq!(
        attempts,
        [
            (1, Some(500), false),
            (2, Some(400), false),
            (3, Some(200), true)
        ]
    );
    assert_eq!(
        answered.load(Ordering::SeqCst),
        3,
        "no delivery after the 2xx"
    );

    // An API answer with a bad signature is not trusted.
    sandbox.add_fault(
        Fault::once(FaultKind::BadAnswerSignature)
            .for_api("/v3/pay/transactions/out-trade-no/{out_trade_no}"),
    );
    let untrusted = client.query_by_out_trade_no(&no).await.unwrap_err();
    assert!(
        matches!(untrusted, ApiError::Unverified(VerifyError::BadSignature)),
        "{untrusted}"
    );
    assert_eq!(
        client.query_by_out_trade_no(&no).await.unwrap().state,
        TradeState::Paid
    );
    sandbox.stop().await;
}
