//! Request metrics and request body deadlines. Every metric label comes from a fixed set so
//! that nothing a client sends can add series: the method is one of the standard methods or
//! `other`, the route is the matched route pattern (ids in paths do not count) or `unmatched`,
//! and the status is the code paygate chose to answer.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::HttpMessage;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderMap};
use actix_web::http::{ConnectionType, Method};
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes};
use futures_util::Stream;
use tokio::time::Sleep;

use crate::state::AppState;

/// Counts requests and observes latency per route.
pub async fn record_metrics(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = method_label(request.method());
    let state = request.app_data::<web::Data<AppState>>().cloned();
    let response = next.call(request).await?;
    if let Some(state) = state {
        let route = response
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_owned());
        let status = response.status();
        state
            .metrics
            .http_requests
            .with_label_values(&[method, &route, status.as_str()])
            .inc();
        state
            .metrics
            .http_latency
            .with_label_values(&[&route])
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(response)
}

/// The method as a metric label: a client can send any token as a method, and each distinct
/// label value would be a new series kept forever.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::HEAD, "HEAD"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::PATCH, "PATCH"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    KNOWN
        .iter()
        .find(|(known, _)| known == method)
        .map_or("other", |(_, label)| label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_share_one_label() {
        assert_eq!(method_label(&Method::POST), "POST");
        let made_up = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&made_up), "other");
    }
}

/// How long a request's body may take to arrive, counted from the end of its head.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub Duration);

/// Gives every request body a deadline and closes connections whose body was not read.
///
/// actix times out only the request head: a client that sends its headers and then trickles
/// (or stalls) the body held the connection and the handler's buffer forever. Past the
/// deadline the body reads as an error, the answer becomes 408 and the connection is closed.
/// A body the handler did not read to its end (a 404, a 413 on the declared length) also
/// closes the connection: it cannot carry another request without reading the rest first.
pub async fn limit_body_time(
    mut request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let timeout = request
        .app_data::<BodyTimeout>()
        .map_or(Duration::from_secs(10), |t| t.0);
    let has_body = declares_body(request.headers());
    let progress = Rc::new(BodyProgress::default());
    let payload = Deadline {
        payload: request.take_payload(),
        expires: Box::pin(tokio::time::sleep(timeout)),
        progress: Rc::clone(&progress),
    };
    request.set_payload(Payload::Stream {
        payload: Box::pin(payload),
    });
    let mut response = next.call(request).await?;
    if progress.expired.get() {
        let (request, _) = response.into_parts();
        let mut timeout = crate::error::ErrorResponse::new(
            crate::error::ErrorCode::RequestTimeout,
            "the request body did not arrive in time",
        )
        .into_response();
        timeout
            .head_mut()
            .set_connection_type(ConnectionType::Close);
        return Ok(ServiceResponse::new(request, timeout).map_into_right_body());
    }
    if has_body && !progress.finished.get() {
        response
            .response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
    Ok(response.map_into_left_body())
}

/// Whether the request announces a body (a non-zero length or chunked transfer).
fn declares_body(headers: &HeaderMap) -> bool {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    length.is_some_and(|l| l > 0) || headers.contains_key(header::TRANSFER_ENCODING)
}

/// What became of a request body: read to its end, or cut off at the deadline.
#[derive(Default)]
struct BodyProgress {
    finished: Cell<bool>,
    expired: Cell<bool>,
}

/// A request body that fails once its deadline has passed.
struct Deadline {
    payload: Payload,
    expires: Pin<Box<Sleep>>,
    progress: Rc<BodyProgress>,
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.progress.expired.get() || this.progress.finished.get() {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.payload).poll_next(cx) {
            Poll::Ready(None) => {
                this.progress.finished.set(true);
                return Poll::Ready(None);
            }
            Poll::Ready(Some(item)) => return Poll::Ready(Some(item)),
            Poll::Pending => {}
        }
        if this.expires.as_mut().poll(cx).is_ready() {
            this.progress.expired.set(true);
            return Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "request body not received in time",
            )))));
        }
        Poll::Pending
    }
}
