//! A tiny WeChat Pay APIv3 server for the client tests: it checks every request's
//! Authorization with the merchant's public key (401 SIGN_ERROR otherwise) and answers what the
//! test scripts, signed as WeChat Pay would sign it (public key or platform certificate), or
//! deliberately mis-signed.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use paygate_wechat_v3::client::ApiClient;
use paygate_wechat_v3::config::WechatV3Settings;
use paygate_wechat_v3::keys::{MerchantKey, VerifyingKey};
use paygate_wechat_v3::peer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::vectors::{dir, read};

/// The Unix time the tests pin both sides to.
pub const NOW: i64 = 1_735_704_000;
/// The vectors' WeChat Pay public key id.
pub const PUB_KEY_ID: &str = "PUB_KEY_ID_0112300001092025010100000000000001";
/// The vectors' platform certificate serial.
pub const PLATFORM_SERIAL: &str = "3A414D8EE28675E1BDBF02E87A0B7F366202CC00";
/// The rotated platform certificate serial.
pub const NEW_PLATFORM_SERIAL: &str = "78807E4FFB6ACC9303C16DDC7182294E37BEA45C";

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `GET`, `POST`.
    pub method: String,
    /// Path and query as sent.
    pub target: String,
    /// Lower-cased header names with their values.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
}

impl Seen {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// How the server signs an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignAs {
    /// With the WeChat Pay public key's private half, serial PUB_KEY_ID.
    PublicKey,
    /// With the platform certificate's key.
    Platform,
    /// With the rotated platform certificate's key.
    NewPlatform,
    /// With an unrelated key under the public key id (a forgery).
    Attacker,
    /// A `WECHATPAY/SIGNTEST/` probe over a valid signature.
    Probe,
    /// No signature headers at all.
    Unsigned,
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body text.
    pub body: String,
    /// Signing.
    pub sign: SignAs,
    /// `Wechatpay-Timestamp`.
    pub timestamp: i64,
    /// Verbatim headers instead of computed ones (replaying a vector).
    pub raw_headers: Option<Vec<(String, String)>>,
}

impl Reply {
    /// A 200 JSON answer signed with the public key at [`NOW`].
    pub fn ok(body: impl Into<String>) -> Self {
        Self::status(200, body)
    }

    /// An answer of `status` signed with the public key at [`NOW`].
    pub fn status(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            body: body.into(),
            sign: SignAs::PublicKey,
            timestamp: NOW,
            raw_headers: None,
        }
    }

    /// The same answer signed another way.
    pub fn signed(mut self, sign: SignAs) -> Self {
        self.sign = sign;
        self
    }
}

fn key(file: &str) -> MerchantKey {
    MerchantKey::from_pem(&read(file)).unwrap()
}

fn signature_headers(reply: &Reply) -> Vec<(String, String)> {
    if let Some(raw) = &reply.raw_headers {
        return raw.clone();
    }
    let (serial, signer) = match reply.sign {
        SignAs::Unsigned => return Vec::new(),
        SignAs::PublicKey | SignAs::Probe => {
            (PUB_KEY_ID, key("keys/wechatpay_pub_key_private.pem"))
        }
        SignAs::Platform => (PLATFORM_SERIAL, key("keys/platform_cert_key.pem")),
        SignAs::NewPlatform => (NEW_PLATFORM_SERIAL, key("keys/platform_cert_new_key.pem")),
        SignAs::Attacker => (PUB_KEY_ID, key("keys/attacker_key.pem")),
    };
    let nonce = "b6d767d2f8ed5d21a44b0e5886680cb9";
    let mut headers = peer::signature_headers(
        &signer,
        serial,
        reply.body.as_bytes(),
        reply.timestamp,
        nonce,
    )
    .unwrap();
    if reply.sign == SignAs::Probe {
        headers[2].1 = format!("WECHATPAY/SIGNTEST/{}", headers[2].1);
    }
    headers
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

/// Whether the request's Authorization verifies with the merchant's public key at `now`.
fn authorized(seen: &Seen, now: i64) -> bool {
    let merchant = VerifyingKey::from_pem(&read("keys/merchant_public.pem")).unwrap();
    let identity = peer::RequestingMerchant {
        mchid: "1230000109",
        serial_no: "7383B331C603DA9DB202271FB5A8FFACC2B4B7DE",
        public_key: &merchant,
    };
    peer::check_request(
        seen.header("authorization"),
        &seen.method,
        &seen.target,
        &seen.body,
        &identity,
        now,
    )
    .is_ok()
}

type Handler = dyn Fn(&Seen) -> Reply + Send + Sync;

/// A running fake server: its base URL and every request it saw.
pub struct FakeWechat {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Requests in arrival order.
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Seen> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
    };
    let head = String::from_utf8(buffer[..header_end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let target = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = buffer[header_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Seen {
        method,
        target,
        headers,
        body,
    })
}

impl FakeWechat {
    /// Starts the server; `handler` scripts the answer to each authorised request.
    pub async fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_at(Arc::new(AtomicI64::new(NOW)), handler).await
    }

    /// Starts the server checking request timestamps against `clock` (tests that move time).
    pub async fn start_at(
        clock: Arc<AtomicI64>,
        handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let log = log.clone();
                let now = clock.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let Some(request) = read_request(&mut stream).await else {
                        return;
                    };
                    log.lock().unwrap().push(request.clone());
                    // On the blocking pool: a handler that holds its answer (a download stuck at
                    // WeChat) must not occupy a runtime worker, whose queued tasks no other
                    // worker may take, so a call the test expects to pass could stall behind it.
                    let reply = if authorized(&request, now) {
                        let handler = handler.clone();
                        let request = request.clone();
                        match tokio::task::spawn_blocking(move || handler(&request)).await {
                            Ok(reply) => reply,
                            Err(_) => return,
                        }
                    } else {
                        Reply::status(401, r#"{"code":"SIGN_ERROR","message":"签名错误"}"#)
                    };
                    let mut response =
                        format!("HTTP/1.1 {} X\r\nConnection: close\r\n", reply.status);
                    if !reply.body.is_empty() {
                        response.push_str("Content-Type: application/json\r\n");
                    }
                    for (name, value) in signature_headers(&reply) {
                        response.push_str(&format!("{name}: {value}\r\n"));
                    }
                    response.push_str(&format!("Content-Length: {}\r\n\r\n", reply.body.len()));
                    response.push_str(&reply.body);
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self { base, seen }
    }

    /// The requests seen so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// App settings with the vector keys pointing at `base`, plus extra TOML lines.
pub fn settings(base: &str, extra: &str) -> WechatV3Settings {
    let keys = dir().join("keys");
    let path = |file: &str| keys.join(file).display().to_string();
    let text = format!(
        "appid = \"wxd678efh567hg6787\"\nmchid = \"1230000109\"\napi_base = \"{base}\"\n\
         merchant_certificate_file = \"{}\"\nprivate_key_file = \"{}\"\napiv3_key_file = \"{}\"\n{extra}",
        path("merchant_apiclient_cert.pem"),
        path("merchant_apiclient_key.pem"),
        path("apiv3_key.txt"),
    );
    toml::from_str(&text).unwrap()
}

/// A public-key-mode client pinned to `now`.
pub fn client(base: &str, extra: &str, now: Arc<std::sync::atomic::AtomicI64>) -> ApiClient {
    let keys = dir().join("keys");
    let extra = format!(
        "public_key_id = \"{PUB_KEY_ID}\"\npublic_key_file = \"{}\"\n{extra}",
        keys.join("wechatpay_pub_key.pem").display()
    );
    client_with(settings(base, &extra), now)
}

/// A client for `settings` pinned to `now`.
pub fn client_with(
    settings: WechatV3Settings,
    now: Arc<std::sync::atomic::AtomicI64>,
) -> ApiClient {
    ApiClient::new(settings.load().unwrap())
        .unwrap()
        .with_clock(Arc::new(move || {
            now.load(std::sync::atomic::Ordering::SeqCst)
        }))
}
