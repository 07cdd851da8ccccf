//! One APIv3 app's settings, as the gateway's TOML gives them, and their validation into
//! usable credentials.
//!
//! Every secret comes inline or from a file (`X` or `X_file`, exactly one), as the gateway does
//! for its own keys. [`WechatV3Settings::load`] reads and checks everything at start-up so a
//! bad app is refused before serving, with a message naming the key at fault: an APIv3 key that
//! is not 32 bytes, a private key that does not belong to the merchant certificate (or a
//! certificate whose serial is not the configured one), a public key id that is not
//! `PUB_KEY_ID_` + digits, no verification key mode at all. Secrets never appear in `Debug`
//! or in errors.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use paygate_core::Channel;
use paygate_core::settings::{InlineOrFile, SettingError};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::aead::ApiV3Key;
use crate::keys::{CertificateInfo, MerchantKey, VerifyingKey, normalise_serial};
use crate::sign::MerchantSigner;
use crate::verify::{WechatpayKeys, is_public_key_id};

/// WeChat Pay's production API host; tests and the sandbox point `api_base` elsewhere.
pub const DEFAULT_API_BASE: &str = "https://api.mch.weixin.qq.com";
/// How long one API call may take before its outcome counts as unknown.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why settings cannot be used; `key` names the setting (relative to the app's table).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid WeChat Pay APIv3 setting `{key}`: {reason}")]
pub struct ConfigError {
    /// The setting at fault, e.g. `apiv3_key` or `private_key_file`.
    pub key: String,
    /// What is wrong with it (never the secret itself).
    pub reason: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// The H5 site WeChat requires in `scene_info.h5_info` of H5 orders.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct H5Info {
    /// `Wap`, `iOS` or `Android`.
    #[serde(rename = "type", default = "default_h5_type")]
    pub kind: String,
    /// The site's or app's name.
    pub app_name: Option<String>,
    /// The site's URL.
    pub app_url: Option<String>,
}

fn default_h5_type() -> String {
    "Wap".to_owned()
}

/// One APIv3 app under `[wechat.NAME]` with `api = "v3"`.
#[derive(Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WechatV3Settings {
    /// The API version marker the gateway dispatches on; must be `v3` when present.
    #[serde(default)]
    pub api: Option<String>,
    /// The appid orders are placed under.
    pub appid: String,
    /// The merchant id.
    pub mchid: String,
    /// The merchant API certificate serial (`Authorization serial_no`); when absent it is read
    /// from the certificate, when present it must equal the certificate's.
    #[serde(default)]
    pub merchant_serial_no: Option<String>,
    /// The merchant API certificate (`apiclient_cert.pem`), inline.
    #[serde(default)]
    pub merchant_certificate: Option<String>,
    /// File holding the merchant API certificate.
    #[serde(default)]
    pub merchant_certificate_file: Option<PathBuf>,
    /// The merchant API private key (`apiclient_key.pem`, PKCS#8), inline.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub private_key: Option<SecretString>,
    /// File holding the merchant API private key.
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    /// The 32-character APIv3 key, inline.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub apiv3_key: Option<SecretString>,
    /// File holding the APIv3 key.
    #[serde(default)]
    pub apiv3_key_file: Option<PathBuf>,
    /// The WeChat Pay public key id (`PUB_KEY_ID_…`), for public-key mode.
    #[serde(default)]
    pub public_key_id: Option<String>,
    /// The WeChat Pay public key (SPKI PEM), inline.
    #[serde(default)]
    pub public_key: Option<String>,
    /// File holding the WeChat Pay public key.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// Platform-certificate mode: download `/v3/certificates` and verify by certificate serial.
    /// May be on together with the public key while an app migrates.
    #[serde(default)]
    pub platform_certificates: bool,
    /// The pay API's base URL.
    #[serde(default)]
    pub api_base: Option<String>,
    /// Per-request timeout in milliseconds.
    #[serde(default)]
    pub request_timeout_ms: Option<u64>,
    /// Channels this app serves; every WeChat channel but `h5` when absent.
    #[serde(default)]
    pub channels: Option<Vec<Channel>>,
    /// The H5 site, required for the `h5` channel.
    #[serde(default)]
    pub h5_info: Option<H5Info>,
    /// The appid's AppSecret, inline, for mini-program login and official-account OAuth: the
    /// same WeChat login API as a v2 app's (it is not part of WeChat Pay).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub app_secret: Option<SecretString>,
    /// File holding the AppSecret.
    #[serde(default)]
    pub app_secret_file: Option<PathBuf>,
    /// The login / token API base (`{login_base}/sns/jscode2session`); the real
    /// `https://api.weixin.qq.com` when absent.
    #[serde(default)]
    pub login_base: Option<String>,
    /// The official-account OAuth authorize page base; the real `https://open.weixin.qq.com`
    /// when absent.
    #[serde(default)]
    pub oauth_base: Option<String>,
}

impl fmt::Debug for WechatV3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |set: bool| if set { Some("[REDACTED]") } else { None };
        f.debug_struct("WechatV3Settings")
            .field("appid", &self.appid)
            .field("mchid", &self.mchid)
            .field("merchant_serial_no", &self.merchant_serial_no)
            .field("merchant_certificate_file", &self.merchant_certificate_file)
            .field("private_key", &redacted(self.private_key.is_some()))
            .field("private_key_file", &self.private_key_file)
            .field("apiv3_key", &redacted(self.apiv3_key.is_some()))
            .field("apiv3_key_file", &self.apiv3_key_file)
            .field("public_key_id", &self.public_key_id)
            .field("public_key_file", &self.public_key_file)
            .field("platform_certificates", &self.platform_certificates)
            .field("api_base", &self.api_base)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("channels", &self.channels)
            .field("h5_info", &self.h5_info)
            .field("app_secret", &redacted(self.app_secret.is_some()))
            .field("app_secret_file", &self.app_secret_file)
            .field("login_base", &self.login_base)
            .field("oauth_base", &self.oauth_base)
            .finish_non_exhaustive()
    }
}

/// Reads a secret given inline (`key`) or by file (`key_file`): exactly one must be set. A
/// trailing newline in the file is not part of the secret. The shared rule of every provider's
/// settings ([`InlineOrFile`]).
pub fn read_secret(
    key: &str,
    inline: &Option<SecretString>,
    file: &Option<PathBuf>,
) -> Result<SecretString, ConfigError> {
    Ok(InlineOrFile::secret(key, inline, file).read()?)
}

/// Reads a non-secret value given inline or by file, when either is set.
fn read_optional(
    key: &str,
    inline: &Option<String>,
    file: &Option<PathBuf>,
) -> Result<Option<String>, ConfigError> {
    let source = InlineOrFile::value(key, inline, file);
    if source.is_given() {
        Ok(Some(source.read_value()?))
    } else {
        Ok(None)
    }
}

impl From<SettingError> for ConfigError {
    fn from(error: SettingError) -> Self {
        ConfigError::new(error.key, error.reason)
    }
}

/// Validated credentials and settings, ready for the client and the notify handler.
pub struct WechatV3App {
    /// The appid.
    pub appid: String,
    /// The merchant id.
    pub mchid: String,
    /// Signs requests and pay params.
    pub signer: MerchantSigner,
    /// Decrypts notify resources and `/v3/certificates`.
    pub apiv3_key: ApiV3Key,
    /// Verifies responses and notifies.
    pub keys: WechatpayKeys,
    /// Whether platform certificates are downloaded (certificate or migration mode).
    pub platform_certificates: bool,
    /// The pay API's base URL, without a trailing `/`.
    pub api_base: String,
    /// The per-request timeout.
    pub request_timeout: Duration,
    /// The channels this app serves.
    pub channels: Vec<Channel>,
    /// The H5 site for `h5` orders.
    pub h5_info: Option<H5Info>,
    /// What WeChat login (jscode2session, OAuth) needs; the gateway builds its login client from
    /// it, the same as for a v2 app.
    pub login: LoginSettings,
}

/// The WeChat login settings of an app: its AppSecret (read once, at start) and where the login
/// API and the OAuth page are. `None` bases mean the real WeChat hosts.
#[derive(Clone, Default)]
pub struct LoginSettings {
    /// The AppSecret, when configured.
    pub app_secret: Option<SecretString>,
    /// The login / token API base.
    pub login_base: Option<String>,
    /// The OAuth authorize page base.
    pub oauth_base: Option<String>,
}

impl fmt::Debug for LoginSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginSettings")
            .field(
                "app_secret",
                &self.app_secret.as_ref().map(|_| "[REDACTED]"),
            )
            .field("login_base", &self.login_base)
            .field("oauth_base", &self.oauth_base)
            .finish()
    }
}

impl fmt::Debug for WechatV3App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WechatV3App")
            .field("appid", &self.appid)
            .field("mchid", &self.mchid)
            .field("serial_no", &self.signer.serial_no())
            .field("public_key_id", &self.keys.public_key_id())
            .field("platform_certificates", &self.platform_certificates)
            .field("api_base", &self.api_base)
            .field("channels", &self.channels)
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}

impl WechatV3Settings {
    /// Reads every secret and checks everything that can be checked without the network.
    pub fn load(&self) -> Result<WechatV3App, ConfigError> {
        if let Some(api) = self.api.as_deref().filter(|a| *a != "v3") {
            return Err(ConfigError::new("api", format!("{api:?} is not v3")));
        }
        for (key, value) in [("appid", &self.appid), ("mchid", &self.mchid)] {
            if value.trim().is_empty() {
                return Err(ConfigError::new(key, "must not be empty"));
            }
        }
        if !self.mchid.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ConfigError::new("mchid", "must be digits"));
        }

        let apiv3_text = read_secret("apiv3_key", &self.apiv3_key, &self.apiv3_key_file)?;
        let apiv3_key = ApiV3Key::new(apiv3_text.expose_secret()).map_err(|e| {
            ConfigError::new(self.source_key("apiv3_key", &self.apiv3_key), e.to_string())
        })?;

        let certificate_pem = read_optional(
            "merchant_certificate",
            &self.merchant_certificate,
            &self.merchant_certificate_file,
        )?
        .ok_or_else(|| {
            ConfigError::new(
                "merchant_certificate",
                "missing (merchant_certificate or merchant_certificate_file): it proves the private key and serial belong together",
            )
        })?;
        let cert_key = if self.merchant_certificate.is_some() {
            "merchant_certificate"
        } else {
            "merchant_certificate_file"
        };
        let certificate = CertificateInfo::from_pem(&certificate_pem)
            .map_err(|e| ConfigError::new(cert_key, e.to_string()))?;
        let private_text = read_secret("private_key", &self.private_key, &self.private_key_file)?;
        let private_key_name = self.source_key("private_key", &self.private_key);
        let private_key = MerchantKey::from_pem(private_text.expose_secret())
            .map_err(|e| ConfigError::new(private_key_name.clone(), e.to_string()))?;
        if private_key.public_key_der() != certificate.rsa_public_key_der.as_slice() {
            return Err(ConfigError::new(
                private_key_name,
                format!(
                    "does not belong to the merchant certificate with serial {}",
                    certificate.serial
                ),
            ));
        }
        if let Some(serial) = &self.merchant_serial_no
            && normalise_serial(serial) != certificate.serial
        {
            return Err(ConfigError::new(
                "merchant_serial_no",
                format!(
                    "{serial:?} is not the merchant certificate's serial {}",
                    certificate.serial
                ),
            ));
        }

        let mut keys = WechatpayKeys::new();
        match (
            &self.public_key_id,
            read_optional("public_key", &self.public_key, &self.public_key_file)?,
        ) {
            (Some(id), Some(pem)) => {
                if !is_public_key_id(id) {
                    return Err(ConfigError::new(
                        "public_key_id",
                        "must be PUB_KEY_ID_ followed by digits",
                    ));
                }
                let key_name = if self.public_key.is_some() {
                    "public_key"
                } else {
                    "public_key_file"
                };
                let key = VerifyingKey::from_pem(&pem)
                    .map_err(|e| ConfigError::new(key_name, e.to_string()))?;
                keys = keys.with_public_key(id.clone(), key);
            }
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "public_key",
                    "public_key_id needs public_key or public_key_file",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "public_key_id",
                    "the public key needs its PUB_KEY_ID_…",
                ));
            }
            (None, None) if !self.platform_certificates => {
                return Err(ConfigError::new(
                    "public_key_id",
                    "no verification key: set public_key_id with public_key(_file), or platform_certificates = true, or both while migrating",
                ));
            }
            (None, None) => {}
        }

        let api_base = self
            .api_base
            .clone()
            .unwrap_or_else(|| DEFAULT_API_BASE.to_owned());
        url::Url::parse(&api_base).map_err(|e| ConfigError::new("api_base", e.to_string()))?;
        let channels = self.channels.clone().unwrap_or_else(|| {
            crate::CHANNELS
                .iter()
                .copied()
                .filter(|&c| c != Channel::H5)
                .collect()
        });
        for &channel in &channels {
            if !crate::CHANNELS.contains(&channel) {
                return Err(ConfigError::new(
                    "channels",
                    format!("{channel} is not a WeChat Pay channel"),
                ));
            }
        }
        if channels.contains(&Channel::H5) && self.h5_info.is_none() {
            return Err(ConfigError::new(
                "h5_info",
                "the h5 channel needs h5_info (type, app_name, app_url)",
            ));
        }
        let login = self.login_settings()?;
        Ok(WechatV3App {
            login,
            appid: self.appid.clone(),
            mchid: self.mchid.clone(),
            signer: MerchantSigner::new(self.mchid.clone(), certificate.serial, private_key),
            apiv3_key,
            keys,
            platform_certificates: self.platform_certificates,
            api_base: api_base.trim_end_matches('/').to_owned(),
            request_timeout: self
                .request_timeout_ms
                .map_or(DEFAULT_TIMEOUT, Duration::from_millis),
            channels,
            h5_info: self.h5_info.clone(),
        })
    }

    /// The login settings: the AppSecret when one is configured (inline or file, not both), and
    /// base URLs that parse.
    fn login_settings(&self) -> Result<LoginSettings, ConfigError> {
        let app_secret = if self.app_secret.is_some() || self.app_secret_file.is_some() {
            Some(read_secret(
                "app_secret",
                &self.app_secret,
                &self.app_secret_file,
            )?)
        } else {
            None
        };
        for (key, base) in [
            ("login_base", &self.login_base),
            ("oauth_base", &self.oauth_base),
        ] {
            if let Some(base) = base {
                url::Url::parse(base).map_err(|e| ConfigError::new(key, e.to_string()))?;
            }
        }
        Ok(LoginSettings {
            app_secret,
            login_base: self.login_base.clone(),
            oauth_base: self.oauth_base.clone(),
        })
    }

    /// `key` when the secret was inline, `key_file` when it came from a file.
    fn source_key(&self, key: &str, inline: &Option<SecretString>) -> String {
        if inline.is_some() {
            key.to_owned()
        } else {
            format!("{key}_file")
        }
    }
}
