//! A third provider, `fakepay`, that exists only in this test: it implements the provider
//! trait, is registered through the same registry as WeChat and Alipay, and is driven through
//! the real HTTP API. It differs from both on purpose: its callbacks are signed in headers,
//! it refuses a bad one with a 401 of its own choosing, it takes order numbers of 10 to 20
//! characters, and its refund results come on a route of its own (`/refunds`). Nothing in the
//! gateway names it; if this test needs a gateway edit to pass, the boundary has leaked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use paygate_core::{
    CallbackAck, CallbackOutcome, CallbackPurpose, CallbackRoute, Capabilities, Channel,
    ChannelSupport, CreatePayment, CreatedPayment, Currency, Fen, InboundCallback,
    MerchantIdentity, Notice, NotifyError, OutTradeNoRule, PayParams, Provider, ProviderError,
    ProviderKind, RefundFacts, RefundQuery, RefundRequest, RefundState, TradeFacts, TradeRef,
    TradeState,
};
use paygate_gateway::registry::ProviderApp;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with_providers};

const FAKEPAY: ProviderKind = ProviderKind::from_static("fakepay");
const SECRET: &[u8] = b"fakepay-callback-secret";

/// What the fake provider holds and what it was asked.
#[derive(Default)]
struct Ledger {
    /// Trades by out_trade_no: amount and whether paid.
    trades: HashMap<String, (Fen, bool)>,
    /// Every trade reference a query or close was given.
    referenced: Vec<(&'static str, TradeRef)>,
    /// The notify URL of every refund.
    refund_notify_urls: Vec<String>,
}

struct FakePay {
    merchant: MerchantIdentity,
    capabilities: Capabilities,
    ledger: Arc<Mutex<Ledger>>,
}

fn fakepay(ledger: Arc<Mutex<Ledger>>) -> FakePay {
    FakePay {
        merchant: MerchantIdentity {
            app_id: "fp_app".into(),
            merchant_id: "fp_merchant".into(),
        },
        capabilities: Capabilities {
            channels: vec![ChannelSupport {
                channel: Channel::Page,
                payer: None,
                client_ip_required: false,
                signs_locally: false,
            }],
            max_order_amount: Fen::new(1_000_000).unwrap(),
            out_trade_no: OutTradeNoRule {
                min_len: 10,
                max_len: 20,
                extra_chars: "_",
            },
            callback_routes: &[
                CallbackRoute {
                    suffix: "",
                    purpose: CallbackPurpose::Payment,
                },
                CallbackRoute {
                    suffix: "/refunds",
                    purpose: CallbackPurpose::Refund,
                },
            ],
            refund_callback: Some(CallbackRoute {
                suffix: "/refunds",
                purpose: CallbackPurpose::Refund,
            }),
        },
        ledger,
    }
}

fn signature(timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b"\n");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

impl FakePay {
    fn facts(&self, out_trade_no: &str, amount: Fen, paid: bool) -> TradeFacts {
        TradeFacts {
            provider: FAKEPAY,
            out_trade_no: out_trade_no.to_owned(),
            provider_trade_no: Some(format!("FP-{out_trade_no}")),
            state: if paid {
                TradeState::Paid
            } else {
                TradeState::AwaitingPayment
            },
            amount: Some(amount),
            currency: Currency::Cny,
            app_id: Some(self.merchant.app_id.clone()),
            merchant_id: Some(self.merchant.merchant_id.clone()),
            payer_id: None,
            paid_at: paid.then(chrono::Utc::now),
        }
    }
}

#[async_trait]
impl Provider for FakePay {
    fn kind(&self) -> ProviderKind {
        FAKEPAY
    }
    fn merchant(&self) -> &MerchantIdentity {
        &self.merchant
    }
    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }
    fn check_payment_request(&self, _: &CreatePayment) -> Result<(), ProviderError> {
        Ok(())
    }
    async fn create_payment(&self, r: &CreatePayment) -> Result<CreatedPayment, ProviderError> {
        let no = r.out_trade_no.to_string();
        self.ledger
            .lock()
            .unwrap()
            .trades
            .insert(no.clone(), (r.amount, false));
        Ok(CreatedPayment {
            pay_params: PayParams::RedirectUrl {
                url: format!("https://fakepay.test/pay/{no}"),
            },
            provider_trade_no: Some(format!("FP-{no}")),
        })
    }
    fn verify_callback(&self, callback: &InboundCallback<'_>) -> Result<Notice, NotifyError> {
        let timestamp = callback
            .header("x-fakepay-timestamp")
            .ok_or(NotifyError::BadSignature)?;
        let given = callback
            .header("x-fakepay-signature")
            .ok_or(NotifyError::BadSignature)?;
        if given != signature(timestamp, callback.body) {
            return Err(NotifyError::BadSignature);
        }
        let body: Value = serde_json::from_slice(callback.body)
            .map_err(|e| NotifyError::Malformed(e.to_string()))?;
        let no = body["out_trade_no"].as_str().unwrap_or_default();
        let amount = Fen::new(body["amount"].as_i64().unwrap_or_default()).unwrap();
        match callback.purpose {
            CallbackPurpose::Payment => Ok(Notice::Payment(self.facts(no, amount, true))),
            CallbackPurpose::Refund => Ok(Notice::Refund(RefundFacts {
                out_trade_no: no.to_owned(),
                out_refund_no: body["out_refund_no"].as_str().unwrap_or_default().into(),
                provider_refund_id: None,
                amount: Some(amount),
                state: RefundState::Succeeded,
                succeeded_at: Some(chrono::Utc::now()),
            })),
        }
    }
    fn acknowledge(&self, outcome: CallbackOutcome) -> CallbackAck {
        let (status, body) = match outcome {
            CallbackOutcome::Accepted => (204, String::new()),
            CallbackOutcome::Rejected => (401, r#"{"code":"FAIL","message":"rejected"}"#.into()),
            CallbackOutcome::Unmatched => (422, r#"{"code":"FAIL","message":"unmatched"}"#.into()),
            CallbackOutcome::TooLarge => (413, r#"{"code":"FAIL","message":"too large"}"#.into()),
            CallbackOutcome::RetryLater => (500, r#"{"code":"FAIL","message":"later"}"#.into()),
        };
        CallbackAck {
            status,
            content_type: "application/json",
            body,
        }
    }
    async fn query_payment(&self, trade: &TradeRef) -> Result<TradeFacts, ProviderError> {
        let mut ledger = self.ledger.lock().unwrap();
        ledger.referenced.push(("query", trade.clone()));
        let (amount, paid) = *ledger
            .trades
            .get(trade.out_trade_no.as_str())
            .ok_or(ProviderError::NotFound)?;
        Ok(self.facts(trade.out_trade_no.as_str(), amount, paid))
    }
    async fn close_payment(&self, trade: &TradeRef) -> Result<(), ProviderError> {
        let mut ledger = self.ledger.lock().unwrap();
        ledger.referenced.push(("close", trade.clone()));
        match ledger.trades.get(trade.out_trade_no.as_str()) {
            Some((_, true)) => Err(ProviderError::AlreadyPaid),
            Some(_) => Ok(()),
            None => Err(ProviderError::NotFound),
        }
    }
    async fn refund(&self, request: &RefundRequest) -> Result<RefundFacts, ProviderError> {
        let mut ledger = self.ledger.lock().unwrap();
        ledger
            .refund_notify_urls
            .push(request.notify_url.clone().unwrap_or_default());
        // Accepted; the result comes by refund notify.
        Ok(RefundFacts {
            out_trade_no: request.out_trade_no.to_string(),
            out_refund_no: request.out_refund_no.to_string(),
            provider_refund_id: None,
            amount: Some(request.refund_amount),
            state: RefundState::Processing,
            succeeded_at: None,
        })
    }
    async fn query_refund(&self, query: &RefundQuery) -> Result<RefundFacts, ProviderError> {
        Ok(RefundFacts {
            out_trade_no: query.out_trade_no.to_string(),
            out_refund_no: query.out_refund_no.to_string(),
            provider_refund_id: None,
            amount: None,
            state: RefundState::Processing,
            succeeded_at: None,
        })
    }
}

async fn notify(app: &TestApp, route: &str, body: &Value, signed: bool) -> reqwest::Response {
    let body = body.to_string();
    let timestamp = "1733100000";
    let signature = if signed {
        signature(timestamp, body.as_bytes())
    } else {
        signature(timestamp, b"something else")
    };
    app.http
        .post(format!("{}/notify/fakepay/shop{route}", app.address))
        .header("content-type", "application/json")
        .header("X-FakePay-Timestamp", timestamp)
        .header("X-FakePay-Signature", signature)
        .body(body)
        .send()
        .await
        .unwrap()
}

fn order_body(out_trade_no: &str, amount: i64) -> Value {
    json!({
        "provider": "fakepay", "channel": "page", "out_trade_no": out_trade_no,
        "amount": amount, "subject": "Oolong tea",
    })
}

async fn status_of(app: &TestApp, id: &str) -> Value {
    app.get_json(&format!("/v1/orders/{id}")).await["status"].clone()
}

#[tokio::test]
async fn a_third_provider_is_driven_through_the_api_with_no_gateway_edits() {
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let fake = ProviderApp {
        name: paygate_core::AppName::parse("shop").unwrap(),
        provider: Arc::new(fakepay(ledger.clone())),
        wechat: None,
    };
    let (app, _running) = spawn_app_with_providers(
        |s| s.reconciler.enabled = false,
        vec![fake],
        std::future::pending(),
    )
    .await;

    // Its own order-number rule and channels, not WeChat's or Alipay's.
    let short = app.post("/v1/orders", &order_body("fp_short", 100)).await;
    assert_eq!(short.status(), 422);
    let error: Value = short.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_out_trade_no", "{error}");
    let mut native = order_body("fp_native_01", 100);
    native["channel"] = json!("native");
    let unsupported = app.post("/v1/orders", &native).await;
    assert_eq!(unsupported.status(), 422);

    // Create: its pay params and its trade number, stored at once.
    let order = app.create_order(order_body("fp_order_0001", 1_500)).await;
    let id = order["id"].as_str().unwrap().to_owned();
    assert_eq!(order["provider"], "fakepay");
    assert_eq!(
        order["pay_params"]["url"],
        "https://fakepay.test/pay/fp_order_0001"
    );
    assert_eq!(order["provider_trade_no"], "FP-fp_order_0001");

    // A forged callback: the provider's own refusal (401 + its body), nothing changes.
    let paid = json!({"out_trade_no": "fp_order_0001", "amount": 1_500});
    let forged = notify(&app, "", &paid, false).await;
    assert_eq!(forged.status(), 401);
    assert_eq!(
        forged.text().await.unwrap(),
        r#"{"code":"FAIL","message":"rejected"}"#
    );
    assert_eq!(status_of(&app, &id).await, "pending");
    // A route it does not declare does not exist.
    assert_eq!(notify(&app, "/nope", &paid, true).await.status(), 404);

    // The genuine callback, twice: paid once, acknowledged with its 204 both times.
    for _ in 0..2 {
        let genuine = notify(&app, "", &paid, true).await;
        assert_eq!(genuine.status(), 204);
    }
    assert_eq!(status_of(&app, &id).await, "paid");
    let events = crate::reliability::events(&app, &id).await;
    let order_paid = events.iter().filter(|e| e["type"] == "order.paid").count();
    assert_eq!(order_paid, 1, "{events:?}");

    // Refund: sent with the refund route it declared; settled by its refund callback there.
    let refund = app
        .post(
            &format!("/v1/orders/{id}/refunds"),
            &json!({"amount": 500, "out_refund_no": "fp_refund_01"}),
        )
        .await;
    assert!(refund.status().is_success(), "{:?}", refund.text().await);
    let notify_url = ledger.lock().unwrap().refund_notify_urls[0].clone();
    assert!(
        notify_url.ends_with("/notify/fakepay/shop/refunds"),
        "{notify_url}"
    );
    let refunded =
        json!({"out_trade_no": "fp_order_0001", "out_refund_no": "fp_refund_01", "amount": 500});
    assert_eq!(
        notify(&app, "/refunds", &refunded, true).await.status(),
        204
    );
    let refunds = app.get_json(&format!("/v1/orders/{id}/refunds")).await;
    assert_eq!(refunds["data"][0]["status"], "succeeded", "{refunds}");
    assert_eq!(status_of(&app, &id).await, "partially_refunded");

    // Query (sync) of a trade paid without a callback, with the full trade reference.
    let second = app.create_order(order_body("fp_order_0002", 800)).await;
    let second_id = second["id"].as_str().unwrap().to_owned();
    ledger
        .lock()
        .unwrap()
        .trades
        .insert("fp_order_0002".into(), (Fen::new(800).unwrap(), true));
    let synced = app
        .post(&format!("/v1/orders/{second_id}/sync"), &json!({}))
        .await;
    assert_eq!(synced.status(), 200);
    assert_eq!(status_of(&app, &second_id).await, "paid");

    // Close of an unpaid one.
    let third = app.create_order(order_body("fp_order_0003", 300)).await;
    let third_id = third["id"].as_str().unwrap().to_owned();
    let closed = app
        .post(&format!("/v1/orders/{third_id}/close"), &json!({}))
        .await;
    assert_eq!(closed.status(), 200);
    assert_eq!(status_of(&app, &third_id).await, "closed");

    let referenced = ledger.lock().unwrap().referenced.clone();
    let query = referenced
        .iter()
        .find(|(what, r)| *what == "query" && r.out_trade_no.as_str() == "fp_order_0002")
        .expect("queried");
    assert_eq!(
        query.1.provider_trade_no.as_deref(),
        Some("FP-fp_order_0002")
    );
    assert_eq!(
        query
            .1
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        chrono::DateTime::parse_from_rfc3339(second["created_at"].as_str().unwrap())
            .unwrap()
            .to_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    assert!(
        referenced
            .iter()
            .any(|(what, r)| *what == "close" && r.out_trade_no.as_str() == "fp_order_0003"),
        "{referenced:?}"
    );
}
