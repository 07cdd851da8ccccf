//! Reliability: lost notifies, provider timeouts and expiry, settled by the reconciler, and
//! merchant webhooks delivered at least once, signed, and de-duplicable by event id. Each
//! test drives the real server and the sandbox's fault injection; see docs/reliability.md.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use paygate_gateway::config::{Settings, WebhookEndpointSettings};
use paygate_gateway::webhooks::{Dispatcher, verify_signature};
use paygate_simulation::topology::Outage;
use paygate_store::Store;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_until, spawn_app_with};

const WEBHOOK_SECRET: &str = "whsec_reliability_tests";

/// One request a merchant's webhook endpoint received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The `Paygate-Event-Id` header.
    pub event_id: String,
    /// The `Paygate-Signature` header.
    pub signature: String,
    /// The raw body.
    pub body: Vec<u8>,
    /// The body parsed.
    pub json: Value,
    /// What the endpoint answered.
    pub answered: u16,
    /// When the request arrived.
    pub at: chrono::DateTime<chrono::Utc>,
}

/// A request that reached a receiver's redirect target: its method and body.
pub type Moved = (String, Vec<u8>);

/// How a test endpoint answers deliveries.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// 500 to the first `n` requests, 200 afterwards.
    FailFirst(usize),
    /// This 3xx status, with `Location` pointing at the receiver's `/moved`, which answers 200
    /// to anything (so a followed redirect would look like a success).
    Redirect(u16),
    /// Waits this long, then 200.
    Slow(Duration),
    /// Never answers.
    Hang,
}

/// A merchant's webhook endpoint: records everything and answers as told.
#[derive(Clone)]
pub struct Receiver {
    /// Where it listens.
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    moved: Arc<Mutex<Vec<Moved>>>,
}

struct ReceiverState {
    received: Arc<Mutex<Vec<Received>>>,
    moved: Arc<Mutex<Vec<Moved>>>,
    failures_left: AtomicUsize,
    answer: Answer,
    moved_url: String,
}

async fn receive(
    state: web::Data<ReceiverState>,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let at = chrono::Utc::now();
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let answered = match state.answer {
        Answer::FailFirst(_) => {
            let fail = state
                .failures_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if fail { 500 } else { 200 }
        }
        Answer::Redirect(status) => status,
        Answer::Slow(_) | Answer::Hang => 200,
    };
    state.received.lock().unwrap().push(Received {
        event_id: header("Paygate-Event-Id"),
        signature: header("Paygate-Signature"),
        json: serde_json::from_slice(&body).unwrap_or(Value::Null),
        body: body.to_vec(),
        answered,
        at,
    });
    match state.answer {
        Answer::Slow(wait) => tokio::time::sleep(wait).await,
        Answer::Hang => std::future::pending::<()>().await,
        _ => {}
    }
    let mut response =
        HttpResponse::build(actix_web::http::StatusCode::from_u16(answered).unwrap());
    if let Answer::Redirect(_) = state.answer {
        response.insert_header(("Location", state.moved_url.as_str()));
    }
    response.finish()
}

async fn moved(
    state: web::Data<ReceiverState>,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let method = request.method().to_string();
    state.moved.lock().unwrap().push((method, body.to_vec()));
    HttpResponse::Ok().finish()
}

/// Starts a receiver on a free port answering 500 to the first `failures` requests.
pub async fn spawn_receiver(failures: usize) -> Receiver {
    spawn_endpoint(Answer::FailFirst(failures)).await
}

/// Starts a receiver on a free port answering as `answer` says.
pub async fn spawn_endpoint(answer: Answer) -> Receiver {
    let received = Arc::new(Mutex::new(Vec::new()));
    let moved_requests = Arc::new(Mutex::new(Vec::new()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let failures = match answer {
        Answer::FailFirst(n) => n,
        _ => 0,
    };
    let state = web::Data::new(ReceiverState {
        received: received.clone(),
        moved: moved_requests.clone(),
        failures_left: AtomicUsize::new(failures),
        answer,
        moved_url: format!("http://127.0.0.1:{port}/moved"),
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/hooks", web::post().to(receive))
            .route("/moved", web::route().to(moved))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    Receiver {
        url: format!("http://127.0.0.1:{port}/hooks"),
        received,
        moved: moved_requests,
    }
}

impl Receiver {
    /// Everything received about `order_id`.
    pub fn for_order(&self, order_id: &str) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.json["data"]["order_id"] == order_id)
            .cloned()
            .collect()
    }

    /// Every request that reached the redirect target `/moved`: (method, body).
    pub fn moved(&self) -> Vec<Moved> {
        self.moved.lock().unwrap().clone()
    }

    /// This receiver as an endpoint signing with the tests' secret.
    pub fn endpoint(&self) -> WebhookEndpointSettings {
        WebhookEndpointSettings {
            url: self.url.clone(),
            secret: Some(WEBHOOK_SECRET.to_owned().into()),
            secret_file: None,
        }
    }
}

/// Reconciler and dispatcher intervals shrunk to milliseconds, and `receiver` as the sandbox
/// app's webhook endpoint.
pub fn fast(settings: &mut Settings, receiver: Option<&Receiver>) {
    settings.reconciler.interval_ms = 100;
    settings.reconciler.query_pending_after_seconds = 0;
    settings.reconciler.query_backoff_ms = 100;
    settings.reconciler.query_backoff_max_ms = 400;
    settings.webhooks.poll_interval_ms = 50;
    settings.webhooks.initial_backoff_ms = 50;
    settings.webhooks.max_backoff_ms = 200;
    settings.webhooks.timeout_ms = 2_000;
    if let Some(receiver) = receiver {
        settings
            .webhooks
            .endpoints
            .insert("sandbox".to_owned(), vec![receiver.endpoint()]);
    }
}

/// Polls `check` every 50 ms for up to 20 s; the reconciler runs every 100 ms, so this only
/// bounds a hang, it does not time the system.
pub async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..400 {
        if let Some(found) = check().await {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}

async fn order_status(app: &TestApp, id: &str) -> String {
    app.get_json(&format!("/v1/orders/{id}")).await["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn wait_for_order(app: &TestApp, id: &str, status: &str) {
    eventually(&format!("order {id} {status}"), async || {
        (order_status(app, id).await == status).then_some(())
    })
    .await;
}

/// The order's events as finance sees them.
pub async fn events(app: &TestApp, order_id: &str) -> Vec<Value> {
    let response = app
        .get_as(&app.finance_key, &format!("/v1/events?order_id={order_id}"))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["data"].as_array().cloned().unwrap_or_default()
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

pub(crate) async fn sandbox_json<T: serde::de::DeserializeOwned>(app: &TestApp, path: &str) -> T {
    let response = app
        .http
        .get(format!("{}{path}", app.sandbox))
        .send()
        .await
        .unwrap();
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_dropped_notify_is_settled_by_the_reconciler_and_the_merchant_hears_order_paid_once() {
    // The merchant's server fails the first delivery, so the event is retried.
    let receiver = spawn_receiver(1).await;
    let app = spawn_app_with(|s| fast(s, Some(&receiver))).await;
    app.fault(json!({"fault": "drop_notify", "out_trade_no": "rc_drop_1", "times": "always"}))
        .await;
    let order = app
        .create_order(TestApp::order_body("wechat", "native", "rc_drop_1", 990))
        .await;
    let id = order["id"].as_str().unwrap();

    app.pay(&order).await;
    wait_for_order(&app, id, "paid").await;
    assert!(
        app.callbacks(id).await.is_empty(),
        "no notify reached the gateway: the reconciler's query paid it"
    );

    let delivered = eventually("order.paid delivered", async || {
        let events = events(&app, id).await;
        let paid = of_type(&events, "order.paid");
        (paid.len() == 1 && paid[0]["status"] == "delivered").then(|| paid[0].clone())
    })
    .await;
    let event_id = delivered["id"].as_str().unwrap().to_owned();
    let answers: Vec<&Value> = delivered["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["response_status"])
        .collect();
    assert_eq!(answers, [&json!(500), &json!(200)], "{delivered}");

    let received = receiver.for_order(id);
    let ids: std::collections::BTreeSet<&str> =
        received.iter().map(|r| r.event_id.as_str()).collect();
    assert_eq!(
        ids.len(),
        1,
        "one event, however many deliveries: {received:?}"
    );
    for delivery in &received {
        assert_eq!(delivery.event_id, event_id);
        assert_eq!(delivery.json["id"], event_id.as_str());
        assert_eq!(delivery.json["type"], "order.paid");
        assert_eq!(delivery.json["data"]["amount"], 990);
        let now = chrono::Utc::now().timestamp();
        verify_signature(
            WEBHOOK_SECRET.as_bytes(),
            &delivery.signature,
            &delivery.body,
            now,
            300,
        )
        .unwrap();
    }
    assert_eq!(
        received.iter().filter(|r| r.answered == 200).count(),
        1,
        "acknowledged once, then never sent again"
    );
}

#[tokio::test]
async fn an_operator_can_redeliver_an_event_which_keeps_its_id() {
    let receiver = spawn_receiver(0).await;
    let app = spawn_app_with(|s| fast(s, Some(&receiver))).await;
    let order = app
        .create_order(TestApp::order_body(
            "alipay",
            "precreate",
            "rc_redeliver_1",
            100,
        ))
        .await;
    let id = order["id"].as_str().unwrap();
    app.pay(&order).await;
    wait_for_order(&app, id, "paid").await;
    let event = eventually("delivered", async || {
        let events = events(&app, id).await;
        (events.len() == 1 && events[0]["status"] == "delivered").then(|| events[0].clone())
    })
    .await;
    let event_id = event["id"].as_str().unwrap();
    let path = format!("/v1/events/{event_id}/redeliver");

    let by_finance = app
        .http
        .post(format!("{}{path}", app.address))
        .bearer_auth(&app.finance_key)
        .send()
        .await
        .unwrap();
    assert_eq!(by_finance.status(), 403);
    let redelivered = app.post(&path, &json!({})).await;
    assert_eq!(redelivered.status(), 202);

    eventually("second delivery", async || {
        (receiver.for_order(id).len() == 2).then_some(())
    })
    .await;
    let received = receiver.for_order(id);
    assert!(received.iter().all(|r| r.event_id == event_id));
    assert_eq!(
        received[0].body, received[1].body,
        "the same event, byte for byte"
    );
    let pending = app
        .get_as(&app.merchant_key, "/v1/events?status=pending")
        .await;
    assert_eq!(pending.status(), 200);
    let unknown = app
        .post(
            "/v1/events/01JAAAAAAAAAAAAAAAAAAAAAAA/redeliver",
            &json!({}),
        )
        .await;
    assert_eq!(unknown.status(), 404);
}

/// Pays an order whose app's one endpoint answers `status` with a `Location` elsewhere, and
/// checks the event is not delivered: every attempt records the status and where it pointed,
/// it is retried, and nothing (no re-sent GET, no signed body) ever reaches the `Location`.
async fn a_redirect_is_a_failed_attempt_never_followed(status: u16, out_trade_no: &str) {
    let receiver = spawn_endpoint(Answer::Redirect(status)).await;
    let app = spawn_app_with(|s| fast(s, Some(&receiver))).await;
    let order = app
        .create_order(TestApp::order_body("wechat", "native", out_trade_no, 990))
        .await;
    let id = order["id"].as_str().unwrap();
    app.pay(&order).await;
    wait_for_order(&app, id, "paid").await;

    let event = eventually("delivered, or retried after the redirect", async || {
        let events = events(&app, id).await;
        let paid = of_type(&events, "order.paid");
        let settled = paid.len() == 1
            && (paid[0]["status"] == "delivered" || paid[0]["attempts"].as_array()?.len() >= 2);
        settled.then(|| paid[0].clone())
    })
    .await;
    assert_eq!(
        event["status"], "pending",
        "a redirect is not an acknowledgement: {event}"
    );
    let location = receiver.url.replace("/hooks", "/moved");
    for attempt in event["attempts"].as_array().unwrap() {
        assert_eq!(attempt["response_status"], status, "{event}");
        let error = attempt["error"].as_str().unwrap();
        assert!(
            error.contains(&format!("redirecting to {location}")),
            "{error}"
        );
    }
    assert!(event["failed_rounds"].as_i64().unwrap() >= 1, "{event}");
    assert!(
        receiver.moved().is_empty(),
        "the redirect target got {:?}",
        receiver.moved()
    );
}

#[tokio::test]
async fn a_302_from_an_endpoint_is_a_failed_attempt_retried_and_never_followed_as_a_get() {
    a_redirect_is_a_failed_attempt_never_followed(302, "rc_redirect_302").await;
}

#[tokio::test]
async fn a_307_from_an_endpoint_never_sends_the_signed_body_to_its_location() {
    a_redirect_is_a_failed_attempt_never_followed(307, "rc_redirect_307").await;
}

/// Creates and pays `count` WeChat orders numbered from `prefix`; returns their ids once paid.
async fn paid_orders(app: &TestApp, prefix: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for number in 0..count {
        let body = TestApp::order_body("wechat", "native", &format!("{prefix}_{number}"), 100);
        let order = app.create_order(body).await;
        app.pay(&order).await;
        ids.push(order["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        wait_for_order(app, id, "paid").await;
    }
    ids
}

/// The `q`-quantile (0..=1) of `sorted` by nearest rank.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::test]
async fn a_hanging_endpoint_does_not_delay_the_events_of_a_healthy_one() {
    const ORDERS: usize = 30;
    let hanging = spawn_endpoint(Answer::Hang).await;
    let healthy = spawn_receiver(0).await;
    let app = spawn_app_with(|s| {
        fast(s, None);
        // The production timeout: before, every event waited this long for the dead endpoint.
        s.webhooks.timeout_ms = 10_000;
        s.webhooks.endpoints.insert(
            "sandbox".to_owned(),
            vec![hanging.endpoint(), healthy.endpoint()],
        );
    })
    .await;

    let ids = paid_orders(&app, "rc_hang", ORDERS).await;
    let mut latencies = Vec::new();
    for id in &ids {
        let received = eventually("the healthy endpoint got order.paid", async || {
            healthy.for_order(id).into_iter().next()
        })
        .await;
        let created: chrono::DateTime<chrono::Utc> = received.json["created_at"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        latencies.push((received.at - created).to_std().unwrap_or_default());
    }
    latencies.sort();
    let (p50, p99, max) = (
        quantile(&latencies, 0.50),
        quantile(&latencies, 0.99),
        latencies[latencies.len() - 1],
    );
    println!(
        "healthy endpoint beside a hanging one: {ORDERS} order.paid events, delivery latency \
         (event created -> received) p50 {p50:?} p99 {p99:?} max {max:?}"
    );
    assert!(
        max < Duration::from_secs(3),
        "the hanging endpoint delayed the healthy one: p50 {p50:?} p99 {p99:?} max {max:?}"
    );
    // Its deliveries run beside the healthy one's, each held until the timeout: on a loaded
    // machine the first may still be on its way when the healthy endpoint has had all 30.
    eventually("the hanging endpoint is sent the events too", async || {
        ids.iter()
            .any(|id| !hanging.for_order(id).is_empty())
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn two_replicas_on_one_database_deliver_each_event_to_a_slow_endpoint_once() {
    // Each delivery takes longer than the dispatcher's lease (three 50 ms polls, at least 1 s).
    let slow = spawn_endpoint(Answer::Slow(Duration::from_millis(2_000))).await;
    let replica = |s: &mut Settings| {
        fast(s, Some(&slow));
        s.webhooks.timeout_ms = 5_000;
        s.reconciler.enabled = false;
    };
    let app = spawn_app_with(|s| {
        replica(s);
        s.reconciler.enabled = true;
    })
    .await;
    // A second replica's dispatcher, on the same database.
    let mut settings = Settings::default();
    replica(&mut settings);
    let second = Dispatcher::from_settings(&settings.webhooks).unwrap();
    let store = Store::connect(&app.database_url, paygate_store::PoolOptions::sized(4))
        .await
        .unwrap();
    let (_running, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(second.run(store, "second-replica".to_owned(), shutdown));

    let ids = paid_orders(&app, "rc_replicas", 4).await;
    for id in &ids {
        eventually("order.paid delivered", async || {
            let events = events(&app, id).await;
            (events.len() == 1 && events[0]["status"] == "delivered").then_some(())
        })
        .await;
    }
    // Long enough for a second replica's duplicate of the last delivery to arrive.
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    for id in &ids {
        let received = slow.for_order(id);
        assert_eq!(received.len(), 1, "delivered once: {received:?}");
        let events = events(&app, id).await;
        assert_eq!(
            events[0]["attempts"].as_array().unwrap().len(),
            1,
            "{events:?}"
        );
    }
}

#[tokio::test]
async fn a_stop_with_a_hung_endpoint_ends_within_its_budget_and_releases_lease_and_claims() {
    let hung = spawn_endpoint(Answer::Hang).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (app, running) = spawn_app_until(
        |s| {
            fast(s, Some(&hung));
            // Far longer than the stop budget: the delivery in flight must be cut short.
            s.webhooks.timeout_ms = 60_000;
            s.shutdown_timeout_seconds = 2;
        },
        async {
            let _ = stopped.await;
        },
    )
    .await;
    let ids = paid_orders(&app, "rc_stop", 1).await;
    eventually("the hung endpoint is being sent order.paid", async || {
        (!hung.for_order(&ids[0]).is_empty()).then_some(())
    })
    .await;

    let asked = std::time::Instant::now();
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(5), "a 2 s budget took {took:?}");

    // Another replica takes over at once: the lease and the event's claim were released.
    let store = Store::connect(&app.database_url, paygate_store::PoolOptions::sized(2))
        .await
        .unwrap();
    let lease = chrono::Duration::seconds(30);
    assert!(
        store
            .try_claim_lease(paygate_gateway::webhooks::LEASE, "next-replica", lease)
            .await
            .unwrap(),
        "the dispatcher's lease was left held"
    );
    let now = chrono::Utc::now();
    let claimed = store
        .claim_due_events("next-replica", 10, now, now + lease)
        .await
        .unwrap();
    assert!(
        claimed.iter().any(|e| e.order_id.to_string() == ids[0]),
        "the undelivered event was left claimed: {claimed:?}"
    );
}

#[tokio::test]
async fn a_create_that_times_out_is_a_504_and_the_retry_returns_the_one_trade() {
    let app = spawn_app_with(|s| fast(s, None)).await;
    // The provider creates the trade, but its answer never arrives in time.
    app.fault(json!({
        "fault": "timeout", "millis": 3_000, "api": "/pay/unifiedorder",
        "out_trade_no": "rc_timeout_1", "processed": true
    }))
    .await;
    let body = TestApp::order_body("wechat", "native", "rc_timeout_1", 300);

    let timed_out = app.post("/v1/orders", &body).await;
    assert_eq!(timed_out.status(), 504);
    let error: Value = timed_out.json().await.unwrap();
    assert_eq!(error["error"]["code"], "provider_timeout");

    let retried = app.post("/v1/orders", &body).await;
    assert_eq!(retried.status(), 200, "the retry reuses the stored order");
    let order: Value = retried.json().await.unwrap();
    assert!(order["pay_params"]["code_url"].is_string(), "{order}");
    app.sandbox_trade("rc_timeout_1").await;
    assert_faults_consumed(&app).await;
}

/// Pays a 1000-fen order, injects `fault`, asks for a 400-fen refund and waits until the
/// reconciler has it settled; then checks the API never called it failed, there is one refund
/// of 400 at the provider and in the order's `refunded_amount`, one `refund.succeeded` and no
/// `refund.failed`, and that the fault fired. Returns the app and the order's id.
async fn refund_under_fault(
    provider: &str,
    channel: &str,
    out_trade_no: &str,
    fault: Value,
) -> (TestApp, String) {
    let app = spawn_app_with(|s| fast(s, None)).await;
    let id = &paid_order(&app, provider, channel, out_trade_no).await;
    app.fault(fault).await;
    let out_refund_no = format!("{out_trade_no}_r1");

    let response = app
        .post(
            &format!("/v1/orders/{id}/refunds"),
            &json!({"amount": 400, "out_refund_no": out_refund_no}),
        )
        .await;
    assert_eq!(response.status(), 201, "accepted, never a 502");
    let answered: Value = response.json().await.unwrap();
    assert!(
        answered["status"] == "processing" || answered["status"] == "succeeded",
        "in flight (or already settled by the refund notify), never failed: {answered}"
    );

    let refund = eventually("refund settled", async || {
        let refunds = app.get_json(&format!("/v1/orders/{id}/refunds")).await;
        let refund = refunds["data"][0].clone();
        (refund["status"] == "succeeded").then_some(refund)
    })
    .await;
    assert_eq!(refund["out_refund_no"], out_refund_no.as_str());
    let trade = app.sandbox_trade(out_trade_no).await;
    let refunds = trade["refunds"].as_array().unwrap();
    assert_eq!(refunds.len(), 1, "one refund at the provider: {trade}");
    assert_eq!(refunds[0]["amount"], 400, "{trade}");
    assert_eq!(refunds[0]["out_refund_no"], out_refund_no.as_str());
    let order = app.get_json(&format!("/v1/orders/{id}")).await;
    assert_eq!(
        order["refunded_amount"], 400,
        "the books match the provider: {order}"
    );
    let events = events(&app, id).await;
    assert_eq!(of_type(&events, "refund.succeeded").len(), 1, "{events:?}");
    assert!(of_type(&events, "refund.failed").is_empty(), "{events:?}");
    assert!(
        !app.anomalies()
            .await
            .iter()
            .any(|a| a["kind"] == "refund_failed"),
        "nothing failed"
    );
    assert_faults_consumed(&app).await;
    (app, id.clone())
}

/// Asserts the unusable refund answer raised one `state_disagreement` anomaly for the order:
/// until the query settled it, the books could differ from the provider's.
async fn assert_unusable_answer_anomaly(app: &TestApp, id: &str) {
    let anomalies: Vec<Value> = app
        .anomalies()
        .await
        .into_iter()
        .filter(|a| a["order_id"] == id)
        .collect();
    assert_eq!(anomalies.len(), 1, "{anomalies:?}");
    assert_eq!(anomalies[0]["kind"], "state_disagreement", "{anomalies:?}");
}

#[tokio::test]
async fn a_wechat_refund_carried_out_behind_an_empty_answer_is_never_failed_and_settles() {
    // The provider refunds, but a proxy hands paygate HTTP 200 with an empty body.
    let fault = json!({
        "fault": "empty_body", "api": "/secapi/pay/refund", "processed": true
    });
    let (app, id) = refund_under_fault("wechat", "native", "rc_refund_empty", fault).await;
    assert_unusable_answer_anomaly(&app, &id).await;
}

#[tokio::test]
async fn a_wechat_refund_carried_out_behind_a_truncated_answer_is_never_failed_and_settles() {
    let fault = json!({
        "fault": "truncated_body", "api": "/secapi/pay/refund", "processed": true
    });
    let (app, id) = refund_under_fault("wechat", "native", "rc_refund_cut", fault).await;
    assert_unusable_answer_anomaly(&app, &id).await;
}

#[tokio::test]
async fn an_alipay_refund_carried_out_behind_an_unverifiable_answer_is_never_failed_and_settles() {
    let fault = json!({
        "fault": "bad_answer_signature", "api": "alipay.trade.refund", "processed": true
    });
    let (app, id) = refund_under_fault("alipay", "precreate", "rc_refund_badsig", fault).await;
    assert_unusable_answer_anomaly(&app, &id).await;
}

#[tokio::test]
async fn an_alipay_refund_carried_out_behind_an_empty_answer_is_never_failed_and_settles() {
    let fault = json!({
        "fault": "empty_body", "api": "alipay.trade.refund", "processed": true
    });
    let (app, id) = refund_under_fault("alipay", "precreate", "rc_refund_empty_ap", fault).await;
    assert_unusable_answer_anomaly(&app, &id).await;
}

#[tokio::test]
async fn a_wechat_refund_answered_bizerr_need_retry_is_sent_again_with_the_same_out_refund_no() {
    // "Try again with the same parameters": not a refusal, so never a failed refund.
    let fault = json!({
        "fault": "refused", "code": "BIZERR_NEED_RETRY", "api": "/secapi/pay/refund"
    });
    refund_under_fault("wechat", "native", "rc_refund_retry", fault).await;
}

/// Creates and pays a 1000-fen order; returns its id.
async fn paid_order(app: &TestApp, provider: &str, channel: &str, out_trade_no: &str) -> String {
    let order = app
        .create_order(TestApp::order_body(provider, channel, out_trade_no, 1000))
        .await;
    let id = order["id"].as_str().unwrap().to_owned();
    app.pay(&order).await;
    wait_for_order(app, &id, "paid").await;
    id
}

/// Asserts the order's only refund failed with one `refund.failed` event and one
/// `refund_failed` anomaly, released its amount, and that nothing was refunded at the provider.
async fn assert_refund_failed(app: &TestApp, id: &str, out_trade_no: &str) {
    let refunds = app.get_json(&format!("/v1/orders/{id}/refunds")).await;
    assert_eq!(refunds["data"][0]["status"], "failed", "{refunds}");
    let order = app.get_json(&format!("/v1/orders/{id}")).await;
    assert_eq!(order["refunded_amount"], 0, "{order}");
    let trade = app.sandbox_trade(out_trade_no).await;
    assert_eq!(trade["refunds"], json!([]), "{trade}");
    let events = events(app, id).await;
    assert_eq!(of_type(&events, "refund.failed").len(), 1, "{events:?}");
    // The anomaly is written just after the refund's transition, so it may trail it a little.
    let anomalies = eventually("refund_failed anomaly", async || {
        let anomalies: Vec<Value> = app
            .anomalies()
            .await
            .into_iter()
            .filter(|a| a["kind"] == "refund_failed" && a["order_id"] == id)
            .collect();
        (!anomalies.is_empty()).then_some(anomalies)
    })
    .await;
    assert_eq!(anomalies.len(), 1, "{anomalies:?}");
    assert_faults_consumed(app).await;
}

#[tokio::test]
async fn a_refund_the_provider_definitely_refuses_fails_and_raises_a_refund_failed_anomaly() {
    let app = spawn_app_with(|s| fast(s, None)).await;
    let id = paid_order(&app, "wechat", "native", "rc_refund_refused").await;
    app.fault(json!({"fault": "refused", "code": "NOTENOUGH", "api": "/secapi/pay/refund"}))
        .await;

    let response = app
        .post(&format!("/v1/orders/{id}/refunds"), &json!({"amount": 400}))
        .await;
    assert_eq!(
        response.status(),
        502,
        "the provider's refusal is passed on"
    );

    assert_refund_failed(&app, &id, "rc_refund_refused").await;
}

#[tokio::test]
async fn a_refund_refused_when_the_reconciler_sends_it_again_fails_with_a_refund_failed_anomaly() {
    let app = spawn_app_with(|s| fast(s, None)).await;
    let id = paid_order(&app, "alipay", "precreate", "rc_refund_resend_refused").await;
    // The first call never reaches Alipay; the reconciler's re-send is refused outright.
    app.fault(json!({"fault": "http_status", "status": 502, "api": "alipay.trade.refund"}))
        .await;
    app.fault(json!({
        "fault": "refused", "code": "ACQ.TRADE_NOT_ALLOW_REFUND", "api": "alipay.trade.refund"
    }))
    .await;

    let response = app
        .post(&format!("/v1/orders/{id}/refunds"), &json!({"amount": 400}))
        .await;
    assert_eq!(response.status(), 201);

    eventually("refund failed", async || {
        let refunds = app.get_json(&format!("/v1/orders/{id}/refunds")).await;
        (refunds["data"][0]["status"] == "failed").then_some(())
    })
    .await;
    assert_refund_failed(&app, &id, "rc_refund_resend_refused").await;
}

#[tokio::test]
async fn a_close_carried_out_behind_an_unusable_answer_is_confirmed_by_query_and_closes_here() {
    let app = spawn_app_with(|s| fast(s, None)).await;
    for (provider, out_trade_no, fault) in [
        (
            "wechat",
            "rc_close_unanswered",
            json!({"fault": "http_status", "status": 502, "api": "/pay/closeorder", "processed": true}),
        ),
        (
            "alipay",
            "rc_close_badsig",
            json!({"fault": "bad_answer_signature", "api": "alipay.trade.close", "processed": true}),
        ),
    ] {
        let channel = if provider == "wechat" {
            "native"
        } else {
            "precreate"
        };
        let order = app
            .create_order(TestApp::order_body(provider, channel, out_trade_no, 100))
            .await;
        let id = order["id"].as_str().unwrap();
        app.fault(fault).await;

        let response = app
            .post(&format!("/v1/orders/{id}/close"), &json!({}))
            .await;
        assert_eq!(response.status(), 200, "{provider}");
        let closed: Value = response.json().await.unwrap();
        assert_eq!(closed["status"], "closed", "{provider}: {closed}");
        assert_eq!(app.sandbox_trade(out_trade_no).await["status"], "closed");
        let events = events(&app, id).await;
        assert_eq!(of_type(&events, "order.closed").len(), 1, "{events:?}");
    }
    assert_faults_consumed(&app).await;
}

#[tokio::test]
async fn a_close_the_provider_did_not_carry_out_leaves_the_order_pending_until_closed_again() {
    let app = spawn_app_with(|s| fast(s, None)).await;
    for (provider, out_trade_no, fault) in [
        (
            "wechat",
            "rc_close_empty",
            json!({"fault": "empty_body", "api": "/pay/closeorder"}),
        ),
        (
            "alipay",
            "rc_close_cut",
            json!({"fault": "truncated_body", "api": "alipay.trade.close"}),
        ),
    ] {
        let channel = if provider == "wechat" {
            "native"
        } else {
            "precreate"
        };
        let order = app
            .create_order(TestApp::order_body(provider, channel, out_trade_no, 100))
            .await;
        let id = order["id"].as_str().unwrap();
        app.fault(fault).await;

        let response = app
            .post(&format!("/v1/orders/{id}/close"), &json!({}))
            .await;
        assert!(
            response.status().is_server_error(),
            "{provider}: {}",
            response.status()
        );
        assert_eq!(order_status(&app, id).await, "pending", "{provider}");
        assert_ne!(app.sandbox_trade(out_trade_no).await["status"], "closed");
        assert!(of_type(&events(&app, id).await, "order.closed").is_empty());

        let again = app
            .post(&format!("/v1/orders/{id}/close"), &json!({}))
            .await;
        assert_eq!(again.status(), 200, "{provider}");
        assert_eq!(app.sandbox_trade(out_trade_no).await["status"], "closed");
    }
    assert_faults_consumed(&app).await;
}

#[tokio::test]
async fn a_refund_whose_answer_is_lost_is_settled_by_the_reconciler_with_the_same_out_refund_no() {
    // The provider refunds, but its answer never arrives in time.
    let fault = json!({
        "fault": "timeout", "millis": 3_000, "api": "alipay.trade.refund", "processed": true
    });
    refund_under_fault("alipay", "precreate", "rc_refund_1", fault).await;
}

#[tokio::test]
async fn a_refund_that_never_reached_the_provider_is_sent_again_with_the_same_out_refund_no() {
    // A proxy in front of the provider fails the refund call: the provider never sees it.
    let fault = json!({"fault": "http_status", "status": 502, "api": "/secapi/pay/refund"});
    refund_under_fault("wechat", "native", "rc_refund_lost", fault).await;
}

/// Fails unless every injected fault has fired (a fault that never matched proves nothing).
async fn assert_faults_consumed(app: &TestApp) {
    let faults: Vec<Value> = sandbox_json(app, "/sandbox/faults").await;
    assert!(faults.is_empty(), "faults that never fired: {faults:?}");
}

/// Expiry counted from eight seconds after creation for a 60-second order, and no pending
/// queries, so only the expiry path can settle it.
fn expiring(settings: &mut Settings) {
    fast(settings, None);
    settings.reconciler.expiry_grace_seconds = -52;
    settings.reconciler.query_pending_after_seconds = 3_600;
}

fn expiring_order(provider: &str, channel: &str, out_trade_no: &str) -> Value {
    let mut body = TestApp::order_body(provider, channel, out_trade_no, 500);
    body["expires_in_seconds"] = json!(60);
    body
}

#[tokio::test]
async fn an_expired_order_is_closed_at_the_provider_before_it_is_closed_here() {
    let app = spawn_app_with(expiring).await;
    let order = app
        .create_order(expiring_order("wechat", "native", "rc_expire_1"))
        .await;
    let id = order["id"].as_str().unwrap();

    wait_for_order(&app, id, "closed").await;
    let trade = app.sandbox_trade("rc_expire_1").await;
    assert_eq!(trade["status"], "closed", "{trade}");
    let paying = app
        .sandbox_pay(json!({"provider": "wechat", "out_trade_no": "rc_expire_1"}))
        .await;
    assert!(
        !paying.status().is_success(),
        "a closed trade cannot be paid"
    );
    let events = events(&app, id).await;
    assert_eq!(of_type(&events, "order.closed").len(), 1, "{events:?}");
}

#[tokio::test]
async fn an_expired_order_the_buyer_paid_becomes_paid_and_is_never_closed() {
    let app = spawn_app_with(expiring).await;
    app.fault(json!({"fault": "drop_notify", "out_trade_no": "rc_expire_paid", "times": "always"}))
        .await;
    let order = app
        .create_order(expiring_order("alipay", "precreate", "rc_expire_paid"))
        .await;
    let id = order["id"].as_str().unwrap();
    app.pay(&order).await;
    assert_eq!(
        order_status(&app, id).await,
        "pending",
        "the notify was dropped"
    );

    wait_for_order(&app, id, "paid").await;
    let events = events(&app, id).await;
    assert_eq!(of_type(&events, "order.paid").len(), 1, "{events:?}");
    assert!(of_type(&events, "order.closed").is_empty(), "{events:?}");
    assert_eq!(app.sandbox_trade("rc_expire_paid").await["status"], "paid");
}

#[tokio::test]
async fn a_late_notify_for_an_order_closed_here_is_confirmed_by_query_and_honoured() {
    let app = spawn_app_with(|s| s.reconciler.enabled = false).await;
    app.fault(json!({"fault": "drop_notify", "out_trade_no": "rc_late_1", "times": "always"}))
        .await;
    let order = app
        .create_order(TestApp::order_body("wechat", "native", "rc_late_1", 700))
        .await;
    let id = order["id"].as_str().unwrap();
    app.pay(&order).await;
    let dropped = eventually("a dropped notify", async || {
        app.deliveries()
            .await
            .into_iter()
            .find(|d| d["out_trade_no"] == "rc_late_1" && d["dropped"] == true)
    })
    .await;
    // The order is closed here while the buyer's payment is in flight (a close that raced the
    // payment), behind the gateway's back.
    let store =
        paygate_store::Store::connect(&app.database_url, paygate_store::PoolOptions::sized(1))
            .await
            .unwrap();
    let order_id = paygate_core::OrderId::parse(id).unwrap();
    let closed = store
        .transition_order(
            &order_id,
            paygate_core::OrderStatus::Pending,
            paygate_core::OrderEvent::Closed,
            paygate_store::OrderChanges::default(),
            None,
        )
        .await
        .unwrap();
    assert!(matches!(closed, paygate_store::Transition::Applied(_)));

    let late = app
        .post_notify(
            "/notify/wechat/sandbox",
            "text/xml",
            dropped["body"].as_str().unwrap().to_owned(),
        )
        .await;
    assert_eq!(late.status(), 200);
    assert!(late.text().await.unwrap().contains("SUCCESS"));

    assert_eq!(order_status(&app, id).await, "paid");
    let anomalies = app.anomalies().await;
    assert!(
        anomalies
            .iter()
            .any(|a| a["order_id"] == id && a["kind"] == "late_payment"),
        "{anomalies:?}"
    );
    let events = events(&app, id).await;
    assert_eq!(of_type(&events, "order.paid").len(), 1, "{events:?}");
    let anomaly = of_type(&events, "anomaly.detected");
    assert_eq!(anomaly.len(), 1, "{events:?}");
    assert_eq!(anomaly[0]["data"]["anomaly"]["kind"], "late_payment");
}

/// A database outage made from outside the gateway (the simulation's: another connection holds
/// SQLite's write lock; PostgreSQL refuses connections and terminates the gateway's).
fn outage(database_url: &str) -> Outage {
    let admin_url = std::env::var("PAYGATE_TEST_DATABASE_URL").ok();
    Outage::start(database_url, admin_url.as_deref()).unwrap()
}

#[tokio::test]
async fn while_the_database_is_down_notifies_fail_and_the_api_answers_503_then_all_converges() {
    let app = spawn_app_with(|s| fast(s, None)).await;
    let order = app
        .create_order(TestApp::order_body("wechat", "native", "rc_db_down_1", 880))
        .await;
    let id = order["id"].as_str().unwrap();

    let outage = outage(&app.database_url);
    app.pay(&order).await;
    let refused = eventually("a notify refused during the outage", async || {
        app.deliveries().await.into_iter().find(|d| {
            d["out_trade_no"] == "rc_db_down_1"
                && d["dropped"] == false
                && d["acknowledged"] == false
                && (d["response_status"].is_number() || d["error"].is_string())
        })
    })
    .await;
    if let Some(status) = refused["response_status"].as_u64() {
        assert_eq!(status, 503, "{refused}");
        assert!(
            refused["response_body"].as_str().unwrap().contains("FAIL"),
            "the provider is told to retry: {refused}"
        );
    }
    let during = app
        .post(
            "/v1/orders",
            &TestApp::order_body("wechat", "native", "rc_db_down_2", 100),
        )
        .await;
    assert_eq!(during.status(), 503);
    let error: Value = during.json().await.unwrap();
    assert_eq!(error["error"]["code"], "unavailable");
    outage.end().unwrap();

    wait_for_order(&app, id, "paid").await;
    let events = events(&app, id).await;
    assert_eq!(of_type(&events, "order.paid").len(), 1, "{events:?}");
    let after = app
        .post(
            "/v1/orders",
            &TestApp::order_body("wechat", "native", "rc_db_down_2", 100),
        )
        .await;
    assert!(after.status().is_success(), "{}", after.status());
}

#[tokio::test]
async fn an_alipay_app_order_closed_before_the_buyer_opened_it_and_paid_after_becomes_paid() {
    // Notifies lost, pending orders never queried: only the watch of closed orders can see it.
    let app = spawn_app_with(|s| {
        fast(s, None);
        s.reconciler.query_pending_after_seconds = 3_600;
    })
    .await;
    app.fault(json!({"fault": "drop_notify", "out_trade_no": "rc_unopened", "times": "always"}))
        .await;
    let order = app
        .create_order(TestApp::order_body("alipay", "app", "rc_unopened", 1_999))
        .await;
    let id = order["id"].as_str().unwrap();

    // Alipay has no trade until the buyer opens the orderString: "not exist", closed here.
    let closing = app
        .post(&format!("/v1/orders/{id}/close"), &json!({}))
        .await;
    assert_eq!(closing.status(), 200, "{:?}", closing.text().await);
    assert_eq!(order_status(&app, id).await, "closed");

    // The buyer's app still holds the signed orderString, valid until the order expires.
    app.pay(&order).await;
    assert_eq!(app.sandbox_trade("rc_unopened").await["status"], "paid");

    wait_for_order(&app, id, "paid").await;
    // The anomaly is written just after the transition commits, so it may trail the status.
    eventually("finance is told the closed order was paid", async || {
        let anomalies = app.anomalies().await;
        anomalies
            .iter()
            .any(|a| a["order_id"] == id && a["kind"] == "late_payment")
            .then_some(())
    })
    .await;
    let events = events(&app, id).await;
    assert_eq!(of_type(&events, "order.closed").len(), 1, "{events:?}");
    assert_eq!(of_type(&events, "order.paid").len(), 1, "{events:?}");
}
