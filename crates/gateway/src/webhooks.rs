//! Merchant webhooks: the signature receivers check, and the dispatcher that delivers outbox
//! events at least once.
//!
//! Each delivery is `POST`ed as `{"id","type","created_at","data"}` with
//! `Paygate-Event-Id: <id>` and `Paygate-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret,
//! "<t>.<body>")>`. The id is the outbox row's, so it is the same on every retry and a
//! receiver de-duplicates on it; the timestamp is signed so a receiver can refuse replays of
//! old deliveries. A 2xx answer acknowledges; anything else (or no answer) is retried with
//! exponential back-off plus jitter, and every attempt is recorded. Redirects are never
//! followed: a `3xx` is a failed attempt (its `Location` recorded), because following one would
//! either re-send as a body-less `GET` whose `200` loses the event, or hand the signed body to a
//! URL nobody configured.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use paygate_store::{NewWebhookAttempt, OutboxEvent, Store, StoreError};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use tokio::sync::watch;

use crate::config::{ConfigError, WebhookSettings, read_secret};
use crate::reconciler::{Lease, run_leased};

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Paygate-Signature";
/// The header carrying the event id.
pub const EVENT_ID_HEADER: &str = "Paygate-Event-Id";

/// Signs `body` as sent at `timestamp` (unix seconds): the `Paygate-Signature` header value.
pub fn signature_header(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac(secret, timestamp, body))
    )
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Vec<u8> {
    keyed_mac(secret, timestamp, body)
        .finalize()
        .into_bytes()
        .to_vec()
}

/// The HMAC over `"<timestamp>.<body>"`, not yet finalised.
fn keyed_mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        unreachable!("HMAC accepts keys of any length");
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Why a receiver should refuse a delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is not `t=<unix>,v1=<hex>`.
    #[error("malformed Paygate-Signature header")]
    Malformed,
    /// The timestamp is further from now than the tolerance: a replay or a skewed clock.
    #[error("signature timestamp outside the tolerance")]
    Stale,
    /// No `v1` value matches the body.
    #[error("signature does not match")]
    Mismatch,
}

/// Verifies a `Paygate-Signature` header the way a receiver should: parse, check the
/// timestamp is within `tolerance_seconds` of `now`, compare the MAC in constant time.
pub fn verify_signature(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_seconds: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => {
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed)?,
                );
            }
            Some(("v1", value)) => {
                candidates.push(hex::decode(value).map_err(|_| SignatureError::Malformed)?);
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - timestamp).abs() > tolerance_seconds {
        return Err(SignatureError::Stale);
    }
    let expected = keyed_mac(secret, timestamp, body);
    // `verify_slice` compares in constant time.
    if candidates
        .iter()
        .any(|candidate| expected.clone().verify_slice(candidate).is_ok())
    {
        return Ok(());
    }
    Err(SignatureError::Mismatch)
}

/// The JSON body of a delivery; the same bytes for every attempt of an event.
pub fn delivery_body(event: &OutboxEvent) -> String {
    serde_json::json!({
        "id": event.id.to_string(),
        "type": event.kind.as_str(),
        "created_at": event.created_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "data": event.payload,
    })
    .to_string()
}

/// The wait before the next delivery after `failures` failed rounds: `initial × 2^(failures-1)`
/// capped at `max`, plus up to 50 % random jitter so that many failing events do not retry in
/// lock-step.
pub fn backoff(initial: Duration, max: Duration, failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(30);
    let base = initial.saturating_mul(1u32 << exponent).min(max);
    let jitter_ms = u64::try_from(base.as_millis() / 2).unwrap_or(u64::MAX);
    base + Duration::from_millis(rand::rng().random_range(0..=jitter_ms))
}

/// One configured merchant endpoint.
#[derive(Clone)]
pub struct Endpoint {
    /// Where events are POSTed.
    pub url: String,
    secret: SecretString,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Delivers due outbox events to the endpoints of each event's app.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    endpoints: BTreeMap<String, Vec<Endpoint>>,
    http: reqwest::Client,
    settings: WebhookSettings,
}

/// Events one pass looks at.
const BATCH: u32 = 50;

impl Dispatcher {
    /// Reads the endpoints' secrets and builds the HTTP client.
    pub fn from_settings(settings: &WebhookSettings) -> Result<Dispatcher, ConfigError> {
        let mut endpoints = BTreeMap::new();
        for (app, configured) in &settings.endpoints {
            let mut list = Vec::new();
            for (index, endpoint) in configured.iter().enumerate() {
                let key = format!("webhooks.endpoints.{app}[{index}].secret");
                list.push(Endpoint {
                    url: endpoint.url.clone(),
                    secret: read_secret(&key, &endpoint.secret, &endpoint.secret_file)?,
                });
            }
            endpoints.insert(app.clone(), list);
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ConfigError::Invalid {
                key: "webhooks".to_owned(),
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Dispatcher {
            endpoints,
            http,
            settings: settings.clone(),
        })
    }

    /// Delivers until `shutdown` flips, while holding the `webhooks` lease (one replica
    /// delivers at a time; losing the lease only risks a duplicate, which ids make harmless).
    pub async fn run(self, store: Store, holder: String, shutdown: watch::Receiver<bool>) {
        let interval = Duration::from_millis(self.settings.poll_interval_ms);
        let lease = Lease::new(store.clone(), "webhooks", holder, interval);
        let dispatcher = std::sync::Arc::new(self);
        run_leased(lease, interval, shutdown, |lease| {
            let (dispatcher, store) = (dispatcher.clone(), store.clone());
            Box::pin(async move {
                if let Err(error) = dispatcher.deliver_due(&store, lease).await {
                    tracing::warn!(%error, "webhook pass failed; retrying");
                }
            })
        })
        .await;
    }

    /// One pass: every due event is sent to each endpoint that has not acknowledged it in the
    /// current round. Returns how many events became delivered.
    pub async fn deliver_due(&self, store: &Store, lease: &mut Lease) -> Result<usize, StoreError> {
        let mut delivered = 0;
        for event in store.pending_outbox_events(BATCH, Utc::now()).await? {
            if !lease.hold().await {
                break;
            }
            if self.deliver(store, &event).await? {
                delivered += 1;
            }
        }
        Ok(delivered)
    }

    /// Sends one event to its app's endpoints; true when all of them have acknowledged it.
    async fn deliver(&self, store: &Store, event: &OutboxEvent) -> Result<bool, StoreError> {
        let order = store.order(&event.order_id).await?;
        let Some(endpoints) = self.endpoints.get(order.app.as_str()) else {
            // Nobody to tell: the event stays listed (GET /v1/events) but is not retried.
            store.mark_event_delivered(&event.id, Utc::now()).await?;
            return Ok(true);
        };
        let acknowledged: HashSet<String> = store
            .webhook_attempts(&event.id)
            .await?
            .into_iter()
            .filter(|a| a.delivery_round == event.delivery_round && a.acknowledged())
            .map(|a| a.endpoint)
            .collect();
        let body = delivery_body(event);
        let mut last_error = None;
        for endpoint in endpoints.iter().filter(|e| !acknowledged.contains(&e.url)) {
            let attempt = self.post(endpoint, event, &body).await;
            if let Some(error) = &attempt.error {
                last_error = Some(format!("{}: {error}", endpoint.url));
            }
            store.record_webhook_attempt(attempt).await?;
        }
        match last_error {
            None => {
                store.mark_event_delivered(&event.id, Utc::now()).await?;
                Ok(true)
            }
            Some(error) => {
                let failures = u32::try_from(event.attempts + 1).unwrap_or(u32::MAX);
                let wait = backoff(
                    Duration::from_millis(self.settings.initial_backoff_ms),
                    Duration::from_millis(self.settings.max_backoff_ms),
                    failures,
                );
                let next = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                store.mark_event_failed(&event.id, &error, next).await?;
                Ok(false)
            }
        }
    }

    async fn post(
        &self,
        endpoint: &Endpoint,
        event: &OutboxEvent,
        body: &str,
    ) -> NewWebhookAttempt {
        let attempted_at: DateTime<Utc> = Utc::now();
        let signature = signature_header(
            endpoint.secret.expose_secret().as_bytes(),
            attempted_at.timestamp(),
            body.as_bytes(),
        );
        let sent = self
            .http
            .post(&endpoint.url)
            .header("Content-Type", "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header(EVENT_ID_HEADER, event.id.to_string())
            .body(body.to_owned())
            .send()
            .await;
        let (response_status, error) = match sent {
            Ok(response) if response.status().is_success() => {
                (Some(response.status().as_u16()), None)
            }
            Ok(response) if response.status().is_redirection() => (
                Some(response.status().as_u16()),
                Some(format!(
                    "answered HTTP {} redirecting to {} (redirects are not followed)",
                    response.status().as_u16(),
                    redirect_location(response.headers())
                )),
            ),
            Ok(response) => (
                Some(response.status().as_u16()),
                Some(format!("answered HTTP {}", response.status().as_u16())),
            ),
            Err(error) => (None, Some(transport_error(&error))),
        };
        NewWebhookAttempt {
            event_id: event.id.clone(),
            delivery_round: event.delivery_round,
            endpoint: endpoint.url.clone(),
            attempted_at,
            response_status,
            error,
        }
    }
}

/// The longest `Location` kept in an attempt's error: enough to see where the merchant moved
/// its endpoint, not a way to store whatever the endpoint sends.
const LOCATION_CHARS: usize = 200;

/// A redirect's `Location`, cut to [`LOCATION_CHARS`] characters, for the attempt's error.
fn redirect_location(headers: &reqwest::header::HeaderMap) -> String {
    let Some(location) = headers.get(reqwest::header::LOCATION) else {
        return "no Location".to_owned();
    };
    // Header values that are not visible ASCII are not shown: the record stays one clean line.
    let Ok(location) = location.to_str() else {
        return "a Location that is not text".to_owned();
    };
    if location.chars().count() <= LOCATION_CHARS {
        return location.to_owned();
    }
    let cut: String = location.chars().take(LOCATION_CHARS).collect();
    format!("{cut}…")
}

/// A transport failure in a few words (reqwest's Display can include the whole URL chain).
fn transport_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "connection failed".to_owned()
    } else {
        error.to_string()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use sha2::Digest;

    /// HMAC-SHA256 written out from RFC 2104 over the plain SHA-256 function, to check the
    /// signer against something that does not share its code.
    fn rfc2104_hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
        let mut block = [0u8; 64];
        if key.len() > 64 {
            block[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let inner_key: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
        let outer_key: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
        let inner = Sha256::digest([inner_key.as_slice(), message].concat());
        Sha256::digest([outer_key.as_slice(), inner.as_slice()].concat()).into()
    }

    #[test]
    fn the_reference_hmac_matches_rfc_4231_test_case_2() {
        // RFC 4231 §4.3: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            hex::encode(rfc2104_hmac_sha256(
                b"Jefe",
                b"what do ya want for nothing?"
            )),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_signature_is_an_hmac_of_timestamp_dot_body_under_the_endpoint_secret() {
        let secret = b"whsec_test_3f9a";
        let body = br#"{"id":"01J","type":"order.paid","data":{"amount":990}}"#;
        let expected = rfc2104_hmac_sha256(secret, &[b"1700000000.".as_slice(), body].concat());

        let header = signature_header(secret, 1_700_000_000, body);

        assert_eq!(header, format!("t=1700000000,v1={}", hex::encode(expected)));
    }

    #[test]
    fn a_receiver_accepts_a_fresh_genuine_delivery_and_refuses_tampering_replays_and_garbage() {
        let secret = b"whsec_receiver";
        let body = br#"{"id":"01J","type":"order.paid"}"#;
        let header = signature_header(secret, 1_700_000_000, body);

        assert_eq!(
            verify_signature(secret, &header, body, 1_700_000_100, 300),
            Ok(())
        );
        assert_eq!(
            verify_signature(
                secret,
                &header,
                br#"{"id":"01J","type":"order.closed"}"#,
                1_700_000_100,
                300
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(b"another secret", &header, body, 1_700_000_100, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(secret, &header, body, 1_700_000_000 + 301, 300),
            Err(SignatureError::Stale)
        );
        // Moving the timestamp forward to dodge the tolerance breaks the MAC.
        let moved = header.replace("t=1700000000", "t=1700000400");
        assert_eq!(
            verify_signature(secret, &moved, body, 1_700_000_400, 300),
            Err(SignatureError::Mismatch)
        );
        for garbage in [
            "",
            "t=abc,v1=00",
            "v1=00",
            "t=1700000000",
            "t=1700000000,v1=zz",
        ] {
            assert_eq!(
                verify_signature(secret, garbage, body, 1_700_000_000, 300),
                Err(SignatureError::Malformed),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn a_redirect_location_is_recorded_cut_to_a_bounded_length() {
        use reqwest::header::{HeaderMap, HeaderValue, LOCATION};
        let mut headers = HeaderMap::new();
        assert_eq!(redirect_location(&headers), "no Location");
        headers.insert(
            LOCATION,
            HeaderValue::from_static("https://new.example/hooks"),
        );
        assert_eq!(redirect_location(&headers), "https://new.example/hooks");
        let long = format!("https://new.example/{}", "a".repeat(5_000));
        headers.insert(LOCATION, HeaderValue::from_str(&long).unwrap());
        let recorded = redirect_location(&headers);
        assert_eq!(recorded.chars().count(), LOCATION_CHARS + 1, "{recorded}");
        assert!(long.starts_with(recorded.trim_end_matches('…')));
        headers.insert(
            LOCATION,
            HeaderValue::from_bytes(b"https://x.example/\xff").unwrap(),
        );
        assert_eq!(redirect_location(&headers), "a Location that is not text");
    }

    #[test]
    fn backoff_doubles_from_the_initial_wait_adds_at_most_half_again_and_stops_at_the_cap() {
        let initial = Duration::from_secs(5);
        let max = Duration::from_secs(60);
        for (failures, base) in [(1, 5), (2, 10), (3, 20), (4, 40), (5, 60), (40, 60)] {
            let base = Duration::from_secs(base);
            for _ in 0..20 {
                let wait = backoff(initial, max, failures);
                assert!(
                    wait >= base && wait <= base + base / 2,
                    "{failures}: {wait:?}"
                );
            }
        }
    }
}
