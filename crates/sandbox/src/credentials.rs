//! The sandbox's merchant identities and keys: one WeChat merchant, one Alipay app. Generated
//! at start or loaded from a JSON keys file (created when missing, so a restart keeps every
//! key and a gateway configured once keeps working).

use std::fmt;
use std::path::Path;

use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};

use paygate_alipay::keys::{SigningKey, VerifyingKey};
use paygate_wechat::sign::ApiKey;

use crate::alipay_keys::{generate_private_key, key_pair, public_key_of};
use crate::error::SandboxError;

/// The secret material that survives restarts; URLs are not here because the port may change.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct SandboxKeys {
    pub(crate) wechat_appid: String,
    pub(crate) wechat_mch_id: String,
    pub(crate) wechat_api_key: String,
    pub(crate) wechat_app_secret: String,
    /// The merchant API certificate (PEM) a WeChat client presents on `secapi` calls; absent
    /// in keys files written before it existed, then generated on load.
    #[serde(default)]
    pub(crate) wechat_cert_pem: String,
    /// Its private key (PEM, PKCS#8).
    #[serde(default)]
    pub(crate) wechat_cert_key_pem: String,
    pub(crate) alipay_app_id: String,
    pub(crate) alipay_seller_id: String,
    /// The merchant app's private key (bare base64 PKCS#8): handed to the gateway.
    pub(crate) alipay_app_private_key: String,
    /// The sandbox's own "Alipay" private key (bare base64 PKCS#8): signs responses/notifies.
    pub(crate) alipay_platform_private_key: String,
}

fn random_text(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn random_digits(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

/// A self-signed merchant API certificate and its key, both PEM. The sandbox serves plain
/// HTTP, so the certificate only has to be loadable by the merchant's mutual-TLS client.
fn merchant_certificate(mch_id: &str) -> Result<(String, String), SandboxError> {
    let certified = rcgen::generate_simple_self_signed(vec![format!("{mch_id}.sandbox.paygate")])
        .map_err(|e| SandboxError::Certificate(e.to_string()))?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}

/// Writes a file only its owner can read: it holds the API key and private keys.
fn write_private_file(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

impl SandboxKeys {
    /// Fills in what older keys files lack, so they keep working.
    fn complete(mut self) -> Result<SandboxKeys, SandboxError> {
        if self.wechat_cert_pem.is_empty() || self.wechat_cert_key_pem.is_empty() {
            let (cert, key) = merchant_certificate(&self.wechat_mch_id)?;
            self.wechat_cert_pem = cert;
            self.wechat_cert_key_pem = key;
        }
        Ok(self)
    }

    /// Fresh identities: `wx…` appid, 10-digit mch_id, 32-char API key, 2021… app_id, 2088… seller.
    pub(crate) fn generate() -> Result<SandboxKeys, SandboxError> {
        // The two RSA-2048 keys are most of a fresh `paygate serve`'s cold start (a random
        // prime search, 50–150 ms each here); one is made on a second thread, beside the other.
        let (app_key, platform_key) = std::thread::scope(|scope| {
            let platform = scope.spawn(generate_private_key);
            let app = generate_private_key();
            let platform = platform
                .join()
                .unwrap_or(Err(crate::alipay_keys::KeyError::Generation));
            (app, platform)
        });
        SandboxKeys {
            wechat_appid: format!("wx{}", hex::encode(rand::rng().random::<[u8; 8]>())),
            wechat_mch_id: format!("1{}", random_digits(9)),
            wechat_cert_pem: String::new(),
            wechat_cert_key_pem: String::new(),
            wechat_api_key: random_text(32),
            wechat_app_secret: hex::encode(rand::rng().random::<[u8; 16]>()),
            alipay_app_id: format!("2021{}", random_digits(12)),
            alipay_seller_id: format!("2088{}", random_digits(12)),
            alipay_app_private_key: app_key?,
            alipay_platform_private_key: platform_key?,
        }
        .complete()
    }

    /// Loads the keys file, or generates keys and writes it when it does not exist.
    pub(crate) fn load_or_create(path: &Path) -> Result<SandboxKeys, SandboxError> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str::<SandboxKeys>(&text)
                .map_err(|source| SandboxError::KeysFile {
                    path: path.to_owned(),
                    reason: source.to_string(),
                })?
                .complete(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let keys = SandboxKeys::generate()?;
                let text = serde_json::to_string_pretty(&keys).map_err(|source| {
                    SandboxError::KeysFile {
                        path: path.to_owned(),
                        reason: source.to_string(),
                    }
                })?;
                write_private_file(path, &text).map_err(|source| SandboxError::KeysFile {
                    path: path.to_owned(),
                    reason: source.to_string(),
                })?;
                Ok(keys)
            }
            Err(e) => Err(SandboxError::KeysFile {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
        }
    }
}

/// The WeChat merchant the sandbox knows, with the URLs a client must call.
#[derive(Clone, Serialize, Deserialize)]
pub struct WechatCredentials {
    /// The appid (Official Account / mini-program / app), bound to `mch_id`.
    pub appid: String,
    /// The merchant number.
    pub mch_id: String,
    /// The 32-character v2 API key (secret).
    pub api_key: String,
    /// The AppSecret for jscode2session / oauth2 / cgi-bin token (secret).
    pub app_secret: String,
    /// Base of the pay API (`{api_base}/pay/unifiedorder`).
    pub api_base: String,
    /// Base of the login/OAuth API (`{login_base}/sns/jscode2session`).
    pub login_base: String,
    /// Base of the official-account OAuth authorize page (`{oauth_base}/connect/oauth2/authorize`).
    pub oauth_base: String,
    /// The merchant API certificate (PEM) for refunds; the sandbox does not check it over
    /// plain HTTP, but a client that insists on one can load it.
    pub merchant_cert_pem: String,
    /// Its private key (PEM, secret).
    pub merchant_key_pem: String,
}

impl fmt::Debug for WechatCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WechatCredentials")
            .field("appid", &self.appid)
            .field("mch_id", &self.mch_id)
            .field("api_key", &"[redacted]")
            .field("app_secret", &"[redacted]")
            .field("api_base", &self.api_base)
            .field("login_base", &self.login_base)
            .field("oauth_base", &self.oauth_base)
            .field("merchant_key_pem", &"[redacted]")
            .finish()
    }
}

/// The Alipay app the sandbox knows, with its keys and gateway URL.
#[derive(Clone, Serialize, Deserialize)]
pub struct AlipayCredentials {
    /// The app's APPID.
    pub app_id: String,
    /// The seller (partner) id, 2088….
    pub seller_id: String,
    /// The app private key, bare base64 PKCS#8 (secret): what the merchant signs requests with.
    pub app_private_key: String,
    /// The app public key, bare base64 SPKI: what the sandbox verifies requests with.
    pub app_public_key: String,
    /// The sandbox's "Alipay public key", bare base64 SPKI: what the merchant verifies
    /// responses and notifies with.
    pub alipay_public_key: String,
    /// The `gateway.do` URL.
    pub gateway_url: String,
}

impl fmt::Debug for AlipayCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlipayCredentials")
            .field("app_id", &self.app_id)
            .field("seller_id", &self.seller_id)
            .field("app_private_key", &"[redacted]")
            .field("app_public_key", &self.app_public_key)
            .field("alipay_public_key", &self.alipay_public_key)
            .field("gateway_url", &self.gateway_url)
            .finish()
    }
}

/// Everything a merchant (the gateway, a test) needs to talk to this sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxCredentials {
    /// The WeChat merchant.
    pub wechat: WechatCredentials,
    /// The Alipay app.
    pub alipay: AlipayCredentials,
}

/// Quotes a value as a TOML basic string.
fn toml_string(value: &str) -> String {
    // JSON string escaping is a subset TOML basic strings accept (\" \\ \n \uXXXX).
    serde_json::Value::String(value.to_owned()).to_string()
}

impl SandboxCredentials {
    pub(crate) fn new(
        keys: &SandboxKeys,
        base_url: &str,
    ) -> Result<SandboxCredentials, SandboxError> {
        Ok(SandboxCredentials {
            wechat: WechatCredentials {
                appid: keys.wechat_appid.clone(),
                mch_id: keys.wechat_mch_id.clone(),
                api_key: keys.wechat_api_key.clone(),
                app_secret: keys.wechat_app_secret.clone(),
                api_base: base_url.to_owned(),
                login_base: base_url.to_owned(),
                oauth_base: base_url.to_owned(),
                merchant_cert_pem: keys.wechat_cert_pem.clone(),
                merchant_key_pem: keys.wechat_cert_key_pem.clone(),
            },
            alipay: AlipayCredentials {
                app_id: keys.alipay_app_id.clone(),
                seller_id: keys.alipay_seller_id.clone(),
                app_private_key: keys.alipay_app_private_key.clone(),
                app_public_key: public_key_of(&keys.alipay_app_private_key)?,
                alipay_public_key: public_key_of(&keys.alipay_platform_private_key)?,
                gateway_url: format!("{base_url}/gateway.do"),
            },
        })
    }

    /// A TOML snippet in the gateway's config shape (`[wechat.<app_name>]`,
    /// `[alipay.<app_name>]`), so the gateway can be pointed at this sandbox with no key work.
    /// It contains secrets: write it to a file with restricted permissions.
    pub fn export_toml(&self, app_name: &str) -> String {
        let w = &self.wechat;
        let a = &self.alipay;
        let mut out = String::new();
        out.push_str(&format!("[wechat.{app_name}]\n"));
        for (key, value) in [
            ("appid", &w.appid),
            ("mch_id", &w.mch_id),
            ("api_key", &w.api_key),
            ("sign_type", &"HMAC-SHA256".to_owned()),
            ("api_base", &w.api_base),
            ("login_base", &w.login_base),
            ("oauth_base", &w.oauth_base),
            ("app_secret", &w.app_secret),
        ] {
            out.push_str(&format!("{key} = {}\n", toml_string(value)));
        }
        // The merchant API certificate, inline, for refunds (the gateway also takes files).
        out.push_str(&format!(
            "cert_pem = {}\n",
            toml_string(&w.merchant_cert_pem)
        ));
        out.push_str(&format!("key_pem = {}\n", toml_string(&w.merchant_key_pem)));
        out.push_str(&format!("\n[alipay.{app_name}]\n"));
        for (key, value) in [
            ("app_id", &a.app_id),
            ("seller_id", &a.seller_id),
            ("app_private_key", &a.app_private_key),
            ("alipay_public_key", &a.alipay_public_key),
            ("gateway_url", &a.gateway_url),
        ] {
            out.push_str(&format!("{key} = {}\n", toml_string(value)));
        }
        out
    }
}

/// The keys the server uses at run time, parsed once.
pub(crate) struct ServerKeys {
    pub(crate) keys: SandboxKeys,
    /// The WeChat merchant's v2 API key.
    pub(crate) wechat_api_key: ApiKey,
    /// Verifies the merchant app's Alipay requests.
    pub(crate) app_public: VerifyingKey,
    /// Signs Alipay responses and notifies as "Alipay".
    pub(crate) platform_signer: SigningKey,
}

impl ServerKeys {
    pub(crate) fn new(keys: SandboxKeys) -> Result<ServerKeys, SandboxError> {
        let (_, app_public) = key_pair(&keys.alipay_app_private_key)?;
        let (platform_signer, _) = key_pair(&keys.alipay_platform_private_key)?;
        Ok(ServerKeys {
            wechat_api_key: ApiKey::new(keys.wechat_api_key.clone()),
            keys,
            app_public,
            platform_signer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_secrets() {
        let keys = SandboxKeys::generate().unwrap();
        let credentials = SandboxCredentials::new(&keys, "http://127.0.0.1:1").unwrap();
        let debug = format!("{credentials:?}");
        assert!(!debug.contains(&keys.wechat_api_key));
        assert!(!debug.contains(&keys.wechat_app_secret));
        assert!(!debug.contains(&keys.alipay_app_private_key));
    }

    #[test]
    fn the_keys_file_is_created_once_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let first = SandboxKeys::load_or_create(&path).unwrap();
        let second = SandboxKeys::load_or_create(&path).unwrap();
        assert_eq!(first.wechat_api_key, second.wechat_api_key);
        assert_eq!(first.alipay_app_private_key, second.alipay_app_private_key);
        assert_eq!(first.wechat_api_key.len(), 32);
        assert!(first.alipay_seller_id.starts_with("2088"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the keys file is private to its owner");
        }
    }
}
