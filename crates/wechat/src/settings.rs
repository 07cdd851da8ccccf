//! One WeChat Pay v2 app as the gateway's TOML (or `PAYGATE__WECHAT__NAME__…` variables) gives
//! it, its checks, and its conversion into a [`WechatConfig`].
//!
//! The settings type lives here, next to the provider, so that every feature of the provider
//! is reachable from a config file (h5 scene, timeouts, certificates) without the gateway
//! copying fields by hand. Keys in errors are relative to the app's table (`api_key_file`);
//! the gateway prefixes them with `wechat.NAME.`.

use std::net::IpAddr;
use std::path::PathBuf;

use paygate_core::settings::{
    EndpointPolicy, InlineOrFile, SettingError, check_channels, check_url, non_empty,
};
use paygate_core::{Channel, ProviderKind};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::CHANNELS;
use crate::config::{H5Scene, MerchantCertificate, WechatConfig};
use crate::sign::SignType;

/// One WeChat Pay v2 merchant app under `[wechat.NAME]`.
#[derive(Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WechatAppSettings {
    /// The appid (mini-program, official account or open-platform app).
    pub appid: String,
    /// The merchant number.
    pub mch_id: String,
    /// The v2 API key (32 characters), inline.
    #[serde(default, skip_serializing)]
    #[schemars(with = "Option<String>")]
    pub api_key: Option<SecretString>,
    /// File holding the v2 API key.
    pub api_key_file: Option<PathBuf>,
    /// `MD5` (default) or `HMAC-SHA256`.
    #[serde(default)]
    pub sign_type: Option<String>,
    /// API base URL; defaults to the real `https://api.mch.weixin.qq.com`.
    pub api_base: Option<String>,
    /// Login/OAuth base URL; defaults to the real `https://api.weixin.qq.com`.
    pub login_base: Option<String>,
    /// Official-account OAuth authorize page base (`{oauth_base}/connect/oauth2/authorize`);
    /// defaults to the real `https://open.weixin.qq.com`.
    pub oauth_base: Option<String>,
    /// AppSecret for `jscode2session` / OAuth, inline.
    #[serde(default, skip_serializing)]
    #[schemars(with = "Option<String>")]
    pub app_secret: Option<SecretString>,
    /// File holding the AppSecret.
    pub app_secret_file: Option<PathBuf>,
    /// Merchant API certificate (PEM) for refunds over mutual TLS, inline.
    pub cert_pem: Option<String>,
    /// Merchant API private key (PEM), inline.
    #[serde(default, skip_serializing)]
    #[schemars(with = "Option<String>")]
    pub key_pem: Option<SecretString>,
    /// Merchant API certificate (PEM) for refunds over mutual TLS.
    pub cert_pem_file: Option<PathBuf>,
    /// Merchant API private key (PEM) matching `cert_pem_file`.
    pub key_pem_file: Option<PathBuf>,
    /// Merchant API certificate as `apiclient_cert.p12`, instead of the PEM pair.
    pub p12_file: Option<PathBuf>,
    /// Password of the `.p12` (WeChat sets it to the mch_id).
    #[serde(default, skip_serializing)]
    #[schemars(with = "Option<String>")]
    pub p12_password: Option<SecretString>,
    /// The server's public IP, sent as `spbill_create_ip` for NATIVE orders.
    pub server_ip: Option<IpAddr>,
    /// Channels enabled for this app; all WeChat channels but h5 when absent.
    pub channels: Option<Vec<Channel>>,
    /// The H5 site registered with WeChat Pay, sent as `scene_info`; required to enable `h5`.
    pub h5_scene: Option<H5SceneSettings>,
    /// Per-request timeout towards WeChat Pay in milliseconds (default 10,000); past it the
    /// call's outcome is unknown and the reconciler finds out.
    pub request_timeout_ms: Option<u64>,
    /// Extra CA certificates (PEM file) to trust, for a sandbox with its own TLS certificate.
    pub extra_root_certificates_file: Option<PathBuf>,
}

/// The H5 (MWEB) site a WeChat app's `h5` orders name in `scene_info`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct H5SceneSettings {
    /// The site's URL, as registered with WeChat Pay.
    pub wap_url: String,
    /// The site's name, as registered with WeChat Pay.
    pub wap_name: String,
}

impl std::fmt::Debug for WechatAppSettings {
    /// Never prints secrets, not even whether they are inline.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatAppSettings")
            .field("appid", &self.appid)
            .field("mch_id", &self.mch_id)
            .field("sign_type", &self.sign_type)
            .field("api_base", &self.api_base)
            .field("channels", &self.channels)
            .field("h5_scene", &self.h5_scene)
            .finish_non_exhaustive()
    }
}

/// The WeChat Pay v2 API key is exactly 32 characters; anything else signs nothing WeChat
/// accepts, so it is refused at start rather than on the first payment.
pub fn check_api_key(key: &str, api_key: &SecretString) -> Result<(), SettingError> {
    let length = api_key.expose_secret().chars().count();
    if length == 32 {
        Ok(())
    } else {
        Err(SettingError::new(
            key,
            format!("a WeChat Pay v2 API key is 32 characters, this one has {length}"),
        ))
    }
}

impl WechatAppSettings {
    fn api_key_source(&self) -> InlineOrFile<'_> {
        InlineOrFile::secret("api_key", &self.api_key, &self.api_key_file)
    }

    /// What can be checked without reading files: identity, key presence, sign type, URLs on
    /// the right side of `policy`, channels and the h5 site.
    pub fn validate(&self, policy: EndpointPolicy) -> Result<(), SettingError> {
        non_empty("appid", &self.appid)?;
        non_empty("mch_id", &self.mch_id)?;
        self.api_key_source().check_exactly_one()?;
        if let Some(api_key) = &self.api_key {
            check_api_key("api_key", api_key)?;
        }
        if let Some(sign_type) = &self.sign_type
            && sign_type != "MD5"
            && sign_type != "HMAC-SHA256"
        {
            return Err(SettingError::new("sign_type", "must be MD5 or HMAC-SHA256"));
        }
        policy.check("api_base", self.api_base.as_deref(), true)?;
        policy.check("login_base", self.login_base.as_deref(), true)?;
        // Optional even in a sandbox environment: the authorize URL carries no secret, and
        // configs written before the OAuth endpoints existed must keep loading.
        policy.check("oauth_base", self.oauth_base.as_deref(), false)?;
        if self.request_timeout_ms == Some(0) {
            return Err(SettingError::new(
                "request_timeout_ms",
                "must be at least 1",
            ));
        }
        check_channels("channels", ProviderKind::WECHAT, &CHANNELS, &self.channels)?;
        let offers_h5 = self.channels.iter().flatten().any(|c| *c == Channel::H5);
        match &self.h5_scene {
            None if offers_h5 => Err(SettingError::new(
                "h5_scene",
                "the h5 channel needs the site registered with WeChat Pay: h5_scene = { wap_url = \"https://…\", wap_name = \"…\" }",
            )),
            Some(scene) => {
                check_url("h5_scene.wap_url", &scene.wap_url)?;
                non_empty("h5_scene.wap_name", &scene.wap_name)
            }
            None => Ok(()),
        }
    }

    /// Reads the secrets and certificates and builds the provider's config. Call
    /// [`WechatAppSettings::validate`] first; this reads files and so may fail on its own.
    pub fn to_config(&self) -> Result<WechatConfig, SettingError> {
        let api_key_source = self.api_key_source();
        let api_key = api_key_source.read()?;
        check_api_key(&api_key_source.source_key(), &api_key)?;
        let mut config = WechatConfig::new(self.appid.clone(), self.mch_id.clone(), String::new());
        config.api_key = api_key;
        if let Some(sign_type) = &self.sign_type {
            config.sign_type = match sign_type.as_str() {
                "HMAC-SHA256" => SignType::HmacSha256,
                _ => SignType::Md5,
            };
        }
        if let Some(base) = &self.api_base {
            config.api_base = base.clone();
        }
        if let Some(base) = &self.login_base {
            config.login_base = base.clone();
        }
        if let Some(base) = &self.oauth_base {
            config.oauth_base = base.clone();
        }
        config.app_secret =
            InlineOrFile::secret("app_secret", &self.app_secret, &self.app_secret_file)
                .read_optional()?;
        config.merchant_certificate = self.merchant_certificate()?;
        config.h5_scene = self.h5_scene.as_ref().map(|scene| H5Scene {
            wap_url: scene.wap_url.clone(),
            wap_name: scene.wap_name.clone(),
        });
        config.server_ip = self.server_ip;
        if let Some(timeout) = self.request_timeout_ms {
            config.request_timeout_ms = timeout;
        }
        config.extra_root_certificates_pem = InlineOrFile::value(
            "extra_root_certificates",
            &None,
            &self.extra_root_certificates_file,
        )
        .read_optional()?
        .map(|pem| pem.expose_secret().to_owned());
        config.channels = self.channels.clone().unwrap_or_else(|| {
            // h5 needs a registered site (scene_info); it is only on when configured explicitly.
            CHANNELS
                .iter()
                .copied()
                .filter(|c| *c != Channel::H5)
                .collect()
        });
        Ok(config)
    }

    /// The refund certificate: a PEM pair, a `.p12`, or none (refunds then fail clearly).
    fn merchant_certificate(&self) -> Result<Option<MerchantCertificate>, SettingError> {
        let cert = InlineOrFile::value("cert_pem", &self.cert_pem, &self.cert_pem_file);
        let key = InlineOrFile::secret("key_pem", &self.key_pem, &self.key_pem_file);
        match (cert.is_given() || key.is_given(), &self.p12_file) {
            (true, None) => Ok(Some(MerchantCertificate::Pem {
                cert_pem: cert.read_value()?,
                key_pem: key.read()?,
            })),
            (false, Some(p12)) => {
                let der = std::fs::read(p12).map_err(|e| {
                    SettingError::new("p12_file", format!("cannot read {}: {e}", p12.display()))
                })?;
                let password = self
                    .p12_password
                    .clone()
                    .unwrap_or_else(|| SecretString::from(self.mch_id.clone()));
                Ok(Some(MerchantCertificate::Pkcs12 { der, password }))
            }
            (false, None) => Ok(None),
            (true, Some(_)) => Err(SettingError::new(
                "p12_file",
                "give the PEM pair (cert_pem[_file] and key_pem[_file]) or p12_file, not both",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_toml(text: &str) -> WechatAppSettings {
        toml::from_str(text).expect("settings parse")
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn every_documented_key_reaches_the_provider_config() {
        let dir =
            std::env::temp_dir().join(format!("paygate-wechat-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("secret"), "the-app-secret\n").expect("write");
        std::fs::write(dir.join("ca.pem"), "-----BEGIN CERTIFICATE-----\n").expect("write");
        let settings = from_toml(&format!(
            r#"
            appid = "wx0001"
            mch_id = "1900000001"
            api_key = "{KEY}"
            sign_type = "HMAC-SHA256"
            api_base = "http://127.0.0.1:9001"
            login_base = "http://127.0.0.1:9002"
            oauth_base = "http://127.0.0.1:9003"
            app_secret_file = "{secret}"
            cert_pem = "CERT"
            key_pem = "KEY"
            server_ip = "10.0.0.7"
            channels = ["jsapi", "h5"]
            h5_scene = {{ wap_url = "https://shop.example", wap_name = "Shop" }}
            request_timeout_ms = 2500
            extra_root_certificates_file = "{ca}"
            "#,
            secret = dir.join("secret").display(),
            ca = dir.join("ca.pem").display(),
        ));
        settings.validate(EndpointPolicy::Sandbox).expect("valid");
        let config = settings.to_config().expect("config");
        assert_eq!(config.appid, "wx0001");
        assert_eq!(config.mch_id, "1900000001");
        assert_eq!(config.api_key.expose_secret(), KEY);
        assert_eq!(config.sign_type, SignType::HmacSha256);
        assert_eq!(config.api_base, "http://127.0.0.1:9001");
        assert_eq!(config.login_base, "http://127.0.0.1:9002");
        assert_eq!(config.oauth_base, "http://127.0.0.1:9003");
        assert_eq!(
            config
                .app_secret
                .as_ref()
                .map(|s| s.expose_secret().to_owned()),
            Some("the-app-secret".to_owned())
        );
        assert!(matches!(
            &config.merchant_certificate,
            Some(MerchantCertificate::Pem { cert_pem, .. }) if cert_pem == "CERT"
        ));
        assert_eq!(config.server_ip, Some(IpAddr::from([10, 0, 0, 7])));
        assert_eq!(config.channels, vec![Channel::Jsapi, Channel::H5]);
        assert_eq!(
            config.h5_scene.as_ref().map(|s| s.wap_name.as_str()),
            Some("Shop")
        );
        assert_eq!(config.request_timeout_ms, 2500);
        assert_eq!(
            config.extra_root_certificates_pem.as_deref(),
            Some("-----BEGIN CERTIFICATE-----")
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn defaults_leave_h5_off_and_sign_with_md5() {
        let settings = from_toml(&format!(
            "appid = \"wx1\"\nmch_id = \"1\"\napi_key = \"{KEY}\"\napi_base = \"https://api.mch.weixin.qq.com\"\nlogin_base = \"https://api.weixin.qq.com\""
        ));
        settings
            .validate(EndpointPolicy::Production)
            .expect("valid");
        let config = settings.to_config().expect("config");
        assert_eq!(config.sign_type, SignType::Md5);
        assert!(!config.channels.contains(&Channel::H5));
        assert!(config.channels.contains(&Channel::Native));
        assert!(config.merchant_certificate.is_none());
    }

    #[test]
    fn refusals_name_the_key_at_fault() {
        let base = "appid = \"wx1\"\nmch_id = \"1\"\napi_base = \"http://127.0.0.1:1\"\nlogin_base = \"http://127.0.0.1:1\"\n";
        let refused = |extra: &str| {
            from_toml(&format!("{base}{extra}"))
                .validate(EndpointPolicy::Sandbox)
                .expect_err("refused")
                .key
        };
        assert_eq!(refused("api_key = \"short\""), "api_key");
        assert_eq!(refused(""), "api_key");
        assert_eq!(
            refused(&format!("api_key = \"{KEY}\"\nsign_type = \"SHA1\"")),
            "sign_type"
        );
        assert_eq!(
            refused(&format!("api_key = \"{KEY}\"\nchannels = [\"h5\"]")),
            "h5_scene"
        );
        assert_eq!(
            refused(&format!("api_key = \"{KEY}\"\nchannels = [\"wap\"]")),
            "channels"
        );
        assert_eq!(
            refused(&format!("api_key = \"{KEY}\"\nrequest_timeout_ms = 0")),
            "request_timeout_ms"
        );
        assert_eq!(
            refused(&format!(
                "api_key = \"{KEY}\"\noauth_base = \"https://open.weixin.qq.com\""
            )),
            "oauth_base"
        );
        let both = from_toml(&format!(
            "{base}api_key = \"{KEY}\"\ncert_pem = \"C\"\nkey_pem = \"K\"\np12_file = \"/x.p12\""
        ));
        assert_eq!(both.to_config().expect_err("both").key, "p12_file");
    }
}
