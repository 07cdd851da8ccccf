//! Turns configured provider apps (or the embedded sandbox's credentials) into the registry of
//! `dyn Provider`s. Keys are read and parsed here, once, so a bad key stops the start-up with
//! the config key at fault instead of failing the first payment.

use std::sync::Arc;

use paygate_alipay::{Alipay, AlipayConfig, AlipayTrust, CertSource};
use paygate_core::AppName;
use paygate_sandbox::SandboxCredentials;
use paygate_wechat::WechatPay;
use paygate_wechat::config::{MerchantCertificate, WechatConfig};
use paygate_wechat::sign::SignType;
use paygate_wechat_v3::WechatPayV3;
use paygate_wechat_v3::client::ApiClient;
use paygate_wechat_v3::config::WechatV3Settings;
use secrecy::SecretString;

use crate::config::{
    AlipayAppSettings, ConfigError, Settings, WechatApp, WechatAppSettings, read_secret, read_value,
};
use crate::registry::{ProviderApp, Registry};

/// The app name both embedded sandbox providers are registered under.
pub const SANDBOX_APP: &str = "sandbox";

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
                let config = wechat_config(&key, app)?;
                registry.insert(wechat_app(name, config, &key)?);
            }
            WechatApp::V3(app) => registry.insert(wechat_v3_app(name, app, &key)?),
        }
    }
    for (name, app) in &settings.alipay {
        let key = format!("alipay.{name}");
        let config = alipay_config(&key, app)?;
        let provider = Alipay::new(config).map_err(|e| invalid(key.clone(), e))?;
        registry.insert(ProviderApp {
            name: app_name(&key, name)?,
            provider: Arc::new(provider),
            wechat: None,
        });
    }
    Ok(registry)
}

/// Builds a registry with one WeChat and one Alipay app against the embedded sandbox.
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

fn wechat_app(name: AppName, config: WechatConfig, key: &str) -> Result<ProviderApp, ConfigError> {
    let wechat = Arc::new(WechatPay::new(config).map_err(|e| invalid(key.to_owned(), e))?);
    Ok(ProviderApp {
        name,
        provider: wechat.clone(),
        wechat: Some(wechat),
    })
}

/// A v3 app: its settings are read and checked by the provider crate, whose error names the
/// setting; it is prefixed here with the app's table. Login and the JS-SDK signature are v2
/// only (`wechat: None`).
fn wechat_v3_app(
    name: AppName,
    settings: &WechatV3Settings,
    key: &str,
) -> Result<ProviderApp, ConfigError> {
    let app = settings
        .load()
        .map_err(|e| invalid(format!("{key}.{}", e.key), e.reason))?;
    let client = ApiClient::new(app).map_err(|e| invalid(key.to_owned(), e))?;
    Ok(ProviderApp {
        name,
        provider: Arc::new(WechatPayV3::new(client)),
        wechat: None,
    })
}

fn wechat_config(key: &str, app: &WechatAppSettings) -> Result<WechatConfig, ConfigError> {
    let api_key = read_secret(&format!("{key}.api_key"), &app.api_key, &app.api_key_file)?;
    let api_key_key = match app.api_key_file {
        Some(_) => format!("{key}.api_key_file"),
        None => format!("{key}.api_key"),
    };
    crate::config::check_wechat_api_key(&api_key_key, &api_key)?;
    let mut config = WechatConfig::new(app.appid.clone(), app.mch_id.clone(), String::new());
    config.api_key = api_key;
    if let Some(sign_type) = &app.sign_type {
        config.sign_type = match sign_type.as_str() {
            "HMAC-SHA256" => SignType::HmacSha256,
            _ => SignType::Md5,
        };
    }
    if let Some(base) = &app.api_base {
        config.api_base = base.clone();
    }
    if let Some(base) = &app.login_base {
        config.login_base = base.clone();
    }
    if let Some(base) = &app.oauth_base {
        config.oauth_base = base.clone();
    }
    if app.app_secret.is_some() || app.app_secret_file.is_some() {
        config.app_secret = Some(read_secret(
            &format!("{key}.app_secret"),
            &app.app_secret,
            &app.app_secret_file,
        )?);
    }
    let inline_pem = app.cert_pem.is_some() || app.key_pem.is_some();
    let pem_files = app.cert_pem_file.is_some() || app.key_pem_file.is_some();
    config.merchant_certificate = match (inline_pem || pem_files, &app.p12_file) {
        (true, None) => Some(MerchantCertificate::Pem {
            cert_pem: read_value(
                &format!("{key}.cert_pem"),
                &app.cert_pem,
                &app.cert_pem_file,
            )?,
            key_pem: read_secret(&format!("{key}.key_pem"), &app.key_pem, &app.key_pem_file)?,
        }),
        (false, Some(p12)) => {
            let der = std::fs::read(p12).map_err(|e| {
                invalid(
                    format!("{key}.p12_file"),
                    format!("cannot read {}: {e}", p12.display()),
                )
            })?;
            let password = app
                .p12_password
                .clone()
                .unwrap_or_else(|| SecretString::from(app.mch_id.clone()));
            Some(MerchantCertificate::Pkcs12 { der, password })
        }
        (false, None) => None,
        (true, Some(_)) => {
            return Err(invalid(
                format!("{key}.p12_file"),
                "give the PEM pair (cert_pem[_file] and key_pem[_file]) or p12_file, not both",
            ));
        }
    };
    config.h5_scene = app
        .h5_scene
        .as_ref()
        .map(|scene| paygate_wechat::config::H5Scene {
            wap_url: scene.wap_url.clone(),
            wap_name: scene.wap_name.clone(),
        });
    config.server_ip = app.server_ip;
    config.channels = app.channels.clone().unwrap_or_else(|| {
        // h5 needs a registered site (scene_info); it is only on when configured explicitly.
        paygate_wechat::CHANNELS
            .iter()
            .copied()
            .filter(|c| *c != paygate_core::Channel::H5)
            .collect()
    });
    Ok(config)
}

fn alipay_config(key: &str, app: &AlipayAppSettings) -> Result<AlipayConfig, ConfigError> {
    let app_private_key = read_secret(
        &format!("{key}.app_private_key"),
        &app.app_private_key,
        &app.app_private_key_file,
    )?;
    let trust = match (
        &app.app_cert_file,
        &app.alipay_cert_file,
        &app.alipay_root_cert_file,
    ) {
        (Some(app_cert), Some(alipay_cert), Some(root)) => AlipayTrust::Certificate {
            app_cert: CertSource::Path {
                path: app_cert.clone(),
            },
            alipay_cert: CertSource::Path {
                path: alipay_cert.clone(),
            },
            alipay_root_cert: CertSource::Path { path: root.clone() },
        },
        _ => AlipayTrust::PublicKey {
            alipay_public_key: read_value(
                &format!("{key}.alipay_public_key"),
                &app.alipay_public_key,
                &app.alipay_public_key_file,
            )?,
        },
    };
    Ok(AlipayConfig {
        app_id: app.app_id.clone(),
        seller_id: app.seller_id.clone(),
        app_private_key,
        trust,
        gateway_url: app
            .gateway_url
            .clone()
            .unwrap_or_else(|| paygate_alipay::DEFAULT_GATEWAY_URL.to_owned()),
        timeout_secs: 10,
        channels: app
            .channels
            .clone()
            .unwrap_or_else(|| paygate_alipay::CHANNELS.to_vec()),
        wap_quit_url: None,
    })
}
