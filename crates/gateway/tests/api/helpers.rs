//! `spawn_app`: a running gateway + sandbox, its keys, and typed helpers.

use std::time::Duration;

use diesel::{Connection, RunQueryDsl};
use paygate_gateway::Application;
use paygate_gateway::config::Settings;
use serde_json::{Value, json};

/// A gateway under test.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// The embedded sandbox's base URL.
    pub sandbox: String,
    /// A merchant key.
    pub merchant_key: String,
    /// A finance key.
    pub finance_key: String,
    /// A shared HTTP client.
    pub http: reqwest::Client,
    /// The database URL the gateway uses (for tests that go behind its back).
    #[allow(dead_code)]
    pub database_url: String,
    _database: TestDatabase,
}

/// A per-test database, removed when the test ends (also on failure).
pub enum TestDatabase {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let TestDatabase::Postgres { admin_url, name } = self
            && let Ok(mut conn) = diesel::PgConnection::establish(admin_url)
        {
            let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
            let _ = diesel::sql_query(drop).execute(&mut conn);
        }
    }
}

pub fn test_database() -> (String, TestDatabase, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    match std::env::var("PAYGATE_TEST_DATABASE_URL") {
        Ok(admin_url) if !admin_url.is_empty() => {
            let name = format!(
                "paygate_gw_{}",
                ulid::Ulid::new().to_string().to_lowercase()
            );
            let mut conn = diesel::PgConnection::establish(&admin_url).unwrap_or_else(|e| {
                panic!("PAYGATE_TEST_DATABASE_URL is set but unreachable: {e}")
            });
            diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
                .execute(&mut conn)
                .expect("create test database");
            let (base, _) = admin_url.rsplit_once('/').expect("database URL has a path");
            let url = format!("{base}/{name}");
            (url, TestDatabase::Postgres { admin_url, name }, dir)
        }
        _ => {
            let db_dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}", db_dir.path().join("paygate.db").display());
            (url, TestDatabase::Sqlite(db_dir), dir)
        }
    }
}

/// Starts a gateway with the embedded sandbox, its notify schedule sped up 1000×.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts a gateway like [`spawn_app`], letting `configure` adjust the settings first
/// (reconciler intervals, webhook endpoints).
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_until(configure, std::future::pending()).await.0
}

/// Starts a gateway like [`spawn_app_with`] that stops, as on SIGTERM, when `stop` resolves;
/// the handle ends when it has stopped.
pub async fn spawn_app_until(
    configure: impl FnOnce(&mut Settings),
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> (TestApp, tokio::task::JoinHandle<std::io::Result<()>>) {
    spawn_app_with_providers(configure, Vec::new(), stop).await
}

/// Starts a gateway like [`spawn_app_until`] with `extra_apps` registered beside the
/// sandbox's (a provider from outside the workspace, as a merchant's build would add one).
pub async fn spawn_app_with_providers(
    configure: impl FnOnce(&mut Settings),
    extra_apps: Vec<paygate_gateway::registry::ProviderApp>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> (TestApp, tokio::task::JoinHandle<std::io::Result<()>>) {
    spawn_app_full(configure, extra_apps, Vec::new(), stop).await
}

/// Starts a gateway like [`spawn_app_with`] whose embedded sandbox has the fault rules
/// `faults` before the gateway's background jobs make their first call.
pub async fn spawn_app_with_faults(
    configure: impl FnOnce(&mut Settings),
    faults: Vec<Value>,
) -> TestApp {
    spawn_app_full(configure, Vec::new(), faults, std::future::pending())
        .await
        .0
}

async fn spawn_app_full(
    configure: impl FnOnce(&mut Settings),
    extra_apps: Vec<paygate_gateway::registry::ProviderApp>,
    faults: Vec<Value>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> (TestApp, tokio::task::JoinHandle<std::io::Result<()>>) {
    let (database_url, database, keys_dir) = test_database();
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse().expect("address"),
        database_url: database_url.clone(),
        ..Settings::default()
    };
    settings.sandbox.keys_file = Some(keys_dir.path().join("sandbox-keys.json"));
    settings.sandbox.time_scale = 1000.0;
    // Timeout faults then cost 2 s rather than the production 10 s.
    settings.sandbox.provider_timeout_ms = 2_000;
    // The daily bill job would reconcile yesterday at start (after 10:00 Beijing), adding
    // provider calls and series to whatever a test measures; its tests enable it themselves.
    settings.statements.enabled = false;
    configure(&mut settings);
    let app = Application::build_with(settings, extra_apps)
        .await
        .expect("gateway builds");
    let keys = paygate_gateway::cli::ensure_initial_keys(&app.state().store)
        .await
        .expect("keys")
        .expect("fresh database gets keys");
    let address = format!("http://127.0.0.1:{}", app.port());
    let sandbox = app
        .sandbox()
        .expect("embedded sandbox")
        .base_url()
        .to_owned();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    // The sandbox already listens; the gateway's jobs start with `run_until`.
    for rule in faults {
        let response = http
            .post(format!("{sandbox}/sandbox/faults"))
            .json(&rule)
            .send()
            .await
            .expect("fault");
        assert!(response.status().is_success(), "fault {rule}");
    }
    let running = tokio::spawn(async move {
        let _keys_dir = keys_dir;
        app.run_until(stop).await
    });
    let app = TestApp {
        address,
        sandbox,
        merchant_key: keys.merchant,
        finance_key: keys.finance,
        http,
        database_url,
        _database: database,
    };
    (app, running)
}

impl TestApp {
    /// `GET /readyz`: its status and body.
    pub async fn readyz(&self) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}/readyz", self.address))
            .send()
            .await
            .expect("readyz");
        let status = response.status().as_u16();
        (status, response.json().await.expect("json"))
    }

    /// POSTs JSON with the merchant key.
    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.address))
            .bearer_auth(&self.merchant_key)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// GETs with `key`.
    pub async fn get_as(&self, key: &str, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.address))
            .bearer_auth(key)
            .send()
            .await
            .expect("request")
    }

    /// GETs JSON with the merchant key, expecting 200.
    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get_as(&self.merchant_key, path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.expect("json")
    }

    /// Creates an order, expecting 201, and returns its JSON.
    pub async fn create_order(&self, body: Value) -> Value {
        let response = self.post("/v1/orders", &body).await;
        let status = response.status();
        let json: Value = response.json().await.expect("json");
        assert_eq!(status, 201, "create {body} → {json}");
        json
    }

    /// An order body for `provider`/`channel` with sensible defaults.
    pub fn order_body(provider: &str, channel: &str, out_trade_no: &str, amount: i64) -> Value {
        let mut body = json!({
            "provider": provider,
            "channel": channel,
            "out_trade_no": out_trade_no,
            "amount": amount,
            "subject": "Oolong tea",
        });
        if provider == "wechat" {
            body["client_ip"] = json!("203.0.113.7");
        }
        if provider == "wechat" && (channel == "mini_program" || channel == "jsapi") {
            body["openid"] = json!("o_test_buyer");
        }
        if provider == "alipay" && channel == "mini_program" {
            body["buyer_id"] = json!("2088000000000099");
        }
        body
    }

    /// Plays the buyer in the sandbox.
    pub async fn sandbox_pay(&self, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}/sandbox/pay", self.sandbox))
            .json(&body)
            .send()
            .await
            .expect("pay")
    }

    /// Pays the order the way its channel's client would.
    pub async fn pay(&self, order: &Value) {
        let provider = order["provider"].as_str().expect("provider");
        let pay_params = &order["pay_params"];
        let response = match pay_params["type"].as_str() {
            Some("alipay_order_string") => {
                self.sandbox_pay(json!({ "order_string": pay_params["order_string"] }))
                    .await
            }
            Some("redirect_url") => {
                // The buyer's browser opens the signed gateway URL, then pays.
                let page = self
                    .http
                    .get(pay_params["url"].as_str().expect("url"))
                    .send()
                    .await
                    .expect("open");
                assert_eq!(
                    page.status(),
                    200,
                    "the sandbox accepts the signed redirect"
                );
                self.sandbox_pay(
                    json!({ "provider": provider, "out_trade_no": order["out_trade_no"] }),
                )
                .await
            }
            _ => {
                self.sandbox_pay(
                    json!({ "provider": provider, "out_trade_no": order["out_trade_no"] }),
                )
                .await
            }
        };
        assert!(
            response.status().is_success(),
            "sandbox pay: {}",
            response.text().await.unwrap_or_default()
        );
    }

    /// Adds a sandbox fault rule.
    pub async fn fault(&self, rule: Value) {
        let response = self
            .http
            .post(format!("{}/sandbox/faults", self.sandbox))
            .json(&rule)
            .send()
            .await
            .expect("fault");
        assert!(response.status().is_success(), "fault {rule}");
    }

    /// The sandbox's notify deliveries.
    pub async fn deliveries(&self) -> Vec<Value> {
        self.http
            .get(format!("{}/sandbox/notifies", self.sandbox))
            .send()
            .await
            .expect("notifies")
            .json()
            .await
            .expect("json")
    }

    /// Waits until the sandbox has made at least `count` deliveries for `out_trade_no`.
    pub async fn wait_for_deliveries(&self, out_trade_no: &str, count: usize) -> Vec<Value> {
        for _ in 0..200 {
            let found: Vec<Value> = self
                .deliveries()
                .await
                .into_iter()
                .filter(|d| d["out_trade_no"] == out_trade_no && d["response_status"].is_number())
                .collect();
            if found.len() >= count {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no {count} deliveries for {out_trade_no}");
    }

    /// Reads an order until `status` (the notify is asynchronous).
    pub async fn wait_for_status(&self, id: &str, status: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..200 {
            last = self.get_json(&format!("/v1/orders/{id}")).await;
            if last["status"] == status {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("order {id} never became {status}: {last}");
    }

    /// Posts a raw body to a notify endpoint.
    pub async fn post_notify(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.address))
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .expect("notify")
    }

    /// The `/metrics` page.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.address))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Every stored callback row's body, read behind the gateway's back (the API lists
    /// callbacks per order only, and rejected ones have none).
    pub fn stored_callback_bodies(&self) -> Vec<(String, Vec<u8>, Option<String>)> {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Text)]
            verdict: String,
            #[diesel(sql_type = diesel::sql_types::Binary)]
            body: Vec<u8>,
            #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
            reason: Option<String>,
        }
        let query = diesel::sql_query("SELECT verdict, body, reason FROM callbacks");
        let rows: Vec<Row> = match self.database_url.strip_prefix("sqlite://") {
            Some(path) => query
                .load(&mut diesel::SqliteConnection::establish(path).expect("open sqlite"))
                .expect("read callbacks"),
            None => query
                .load(
                    &mut diesel::PgConnection::establish(&self.database_url)
                        .expect("open postgres"),
                )
                .expect("read callbacks"),
        };
        rows.into_iter()
            .map(|row| (row.verdict, row.body, row.reason))
            .collect()
    }

    /// The callbacks audit trail of an order (finance).
    pub async fn callbacks(&self, order_id: &str) -> Vec<Value> {
        let response = self
            .get_as(
                &self.finance_key,
                &format!("/v1/callbacks?order_id={order_id}"),
            )
            .await;
        assert_eq!(response.status(), 200);
        let json: Value = response.json().await.expect("json");
        json["data"].as_array().cloned().unwrap_or_default()
    }

    /// Anomalies (finance).
    pub async fn anomalies(&self) -> Vec<Value> {
        let response = self.get_as(&self.finance_key, "/v1/anomalies").await;
        assert_eq!(response.status(), 200);
        let json: Value = response.json().await.expect("json");
        json["data"].as_array().cloned().unwrap_or_default()
    }

    /// The one trade the sandbox holds under `out_trade_no` (fails on none or several).
    pub async fn sandbox_trade(&self, out_trade_no: &str) -> Value {
        let trades: Vec<Value> = self
            .http
            .get(format!("{}/sandbox/trades", self.sandbox))
            .send()
            .await
            .expect("trades")
            .json()
            .await
            .expect("json");
        let mut same: Vec<Value> = trades
            .into_iter()
            .filter(|t| t["out_trade_no"] == out_trade_no)
            .collect();
        assert_eq!(
            same.len(),
            1,
            "exactly one trade {out_trade_no} at the provider"
        );
        same.remove(0)
    }
}
