//! Mini-program login, OAuth, token caching and `wx.config` against the fake server.

use paygate_wechat::config::WechatConfig;
use paygate_wechat::login::{LoginClient, LoginError, SessionKeyUse, js_sdk_signature};
use secrecy::{ExposeSecret, SecretString};

use crate::fake_wechat::{API_KEY, APP_SECRET, APPID, FakeWechat, JSAPI_TICKET, MCH_ID};

fn login_client(server: &FakeWechat, secret: Option<&str>) -> LoginClient {
    let mut config = WechatConfig::new(APPID, MCH_ID, API_KEY);
    config.login_base = server.base_url.clone();
    config.app_secret = secret.map(|s| SecretString::from(s.to_owned()));
    LoginClient::new(&config).unwrap()
}

fn calls_to(server: &FakeWechat, path: &str) -> usize {
    server.requests().iter().filter(|r| r.path == path).count()
}

#[tokio::test]
async fn a_login_code_becomes_an_openid_without_the_session_key_by_default() {
    let server = FakeWechat::start().await;
    let client = login_client(&server, Some(APP_SECRET));
    let login = client
        .jscode2session("code_ok", SessionKeyUse::Discard)
        .await
        .unwrap();
    assert_eq!(login.openid, "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o");
    assert_eq!(
        login.unionid.as_deref(),
        Some("o6_bmasdasdsad6_2sgVt7hMZOPfL")
    );
    assert!(login.session_key.is_none());
    let sent = &server.requests()[0];
    assert_eq!(sent.path, "/sns/jscode2session");
    assert_eq!(sent.fields["grant_type"], "authorization_code");

    let kept = client
        .jscode2session("code_ok", SessionKeyUse::Keep)
        .await
        .unwrap();
    let key = kept.session_key.as_ref().unwrap();
    assert_eq!(key.expose(), "tiihtNczf5v6AKRyjwEUhQ==");
    assert!(!format!("{kept:?}").contains("tiih"));
}

#[tokio::test]
async fn login_errcodes_are_typed() {
    let server = FakeWechat::start().await;
    let client = login_client(&server, Some(APP_SECRET));
    for (code, expected) in [
        ("code_used", LoginError::InvalidCode),
        ("code_rate", LoginError::RateLimited),
        ("code_risk", LoginError::HighRiskUser),
        ("code_busy", LoginError::Busy),
    ] {
        let error = client
            .jscode2session(code, SessionKeyUse::Discard)
            .await
            .unwrap_err();
        assert_eq!(error, expected, "{code}");
    }
    let wrong_secret = login_client(&server, Some("not-the-secret"));
    assert!(matches!(
        wrong_secret
            .jscode2session("code_ok", SessionKeyUse::Discard)
            .await,
        Err(LoginError::Api { code: 40125, .. })
    ));
    let no_secret = login_client(&server, None);
    assert_eq!(
        no_secret
            .jscode2session("code_ok", SessionKeyUse::Discard)
            .await
            .unwrap_err(),
        LoginError::MissingAppSecret
    );
}

#[tokio::test]
async fn an_oauth_code_becomes_an_openid() {
    let server = FakeWechat::start().await;
    let client = login_client(&server, Some(APP_SECRET));
    let identity = client.oauth_openid("oauth_code").await.unwrap();
    assert_eq!(identity.openid, "oLVPpjqs9BhvzwPj5A-vTYAX3GLc");
    assert_eq!(identity.scope.as_deref(), Some("snsapi_base"));
}

#[tokio::test]
async fn tokens_are_fetched_once_while_fresh() {
    let server = FakeWechat::start().await;
    let client = login_client(&server, Some(APP_SECRET));
    let first = client.access_token().await.unwrap();
    let second = client.access_token().await.unwrap();
    assert_eq!(first.expose_secret(), second.expose_secret());
    assert_eq!(calls_to(&server, "/cgi-bin/token"), 1);
    client.jsapi_ticket().await.unwrap();
    client.jsapi_ticket().await.unwrap();
    assert_eq!(calls_to(&server, "/cgi-bin/ticket/getticket"), 1);
    assert_eq!(calls_to(&server, "/cgi-bin/token"), 1);
}

#[tokio::test]
async fn a_token_expiring_within_the_margin_is_fetched_again() {
    let server = FakeWechat::start_with_token_lifetime(60).await;
    let client = login_client(&server, Some(APP_SECRET));
    let first = client.access_token().await.unwrap();
    let second = client.access_token().await.unwrap();
    assert_ne!(first.expose_secret(), second.expose_secret());
    assert_eq!(calls_to(&server, "/cgi-bin/token"), 2);
}

#[tokio::test]
async fn wx_config_is_signed_over_the_fetched_ticket() {
    let server = FakeWechat::start().await;
    let client = login_client(&server, Some(APP_SECRET));
    let url = "https://shop.example.com/pay?order=1#top";
    let config = client.js_sdk_config(url).await.unwrap();
    assert_eq!(config.app_id, APPID);
    assert_eq!(config.nonce_str.len(), 32);
    assert_eq!(
        config.signature,
        js_sdk_signature(
            JSAPI_TICKET,
            &config.nonce_str,
            config.timestamp,
            "https://shop.example.com/pay?order=1"
        )
    );
    let json = serde_json::to_value(&config).unwrap();
    for field in ["appId", "timestamp", "nonceStr", "signature"] {
        assert!(json.get(field).is_some(), "{field}");
    }
}
