//! One WeChat Pay app's configuration, as the gateway's config file gives it. Secrets are
//! `SecretString`s and the merchant certificate's Debug is redacted, so printing a config (or
//! an error holding one) never leaks the API key, the AppSecret or the private key.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use paygate_core::Channel;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

use crate::sign::SignType;

/// WeChat Pay's production API host; tests and the sandbox point `api_base` elsewhere.
pub const DEFAULT_API_BASE: &str = "https://api.mch.weixin.qq.com";
/// The login / OAuth / access-token host.
pub const DEFAULT_LOGIN_BASE: &str = "https://api.weixin.qq.com";
/// The real official-account OAuth authorize host (the page the buyer's WeChat browser opens).
pub const DEFAULT_OAUTH_BASE: &str = "https://open.weixin.qq.com";
/// How long one API call may take before its outcome counts as unknown.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A channel WeChat does not offer (e.g. `wap`).
    #[error("channel {0} is not a WeChat Pay channel")]
    UnsupportedChannel(Channel),
    /// The H5 channel needs `h5_scene` for `scene_info`.
    #[error("the h5 channel needs h5_scene (wap_url and wap_name)")]
    MissingH5Scene,
    /// A base URL does not parse.
    #[error("{field} is not a valid URL: {reason}")]
    InvalidUrl {
        /// Which setting.
        field: &'static str,
        /// The parser's complaint.
        reason: String,
    },
    /// The merchant certificate could not be loaded.
    #[error("merchant certificate: {0}")]
    Certificate(String),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    HttpClient(String),
}

/// The H5 (MWEB) site described in `scene_info`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct H5Scene {
    /// The site's URL, as registered with WeChat Pay.
    pub wap_url: String,
    /// The site's name.
    pub wap_name: String,
}

/// The merchant API certificate used for mutual TLS on `secapi` calls (refunds).
#[derive(Clone, Deserialize)]
#[serde(tag = "format", rename_all = "snake_case")]
pub enum MerchantCertificate {
    /// `apiclient_cert.pem` and `apiclient_key.pem`.
    Pem {
        /// The certificate (chain) in PEM.
        cert_pem: String,
        /// The private key in PEM (PKCS#8 or PKCS#1).
        key_pem: SecretString,
    },
    /// `apiclient_cert.p12`, whose password is usually the mch_id.
    Pkcs12 {
        /// The PKCS#12 file's bytes (base64 in config files).
        #[serde(rename = "p12_base64", deserialize_with = "base64_bytes")]
        der: Vec<u8>,
        /// The PKCS#12 password.
        password: SecretString,
    },
}

impl fmt::Debug for MerchantCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MerchantCertificate::Pem { .. } => f.write_str("MerchantCertificate::Pem([REDACTED])"),
            MerchantCertificate::Pkcs12 { der, .. } => {
                write!(
                    f,
                    "MerchantCertificate::Pkcs12({} bytes, [REDACTED])",
                    der.len()
                )
            }
        }
    }
}

fn base64_bytes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(deserializer)?;
    BASE64
        .decode(text.trim())
        .map_err(|e| serde::de::Error::custom(format!("p12_base64: {e}")))
}

impl MerchantCertificate {
    /// The certificate and key as one PEM bundle, the form rustls takes. A `.p12` is unpacked
    /// here (p12-keystore handles the legacy RC2/3DES encryption WeChat's files use).
    pub fn to_pem_bundle(&self) -> Result<SecretString, ConfigError> {
        match self {
            MerchantCertificate::Pem { cert_pem, key_pem } => Ok(SecretString::from(format!(
                "{}\n{}\n",
                key_pem.expose_secret().trim(),
                cert_pem.trim()
            ))),
            MerchantCertificate::Pkcs12 { der, password } => {
                let store = p12_keystore::KeyStore::from_pkcs12(
                    der,
                    password.expose_secret(),
                    p12_keystore::Pkcs12ImportPolicy::Relaxed,
                )
                .map_err(|e| ConfigError::Certificate(format!("cannot open the .p12: {e}")))?;
                let (_, chain) = store.private_key_chain().ok_or_else(|| {
                    ConfigError::Certificate("the .p12 holds no private key".into())
                })?;
                if chain.certs().is_empty() {
                    return Err(ConfigError::Certificate(
                        "the .p12 holds no certificate for its key".into(),
                    ));
                }
                let mut bundle = pem::encode(&pem::Pem::new("PRIVATE KEY", chain.key().as_der()));
                for cert in chain.certs() {
                    bundle.push_str(&pem::encode(&pem::Pem::new("CERTIFICATE", cert.as_der())));
                }
                Ok(SecretString::from(bundle))
            }
        }
    }
}

/// One WeChat Pay app: who the merchant is, how it signs, where to call and which channels it
/// serves.
#[derive(Clone, Deserialize)]
pub struct WechatConfig {
    /// The appid orders are placed under (mini-program, official account or open-platform app).
    pub appid: String,
    /// The merchant id.
    pub mch_id: String,
    /// The APIv2 key.
    pub api_key: SecretString,
    /// The algorithm orders (and so their notifies) are signed with.
    #[serde(default)]
    pub sign_type: SignType,
    /// The pay API's base URL.
    #[serde(default = "default_api_base")]
    pub api_base: String,
    /// The login / OAuth base URL.
    #[serde(default = "default_login_base")]
    pub login_base: String,
    /// Where the official-account OAuth authorize page lives (`{oauth_base}/connect/oauth2/authorize`).
    #[serde(default = "default_oauth_base")]
    pub oauth_base: String,
    /// The AppSecret, needed only for login, OAuth and JS-SDK tickets.
    #[serde(default)]
    pub app_secret: Option<SecretString>,
    /// The API certificate for refunds.
    #[serde(default)]
    pub merchant_certificate: Option<MerchantCertificate>,
    /// Per-request timeout in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub request_timeout_ms: u64,
    /// The channels this app serves.
    pub channels: Vec<Channel>,
    /// The H5 site, required for the `h5` channel.
    #[serde(default)]
    pub h5_scene: Option<H5Scene>,
    /// The server's public IP, sent as `spbill_create_ip` for NATIVE orders when the request
    /// carries no client IP.
    #[serde(default)]
    pub server_ip: Option<IpAddr>,
    /// CA certificates (PEM) to trust besides the system's, for a sandbox or test server that
    /// has its own TLS certificate. Not needed for WeChat itself.
    #[serde(default)]
    pub extra_root_certificates_pem: Option<String>,
}

fn default_api_base() -> String {
    DEFAULT_API_BASE.to_owned()
}

fn default_login_base() -> String {
    DEFAULT_LOGIN_BASE.to_owned()
}

fn default_oauth_base() -> String {
    DEFAULT_OAUTH_BASE.to_owned()
}

fn default_timeout_ms() -> u64 {
    u64::try_from(DEFAULT_TIMEOUT.as_millis()).unwrap_or(10_000)
}

impl WechatConfig {
    /// A configuration with the defaults, for code and tests that build one by hand. It serves
    /// every channel except `h5`, which needs an `h5_scene`.
    pub fn new(
        appid: impl Into<String>,
        mch_id: impl Into<String>,
        api_key: impl Into<String>,
    ) -> Self {
        Self {
            appid: appid.into(),
            mch_id: mch_id.into(),
            api_key: SecretString::from(api_key.into()),
            sign_type: SignType::default(),
            api_base: default_api_base(),
            login_base: default_login_base(),
            oauth_base: default_oauth_base(),
            app_secret: None,
            merchant_certificate: None,
            request_timeout_ms: default_timeout_ms(),
            channels: crate::CHANNELS
                .iter()
                .copied()
                .filter(|&c| c != Channel::H5)
                .collect(),
            h5_scene: None,
            server_ip: None,
            extra_root_certificates_pem: None,
        }
    }

    /// The per-request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for &channel in &self.channels {
            if !crate::CHANNELS.contains(&channel) {
                return Err(ConfigError::UnsupportedChannel(channel));
            }
        }
        if self.channels.contains(&Channel::H5) && self.h5_scene.is_none() {
            return Err(ConfigError::MissingH5Scene);
        }
        check_urls(&[
            ("api_base", &self.api_base),
            ("login_base", &self.login_base),
            ("oauth_base", &self.oauth_base),
        ])
    }
}

/// Checks that each `(setting, value)` parses as a URL, naming the first that does not.
pub(crate) fn check_urls(urls: &[(&'static str, &str)]) -> Result<(), ConfigError> {
    for &(field, value) in urls {
        url::Url::parse(value).map_err(|e| ConfigError::InvalidUrl {
            field,
            reason: e.to_string(),
        })?;
    }
    Ok(())
}

impl fmt::Debug for WechatConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WechatConfig")
            .field("appid", &self.appid)
            .field("mch_id", &self.mch_id)
            .field("api_key", &"[REDACTED]")
            .field("sign_type", &self.sign_type)
            .field("api_base", &self.api_base)
            .field("login_base", &self.login_base)
            .field("oauth_base", &self.oauth_base)
            .field(
                "app_secret",
                &self.app_secret.as_ref().map(|_| "[REDACTED]"),
            )
            .field("merchant_certificate", &self.merchant_certificate)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("channels", &self.channels)
            .field("h5_scene", &self.h5_scene)
            .field("server_ip", &self.server_ip)
            .field(
                "extra_root_certificates_pem",
                &self.extra_root_certificates_pem.as_ref().map(String::len),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_json_config_gets_the_documented_defaults() {
        let config: WechatConfig = serde_json::from_value(serde_json::json!({
            "appid": "wx1",
            "mch_id": "10000100",
            "api_key": "192006250b4c09247ec02edce69f6a2d",
            "channels": ["mini_program", "native"],
        }))
        .unwrap();
        assert_eq!(config.api_base, "https://api.mch.weixin.qq.com");
        assert_eq!(config.login_base, "https://api.weixin.qq.com");
        assert_eq!(config.sign_type, SignType::Md5);
        assert_eq!(config.request_timeout(), Duration::from_secs(10));
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn secrets_are_redacted_from_debug_output() {
        let mut config = WechatConfig::new("wx1", "10000100", "192006250b4c09247ec02edce69f6a2d");
        config.app_secret = Some(SecretString::from("appsecret-value".to_owned()));
        config.merchant_certificate = Some(MerchantCertificate::Pem {
            cert_pem: "CERT".into(),
            key_pem: SecretString::from("PRIVATE-KEY-BYTES".to_owned()),
        });
        let printed = format!("{config:?}");
        for secret in ["192006250b4c", "appsecret-value", "PRIVATE-KEY-BYTES"] {
            assert!(!printed.contains(secret), "{secret} leaked: {printed}");
        }
    }

    #[test]
    fn h5_without_a_scene_and_alipay_channels_are_refused() {
        let mut config = WechatConfig::new("wx1", "1", "k");
        config.channels = vec![Channel::H5];
        assert_eq!(config.validate(), Err(ConfigError::MissingH5Scene));
        config.channels = vec![Channel::Wap];
        assert_eq!(
            config.validate(),
            Err(ConfigError::UnsupportedChannel(Channel::Wap))
        );
    }

    #[test]
    fn sign_type_reads_the_wire_spelling() {
        let config: WechatConfig = serde_json::from_value(serde_json::json!({
            "appid": "wx1", "mch_id": "1", "api_key": "k", "channels": [],
            "sign_type": "HMAC-SHA256",
        }))
        .unwrap();
        assert_eq!(config.sign_type, SignType::HmacSha256);
    }
}
