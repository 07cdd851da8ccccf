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

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use paygate_store::{ClaimOutcome, EventId, NewWebhookAttempt, OutboxEvent, Store, StoreError};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

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
///
/// Each endpoint has its own worker and queue, so a slow or dead endpoint delays only its own
/// deliveries; one endpoint gets one delivery at a time, in the order events became due.
/// Each event is claimed in the database before it is queued and the claim is renewed, with
/// a deadline longer than the delivery timeout, just before every send: a second replica
/// that takes the lease over never sends an event this one is sending.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    endpoints: BTreeMap<String, Vec<Endpoint>>,
    http: reqwest::Client,
    settings: WebhookSettings,
}

/// The lease that makes one replica at a time look for due events.
pub const LEASE: &str = "webhooks";

/// Events one pass claims.
const BATCH: u32 = 50;

/// Deliveries one endpoint may have queued: more than a pass claims, so a healthy endpoint
/// takes a whole batch at once; past it an event waits for a later pass.
const QUEUE: usize = 64;

/// Deliveries in flight at once across every endpoint.
const CONCURRENT_SENDS: usize = 16;

/// How much longer than the delivery timeout a claim lasts: it must outlive the send it
/// fences, and a stopped replica's claims lapse after about this long.
const CLAIM_MARGIN: Duration = Duration::from_secs(5);

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

    /// Delivers until `shutdown` flips, claiming due events while holding the `webhooks`
    /// lease. On shutdown queued deliveries are given back (their claims released) and the
    /// sends in flight finish; [`crate::reconciler::RunningBackground::stop`] cuts them short
    /// at its budget.
    pub async fn run(self, store: Store, holder: String, shutdown: watch::Receiver<bool>) {
        let interval = Duration::from_millis(self.settings.poll_interval_ms);
        let lease = Lease::new(store.clone(), LEASE, holder.clone(), interval);
        let deliveries = Arc::new(Deliveries::start(self, store, holder));
        let passes = deliveries.clone();
        run_leased(lease, interval, shutdown, move |lease| {
            let deliveries = passes.clone();
            Box::pin(async move {
                if let Err(error) = deliveries.dispatch_due(lease).await {
                    tracing::warn!(%error, "webhook pass failed; retrying");
                }
            })
        })
        .await;
        deliveries.stop().await;
    }

    /// Claims the deadline of a delivery that starts now: the timeout plus a margin.
    fn claim_deadline(&self) -> DateTime<Utc> {
        let lasts = Duration::from_millis(self.settings.timeout_ms) + CLAIM_MARGIN;
        Utc::now() + chrono::Duration::from_std(lasts).unwrap_or(chrono::Duration::MAX)
    }

    /// When an event failed in this round is due again.
    fn next_attempt(&self, event: &OutboxEvent) -> DateTime<Utc> {
        let failures = u32::try_from(event.attempts + 1).unwrap_or(u32::MAX);
        let wait = backoff(
            Duration::from_millis(self.settings.initial_backoff_ms),
            Duration::from_millis(self.settings.max_backoff_ms),
            failures,
        );
        Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default()
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

/// One event to send to one endpoint.
struct Job {
    event: Arc<OutboxEvent>,
    body: Arc<str>,
    endpoint: Endpoint,
    tracker: Arc<Tracker>,
}

/// How one endpoint's part of an event ended.
enum Sent {
    /// It answered 2xx.
    Acknowledged,
    /// It failed: this endpoint, and how.
    Failed(String),
    /// Not sent now: the endpoint's queue was full, or the database could not renew the claim.
    Deferred,
    /// Not sent: the process is stopping.
    Abandoned,
    /// Not sent: another replica holds the event's claim.
    Lost,
}

/// The endpoints' parts of one event still out, and how the finished ones went.
#[derive(Debug, Default)]
struct Tracker {
    parts: Mutex<Parts>,
}

#[derive(Debug, Default)]
struct Parts {
    remaining: usize,
    failure: Option<String>,
    deferred: bool,
    abandoned: bool,
    lost: bool,
}

impl Tracker {
    fn new(remaining: usize) -> Tracker {
        Tracker {
            parts: Mutex::new(Parts {
                remaining,
                ..Parts::default()
            }),
        }
    }

    /// Records one endpoint's part; the parts once the last one is in.
    fn record(&self, sent: Sent) -> Option<Parts> {
        let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        match sent {
            Sent::Acknowledged => {}
            Sent::Failed(error) => parts.failure = Some(error),
            Sent::Deferred => parts.deferred = true,
            Sent::Abandoned => parts.abandoned = true,
            Sent::Lost => parts.lost = true,
        }
        parts.remaining = parts.remaining.saturating_sub(1);
        (parts.remaining == 0).then(|| std::mem::take(&mut *parts))
    }
}

/// The running delivery machinery of one process: a queue and a worker per endpoint URL.
struct Deliveries {
    shared: Arc<Shared>,
    queues: Mutex<BTreeMap<String, mpsc::Sender<Job>>>,
    /// Dropped with the dispatcher (a stop cut short), which aborts the workers.
    workers: Mutex<JoinSet<()>>,
    stopping: watch::Sender<bool>,
}

/// What the workers and the passes share.
struct Shared {
    dispatcher: Dispatcher,
    store: Store,
    holder: String,
    /// Events queued or being sent here, whose claims each pass renews.
    in_flight: Mutex<HashSet<EventId>>,
    sends: Semaphore,
    stopping: watch::Receiver<bool>,
}

impl Deliveries {
    fn start(dispatcher: Dispatcher, store: Store, holder: String) -> Deliveries {
        let (stopping, stopping_watch) = watch::channel(false);
        let urls: BTreeSet<String> = dispatcher
            .endpoints
            .values()
            .flatten()
            .map(|e| e.url.clone())
            .collect();
        let shared = Arc::new(Shared {
            dispatcher,
            store,
            holder,
            in_flight: Mutex::new(HashSet::new()),
            sends: Semaphore::new(CONCURRENT_SENDS),
            stopping: stopping_watch,
        });
        let mut queues = BTreeMap::new();
        let mut workers = JoinSet::new();
        for url in urls {
            let (sender, receiver) = mpsc::channel(QUEUE);
            queues.insert(url, sender);
            workers.spawn(shared.clone().work(receiver));
        }
        Deliveries {
            shared,
            queues: Mutex::new(queues),
            workers: Mutex::new(workers),
            stopping,
        }
    }

    /// One pass: renews the claims of the events in flight here, claims due events and queues
    /// each to its app's endpoints that have not acknowledged it in its round. Returns how many
    /// events it claimed.
    async fn dispatch_due(&self, lease: &mut Lease) -> Result<usize, StoreError> {
        let shared = &self.shared;
        let until = shared.dispatcher.claim_deadline();
        let in_flight: Vec<EventId> = shared.lock_in_flight().iter().cloned().collect();
        if !in_flight.is_empty() {
            shared
                .store
                .renew_event_claims(&shared.holder, &in_flight, until)
                .await?;
        }
        let claimed = shared
            .store
            .claim_due_events(&shared.holder, BATCH, Utc::now(), until)
            .await?;
        let count = claimed.len();
        let mut events = claimed.into_iter();
        for event in events.by_ref() {
            if !lease.hold().await {
                shared.give_back(event).await;
                break;
            }
            if shared.lock_in_flight().contains(&event.id) {
                continue;
            }
            self.dispatch(event).await?;
        }
        for event in events {
            shared.give_back(event).await;
        }
        Ok(count)
    }

    /// Queues one claimed event to each endpoint that still has to acknowledge it.
    async fn dispatch(&self, event: OutboxEvent) -> Result<(), StoreError> {
        let shared = &self.shared;
        let order = shared.store.order(&event.order_id).await?;
        // Nobody to tell: the event stays listed (GET /v1/events) but is not retried.
        let endpoints = shared
            .dispatcher
            .endpoints
            .get(order.app.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        let acknowledged: HashSet<String> = shared
            .store
            .webhook_attempts(&event.id)
            .await?
            .into_iter()
            .filter(|a| a.delivery_round == event.delivery_round && a.acknowledged())
            .map(|a| a.endpoint)
            .collect();
        let targets: Vec<&Endpoint> = endpoints
            .iter()
            .filter(|e| !acknowledged.contains(&e.url))
            .collect();
        if targets.is_empty() {
            shared.finish(&event, Parts::default()).await;
            return Ok(());
        }
        shared.lock_in_flight().insert(event.id.clone());
        let tracker = Arc::new(Tracker::new(targets.len()));
        let body: Arc<str> = delivery_body(&event).into();
        let event = Arc::new(event);
        let mut busy = Vec::new();
        {
            let queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
            for endpoint in targets {
                let job = Job {
                    event: event.clone(),
                    body: body.clone(),
                    endpoint: endpoint.clone(),
                    tracker: tracker.clone(),
                };
                match queues.get(&endpoint.url) {
                    Some(queue) => {
                        if let Err(refused) = queue.try_send(job) {
                            busy.push(match refused {
                                mpsc::error::TrySendError::Full(job)
                                | mpsc::error::TrySendError::Closed(job) => job,
                            });
                        }
                    }
                    None => busy.push(job),
                }
            }
        }
        for job in busy {
            if let Some(parts) = job.tracker.record(Sent::Deferred) {
                shared.finish(&job.event, parts).await;
            }
        }
        Ok(())
    }

    /// Gives queued deliveries back, lets the sends in flight end, and waits for the workers.
    async fn stop(&self) {
        let _ = self.stopping.send(true);
        // Closing the queues ends each worker once it has drained its queue.
        self.queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let mut workers =
            std::mem::take(&mut *self.workers.lock().unwrap_or_else(|e| e.into_inner()));
        while workers.join_next().await.is_some() {}
    }
}

impl Shared {
    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<EventId>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One endpoint's worker: sends its queue's jobs one at a time, in order.
    async fn work(self: Arc<Self>, mut jobs: mpsc::Receiver<Job>) {
        while let Some(job) = jobs.recv().await {
            let sent = self.send(&job).await;
            if let Some(parts) = job.tracker.record(sent) {
                self.finish(&job.event, parts).await;
            }
        }
    }

    /// Sends one job if this process still holds the event's claim, renewed first so that it
    /// outlives the send.
    async fn send(&self, job: &Job) -> Sent {
        if *self.stopping.borrow() {
            return Sent::Abandoned;
        }
        let Ok(_permit) = self.sends.acquire().await else {
            return Sent::Abandoned;
        };
        if *self.stopping.borrow() {
            return Sent::Abandoned;
        }
        let until = self.dispatcher.claim_deadline();
        let event = &job.event;
        match self
            .store
            .renew_event_claims(&self.holder, std::slice::from_ref(&event.id), until)
            .await
        {
            Ok(1) => {}
            Ok(_) => return Sent::Lost,
            Err(error) => {
                tracing::warn!(%error, event = %event.id, "cannot renew a delivery claim; retrying later");
                return Sent::Deferred;
            }
        }
        let attempt = self.dispatcher.post(&job.endpoint, event, &job.body).await;
        let failure = attempt
            .error
            .as_ref()
            .map(|error| format!("{}: {error}", job.endpoint.url));
        if let Err(error) = self.store.record_webhook_attempt(attempt).await {
            tracing::warn!(%error, event = %event.id, "cannot record a webhook attempt");
        }
        match failure {
            None => Sent::Acknowledged,
            Some(failure) => Sent::Failed(failure),
        }
    }

    /// Records how an event's round went once every endpoint's part is in, and drops its claim.
    async fn finish(&self, event: &OutboxEvent, parts: Parts) {
        let outcome = if parts.lost {
            None
        } else if let Some(error) = parts.failure {
            Some(ClaimOutcome::Failed {
                error,
                next_attempt_at: self.dispatcher.next_attempt(event),
            })
        } else if parts.deferred {
            // After the events that became due meanwhile, so a busy endpoint's backlog does
            // not fill every pass.
            let wait = Duration::from_millis(self.dispatcher.settings.poll_interval_ms) * 4;
            Some(ClaimOutcome::Released {
                next_attempt_at: Some(
                    Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default(),
                ),
            })
        } else if parts.abandoned {
            Some(ClaimOutcome::Released {
                next_attempt_at: None,
            })
        } else {
            Some(ClaimOutcome::Delivered(Utc::now()))
        };
        if let Some(outcome) = outcome
            && let Err(error) = self
                .store
                .finish_event_claim(&event.id, event.delivery_round, &self.holder, outcome)
                .await
        {
            // The claim lapses at its deadline and the event is delivered again then.
            tracing::warn!(%error, event = %event.id, "cannot record a delivery outcome");
        }
        self.lock_in_flight().remove(&event.id);
    }

    /// Releases the claim of an event this pass will not queue (the lease was lost).
    async fn give_back(&self, event: OutboxEvent) {
        let parts = Parts {
            abandoned: true,
            ..Parts::default()
        };
        self.finish(&event, parts).await;
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
