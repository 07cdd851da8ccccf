//! Shared test plumbing: spawning a sandbox, a notify receiver, and WeChat / Alipay merchants.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use paygate_alipay::{Alipay, AlipayConfig, AlipayTrust};
use paygate_core::{Channel, CreatePayment, Currency, Fen, OutTradeNo};
use paygate_sandbox::{NotifyDelivery, RunningSandbox, Sandbox, SandboxConfig};
use paygate_wechat::sign::{ApiKey, Params, SignType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the gateway answers a notify `body` with, played by `merchant`: its verification, then
/// its acknowledgement (the body; the status is always 200 for these two providers).
pub fn merchant_answer(merchant: &dyn paygate_core::Provider, body: &[u8]) -> (u16, String) {
    use paygate_core::{CallbackOutcome, CallbackPurpose, InboundCallback};
    let verified = merchant
        .verify_callback(&InboundCallback::of_body(CallbackPurpose::Payment, body))
        .is_ok();
    let outcome = if verified {
        CallbackOutcome::Accepted
    } else {
        CallbackOutcome::Rejected
    };
    (200, merchant.acknowledge(outcome).body)
}

/// 100 000× real time: WeChat's 15 s retry takes 0.15 ms, the whole 24 h schedule < 1 s.
pub const TIME_SCALE: f64 = 100_000.0;
/// Upper bound for waiting on background deliveries, so a broken test fails instead of hanging.
pub const WAIT: Duration = Duration::from_secs(20);

/// WeChat's success acknowledgement, written out from the protocol notes (§5).
pub const WECHAT_SUCCESS_XML: &str = "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>";

pub async fn spawn_sandbox() -> RunningSandbox {
    Sandbox::start(SandboxConfig::for_tests(TIME_SCALE))
        .await
        .expect("sandbox starts")
}

/// A unique out_trade_no per test.
pub fn trade_no(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{:06}{}",
        NEXT.fetch_add(1, Ordering::SeqCst),
        std::process::id()
    )
}

type Reply = dyn Fn(&[u8]) -> (u16, String) + Send + Sync;

/// A minimal HTTP/1.1 server on port 0 that records every POST body and answers with `reply`.
pub struct NotifyReceiver {
    pub url: String,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl NotifyReceiver {
    pub async fn start(
        reply: impl Fn(&[u8]) -> (u16, String) + Send + Sync + 'static,
    ) -> NotifyReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/notify", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let reply: Arc<Reply> = Arc::new(reply);
        let recorded = Arc::clone(&bodies);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let reply = Arc::clone(&reply);
                let recorded = Arc::clone(&recorded);
                tokio::spawn(async move {
                    let Some(body) = read_request_body(&mut stream).await else {
                        return;
                    };
                    recorded.lock().unwrap().push(body.clone());
                    let (status, text) = reply(&body);
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                        text.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        NotifyReceiver { url, bodies }
    }

    /// A receiver that acknowledges everything with `ack`.
    pub async fn always(ack: &'static str) -> NotifyReceiver {
        NotifyReceiver::start(move |_| (200, ack.to_owned())).await
    }

    pub fn bodies(&self) -> Vec<Vec<u8>> {
        self.bodies.lock().unwrap().clone()
    }
}

async fn read_request_body(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let headers = String::from_utf8_lossy(&buffer[..header_end]).to_lowercase();
    let length: usize = headers
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    while buffer.len() < header_end + length {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    Some(buffer[header_end..].to_vec())
}

/// Deliveries for one trade.
pub fn for_trade<'a>(
    deliveries: &'a [NotifyDelivery],
    out_trade_no: &str,
) -> Vec<&'a NotifyDelivery> {
    deliveries
        .iter()
        .filter(|d| d.out_trade_no == out_trade_no)
        .collect()
}

/// Waits until some delivery for `out_trade_no` was acknowledged.
pub async fn wait_acknowledged(
    sandbox: &RunningSandbox,
    out_trade_no: &str,
) -> Vec<NotifyDelivery> {
    let no = out_trade_no.to_owned();
    sandbox
        .wait_for_deliveries(WAIT, move |d| {
            d.iter().any(|x| x.out_trade_no == no && x.acknowledged)
        })
        .await
        .expect("an acknowledged delivery")
}

/// Waits until `count` refund notifies for `out_trade_no` were acknowledged.
pub async fn wait_refunds_acknowledged(
    sandbox: &RunningSandbox,
    out_trade_no: &str,
    count: usize,
) -> Vec<NotifyDelivery> {
    let no = out_trade_no.to_owned();
    sandbox
        .wait_for_deliveries(WAIT, move |d| {
            d.iter()
                .filter(|x| {
                    x.out_trade_no == no
                        && x.kind == paygate_sandbox::NotifyKind::Refund
                        && x.acknowledged
                })
                .count()
                >= count
        })
        .await
        .expect("acknowledged refund notifies")
}

impl NotifyReceiver {
    /// The first body received that contains `needle`.
    pub fn body_containing(&self, needle: &str) -> Vec<u8> {
        self.bodies()
            .into_iter()
            .find(|b| String::from_utf8_lossy(b).contains(needle))
            .expect("a body with the needle")
    }
}

/// The WeChat merchant, speaking raw signed XML (paygate-wechat's signer and codec).
pub struct WechatMerchant {
    pub http: reqwest::Client,
    pub base: String,
    pub appid: String,
    pub mch_id: String,
    pub key: ApiKey,
}

impl WechatMerchant {
    pub fn of(sandbox: &RunningSandbox) -> WechatMerchant {
        let credentials = &sandbox.credentials().wechat;
        WechatMerchant {
            http: reqwest::Client::new(),
            base: credentials.api_base.clone(),
            appid: credentials.appid.clone(),
            mch_id: credentials.mch_id.clone(),
            key: ApiKey::new(credentials.api_key.clone()),
        }
    }

    /// Signs `fields` (plus appid, mch_id, nonce_str, sign_type when HMAC) and posts them.
    pub async fn call(&self, path: &str, fields: &[(&str, &str)], sign_type: SignType) -> Params {
        let text = self
            .call_raw(path, fields, sign_type)
            .await
            .expect("WeChat answers");
        paygate_wechat::xml::parse(text.as_bytes()).expect("XML answer")
    }

    pub async fn call_raw(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        sign_type: SignType,
    ) -> Result<String, reqwest::Error> {
        let mut params: Params = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        params
            .entry("appid".into())
            .or_insert_with(|| self.appid.clone());
        params
            .entry("mch_id".into())
            .or_insert_with(|| self.mch_id.clone());
        params.insert("nonce_str".into(), paygate_wechat::pay_params::nonce_str());
        if sign_type == SignType::HmacSha256 {
            params.insert("sign_type".into(), "HMAC-SHA256".into());
        }
        paygate_wechat::sign::sign_in_place(&mut params, &self.key, sign_type);
        let body = paygate_wechat::xml::write(&params).unwrap();
        self.http
            .post(format!("{}{path}", self.base))
            .body(body)
            .send()
            .await?
            .text()
            .await
    }

    /// A JSAPI unifiedorder with the usual fields.
    pub async fn jsapi_order(
        &self,
        out_trade_no: &str,
        fee: &str,
        notify_url: &str,
        sign_type: SignType,
    ) -> Params {
        self.call(
            "/pay/unifiedorder",
            &[
                ("body", "sandbox test"),
                ("out_trade_no", out_trade_no),
                ("total_fee", fee),
                ("spbill_create_ip", "127.0.0.1"),
                ("notify_url", notify_url),
                ("trade_type", "JSAPI"),
                ("openid", "oTestOpenid0001"),
            ],
            sign_type,
        )
        .await
    }
}

/// The Alipay merchant: paygate-alipay's real client configured from the sandbox credentials.
pub fn alipay_merchant(sandbox: &RunningSandbox) -> Alipay {
    let credentials = &sandbox.credentials().alipay;
    Alipay::new(AlipayConfig {
        app_id: credentials.app_id.clone(),
        seller_id: credentials.seller_id.clone(),
        app_private_key: credentials.app_private_key.clone().into(),
        trust: AlipayTrust::PublicKey {
            alipay_public_key: credentials.alipay_public_key.clone(),
        },
        gateway_url: credentials.gateway_url.clone(),
        timeout_secs: 5,
        channels: vec![
            Channel::App,
            Channel::Wap,
            Channel::Page,
            Channel::Precreate,
            Channel::MiniProgram,
        ],
        wap_quit_url: None,
    })
    .expect("alipay client")
}

pub fn alipay_create(
    channel: Channel,
    out_trade_no: &str,
    fen: i64,
    notify_url: &str,
) -> CreatePayment {
    CreatePayment {
        channel,
        out_trade_no: OutTradeNo::parse(out_trade_no).unwrap(),
        amount: Fen::new(fen).unwrap(),
        currency: Currency::Cny,
        subject: "sandbox test".into(),
        description: None,
        payer_id: (channel == Channel::MiniProgram).then(|| "2088102177846880".to_owned()),
        client_ip: None,
        expires_at: chrono::Utc::now() + chrono::Duration::minutes(30),
        notify_url: notify_url.to_owned(),
        return_url: None,
    }
}

/// POSTs `/sandbox/pay` with a JSON body, returning the HTTP status.
pub async fn pay_over_http(sandbox: &RunningSandbox, body: serde_json::Value) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/sandbox/pay", sandbox.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// GETs a URL and reads the JSON answer.
pub async fn get_json(url: impl reqwest::IntoUrl) -> serde_json::Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// Asserts what the sandbox holds after refunds: how many, and their sum in fen.
pub fn assert_refunded(
    sandbox: &RunningSandbox,
    provider: paygate_core::ProviderKind,
    no: &str,
    count: usize,
    fen: i64,
) {
    let trade = sandbox.trade(provider, no).unwrap();
    assert_eq!(trade.refunds.len(), count);
    assert_eq!(trade.refunded().get(), fen);
}
