//! The `paygate` binary killed with SIGKILL in the middle of a load of creates and payments,
//! then restarted on the same database: every payment the provider holds ends up paid exactly
//! once, and every `order.paid` event reaches the merchant. Then SIGTERM stops it cleanly.
//!
//! The provider (the sandbox) runs in the test process, not embedded in the gateway: a real
//! provider does not die with us, and its notify retries keep coming to the restarted gateway.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};

use crate::helpers::{TestApp, test_database};
use crate::reliability::{eventually, spawn_receiver};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_paygate"))
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_until_ready(http: &reqwest::Client, base: &str) {
    eventually("the gateway answers /readyz", async || {
        match http.get(format!("{base}/readyz")).send().await {
            Ok(response) if response.status().is_success() => Some(()),
            _ => None,
        }
    })
    .await;
}

struct Gateway {
    base: String,
    sandbox: String,
    merchant_key: String,
    finance_key: String,
    http: reqwest::Client,
}

impl Gateway {
    async fn get(&self, key: &str, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    /// Creates and pays one order; returns its out_trade_no when both calls succeeded.
    async fn create_and_pay(&self, number: usize) -> Option<String> {
        let out_trade_no = format!("kill_{number:05}");
        let body = TestApp::order_body("wechat", "native", &out_trade_no, 100 + number as i64);
        let created = self
            .http
            .post(format!("{}/v1/orders", self.base))
            .bearer_auth(&self.merchant_key)
            .json(&body)
            .send()
            .await
            .ok()?;
        if !created.status().is_success() {
            return None;
        }
        let paid = self
            .http
            .post(format!("{}/sandbox/pay", self.sandbox))
            .json(&json!({"provider": "wechat", "out_trade_no": out_trade_no}))
            .send()
            .await
            .ok()?;
        paid.status().is_success().then_some(out_trade_no)
    }

    /// out_trade_nos whose notify the gateway acknowledged, per the sandbox's log.
    async fn acknowledged(&self) -> Option<BTreeSet<String>> {
        let deliveries: Vec<Value> = self
            .http
            .get(format!("{}/sandbox/notifies", self.sandbox))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        Some(
            deliveries
                .iter()
                .filter(|d| d["acknowledged"] == true)
                .filter_map(|d| d["out_trade_no"].as_str().map(str::to_owned))
                .collect(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_killed_mid_load_converges_after_restart_with_every_payment_paid_once() {
    let (database_url, _database, dir) = test_database();
    let store = paygate_store::Store::connect(&database_url, paygate_store::PoolOptions::sized(1))
        .await
        .unwrap();
    let keys = paygate_gateway::cli::ensure_initial_keys(&store)
        .await
        .unwrap()
        .unwrap();
    drop(store);
    let receiver = spawn_receiver(0).await;
    let port = free_port();
    let mut sandbox_config = paygate_sandbox::SandboxConfig::new("127.0.0.1:0".parse().unwrap());
    sandbox_config.time_scale = 1000.0;
    let sandbox = paygate_sandbox::Sandbox::start(sandbox_config)
        .await
        .unwrap();
    let wechat = &sandbox.credentials().wechat;
    let config = dir.path().join("paygate.toml");
    std::fs::write(
        &config,
        format!(
            r#"
listen = "127.0.0.1:{port}"
database_url = "{database_url}"

[sandbox]
enabled = false

[wechat.sandbox]
appid = "{appid}"
mch_id = "{mch_id}"
api_key = "{api_key}"
sign_type = "HMAC-SHA256"
api_base = "{api_base}"
login_base = "{login_base}"

[reconciler]
interval_ms = 100
query_pending_after_seconds = 0
query_backoff_ms = 100
query_backoff_max_ms = 300

[webhooks]
poll_interval_ms = 50
initial_backoff_ms = 50
max_backoff_ms = 200

[[webhooks.endpoints.sandbox]]
url = "{receiver}"
secret = "whsec_crash"
"#,
            appid = wechat.appid,
            mch_id = wechat.mch_id,
            api_key = wechat.api_key,
            api_base = wechat.api_base,
            login_base = wechat.login_base,
            receiver = receiver.url,
        ),
    )
    .unwrap();
    let gateway = Arc::new(Gateway {
        base: format!("http://127.0.0.1:{port}"),
        sandbox: sandbox.base_url().to_owned(),
        merchant_key: keys.merchant,
        finance_key: keys.finance,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap(),
    });

    let mut first = start(&config);
    wait_until_ready(&gateway.http, &gateway.base).await;

    // Four clients create and pay orders until the process dies under them.
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (gateway, next, stop) = (gateway.clone(), next.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut paid = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let number = next.fetch_add(1, Ordering::SeqCst);
                if let Some(out_trade_no) = gateway.create_and_pay(number).await {
                    paid.push(out_trade_no);
                }
            }
            paid
        }));
    }
    // Kill at a random point once some payments have gone through.
    let kill_after = rand::rng().random_range(8..24);
    let mut acknowledged = BTreeSet::new();
    eventually("enough acknowledged notifies", async || {
        if let Some(seen) = gateway.acknowledged().await {
            acknowledged = seen;
        }
        (acknowledged.len() >= kill_after).then_some(())
    })
    .await;
    first.kill().unwrap();
    first.wait().unwrap();
    stop.store(true, Ordering::SeqCst);
    let mut paid_at_provider = BTreeSet::new();
    for worker in workers {
        paid_at_provider.extend(worker.await.unwrap());
    }

    let mut second = start(&config);
    wait_until_ready(&gateway.http, &gateway.base).await;

    // Every trade the provider reports paid (acknowledged notify or not) becomes paid here.
    let orders = eventually("every paid trade is paid here", async || {
        let listed = gateway
            .get(&gateway.finance_key, "/v1/orders?limit=500")
            .await;
        let by_number: BTreeMap<String, Value> = listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| (o["out_trade_no"].as_str().unwrap().to_owned(), o.clone()))
            .collect();
        let all_paid = paid_at_provider
            .iter()
            .chain(&acknowledged)
            .all(|no| by_number.get(no).is_some_and(|o| o["status"] == "paid"));
        all_paid.then_some(by_number)
    })
    .await;

    // No order paid twice: one order.paid event per paid order; and every one of them reaches
    // the merchant (at least once, de-duplicable by id).
    let paid_orders: Vec<&Value> = orders.values().filter(|o| o["status"] == "paid").collect();
    assert!(
        paid_orders.len() >= kill_after,
        "the load got going before the kill"
    );
    let mut expected_events = BTreeSet::new();
    for order in &paid_orders {
        let id = order["id"].as_str().unwrap();
        let events = gateway
            .get(&gateway.finance_key, &format!("/v1/events?order_id={id}"))
            .await;
        let paid_events: Vec<&Value> = events["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "order.paid")
            .collect();
        assert_eq!(paid_events.len(), 1, "order {id}: {events}");
        expected_events.insert(paid_events[0]["id"].as_str().unwrap().to_owned());
    }
    eventually("every order.paid reached the merchant", async || {
        let received: BTreeSet<String> = paid_orders
            .iter()
            .flat_map(|o| receiver.for_order(o["id"].as_str().unwrap()))
            .map(|r| r.event_id)
            .collect();
        expected_events.is_subset(&received).then_some(())
    })
    .await;

    // SIGTERM: the server drains, the background tasks stop, the process exits cleanly.
    let terminated = Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let status = second.wait().unwrap();
    assert!(status.success(), "exit after SIGTERM: {status:?}");
}
