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
    assert_eq!(names, ["wechat:shop", "alipay:shop"]);
    sandbox.stop().await;
}
