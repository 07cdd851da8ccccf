//! A minimal WeChat Pay stand-in on 127.0.0.1, port 0: a hand-rolled HTTP/1.1 loop on tokio
//! (one request per connection) so the tests need no web framework. It checks every request's
//! signature and answers by scenario, chosen from `out_trade_no` / `out_refund_no`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use paygate_wechat::notify::build_signed_xml;
use paygate_wechat::sign::{self, ApiKey, Params, SignType};
use paygate_wechat::xml;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

pub const APPID: &str = "wxd930ea5d5a258f4f";
pub const MCH_ID: &str = "10000100";
pub const API_KEY: &str = "192006250b4c09247ec02edce69f6a2d";

/// One request the server received, with its verdict on the signature.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub fields: Params,
    pub signature_ok: bool,
}

/// A running fake server.
pub struct FakeWechat {
    pub base_url: String,
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl FakeWechat {
    /// Starts the server on a fresh port; it lives until the test's runtime ends.
    pub async fn start() -> FakeWechat {
        Self::start_with_token_lifetime(7200).await
    }

    /// Starts a server whose access tokens live `token_lifetime` seconds.
    pub async fn start_with_token_lifetime(token_lifetime: u64) -> FakeWechat {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        tokio::spawn(async move {
            // Bounded: a test never sends more than a few dozen requests.
            for _ in 0..200 {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(stream, log.clone(), token_lifetime));
            }
        });
        FakeWechat { base_url, received }
    }

    /// Starts an HTTPS server that demands a client certificate issued by `client_ca_der`,
    /// as WeChat's `secapi` endpoints do. `client_certificates` records what each accepted
    /// connection presented; a handshake without one fails.
    pub async fn start_mtls(
        client_ca_der: Vec<u8>,
        server_cert_der: Vec<u8>,
        server_key_der: Vec<u8>,
    ) -> (FakeWechat, Arc<Mutex<Vec<Vec<u8>>>>) {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(client_ca_der)).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![CertificateDer::from(server_cert_der)],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key_der)),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("https://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let presented = Arc::new(Mutex::new(Vec::new()));
        let (log, seen) = (received.clone(), presented.clone());
        tokio::spawn(async move {
            for _ in 0..50 {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, log, seen) = (acceptor.clone(), log.clone(), seen.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    if let Some(chain) = tls.get_ref().1.peer_certificates() {
                        seen.lock().unwrap().push(chain[0].to_vec());
                    }
                    serve(tls, log, 7200).await;
                });
            }
        });
        (FakeWechat { base_url, received }, presented)
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    log: Arc<Mutex<Vec<Received>>>,
    token_lifetime: u64,
) {
    let Some((path, body)) = read_request(&mut stream).await else {
        return;
    };
    if path.starts_with("/sns/") || path.starts_with("/cgi-bin/") {
        let reply = login_answer(&path, &log, token_lifetime);
        write_response(&mut stream, "application/json", &reply).await;
        return;
    }
    let fields = xml::parse(&body).unwrap_or_default();
    let key = ApiKey::new(API_KEY);
    let sign_type = fields
        .get("sign_type")
        .and_then(|s| SignType::parse(s))
        .unwrap_or(SignType::Md5);
    let signature_ok = fields
        .get("sign")
        .is_some_and(|s| sign::verify(&fields, &key, sign_type, s));
    log.lock().unwrap().push(Received {
        path: path.clone(),
        fields: fields.clone(),
        signature_ok,
    });
    let (delay, reply) = if signature_ok {
        answer(&path, &fields, &key, sign_type)
    } else {
        (None, fail("签名错误"))
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    write_response(&mut stream, "text/xml", &reply).await;
}

async fn write_response<S: AsyncWrite + Unpin>(stream: &mut S, content_type: &str, body: &str) {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Option<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buffer.len() > 1 << 20 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).to_string();
    let path = head.split_whitespace().nth(1)?.to_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buffer.len() < header_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Some((path, buffer[header_end..header_end + length].to_vec()))
}

fn fail(message: &str) -> String {
    xml::write_pairs("xml", [("return_code", "FAIL"), ("return_msg", message)]).unwrap()
}

fn params(pairs: &[(&str, &str)]) -> Params {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A signed SUCCESS envelope around `extra`, with WeChat's return/result codes.
fn signed(extra: &[(&str, &str)], key: &ApiKey, sign_type: SignType) -> String {
    let mut fields = params(&[
        ("return_code", "SUCCESS"),
        ("return_msg", "OK"),
        ("appid", APPID),
        ("mch_id", MCH_ID),
        ("nonce_str", "IITRi8Iabbblz1Jc"),
        ("result_code", "SUCCESS"),
    ]);
    fields.extend(params(extra));
    build_signed_xml(fields, key, sign_type).unwrap()
}

fn business_error(code: &str, key: &ApiKey, sign_type: SignType) -> String {
    signed(
        &[
            ("result_code", "FAIL"),
            ("err_code", code),
            ("err_code_des", "test"),
        ],
        key,
        sign_type,
    )
}

fn answer(
    path: &str,
    fields: &Params,
    key: &ApiKey,
    sign_type: SignType,
) -> (Option<Duration>, String) {
    let trade = fields.get("out_trade_no").map(String::as_str).unwrap_or("");
    let reply = match (path, trade) {
        (_, "order_slow") => return (Some(Duration::from_secs(3)), fail("late")),
        (_, "order_fail") => fail("参数格式校验错误"),
        (_, "order_huge") => fail(&"x".repeat(70 * 1024)),
        (_, "order_syserr") => business_error("SYSTEMERROR", key, sign_type),
        (_, "order_paid") => business_error("ORDERPAID", key, sign_type),
        (_, "order_used") => business_error("OUT_TRADE_NO_USED", key, sign_type),
        ("/pay/unifiedorder", "order_forged") => {
            let good = signed(
                &[("prepay_id", "wx_real"), ("trade_type", "JSAPI")],
                key,
                sign_type,
            );
            good.replace("wx_real", "wx_attacker")
        }
        ("/pay/unifiedorder", _) => {
            let trade_type = fields.get("trade_type").cloned().unwrap_or_default();
            let mut extra = vec![
                ("prepay_id", "wx201410272009395522657a690389285100"),
                ("trade_type", trade_type.as_str()),
            ];
            if trade_type == "NATIVE" {
                extra.push(("code_url", "weixin://wxpay/bizpayurl/up?pr=NwY5Mz9"));
            }
            if trade_type == "MWEB" {
                extra.push((
                    "mweb_url",
                    "https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=wx2016",
                ));
            }
            signed(&extra, key, sign_type)
        }
        ("/pay/orderquery", _) => signed(
            &[
                ("trade_state", "SUCCESS"),
                ("out_trade_no", trade),
                ("transaction_id", "4200000001"),
                ("total_fee", "1999"),
                ("fee_type", "CNY"),
                ("openid", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"),
                ("time_end", "20240101120000"),
                ("trade_type", "JSAPI"),
            ],
            key,
            sign_type,
        ),
        ("/pay/closeorder", _) => signed(&[], key, sign_type),
        ("/secapi/pay/refund", _) => signed(
            &[
                ("out_trade_no", trade),
                (
                    "out_refund_no",
                    fields
                        .get("out_refund_no")
                        .map(String::as_str)
                        .unwrap_or(""),
                ),
                ("refund_id", "50000000001"),
                (
                    "refund_fee",
                    fields.get("refund_fee").map(String::as_str).unwrap_or(""),
                ),
                (
                    "total_fee",
                    fields.get("total_fee").map(String::as_str).unwrap_or(""),
                ),
            ],
            key,
            sign_type,
        ),
        ("/pay/refundquery", _) => match fields.get("out_refund_no").map(String::as_str) {
            Some("refund_missing") => business_error("REFUNDNOTEXIST", key, sign_type),
            Some(no) => signed(
                &[
                    ("out_trade_no", "order_ok_01"),
                    ("refund_count", "1"),
                    ("out_refund_no_0", no),
                    ("refund_id_0", "50000000001"),
                    ("refund_fee_0", "500"),
                    ("refund_status_0", "SUCCESS"),
                    ("refund_success_time_0", "2024-01-01 12:00:00"),
                ],
                key,
                sign_type,
            ),
            None => fail("缺少参数"),
        },
        _ => fail("unknown path"),
    };
    (None, reply)
}

pub const APP_SECRET: &str = "appsecret0123456789";
/// The ticket of the official JS-SDK signature example.
pub const JSAPI_TICKET: &str =
    "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg";

/// The login/token endpoints (GET + JSON). Requests are logged with their query as fields.
fn login_answer(path: &str, log: &Arc<Mutex<Vec<Received>>>, token_lifetime: u64) -> String {
    let url = url::Url::parse(&format!("http://fake{path}")).unwrap();
    let query: Params = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    log.lock().unwrap().push(Received {
        path: url.path().to_owned(),
        fields: query.clone(),
        signature_ok: true,
    });
    let credentials_ok = query.get("appid").map(String::as_str) == Some(APPID)
        && query.get("secret").map(String::as_str) == Some(APP_SECRET);
    let error = |code: i64, message: &str| serde_json::json!({"errcode": code, "errmsg": message});
    let reply = match url.path() {
        "/sns/jscode2session" if !credentials_ok => error(40125, "invalid appsecret"),
        "/sns/jscode2session" => match query.get("js_code").map(String::as_str) {
            Some("code_ok") => serde_json::json!({
                "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
                "session_key": "tiihtNczf5v6AKRyjwEUhQ==",
                "unionid": "o6_bmasdasdsad6_2sgVt7hMZOPfL",
            }),
            Some("code_used") => error(40029, "invalid code"),
            Some("code_busy") => error(-1, "system error"),
            Some("code_rate") => error(45011, "api minute-quota reach limit"),
            Some("code_risk") => error(40226, "invalid user"),
            _ => error(41008, "missing code"),
        },
        "/sns/oauth2/access_token" if credentials_ok => serde_json::json!({
            "access_token": "USER_ACCESS_TOKEN", "expires_in": 7200,
            "refresh_token": "REFRESH", "openid": "oLVPpjqs9BhvzwPj5A-vTYAX3GLc",
            "scope": "snsapi_base",
        }),
        "/cgi-bin/token" if credentials_ok => {
            let fetched = log
                .lock()
                .unwrap()
                .iter()
                .filter(|r| r.path == "/cgi-bin/token")
                .count();
            serde_json::json!({"access_token": format!("ACCESS_TOKEN_{fetched}"), "expires_in": token_lifetime})
        }
        "/cgi-bin/ticket/getticket"
            if query
                .get("access_token")
                .is_some_and(|t| t.starts_with("ACCESS_TOKEN_")) =>
        {
            serde_json::json!({"errcode": 0, "errmsg": "ok", "ticket": JSAPI_TICKET, "expires_in": 7200})
        }
        _ => error(40001, "invalid credential"),
    };
    reply.to_string()
}
