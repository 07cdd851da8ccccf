//! Clients that send slowly or announce more than a route accepts cannot hold the server's
//! connections or memory: a stalled body is cut off at the body timeout, and a declared
//! `Content-Length` over the limit is answered 413 before any of the body is read.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, spawn_app_with};

async fn app_with_short_timeouts() -> TestApp {
    spawn_app_with(|settings| {
        settings.http.request_head_timeout_ms = 1_000;
        settings.http.request_body_timeout_ms = 1_000;
    })
    .await
}

/// Sends `head` (and nothing more), then reads until the server closes the connection or
/// `patience` passes; returns what was read and when the connection was closed.
async fn send_and_stall(
    app: &TestApp,
    head: &str,
    patience: Duration,
) -> (String, Option<Duration>) {
    let address = app.address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0_u8; 4096];
    loop {
        match tokio::time::timeout_at((started + patience).into(), stream.read(&mut buffer)).await {
            Err(_) => return (String::from_utf8_lossy(&received).into_owned(), None),
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (
                    String::from_utf8_lossy(&received).into_owned(),
                    Some(started.elapsed()),
                );
            }
            Ok(Ok(read)) => received.extend_from_slice(&buffer[..read]),
        }
    }
}

#[tokio::test]
async fn a_stalled_notify_or_api_body_is_closed_within_the_body_timeout() {
    let app = app_with_short_timeouts().await;
    let notify = "POST /notify/wechat/sandbox HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n\
        Content-Length: 1000\r\n\r\n<xml><return_code>";
    let api = format!(
        "POST /v1/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"provider\":",
        app.merchant_key
    );
    for head in [notify.to_owned(), api] {
        let (answer, closed) = send_and_stall(&app, &head, Duration::from_secs(6)).await;
        let closed = closed.unwrap_or_else(|| panic!("still open after 6 s: {answer:?}"));
        assert!(closed < Duration::from_secs(4), "closed after {closed:?}");
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
    }
}

#[tokio::test]
async fn a_stalled_request_head_is_closed_within_the_head_timeout() {
    let app = app_with_short_timeouts().await;
    let (answer, closed) = send_and_stall(
        &app,
        "POST /notify/wechat/sandbox HTTP/1.1\r\nHost:",
        Duration::from_secs(6),
    )
    .await;
    let closed = closed.unwrap_or_else(|| panic!("still open after 6 s: {answer:?}"));
    assert!(closed < Duration::from_secs(4), "closed after {closed:?}");
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_before_the_body_is_sent() {
    let app = spawn_app_with(|_| {}).await;
    // Over the 64 KiB notify limit, under the 1 MiB the server used to read regardless.
    for (path, length) in [
        ("/notify/wechat/sandbox", 200 * 1024),
        ("/notify/alipay/sandbox", 10 * 1024 * 1024),
        ("/v1/orders", 200 * 1024),
    ] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n",
            app.merchant_key
        );
        let (answer, _) = send_and_stall(&app, &head, Duration::from_secs(3)).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer:?}");
    }
}
