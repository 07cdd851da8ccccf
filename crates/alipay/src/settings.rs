//! One Alipay app as the gateway's TOML (or `PAYGATE__ALIPAY__NAME__…` variables) gives it, its
//! checks, and its conversion into an [`AlipayConfig`].
//!
//! The settings type lives here, next to the provider, so that every feature of the provider
//! (certificate mode, timeouts, the wap `quit_url`) is reachable from a config file. Keys in
//! errors are relative to the app's table; the gateway prefixes them with `alipay.NAME.`.

use std::path::PathBuf;

use paygate_core::settings::{
    EndpointPolicy, InlineOrFile, SettingError, check_channels, check_url, non_empty,
};
use paygate_core::{Channel, ProviderKind};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::{AlipayConfig, AlipayTrust, CHANNELS, CertSource, DEFAULT_GATEWAY_URL};

/// How long an Alipay call may take when the config does not say.
const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 10_000;

/// One Alipay app under `[alipay.NAME]`.
#[derive(Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlipayAppSettings {
    /// The APPID.
    pub app_id: String,
    /// The seller's partner id (2088…), checked on every notify.
    pub seller_id: String,
    /// The app private key (PKCS#1 or PKCS#8, PEM or bare base64), inline.
    #[serde(default, skip_serializing)]
    #[schemars(with = "Option<String>")]
    pub app_private_key: Option<SecretString>,
    /// File holding the app private key.
    pub app_private_key_file: Option<PathBuf>,
    /// The Alipay public key (SPKI, PEM or bare base64), inline.
    pub alipay_public_key: Option<String>,
    /// File holding the Alipay public key.
    pub alipay_public_key_file: Option<PathBuf>,
    /// Certificate mode: the app public-key certificate.
    pub app_cert_file: Option<PathBuf>,
    /// Certificate mode: the Alipay public-key certificate.
    pub alipay_cert_file: Option<PathBuf>,
    /// Certificate mode: the Alipay root certificate bundle.
    pub alipay_root_cert_file: Option<PathBuf>,
    /// gateway.do URL; defaults to the real `https://openapi.alipay.com/gateway.do`.
    pub gateway_url: Option<String>,
    /// Channels enabled for this app; all Alipay channels when absent.
    pub channels: Option<Vec<Channel>>,
    /// Per-request timeout towards Alipay in milliseconds (default 10,000, rounded up to whole
    /// seconds); past it the call's outcome is unknown and the reconciler finds out.
    pub request_timeout_ms: Option<u64>,
    /// Wap orders: where the cashier's "back" button takes the buyer (`quit_url`).
    pub quit_url: Option<String>,
}

impl std::fmt::Debug for AlipayAppSettings {
    /// Never prints secrets, not even whether they are inline.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlipayAppSettings")
            .field("app_id", &self.app_id)
            .field("seller_id", &self.seller_id)
            .field("gateway_url", &self.gateway_url)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

impl AlipayAppSettings {
    fn private_key_source(&self) -> InlineOrFile<'_> {
        InlineOrFile::secret(
            "app_private_key",
            &self.app_private_key,
            &self.app_private_key_file,
        )
    }

    fn public_key_source(&self) -> InlineOrFile<'_> {
        InlineOrFile::value(
            "alipay_public_key",
            &self.alipay_public_key,
            &self.alipay_public_key_file,
        )
    }

    fn certificate_mode(&self) -> bool {
        self.alipay_cert_file.is_some()
    }

    /// What can be checked without reading files: identity, key presence, trust mode, the
    /// gateway URL on the right side of `policy`, channels, timeout and quit URL.
    pub fn validate(&self, policy: EndpointPolicy) -> Result<(), SettingError> {
        non_empty("app_id", &self.app_id)?;
        non_empty("seller_id", &self.seller_id)?;
        self.private_key_source().check_exactly_one()?;
        if !self.certificate_mode() {
            self.public_key_source().check_exactly_one()?;
        } else if self.app_cert_file.is_none() || self.alipay_root_cert_file.is_none() {
            return Err(SettingError::new(
                "alipay_cert_file",
                "certificate mode needs app_cert_file, alipay_cert_file and alipay_root_cert_file",
            ));
        }
        policy.check("gateway_url", self.gateway_url.as_deref(), true)?;
        check_channels("channels", ProviderKind::ALIPAY, &CHANNELS, &self.channels)?;
        if self.request_timeout_ms == Some(0) {
            return Err(SettingError::new(
                "request_timeout_ms",
                "must be at least 1",
            ));
        }
        if let Some(url) = &self.quit_url {
            check_url("quit_url", url)?;
        }
        Ok(())
    }

    /// Reads the keys and builds the provider's config. Call [`AlipayAppSettings::validate`]
    /// first; this reads files and so may fail on its own.
    pub fn to_config(&self) -> Result<AlipayConfig, SettingError> {
        let app_private_key = self.private_key_source().read()?;
        let trust = match (
            &self.app_cert_file,
            &self.alipay_cert_file,
            &self.alipay_root_cert_file,
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
                alipay_public_key: self.public_key_source().read_value()?,
            },
        };
        let timeout_ms = self
            .request_timeout_ms
            .unwrap_or(DEFAULT_REQUEST_TIMEOUT_MS);
        Ok(AlipayConfig {
            app_id: self.app_id.clone(),
            seller_id: self.seller_id.clone(),
            app_private_key,
            trust,
            gateway_url: self
                .gateway_url
                .clone()
                .unwrap_or_else(|| DEFAULT_GATEWAY_URL.to_owned()),
            timeout_secs: timeout_ms.div_ceil(1000).max(1),
            channels: self.channels.clone().unwrap_or_else(|| CHANNELS.to_vec()),
            wap_quit_url: self.quit_url.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn from_toml(text: &str) -> AlipayAppSettings {
        toml::from_str(text).expect("settings parse")
    }

    #[test]
    fn every_documented_key_reaches_the_provider_config() {
        let dir =
            std::env::temp_dir().join(format!("paygate-alipay-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("app.key"), "PRIVATE\n").expect("write");
        let settings = from_toml(&format!(
            r#"
            app_id = "2021000000000001"
            seller_id = "2088000000000001"
            app_private_key_file = "{key}"
            alipay_public_key = "PUBLIC"
            gateway_url = "http://127.0.0.1:9100/gateway.do"
            channels = ["app", "wap"]
            request_timeout_ms = 2500
            quit_url = "https://shop.example/cart"
            "#,
            key = dir.join("app.key").display(),
        ));
        settings.validate(EndpointPolicy::Sandbox).expect("valid");
        let config = settings.to_config().expect("config");
        assert_eq!(config.app_id, "2021000000000001");
        assert_eq!(config.seller_id, "2088000000000001");
        assert_eq!(config.app_private_key.expose_secret(), "PRIVATE");
        assert!(matches!(
            &config.trust,
            AlipayTrust::PublicKey { alipay_public_key } if alipay_public_key == "PUBLIC"
        ));
        assert_eq!(config.gateway_url, "http://127.0.0.1:9100/gateway.do");
        assert_eq!(config.channels, vec![Channel::App, Channel::Wap]);
        assert_eq!(config.timeout_secs, 3);
        assert_eq!(
            config.wap_quit_url.as_deref(),
            Some("https://shop.example/cart")
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn certificate_mode_takes_the_three_files() {
        let settings = from_toml(
            r#"
            app_id = "2021"
            seller_id = "2088"
            app_private_key = "PRIVATE"
            app_cert_file = "/certs/app.crt"
            alipay_cert_file = "/certs/alipay.crt"
            alipay_root_cert_file = "/certs/root.crt"
            "#,
        );
        settings
            .validate(EndpointPolicy::Production)
            .expect("valid");
        let config = settings.to_config().expect("config");
        assert!(matches!(
            &config.trust,
            AlipayTrust::Certificate { alipay_root_cert: CertSource::Path { path }, .. }
                if path.ends_with("root.crt")
        ));
        assert_eq!(config.gateway_url, DEFAULT_GATEWAY_URL);
        assert_eq!(config.timeout_secs, 10);
        assert_eq!(config.channels, CHANNELS.to_vec());
    }

    #[test]
    fn refusals_name_the_key_at_fault() {
        let base = "app_id = \"2021\"\nseller_id = \"2088\"\ngateway_url = \"http://127.0.0.1:1/gateway.do\"\n";
        let refused = |extra: &str| {
            from_toml(&format!("{base}{extra}"))
                .validate(EndpointPolicy::Sandbox)
                .expect_err("refused")
                .key
        };
        assert_eq!(refused("alipay_public_key = \"P\""), "app_private_key");
        assert_eq!(refused("app_private_key = \"K\""), "alipay_public_key");
        assert_eq!(
            refused("app_private_key = \"K\"\nalipay_cert_file = \"/a.crt\""),
            "alipay_cert_file"
        );
        assert_eq!(
            refused("app_private_key = \"K\"\nalipay_public_key = \"P\"\nchannels = [\"jsapi\"]"),
            "channels"
        );
        assert_eq!(
            refused("app_private_key = \"K\"\nalipay_public_key = \"P\"\nquit_url = \"cart\""),
            "quit_url"
        );
        assert_eq!(
            refused("app_private_key = \"K\"\nalipay_public_key = \"P\"\nrequest_timeout_ms = 0"),
            "request_timeout_ms"
        );
        let production = from_toml(
            "app_id = \"2021\"\nseller_id = \"2088\"\napp_private_key = \"K\"\nalipay_public_key = \"P\"\ngateway_url = \"http://127.0.0.1:1/gateway.do\"",
        );
        assert_eq!(
            production
                .validate(EndpointPolicy::Production)
                .expect_err("simulator in production")
                .key,
            "gateway_url"
        );
    }
}
