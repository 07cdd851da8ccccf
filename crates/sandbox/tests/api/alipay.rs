//! Alipay flows over HTTP with paygate-alipay's client as the merchant and its notify
//! verification as the receiver: precreate, app pay, wap pay, mini-program create, refunds.

use std::sync::Arc;

use paygate_alipay::Alipay;
use paygate_core::{
    CallbackPurpose, Channel, Fen, InboundCallback, Notice, OutRefundNo, OutTradeNo, PayParams,
    Provider, ProviderKind, RefundQuery, RefundRequest, RefundState, TradeRef, TradeState,
};

use crate::helpers::{
    NotifyReceiver, WAIT, alipay_create, alipay_merchant, assert_refunded, for_trade,
    pay_over_http, spawn_sandbox, trade_no, wait_acknowledged, wait_refunds_acknowledged,
};

/// A receiver that plays the gateway: verifies with paygate-alipay and answers its ack.
async fn verifying_receiver(merchant: Arc<Alipay>) -> NotifyReceiver {
    NotifyReceiver::start(move |body| crate::helpers::merchant_answer(merchant.as_ref(), body))
        .await
}

fn refund_request(no: &str, out_refund_no: &str, fen: i64, total: i64) -> RefundRequest {
    RefundRequest {
        out_trade_no: OutTradeNo::parse(no).unwrap(),
        provider_trade_no: None,
        out_refund_no: OutRefundNo::parse(out_refund_no).unwrap(),
        refund_amount: Fen::new(fen).unwrap(),
        order_amount: Fen::new(total).unwrap(),
        reason: None,
        notify_url: None,
    }
}

#[tokio::test]
async fn a_precreate_order_is_paid_notified_queried_and_refunded_through_the_alipay_client() {
    // Arrange
    let sandbox = spawn_sandbox().await;
    let merchant = Arc::new(alipay_merchant(&sandbox));
    let receiver = verifying_receiver(Arc::clone(&merchant)).await;
    let no = trade_no("APQR");

    // Act: create and pay
    let created = merchant
        .create_payment(&alipay_create(Channel::Precreate, &no, 1999, &receiver.url))
        .await
        .unwrap();
    assert!(
        matches!(created.pay_params, PayParams::QrCode { ref qr_code } if qr_code.starts_with("https://qr.alipay.com/"))
    );
    let unpaid = merchant
        .query_payment(&TradeRef::for_out_trade_no(OutTradeNo::parse(&no).unwrap()))
        .await
        .unwrap();
    assert_eq!(unpaid.state, TradeState::AwaitingPayment);
    assert_eq!(
        pay_over_http(
            &sandbox,
            serde_json::json!({"provider": "alipay", "out_trade_no": no})
        )
        .await,
        200
    );
    let deliveries = wait_acknowledged(&sandbox, &no).await;

    // Assert: one delivery, verified and acknowledged by the real client; query says paid
    assert_eq!(for_trade(&deliveries, &no).len(), 1);
    let paid = merchant
        .query_payment(&TradeRef::for_out_trade_no(OutTradeNo::parse(&no).unwrap()))
        .await
        .unwrap();
    assert_eq!(paid.state, TradeState::Paid);
    assert_eq!(paid.amount, Some(Fen::new(1999).unwrap()));

    // Act: partial then full refund, each followed by a refund-carrying notify
    let partial = merchant
        .refund(&refund_request(&no, &format!("{no}R1"), 999, 1999))
        .await
        .unwrap();
    assert_eq!(partial.state, RefundState::Succeeded);
    let rest = merchant
        .refund(&refund_request(&no, &format!("{no}R2"), 1000, 1999))
        .await
        .unwrap();
    assert_eq!(rest.state, RefundState::Succeeded);
    let deliveries = wait_refunds_acknowledged(&sandbox, &no, 2).await;

    // Assert: the last refund notify closes the trade; refund query finds each refund
    let last = deliveries
        .iter()
        .rfind(|d| d.out_trade_no == no && d.out_refund_no.as_deref() == Some(&format!("{no}R2")))
        .unwrap();
    assert!(last.body.contains("trade_status=TRADE_CLOSED"));
    assert!(last.body.contains("refund_fee=19.99"));
    let queried = merchant
        .query_refund(&RefundQuery {
            out_trade_no: OutTradeNo::parse(&no).unwrap(),
            out_refund_no: OutRefundNo::parse(format!("{no}R1")).unwrap(),
        })
        .await
        .unwrap();
    assert_eq!(queried.state, RefundState::Succeeded);
    assert_eq!(queried.amount, Some(Fen::new(999).unwrap()));
    let closed = merchant
        .query_payment(&TradeRef::for_out_trade_no(OutTradeNo::parse(&no).unwrap()))
        .await
        .unwrap();
    assert_ne!(closed.state, TradeState::Paid);
    sandbox.stop().await;
}

#[tokio::test]
async fn an_app_pay_order_string_from_the_client_is_verified_created_and_paid() {
    let sandbox = spawn_sandbox().await;
    let merchant = Arc::new(alipay_merchant(&sandbox));
    let receiver = verifying_receiver(Arc::clone(&merchant)).await;
    let no = trade_no("APAPP");
    let created = merchant
        .create_payment(&alipay_create(Channel::App, &no, 8888, &receiver.url))
        .await
        .unwrap();
    let PayParams::AlipayOrderString { order_string } = created.pay_params else {
        panic!("app pay gives an orderString");
    };
    assert_eq!(
        pay_over_http(&sandbox, serde_json::json!({"order_string": order_string})).await,
        200
    );
    wait_acknowledged(&sandbox, &no).await;
    let trade = sandbox.trade(ProviderKind::ALIPAY, &no).unwrap();
    assert_eq!(trade.amount.get(), 8888);
    // Paying twice is refused: the trade is no longer awaiting payment.
    assert_eq!(
        pay_over_http(&sandbox, serde_json::json!({"order_string": order_string})).await,
        400
    );
}

#[tokio::test]
async fn the_wap_pay_url_shows_a_pay_page_and_the_trade_list_offers_a_pay_button() {
    let sandbox = spawn_sandbox().await;
    let merchant = alipay_merchant(&sandbox);
    let no = trade_no("APWAP");
    let created = merchant
        .create_payment(&alipay_create(Channel::Wap, &no, 5, "http://127.0.0.1:9/n"))
        .await
        .unwrap();
    let PayParams::RedirectUrl { url } = created.pay_params else {
        panic!("wap pay gives a redirect URL");
    };
    let page = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert!(page.contains("pay</button>"));
    let list = reqwest::get(format!("{}/sandbox", sandbox.base_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(list.contains(&no));
    assert!(list.contains("¥0.05"));
    assert!(list.contains("awaiting payment"));
    // The page's form pays and redirects back to the list.
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/sandbox/pay-form", sandbox.base_url()))
        .form(&[("provider", "alipay"), ("out_trade_no", no.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(
        sandbox.trade(ProviderKind::ALIPAY, &no).unwrap().status,
        paygate_sandbox::TradeStatus::Paid
    );
}

#[tokio::test]
async fn a_mini_program_create_returns_a_trade_no_and_a_closed_trade_cannot_be_paid() {
    let sandbox = spawn_sandbox().await;
    let merchant = alipay_merchant(&sandbox);
    let no = trade_no("APMINI");
    let created = merchant
        .create_payment(&alipay_create(
            Channel::MiniProgram,
            &no,
            100,
            "http://127.0.0.1:9/n",
        ))
        .await
        .unwrap();
    assert!(
        matches!(created.pay_params, PayParams::TradeNo { ref trade_no } if trade_no.len() == 28)
    );
    merchant
        .close_payment(&TradeRef::for_out_trade_no(OutTradeNo::parse(&no).unwrap()))
        .await
        .unwrap();
    assert!(sandbox.pay(ProviderKind::ALIPAY, &no).is_err());
}

#[tokio::test]
async fn a_repeated_out_request_no_never_refunds_twice() {
    let sandbox = spawn_sandbox().await;
    let merchant = alipay_merchant(&sandbox);
    let no = trade_no("APIDEM");
    merchant
        .create_payment(&alipay_create(
            Channel::Precreate,
            &no,
            1000,
            "http://127.0.0.1:9/n",
        ))
        .await
        .unwrap();
    sandbox.pay(ProviderKind::ALIPAY, &no).unwrap();
    for _ in 0..3 {
        merchant
            .refund(&refund_request(&no, &format!("{no}R"), 300, 1000))
            .await
            .unwrap();
    }
    let over = merchant
        .refund(&refund_request(&no, &format!("{no}X"), 701, 1000))
        .await;
    assert!(over.is_err());
    assert_refunded(&sandbox, ProviderKind::ALIPAY, &no, 1, 300);
}

#[tokio::test]
async fn a_request_signed_with_another_key_is_refused_as_invalid_signature() {
    let sandbox = spawn_sandbox().await;
    let credentials = sandbox.credentials().alipay.clone();
    let wrong_key = paygate_alipay::keys::SigningKey::parse(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../alipay/tests/data/vectors/alipay/keys/wrong_private_pkcs8.pem"
    )))
    .unwrap();
    let mut params: paygate_alipay::sign::Params = [
        ("app_id", credentials.app_id.as_str()),
        ("method", "alipay.trade.query"),
        ("charset", "utf-8"),
        ("sign_type", "RSA2"),
        ("timestamp", "2024-01-02 03:04:05"),
        ("version", "1.0"),
        ("biz_content", r#"{"out_trade_no":"NOPE000001"}"#),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    paygate_alipay::sign::sign_params(
        &mut params,
        paygate_alipay::sign::SignScope::Request,
        &wrong_key,
    )
    .unwrap();
    let body: serde_json::Value = reqwest::Client::new()
        .post(&credentials.gateway_url)
        .form(&params)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["alipay_trade_query_response"]["code"], "40002");
    assert_eq!(
        body["alipay_trade_query_response"]["sub_code"],
        "isv.invalid-signature"
    );
}

#[tokio::test]
async fn the_refund_notify_reaches_the_client_as_a_verified_notice() {
    let sandbox = spawn_sandbox().await;
    let merchant = Arc::new(alipay_merchant(&sandbox));
    let receiver = verifying_receiver(Arc::clone(&merchant)).await;
    let no = trade_no("APRN");
    merchant
        .create_payment(&alipay_create(Channel::Precreate, &no, 300, &receiver.url))
        .await
        .unwrap();
    sandbox.pay(ProviderKind::ALIPAY, &no).unwrap();
    merchant
        .refund(&refund_request(&no, &format!("{no}R"), 100, 300))
        .await
        .unwrap();
    let no_for_wait = no.clone();
    sandbox
        .wait_for_deliveries(WAIT, move |d| {
            d.iter()
                .filter(|x| x.out_trade_no == no_for_wait && x.acknowledged)
                .count()
                == 2
        })
        .await
        .unwrap();
    let refund_body = receiver.body_containing("out_biz_no");
    let notice = merchant
        .verify_callback(&InboundCallback::of_body(
            CallbackPurpose::Payment,
            &refund_body,
        ))
        .unwrap();
    assert!(
        matches!(notice, Notice::Payment(ref facts) if facts.state == TradeState::Paid || facts.state == TradeState::Refunded)
    );
}
