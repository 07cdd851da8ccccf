//! The official-account OAuth flow end to end: paygate builds the authorize URL, the buyer's
//! browser follows it to the (sandbox) WeChat authorize page, which redirects back with a code
//! paygate exchanges for the openid a `jsapi` order is then created and paid with.

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

/// Opens `url` like the buyer's WeChat browser and returns the redirect WeChat answers with.
pub(crate) async fn follow_authorize(url: &str) -> reqwest::Url {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = browser.get(url).send().await.unwrap();
    assert_eq!(response.status(), 302, "{url}");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    reqwest::Url::parse(&location).unwrap()
}

/// The value of query parameter `name` in `url`.
pub(crate) fn query_value(url: &reqwest::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

async fn authorize_url(app: &TestApp, body: Value) -> (u16, Value) {
    let response = app
        .post("/v1/wechat/sandbox/oauth/authorize-url", &body)
        .await;
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn exchange(app: &TestApp, code: &str) -> (u16, Value) {
    let response = app
        .post("/v1/wechat/sandbox/oauth/openid", &json!({ "code": code }))
        .await;
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn an_oauth_openid_pays_a_jsapi_order_and_its_code_works_once() {
    let app = spawn_app().await;
    let (status, built) = authorize_url(
        &app,
        json!({
            "redirect_uri": "https://shop.example/pay/return?cart=42",
            "scope": "snsapi_userinfo",
            "state": "csrf9Token",
        }),
    )
    .await;
    assert_eq!(status, 200, "{built}");
    let url = built["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/connect/oauth2/authorize?appid=", app.sandbox)),
        "{url}"
    );
    assert!(url.contains("&redirect_uri=https%3A%2F%2Fshop.example%2Fpay%2Freturn%3Fcart%3D42&response_type=code&scope=snsapi_userinfo&state=csrf9Token#wechat_redirect"), "{url}");
    assert_eq!(built["scope"], "snsapi_userinfo");

    let back = follow_authorize(url).await;
    assert_eq!(back.host_str(), Some("shop.example"));
    assert_eq!(back.path(), "/pay/return");
    assert_eq!(query_value(&back, "cart").as_deref(), Some("42"));
    assert_eq!(query_value(&back, "state").as_deref(), Some("csrf9Token"));
    let code = query_value(&back, "code").expect("WeChat appends the code");

    let (status, identity) = exchange(&app, &code).await;
    assert_eq!(status, 200, "{identity}");
    let openid = identity["openid"].as_str().unwrap().to_owned();
    assert!(!openid.is_empty());
    assert_eq!(identity["scope"], "snsapi_userinfo");
    assert!(identity.get("access_token").is_none());

    let mut body = TestApp::order_body("wechat", "jsapi", "OAUTHJSAPI1", 990);
    body["openid"] = json!(openid);
    let order = app.create_order(body).await;
    assert_eq!(order["pay_params"]["type"], "wechat_jsapi", "{order}");
    app.pay(&order).await;
    app.wait_for_status(order["id"].as_str().unwrap(), "paid")
        .await;
    assert_eq!(
        app.sandbox_trade("OAUTHJSAPI1").await["detail"]["openid"],
        openid.as_str(),
        "the order was placed for the buyer who authorised"
    );

    let (status, reused) = exchange(&app, &code).await;
    assert_eq!(status, 422, "a reused code is the caller's error: {reused}");
    assert_eq!(reused["error"]["code"], "invalid_code");
}

#[tokio::test]
async fn authorize_requests_out_of_bounds_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let long_state = "a".repeat(129);
    for (body, code) in [
        (
            json!({ "redirect_uri": "ftp://shop.example/cb" }),
            "invalid_redirect_uri",
        ),
        (
            json!({ "redirect_uri": "javascript:alert(1)" }),
            "invalid_redirect_uri",
        ),
        (
            json!({ "redirect_uri": "https://shop.example/cb#x" }),
            "invalid_redirect_uri",
        ),
        (
            json!({ "redirect_uri": "https://shop.example/cb", "scope": "snsapi_login" }),
            "invalid_scope",
        ),
        (
            json!({ "redirect_uri": "https://shop.example/cb", "state": "a&b" }),
            "invalid_state",
        ),
        (
            json!({ "redirect_uri": "https://shop.example/cb", "state": long_state }),
            "invalid_state",
        ),
    ] {
        let (status, answer) = authorize_url(&app, body.clone()).await;
        assert_eq!(status, 422, "{body} → {answer}");
        assert_eq!(answer["error"]["code"], code, "{body}");
    }
    let (status, answer) = exchange(&app, "").await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (422, Some("invalid_code"))
    );
    let (status, answer) = exchange(&app, "never-issued-but-unused").await;
    assert_eq!(
        status, 200,
        "the sandbox, like WeChat, accepts a fresh code: {answer}"
    );
    let (status, _) = exchange(&app, "never-issued-but-unused").await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn an_unusable_or_busy_wechat_answer_to_the_code_exchange_is_a_gateway_error() {
    let app = spawn_app().await;
    let api = "/sns/oauth2/access_token";
    app.fault(json!({ "fault": "http_status", "status": 500, "api": api }))
        .await;
    let (status, answer) = exchange(&app, "code-during-outage").await;
    assert_eq!(status, 502, "{answer}");
    assert_eq!(answer["error"]["code"], "provider_bad_gateway");
    app.fault(json!({ "fault": "system_error", "api": api }))
        .await;
    let (status, answer) = exchange(&app, "code-while-busy").await;
    assert_eq!(status, 504, "WeChat's -1 (busy) is worth a retry: {answer}");
    assert_eq!(answer["error"]["code"], "provider_timeout");
    // Neither attempt consumed its code, so the retry succeeds.
    let (status, answer) = exchange(&app, "code-while-busy").await;
    assert_eq!(status, 200, "{answer}");
}
