//! A fake `gateway.do` on 127.0.0.1 (port 0): it checks each request's signature with the app
//! public key, records the decoded parameters, and answers with whatever the test scripted:
//! a correctly signed body, one signed with the wrong key, an unsigned body, or an HTTP error.

use std::sync::{Arc, Mutex};

use paygate_alipay::form::decode_form;
use paygate_alipay::keys::{SigningKey, VerifyingKey};
use paygate_alipay::response::sign_response_body;
use paygate_alipay::sign::{Params, SignScope, verify_params};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{alipay_signing_key, app_verifying_key, read_text};

/// How the fake gateway answers the next calls.
#[derive(Debug, Clone)]
pub enum Reply {
    /// `content` signed with the Alipay key (optionally naming a certificate SN).
    Signed {
        content: String,
        cert_sn: Option<String>,
    },
    /// `content` signed with an unrelated key.
    Forged { content: String },
    /// `content` with no `sign` at all.
    Unsigned { content: String },
    /// An HTTP error status with an HTML body, as a proxy would send.
    HttpError(u16),
}

impl Reply {
    pub fn signed(content: &str) -> Reply {
        Reply::Signed {
            content: content.to_owned(),
            cert_sn: None,
        }
    }
}

/// One request as the gateway saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub http_method: String,
    pub query_keys: Vec<String>,
    pub body_keys: Vec<String>,
    pub content_type: Option<String>,
    pub params: Params,
    pub signature_valid: bool,
}

struct State {
    reply: Reply,
    seen: Vec<SeenRequest>,
}

pub struct FakeGateway {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl FakeGateway {
    pub async fn start(reply: Reply) -> FakeGateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/gateway.do", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            reply,
            seen: Vec::new(),
        }));
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            let alipay_key = Arc::new(alipay_signing_key());
            let wrong_key =
                Arc::new(SigningKey::parse(&read_text("keys/wrong_private_pkcs1.pem")).unwrap());
            let app_key = Arc::new(app_verifying_key());
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&shared);
                let keys = (
                    Arc::clone(&alipay_key),
                    Arc::clone(&wrong_key),
                    Arc::clone(&app_key),
                );
                tokio::spawn(async move { serve(stream, state, keys).await });
            }
        });
        FakeGateway { url, state }
    }

    pub fn set_reply(&self, reply: Reply) {
        self.state.lock().unwrap().reply = reply;
    }

    pub fn seen(&self) -> Vec<SeenRequest> {
        self.state.lock().unwrap().seen.clone()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn serve(
    mut stream: TcpStream,
    state: Arc<Mutex<State>>,
    (alipay_key, wrong_key, app_key): (Arc<SigningKey>, Arc<SigningKey>, Arc<VerifyingKey>),
) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let read = stream.read(&mut chunk).await.unwrap();
        if read == 0 {
            return;
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(at) = find(&buffer, b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8(buffer[..header_end].to_vec()).unwrap();
    let header = |name: &str| {
        head.lines()
            .find_map(|line| {
                line.split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            })
            .map(|(_, v)| v.trim().to_owned())
    };
    let length: usize = header("content-length").map_or(0, |v| v.parse().unwrap());
    while buffer.len() < header_end + length {
        let read = stream.read(&mut chunk).await.unwrap();
        if read == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    let body = &buffer[header_end..];
    let request_line = head.lines().next().unwrap().to_owned();
    let mut parts = request_line.split(' ');
    let http_method = parts.next().unwrap().to_owned();
    let target = parts.next().unwrap();
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let query_pairs = decode_form(query.as_bytes()).unwrap();
    let body_pairs = decode_form(body).unwrap();
    let params: Params = query_pairs
        .iter()
        .chain(body_pairs.iter())
        .cloned()
        .collect();
    let signature_valid = verify_params(&params, SignScope::Request, &app_key).is_ok();
    let method = params.get("method").cloned().unwrap_or_default();
    let reply = {
        let mut state = state.lock().unwrap();
        state.seen.push(SeenRequest {
            http_method,
            query_keys: query_pairs.iter().map(|(k, _)| k.clone()).collect(),
            body_keys: body_pairs.iter().map(|(k, _)| k.clone()).collect(),
            content_type: header("content-type"),
            params,
            signature_valid,
        });
        state.reply.clone()
    };
    let (status, text) = match reply {
        Reply::Signed { content, cert_sn } => (
            200,
            sign_response_body(&method, &content, &alipay_key, cert_sn.as_deref()).unwrap(),
        ),
        Reply::Forged { content } => (
            200,
            sign_response_body(&method, &content, &wrong_key, None).unwrap(),
        ),
        Reply::Unsigned { content } => (
            200,
            format!(
                "{{\"{}\":{content}}}",
                paygate_alipay::response::response_key(&method)
            ),
        ),
        Reply::HttpError(status) => (status, "<html>bad gateway</html>".to_owned()),
    };
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: text/html;charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    stream.write_all(response.as_bytes()).await.unwrap();
    stream.shutdown().await.ok();
}
