use paygate_gateway::config::Settings;
use paygate_sandbox::{Sandbox, SandboxConfig};

#[tokio::test]
async fn the_config_the_sandbox_prints_loads_into_a_working_gateway_registry() {
    let sandbox = Sandbox::start(SandboxConfig::for_tests(1.0)).await.unwrap();
    let exported = sandbox.credentials().export_toml("shop");
    let settings = Settings::from_toml(&format!("[sandbox]\nenabled = false\nlisten = \"127.0.0.1:0\"\ntime_scale = 1.0\nprovider_timeout_ms = 10000\n\n{exported}"))
        .unwrap_or_else(|e| panic!("{e}\n{exported}"));
    let registry = paygate_gateway::providers::from_settings(&settings).unwrap();
    let names: Vec<String> = registry
        .iter()
        .map(|a| format!("{}:{}", a.kind(), a.name))
        .collect();
    assert_eq!(names, ["alipay:shop", "wechat:shop"], "by provider name");
    sandbox.stop().await;
}

/// A gateway started from a TOML file holding `apps` (no embedded sandbox), with its first keys.
pub(crate) struct ConfiguredGateway {
    pub(crate) base: String,
    pub(crate) keys: paygate_gateway::cli::InitialKeys,
    _database: (crate::helpers::TestDatabase, tempfile::TempDir),
}

impl ConfiguredGateway {
    pub(crate) async fn start(apps: &str) -> ConfiguredGateway {
        let (database_url, database, dir) = crate::helpers::test_database();
        let toml = format!(
            "listen = \"127.0.0.1:0\"\ndatabase_url = \"{database_url}\"\n\
             [sandbox]\nenabled = false\nlisten = \"127.0.0.1:0\"\n\n{apps}"
        );
        let settings = Settings::from_toml(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
        let app = paygate_gateway::Application::build(settings).await.unwrap();
        let keys = paygate_gateway::cli::ensure_initial_keys(&app.state().store)
            .await
            .unwrap()
            .unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        ConfiguredGateway {
            base,
            keys,
            _database: (database, dir),
        }
    }
}

#[tokio::test]
async fn wechat_h5_enabled_in_a_toml_file_creates_an_h5_order() {
    let sandbox = Sandbox::start(SandboxConfig::for_tests(1.0)).await.unwrap();
    let exported = sandbox.credentials().export_toml("shop").replacen(
        "[wechat.shop]\n",
        "[wechat.shop]\nchannels = [\"native\", \"h5\"]\n\
         h5_scene = { wap_url = \"https://shop.example\", wap_name = \"Tea shop\" }\n",
        1,
    );
    let gateway = ConfiguredGateway::start(&exported).await;
    let (base, keys) = (&gateway.base, &gateway.keys);
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/orders"))
        .bearer_auth(&keys.merchant)
        .json(&serde_json::json!({
            "provider": "wechat", "channel": "h5", "out_trade_no": "h5_toml_0001",
            "amount": 100, "subject": "Oolong tea", "client_ip": "203.0.113.7",
        }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let order: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["pay_params"]["type"], "mweb_url", "{order}");
    sandbox.stop().await;
}

#[test]
fn h5_without_its_scene_is_refused_naming_the_key() {
    let toml = "[wechat.shop]\nappid = \"wx1\"\nmch_id = \"1\"\n\
        api_key = \"0123456789abcdef0123456789abcdef\"\napi_base = \"http://127.0.0.1:9\"\n\
        login_base = \"http://127.0.0.1:9\"\nchannels = [\"h5\"]\n";
    let err = Settings::from_toml(toml).unwrap_err().to_string();
    assert!(err.contains("wechat.shop.h5_scene"), "{err}");
}

/// A production config whose only app is WeChat with an inline key: nothing to read from disk.
fn production_toml(public_base_url: Option<&str>, database_url: &str) -> String {
    let base = public_base_url
        .map(|url| format!("public_base_url = \"{url}\"\n"))
        .unwrap_or_default();
    format!(
        "environment = \"production\"\nlisten = \"127.0.0.1:0\"\n{base}\
         database_url = \"{database_url}\"\n[sandbox]\nenabled = false\nlisten = \"127.0.0.1:0\"\n\
         [wechat.shop]\nappid = \"wx0123456789abcdef\"\nmch_id = \"1900000109\"\n\
         api_key = \"0123456789abcdef0123456789abcdef\"\nchannels = [\"native\"]\n\
         server_ip = \"203.0.113.10\"\n"
    )
}

#[test]
fn production_refuses_an_http_or_missing_public_base_url() {
    for url in [None, Some("http://pay.example.com")] {
        let err = Settings::from_toml(&production_toml(url, "sqlite://paygate.db"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("public_base_url") && err.contains("https://"),
            "{url:?}: {err}"
        );
    }
    Settings::from_toml(&production_toml(
        Some("https://pay.example.com"),
        "sqlite://paygate.db",
    ))
    .unwrap();
}

#[tokio::test]
async fn production_serve_prints_no_api_key_and_says_how_to_create_one() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("paygate.db").display());
    let config = dir.path().join("production.toml");
    std::fs::write(
        &config,
        production_toml(Some("https://pay.example.com"), &database_url),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_paygate"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let banner = tokio::task::spawn_blocking(move || {
        let mut banner = String::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            banner.push_str(&line);
            banner.push('\n');
            if line.contains("paygate keys create") || line.contains("finance key") {
                break;
            }
        }
        banner
    })
    .await
    .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(banner.contains("listening on"), "{banner}");
    assert!(
        !banner.contains("pgm_") && !banner.contains("pgf_"),
        "{banner}"
    );
    assert!(banner.contains("paygate keys create"), "{banner}");
}

#[tokio::test]
async fn a_create_refused_before_reaching_the_provider_stores_nothing_and_its_corrected_retry_succeeds()
 {
    // The exported WeChat app has no server_ip: a NATIVE order needs the buyer's IP after all.
    let sandbox = Sandbox::start(SandboxConfig::for_tests(1.0)).await.unwrap();
    let exported = sandbox.credentials().export_toml("shop");
    assert!(!exported.contains("server_ip"), "{exported}");
    let gateway = ConfiguredGateway::start(&exported).await;
    let (base, keys) = (&gateway.base, &gateway.keys);
    let create = |client_ip: Option<&str>| {
        let mut body = serde_json::json!({
            "provider": "wechat", "channel": "native", "out_trade_no": "refused_first_1",
            "amount": 100, "subject": "Oolong tea",
        });
        if let Some(ip) = client_ip {
            body["client_ip"] = ip.into();
        }
        reqwest::Client::new()
            .post(format!("{base}/v1/orders"))
            .bearer_auth(&keys.merchant)
            .json(&body)
            .send()
    };

    let refused = create(None).await.unwrap();
    assert_eq!(refused.status(), 422);
    let error: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "client_ip_required", "{error}");
    let listed: serde_json::Value = reqwest::Client::new()
        .get(format!("{base}/v1/orders"))
        .bearer_auth(&keys.merchant)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["data"],
        serde_json::json!([]),
        "nothing stored: {listed}"
    );

    let corrected = create(Some("203.0.113.7")).await.unwrap();
    let status = corrected.status();
    let order: serde_json::Value = corrected.json().await.unwrap();
    assert_eq!(status, 201, "a new order, not a conflict: {order}");
    sandbox.stop().await;
}
