//! Mini-program login and official-account OAuth for a WeChat Pay APIv3 app. They are WeChat's
//! login API (appid + AppSecret), not WeChat Pay's, so a v3 app serves them through the same
//! routes and the same login client as a v2 app; here against the sandbox's `/sns/…` endpoints.

use paygate_sandbox::{RunningSandbox, Sandbox, SandboxConfig};
use serde_json::{Value, json};

use crate::config::ConfiguredGateway;
use crate::wechat::{follow_authorize, query_value};

/// A `[wechat.shop]` v3 app under the sandbox's appid, on the wechat-v3 crate's vendored
/// merchant keys, with the login settings `login` (TOML lines).
fn v3_app(sandbox: &RunningSandbox, login: &str) -> String {
    v3_app_toml(
        &sandbox.credentials().wechat.appid,
        sandbox.base_url(),
        login,
    )
}

fn v3_app_toml(appid: &str, base: &str, login: &str) -> String {
    let keys = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../wechat-v3/tests/data/vectors/wechat-v3/keys"
    );
    format!(
        "[wechat.shop]\napi = \"v3\"\nappid = \"{appid}\"\nmchid = \"1230000109\"\n\
         merchant_certificate_file = \"{keys}/merchant_apiclient_cert.pem\"\n\
         private_key_file = \"{keys}/merchant_apiclient_key.pem\"\n\
         apiv3_key_file = \"{keys}/apiv3_key.txt\"\n\
         public_key_id = \"PUB_KEY_ID_0112300001092025010100000000000001\"\n\
         public_key_file = \"{keys}/wechatpay_pub_key.pem\"\n\
         api_base = \"{base}\"\nchannels = [\"mini_program\", \"jsapi\", \"native\"]\n{login}"
    )
}

#[test]
fn a_sandbox_v3_app_with_an_app_secret_must_name_a_sandbox_login_host() {
    use paygate_gateway::config::Settings;
    let toml = |login: &str| v3_app_toml("wx1", "http://127.0.0.1:9", login);
    // The real login host is the default: a sandbox secret would be sent to WeChat.
    let err = Settings::from_toml(&toml("app_secret = \"s3cret\"\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("wechat.shop.login_base"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    let err = Settings::from_toml(&toml(
        "app_secret = \"s3cret\"\nlogin_base = \"https://api.weixin.qq.com\"\n",
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("wechat.shop.login_base"), "{err}");
    // Without a secret nothing is sent anywhere, and the sandbox's host is fine.
    Settings::from_toml(&toml("")).unwrap();
    Settings::from_toml(&toml(
        "app_secret = \"s3cret\"\nlogin_base = \"http://127.0.0.1:9\"\n",
    ))
    .unwrap();
}

/// The login lines that point the app at the sandbox with its AppSecret.
fn sandbox_login(sandbox: &RunningSandbox) -> String {
    let w = &sandbox.credentials().wechat;
    format!(
        "app_secret = \"{}\"\nlogin_base = \"{}\"\noauth_base = \"{}\"\n",
        w.app_secret, w.login_base, w.oauth_base
    )
}

async fn post(gateway: &ConfiguredGateway, path: &str, body: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", gateway.base))
        .bearer_auth(&gateway.keys.merchant)
        .json(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_v3_app_turns_a_wx_login_code_into_the_openid_once() {
    let sandbox = Sandbox::start(SandboxConfig::for_tests(1.0)).await.unwrap();
    let gateway = ConfiguredGateway::start(&v3_app(&sandbox, &sandbox_login(&sandbox))).await;

    let code = json!({"code": "v3_login_code_1"});
    let (status, login) = post(&gateway, "/v1/wechat/shop/login", &code).await;
    assert_eq!(status, 200, "{login}");
    assert_eq!(
        login["openid"],
        sandbox.openid_for_code("v3_login_code_1"),
        "{login}"
    );
    assert!(login.get("session_key").is_none(), "{login}");

    let (status, again) = post(&gateway, "/v1/wechat/shop/login", &code).await;
    assert_eq!(status, 422, "{again}");
    assert_eq!(again["error"]["code"], "invalid_code", "{again}");
    sandbox.stop().await;
}

#[tokio::test]
async fn a_v3_app_runs_the_official_account_oauth_flow() {
    let sandbox = Sandbox::start(SandboxConfig::for_tests(1.0)).await.unwrap();
    let gateway = ConfiguredGateway::start(&v3_app(&sandbox, &sandbox_login(&sandbox))).await;

    let (status, built) = post(
        &gateway,
        "/v1/wechat/shop/oauth/authorize-url",
        &json!({"redirect_uri": "https://shop.example/pay/return", "state": "v3state"}),
    )
    .await;
    assert_eq!(status, 200, "{built}");
    let url = built["url"].as_str().unwrap();
    let appid = &sandbox.credentials().wechat.appid;
    assert!(
        url.starts_with(&format!(
            "{}/connect/oauth2/authorize?appid={appid}&",
            sandbox.base_url()
        )),
        "{url}"
    );

    // The buyer's WeChat browser follows the URL; WeChat redirects back with a code.
    let back = follow_authorize(url).await;
    assert_eq!(query_value(&back, "state").as_deref(), Some("v3state"));
    let code = query_value(&back, "code").expect("WeChat appends the code");

    let (status, identity) = post(
        &gateway,
        "/v1/wechat/shop/oauth/openid",
        &json!({ "code": code }),
    )
    .await;
    assert_eq!(status, 200, "{identity}");
    assert_eq!(identity["openid"], sandbox.openid_for_code(&code));
    assert_eq!(identity["scope"], "snsapi_base");
    sandbox.stop().await;
}

#[tokio::test]
async fn a_v3_app_without_an_app_secret_says_so_and_calls_nobody() {
    let sandbox = Sandbox::start(SandboxConfig::for_tests(1.0)).await.unwrap();
    // The login host is unreachable: a call that went out would be a 502/504, not a 409.
    let gateway =
        ConfiguredGateway::start(&v3_app(&sandbox, "login_base = \"http://127.0.0.1:9\"\n")).await;
    for (path, body) in [
        ("/v1/wechat/shop/login", json!({"code": "c1"})),
        ("/v1/wechat/shop/oauth/openid", json!({"code": "c1"})),
        (
            "/v1/wechat/shop/oauth/authorize-url",
            json!({"redirect_uri": "https://shop.example/r"}),
        ),
    ] {
        let (status, error) = post(&gateway, path, &body).await;
        assert_eq!(status, 409, "{path}: {error}");
        assert_eq!(
            error["error"]["code"], "app_secret_missing",
            "{path}: {error}"
        );
    }
    sandbox.stop().await;
}

#[tokio::test]
async fn a_buyer_logged_in_through_the_embedded_v3_app_pays_a_mini_program_order() {
    let app = crate::helpers::spawn_app().await;
    let response = app
        .post(
            "/v1/wechat/sandbox-v3/login",
            &json!({"code": "v3_embedded_code"}),
        )
        .await;
    let status = response.status();
    let login: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{login}");
    let openid = login["openid"].as_str().unwrap().to_owned();

    let mut body =
        crate::helpers::TestApp::order_body("wechat", "mini_program", "V3LOGINPAY1", 990);
    body["app"] = json!("sandbox-v3");
    body["openid"] = json!(openid);
    let order = app.create_order(body).await;
    assert_eq!(order["pay_params"]["signType"], "RSA", "{order}");
    assert_eq!(order["payer_id"], openid.as_str(), "{order}");
    app.pay(&order).await;
    app.wait_for_status(order["id"].as_str().unwrap(), "paid")
        .await;
}
