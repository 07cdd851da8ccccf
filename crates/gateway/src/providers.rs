//! Turns configured provider apps (or the embedded sandbox's credentials) into the registry of
//! `dyn Provider`s. Keys are read and parsed here, once, so a bad key stops the start-up with
//! the config key at fault instead of failing the first payment.

use std::sync::Arc;

use paygate_alipay::{Alipay, AlipayConfig, AlipayTrust};
use paygate_core::AppName;
use paygate_sandbox::SandboxCredentials;
use paygate_wechat::WechatPay;
use paygate_wechat::config::{MerchantCertificate, WechatConfig};
use paygate_wechat::login::{LoginClient, LoginSettings};
use paygate_wechat::sign::SignType;
use paygate_wechat_v3::WechatPayV3;
use paygate_wechat_v3::client::ApiClient;
use paygate_wechat_v3::config::WechatV3Settings;
use secrecy::SecretString;

use crate::config::{ConfigError, Settings, WechatApp};
use crate::registry::{ProviderApp, Registry};

/// The app name both embedded sandbox providers are registered under.
pub const SANDBOX_APP: &str = "sandbox";
/// The app name the embedded sandbox's WeChat merchant is registered under a second time,
/// through APIv3; orders name it (`"app": "sandbox-v3"`), the v2 app stays the default.
pub const SANDBOX_V3_APP: &str = "sandbox-v3";

fn app_name(key: &str, name: &str) -> Result<AppName, ConfigError> {
    AppName::parse(name).map_err(|e| ConfigError::Invalid {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

fn invalid(key: String, reason: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.to_string(),
    }
}

/// Builds the registry from the configured apps.
pub fn from_settings(settings: &Settings) -> Result<Registry, ConfigError> {
    let mut registry = Registry::default();
    for (name, app) in &settings.wechat {
        let key = format!("wechat.{name}");
        let name = app_name(&key, name)?;
        match app {
            WechatApp::V2(app) => {
                let config = app
                    .to_config()
                    .map_err(|e| ConfigError::in_table(&key, e))?;
                registry.insert(wechat_app(name, config, &key)?);
            }
            WechatApp::V3(app) => registry.insert(wechat_v3_app(name, app, &key)?),
        }
    }
    for (name, app) in &settings.alipay {
        let key = format!("alipay.{name}");
        let config = app
            .to_config()
            .map_err(|e| ConfigError::in_table(&key, e))?;
        let provider = Alipay::new(config).map_err(|e| invalid(key.clone(), e))?;
        registry.insert(ProviderApp {
            name: app_name(&key, name)?,
            provider: Arc::new(provider),
            wechat: None,
        });
    }
    Ok(registry)
}

/// Builds a registry with one WeChat v2, one WeChat APIv3 and one Alipay app against the
/// embedded sandbox; the v2 app is the WeChat default.
pub fn from_sandbox(
    credentials: &SandboxCredentials,
    timeout: std::time::Duration,
) -> Result<Registry, ConfigError> {
    let mut registry = Registry::default();
    let name = app_name("sandbox", SANDBOX_APP)?;
    let w = &credentials.wechat;
    let mut wechat = WechatConfig::new(w.appid.clone(), w.mch_id.clone(), w.api_key.clone());
    wechat.api_base = w.api_base.clone();
    wechat.login_base = w.login_base.clone();
    wechat.oauth_base = w.oauth_base.clone();
    wechat.app_secret = Some(SecretString::from(w.app_secret.clone()));
    wechat.sign_type = SignType::HmacSha256;
    wechat.server_ip = Some(std::net::IpAddr::from([127, 0, 0, 1]));
    wechat.request_timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    wechat.merchant_certificate = Some(MerchantCertificate::Pem {
        cert_pem: w.merchant_cert_pem.clone(),
        key_pem: SecretString::from(w.merchant_key_pem.clone()),
    });
    wechat.channels = paygate_wechat::CHANNELS.to_vec();
    wechat.h5_scene = Some(paygate_wechat::config::H5Scene {
        wap_url: "http://127.0.0.1".to_owned(),
        wap_name: "paygate sandbox".to_owned(),
    });
    registry.insert(wechat_app(name.clone(), wechat, "sandbox.wechat")?);
    registry.set_default(paygate_core::ProviderKind::WECHAT, name.clone());
    registry.insert(wechat_v3_app(
        app_name("sandbox", SANDBOX_V3_APP)?,
        &sandbox_v3_settings(credentials, timeout),
        "sandbox.wechat_v3",
    )?);

    let a = &credentials.alipay;
    let alipay = AlipayConfig {
        app_id: a.app_id.clone(),
        seller_id: a.seller_id.clone(),
        app_private_key: SecretString::from(a.app_private_key.clone()),
        trust: AlipayTrust::PublicKey {
            alipay_public_key: a.alipay_public_key.clone(),
        },
        gateway_url: a.gateway_url.clone(),
        timeout_secs: timeout.as_secs().max(1),
        channels: paygate_alipay::CHANNELS.to_vec(),
        wap_quit_url: None,
    };
    let provider = Alipay::new(alipay).map_err(|e| invalid("sandbox.alipay".to_owned(), e))?;
    registry.insert(ProviderApp {
        name,
        provider: Arc::new(provider),
        wechat: None,
    });
    Ok(registry)
}

/// The embedded sandbox's APIv3 merchant as settings: the public key and platform certificates
/// both on (the migration setting, so both key modes are used), every channel, and the
/// sandbox's login API (its appid is the v2 app's, so the same AppSecret logs buyers in).
fn sandbox_v3_settings(
    credentials: &SandboxCredentials,
    timeout: std::time::Duration,
) -> WechatV3Settings {
    let v3 = &credentials.wechat_v3;
    let login = &credentials.wechat;
    WechatV3Settings {
        api: Some("v3".to_owned()),
        appid: v3.appid.clone(),
        mchid: v3.mchid.clone(),
        merchant_serial_no: Some(v3.merchant_serial_no.clone()),
        merchant_certificate: Some(v3.merchant_certificate_pem.clone()),
        merchant_certificate_file: None,
        private_key: Some(SecretString::from(v3.merchant_private_key_pem.clone())),
        private_key_file: None,
        apiv3_key: Some(SecretString::from(v3.apiv3_key.clone())),
        apiv3_key_file: None,
        public_key_id: Some(v3.public_key_id.clone()),
        public_key: Some(v3.public_key_pem.clone()),
        public_key_file: None,
        platform_certificates: true,
        api_base: Some(v3.api_base.clone()),
        request_timeout_ms: Some(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)),
        channels: Some(paygate_wechat_v3::CHANNELS.to_vec()),
        h5_info: Some(paygate_wechat_v3::config::H5Info {
            kind: "Wap".to_owned(),
            app_name: Some("paygate sandbox".to_owned()),
            app_url: Some("http://127.0.0.1".to_owned()),
        }),
        app_secret: Some(SecretString::from(login.app_secret.clone())),
        app_secret_file: None,
        login_base: Some(login.login_base.clone()),
        oauth_base: Some(login.oauth_base.clone()),
    }
}

fn wechat_app(name: AppName, config: WechatConfig, key: &str) -> Result<ProviderApp, ConfigError> {
    let wechat = Arc::new(WechatPay::new(config).map_err(|e| invalid(key.to_owned(), e))?);
    Ok(ProviderApp {
        name,
        wechat: Some(wechat.login_client()),
        provider: wechat,
    })
}

/// A v3 app: its settings are read and checked by the provider crate, whose error names the
/// setting; it is prefixed here with the app's table. Login, OAuth and the JS-SDK signature
/// are WeChat's login API, not WeChat Pay's, so the app gets the same login client as a v2 app.
fn wechat_v3_app(
    name: AppName,
    settings: &WechatV3Settings,
    key: &str,
) -> Result<ProviderApp, ConfigError> {
    let app = settings
        .load()
        .map_err(|e| invalid(format!("{key}.{}", e.key), e.reason))?;
    let mut login = LoginSettings::new(app.appid.clone());
    login.app_secret = app.login.app_secret.clone();
    if let Some(base) = &app.login.login_base {
        login.login_base = base.clone();
    }
    if let Some(base) = &app.login.oauth_base {
        login.oauth_base = base.clone();
    }
    login.request_timeout = app.request_timeout;
    let login = LoginClient::from_settings(&login).map_err(|e| invalid(key.to_owned(), e))?;
    let client = ApiClient::new(app).map_err(|e| invalid(key.to_owned(), e))?;
    let provider = WechatPayV3::new(client);
    // Certificate mode: downloaded now and every 12 h, not only when a call or notify needs it.
    provider.start_certificate_refresh();
    Ok(ProviderApp {
        name,
        provider: Arc::new(provider),
        wechat: Some(Arc::new(login)),
    })
}
