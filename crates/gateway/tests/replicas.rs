//! Three `paygate serve` replicas on one PostgreSQL database and the sandbox
//! (`paygate_simulation::replicas`), proving what matters when a merchant scales out:
//!
//! 1. the same genuine notify delivered to every replica at once, many times over, moves each
//!    order to paid exactly once with exactly one `order.paid` event, and every copy gets the
//!    provider's success acknowledgement;
//! 2. concurrent refunds of one order spread over the replicas never refund more than was paid;
//! 3. the reconciler and webhook leases are held by one replica at a time, and after that
//!    replica is SIGKILLed another takes them over within the lease time;
//! 4. a rolling restart (SIGTERM one replica at a time while merchants and providers keep
//!    calling) fails no merchant request and loses no notify;
//! 5. the load tool's `--replicas` (`paygate_loadgen`) starts three replicas on one database,
//!    spreads every kind of request over all of them, and every notify they acknowledged
//!    paid its order (the tool's own exactly-once check).
//!
//! PostgreSQL only (SQLite is one process's database): it runs in CI's PostgreSQL pass, where
//! `PAYGATE_TEST_DATABASE_URL` is set, and says so and passes trivially on the SQLite pass.
//! Sizes are small for CI's debug build; `PAYGATE_REPLICA_ORDERS` and `PAYGATE_REPLICA_COPIES`
//! scale the notify proof up (the 500 orders × 100 copies, measured in
//! docs/performance.md with a release build).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use futures_util::StreamExt;
use paygate_core::ProviderKind;
use paygate_sandbox::{Fault, FaultKind, FaultTimes};
use paygate_simulation::replicas::Replicas;
use serde_json::{Value, json};

const REPLICAS: usize = 3;
const APP: &str = "sim";

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One order the harness created, with the genuine notify the sandbox signed for it.
#[derive(Clone)]
struct PaidOrder {
    id: String,
    provider: ProviderKind,
    notify_body: String,
}

impl PaidOrder {
    fn notify_path(&self) -> String {
        format!("/notify/{}/{APP}", self.provider)
    }

    fn content_type(&self) -> &'static str {
        if self.provider == ProviderKind::ALIPAY {
            "application/x-www-form-urlencoded; charset=utf-8"
        } else {
            "text/xml"
        }
    }

    /// Whether `body` is the provider's "received, stop retrying" answer.
    fn is_success_ack(&self, status: u16, body: &str) -> bool {
        status == 200
            && if self.provider == ProviderKind::ALIPAY {
                body == "success"
            } else {
                body.contains("<return_code><![CDATA[SUCCESS]]></return_code>")
            }
    }
}

struct Harness {
    replicas: Replicas,
    http: reqwest::Client,
    urls: Vec<String>,
}

impl Harness {
    fn url(&self, replica: usize, path: &str) -> String {
        format!("{}{path}", self.urls[replica % self.urls.len()])
    }

    async fn create(&self, replica: usize, body: Value) -> Value {
        let response = self
            .http
            .post(self.url(replica, "/v1/orders"))
            .bearer_auth(&self.replicas.keys.merchant)
            .json(&body)
            .send()
            .await
            .expect("create answered");
        let status = response.status();
        let json: Value = response.json().await.expect("create JSON");
        assert!(status.is_success(), "create: {status} {json}");
        json
    }

    /// Creates `count` orders round robin over the replicas (Alipay app and WeChat native in
    /// turn), pays each at the sandbox with its notify dropped, and keeps the notify body the
    /// sandbox signed for it.
    async fn paid_orders(&self, prefix: &str, count: usize, amount: i64) -> Vec<PaidOrder> {
        let mut created = Vec::new();
        for n in 0..count {
            let out_trade_no = format!("{prefix}{n:05}");
            let provider = if n.is_multiple_of(2) {
                ProviderKind::ALIPAY
            } else {
                ProviderKind::WECHAT
            };
            let mut body = json!({
                "provider": provider,
                "out_trade_no": out_trade_no,
                "amount": amount,
                "subject": "Replica tea",
            });
            if provider == ProviderKind::ALIPAY {
                body["channel"] = json!("app");
            } else {
                body["channel"] = json!("native");
                body["client_ip"] = json!("203.0.113.7");
                // The harness configures a v2 and an APIv3 WeChat app: name the v2 one.
                body["app"] = json!(paygate_simulation::topology::APP);
            }
            let order = self.create(n, body).await;
            let sandbox = &self.replicas.sandbox;
            if provider == ProviderKind::ALIPAY {
                let order_string = order["pay_params"]["order_string"]
                    .as_str()
                    .expect("order_string");
                sandbox
                    .pay_order_string(order_string)
                    .expect("sandbox pays");
            } else {
                sandbox.pay(provider, &out_trade_no).expect("sandbox pays");
            }
            created.push((
                order["id"].as_str().expect("id").to_owned(),
                provider,
                out_trade_no,
            ));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let deliveries = self.replicas.sandbox.notify_deliveries();
            let bodies: BTreeMap<&str, &str> = deliveries
                .iter()
                .map(|d| (d.out_trade_no.as_str(), d.body.as_str()))
                .collect();
            if created
                .iter()
                .all(|(_, _, no)| bodies.contains_key(no.as_str()))
            {
                return created
                    .iter()
                    .map(|(id, provider, no)| PaidOrder {
                        id: id.clone(),
                        provider: *provider,
                        notify_body: bodies[no.as_str()].to_owned(),
                    })
                    .collect();
            }
            assert!(Instant::now() < deadline, "the sandbox signed every notify");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Posts `order`'s genuine notify to `replica`; the HTTP status and body, or `None` when
    /// nothing answered.
    async fn notify(&self, replica: usize, order: &PaidOrder) -> Option<(u16, String)> {
        let response = self
            .http
            .post(self.url(replica, &order.notify_path()))
            .header("content-type", order.content_type())
            .body(order.notify_body.clone())
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.unwrap_or_default()))
    }
}

#[derive(QueryableByName)]
struct OrderCount {
    #[diesel(sql_type = diesel::sql_types::Text)]
    order_id: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    count: i64,
}

#[derive(QueryableByName)]
struct Holder {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    holder: String,
}

fn database(replicas: &Replicas) -> PgConnection {
    PgConnection::establish(&replicas.database.url).expect("the replicas' database")
}

/// `order.paid` events per order.
fn paid_events(replicas: &Replicas) -> BTreeMap<String, i64> {
    diesel::sql_query(
        "SELECT order_id, count(*) AS count FROM outbox_events WHERE kind = 'order.paid' \
         GROUP BY order_id",
    )
    .load::<OrderCount>(&mut database(replicas))
    .expect("events")
    .into_iter()
    .map(|row| (row.order_id, row.count))
    .collect()
}

/// The pid of each lease's holder (holders are `{pid}-{ulid}`), for unexpired leases.
fn lease_holders(replicas: &Replicas) -> BTreeMap<String, u32> {
    diesel::sql_query("SELECT name, holder FROM leases WHERE expires_at > now() AT TIME ZONE 'UTC'")
        .load::<Holder>(&mut database(replicas))
        .expect("leases")
        .into_iter()
        .filter_map(|row| {
            let pid = row.holder.split('-').next()?.parse().ok()?;
            Some((row.name, pid))
        })
        .collect()
}

/// The PostgreSQL server the harness makes its throwaway database on, or `None` (said once on
/// stderr) on the SQLite pass.
fn postgres_admin_url() -> Option<String> {
    let url = std::env::var("PAYGATE_TEST_DATABASE_URL").ok();
    if url.is_none() {
        eprintln!(
            "replicas: PostgreSQL only; set PAYGATE_TEST_DATABASE_URL (CI's PostgreSQL pass does)"
        );
    }
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_on_one_postgres_apply_everything_exactly_once() {
    let Some(admin_url) = postgres_admin_url() else {
        return;
    };
    let replicas = Replicas::start(
        &PathBuf::from(env!("CARGO_BIN_EXE_paygate")),
        &admin_url,
        REPLICAS,
    )
    .await
    .expect("three replicas start");
    let urls = (0..REPLICAS)
        .map(|i| replicas.base_url(i).expect("url").to_owned())
        .collect();
    let mut harness = Harness {
        replicas,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        urls,
    };
    // The providers' own deliveries are dropped: every copy below is one the test sends.
    harness.replicas.sandbox.add_fault(Fault {
        times: FaultTimes::ALWAYS,
        ..Fault::once(FaultKind::DropNotify)
    });

    // 1. Every copy of every genuine notify, spread over all replicas at once.
    let orders = harness
        .paid_orders("rep_", env_count("PAYGATE_REPLICA_ORDERS", 40), 1000)
        .await;
    let copies = env_count("PAYGATE_REPLICA_COPIES", 15);
    let deliveries: Vec<(usize, PaidOrder)> = (0..copies)
        .flat_map(|copy| {
            orders
                .iter()
                .enumerate()
                .map(move |(n, order)| (n + copy, order.clone()))
        })
        .collect();
    let started = Instant::now();
    let (retried, wrong) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    futures_util::stream::iter(deliveries.iter())
        .for_each_concurrent(48, |(replica, order)| {
            let (harness, retried, wrong) = (&harness, retried.clone(), wrong.clone());
            async move {
                // A "try again" (5xx, the provider's failure body) is what a provider retries;
                // it is allowed, a refusal (4xx) of a genuine notify is not.
                for attempt in 0..5 {
                    match harness.notify(*replica + attempt, order).await {
                        Some((status, body)) if order.is_success_ack(status, &body) => return,
                        Some((status, body)) if status < 500 && status != 200 => {
                            eprintln!("copy to replica {replica}: refused {status} {body}");
                            break;
                        }
                        other => {
                            eprintln!("copy to replica {replica}: try again ({other:?})");
                            retried.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                wrong.fetch_add(1, Ordering::Relaxed);
            }
        })
        .await;
    eprintln!(
        "replicas: {} notifies ({} orders × {copies} copies over {REPLICAS} replicas) in {:?}, \
         {} answered \"try again\"",
        deliveries.len(),
        orders.len(),
        started.elapsed(),
        retried.load(Ordering::Relaxed)
    );
    assert_eq!(
        wrong.load(Ordering::Relaxed),
        0,
        "every copy acknowledged as received, at the latest on a provider's retry"
    );
    let events = paid_events(&harness.replicas);
    for order in &orders {
        assert_eq!(
            events.get(&order.id).copied(),
            Some(1),
            "order {} has exactly one order.paid event",
            order.id
        );
        let seen: Value = harness
            .http
            .get(harness.url(0, &format!("/v1/orders/{}", order.id)))
            .bearer_auth(&harness.replicas.keys.merchant)
            .send()
            .await
            .expect("order")
            .json()
            .await
            .expect("order JSON");
        assert_eq!(seen["status"], "paid", "{seen}");
    }

    // 2. Fifteen refunds of 300 fen against one 1000-fen order, all at once, over the replicas.
    let refunded = &orders[0];
    let answers: Vec<(u16, String)> = futures_util::stream::iter(0..15)
        .map(|n| {
            let harness = &harness;
            async move {
                let response = harness
                    .http
                    .post(harness.url(n, &format!("/v1/orders/{}/refunds", refunded.id)))
                    .bearer_auth(&harness.replicas.keys.merchant)
                    .json(&json!({
                        "amount": 300,
                        "out_refund_no": format!("refund_{n:03}"),
                        "reason": "replica refund",
                    }))
                    .send()
                    .await;
                match response {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        (status, response.text().await.unwrap_or_default())
                    }
                    Err(error) => (0, error.to_string()),
                }
            }
        })
        .buffer_unordered(15)
        .collect()
        .await;
    let accepted = answers
        .iter()
        .filter(|(s, _)| (200..300).contains(s))
        .count();
    // At most three 300-fen refunds fit in 1000 fen (fewer if a request was answered
    // "try again" because another held the order); at least one gets through.
    assert!((1..=3).contains(&accepted), "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|(s, _)| (200..300).contains(s) || *s == 409 || *s == 422),
        "the others are refused, not failed: {answers:?}"
    );
    #[derive(QueryableByName)]
    struct Refunded {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        reserved: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        refunded_amount: i64,
    }
    let totals = diesel::sql_query(format!(
        "SELECT COALESCE((SELECT sum(amount) FROM refunds WHERE order_id = '{0}' \
         AND status <> 'failed'), 0)::BIGINT AS reserved, refunded_amount FROM orders WHERE id = '{0}'",
        refunded.id
    ))
    .get_result::<Refunded>(&mut database(&harness.replicas))
    .expect("refund totals");
    assert!(totals.reserved <= 1000 && totals.refunded_amount <= 1000);

    // 3. Leased work: one holder each; SIGKILL it, another replica takes over in time.
    let holders = wait_for_leases(&harness.replicas).await;
    let reconciler_pid = holders["reconciler"];
    let victim = (0..REPLICAS)
        .find(|i| harness.replicas.pid(*i) == Some(reconciler_pid))
        .expect("the reconciler lease is held by one of the replicas");
    let killed = Instant::now();
    harness
        .replicas
        .stop_replica(victim, true)
        .await
        .expect("SIGKILL");
    let taken_over = loop {
        let now = lease_holders(&harness.replicas);
        if now
            .get("reconciler")
            .is_some_and(|pid| *pid != reconciler_pid)
        {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "another replica took the reconciler lease over: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("replicas: reconciler lease taken over {taken_over:?} after SIGKILL");
    // The lease lasts max(3 × the 100 ms interval, 1 s); a survivor claims it on its next pass.
    assert!(taken_over < Duration::from_secs(3), "{taken_over:?}");
    harness
        .replicas
        .start_replica(victim)
        .await
        .expect("the killed replica starts again");

    // 4. Rolling restart under load: merchants create orders and providers repeat notifies
    //    on whichever replicas are up; each replica in turn is taken out and SIGTERMed.
    let up: Arc<Vec<AtomicBool>> = Arc::new((0..REPLICAS).map(|_| AtomicBool::new(true)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let load = {
        let (up, stop, failures, requests) =
            (up.clone(), stop.clone(), failures.clone(), requests.clone());
        let http = harness.http.clone();
        let urls = harness.urls.clone();
        let key = harness.replicas.keys.merchant.clone();
        let notified = orders.clone();
        tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let Some(replica) = (0..REPLICAS)
                    .map(|i| (n + i) % REPLICAS)
                    .find(|i| up[*i].load(Ordering::Relaxed))
                else {
                    continue;
                };
                requests.fetch_add(1, Ordering::Relaxed);
                let ok = if n.is_multiple_of(2) {
                    http.post(format!("{}/v1/orders", urls[replica]))
                        .bearer_auth(&key)
                        .json(&json!({
                            "provider": "alipay", "channel": "app", "amount": 100,
                            "out_trade_no": format!("roll_{n:06}"), "subject": "Rolling tea",
                        }))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success())
                } else {
                    let order = &notified[n % notified.len()];
                    match http
                        .post(format!("{}{}", urls[replica], order.notify_path()))
                        .header("content-type", order.content_type())
                        .body(order.notify_body.clone())
                        .send()
                        .await
                    {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let body = r.text().await.unwrap_or_default();
                            order.is_success_ack(status, &body)
                        }
                        Err(_) => false,
                    }
                };
                if !ok {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    for replica in 0..REPLICAS {
        // Out of the balancer's rotation first, as a failing readiness check takes it out.
        up[replica].store(false, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(300)).await;
        harness
            .replicas
            .stop_replica(replica, false)
            .await
            .expect("SIGTERM drains and exits cleanly");
        harness
            .replicas
            .start_replica(replica)
            .await
            .expect("restarts");
        up[replica].store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load task");
    let sent = requests.load(Ordering::Relaxed);
    eprintln!(
        "replicas: rolling restart of {REPLICAS} replicas under load: {sent} requests, {} failed",
        failures.load(Ordering::Relaxed)
    );
    assert!(
        sent > 50,
        "the load ran through the restarts ({sent} requests)"
    );
    assert_eq!(failures.load(Ordering::Relaxed), 0, "no request failed");
    assert_eq!(
        paid_events(&harness.replicas)
            .values()
            .filter(|count| **count != 1)
            .count(),
        0,
        "repeated notifies during the restarts added no second order.paid"
    );
}

/// Waits until the reconciler lease has a holder.
async fn wait_for_leases(replicas: &Replicas) -> BTreeMap<String, u32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let holders = lease_holders(replicas);
        if holders.contains_key("reconciler") {
            return holders;
        }
        assert!(Instant::now() < deadline, "leases claimed: {holders:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_tool_spreads_its_requests_over_every_replica() {
    use paygate_loadgen::gateway::SpawnedGateway;
    use paygate_loadgen::notifies::{NotifySigner, SandboxKeys};
    use paygate_loadgen::report::PaidCheck;
    use paygate_loadgen::workload::{Mix, Pace, Workload};

    let Some(admin_url) = postgres_admin_url() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let database = paygate_simulation::topology::RunDatabase::create(
        &paygate_simulation::topology::DatabaseTarget::Postgres { admin_url },
        dir.path(),
    )
    .expect("a throwaway database");
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_paygate"));
    let mut gateway = SpawnedGateway::prepare(&binary, Some(&database.url), true, REPLICAS)
        .await
        .expect("keys created");
    let probe = reqwest::Client::new();
    assert_eq!(
        gateway.start(&probe).await.expect("replicas ready").len(),
        REPLICAS
    );
    let pids = gateway.pids();
    assert!(pids.iter().all(Option::is_some), "{pids:?}");

    let mix =
        Mix::parse("alipay_app=1,wechat_mini=1,wechat_notify=1,alipay_notify=1,finance_list=1")
            .unwrap();
    let mut workload = Workload::new(gateway.target.clone(), mix, 6).unwrap();
    let signer =
        NotifySigner::new(SandboxKeys::load(&gateway.sandbox_keys_file()).unwrap()).unwrap();
    workload.prepare_notifies(&signer, 200).await.unwrap();
    let workload = Arc::new(workload);
    let outcome = workload
        .clone()
        .run(Pace::Concurrency(6), Duration::from_millis(1500))
        .await;

    assert!(
        outcome.error_examples.is_empty(),
        "{:?}",
        outcome.error_examples
    );
    for replica in 0..REPLICAS {
        let to_it: Vec<_> = outcome
            .samples
            .iter()
            .filter(|s| s.replica == replica)
            .collect();
        let notifies = to_it
            .iter()
            .filter(|s| s.operation.name().ends_with("_notify"))
            .count();
        assert!(
            to_it.len() >= 5 && notifies >= 1,
            "replica {replica}: {} requests, {notifies} notifies",
            to_it.len()
        );
    }
    let paid = workload.paid_prepared_orders().await.unwrap();
    let check = PaidCheck::new(outcome.notifies, paid);
    assert!(check.holds, "{check:?}");
    assert!(outcome.notifies.acknowledged >= 3, "{check:?}");
    assert_eq!(
        paid, outcome.notifies.acknowledged,
        "no request failed, so none is in doubt"
    );
    gateway.stop();
}
