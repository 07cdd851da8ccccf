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

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

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
    /// APIv3 material (same appid and mch_id as v2, as a real merchant holds both); absent in
    /// keys files written before APIv3, then generated on load and written back.
    #[serde(default)]
    pub(crate) wechat_v3: Option<V3Keys>,
}

/// The APIv3 secrets of the sandbox's WeChat merchant and of its simulated WeChat Pay.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct V3Keys {
    /// The merchant API certificate (RSA-2048, PEM) whose serial goes in `Authorization`.
    pub(crate) merchant_cert_pem: String,
    /// Its private key (PKCS#8 PEM).
    pub(crate) merchant_key_pem: String,
    /// The 32-character APIv3 key.
    pub(crate) apiv3_key: String,
    /// The WeChat Pay public key id, `PUB_KEY_ID_` + 34 digits.
    pub(crate) public_key_id: String,
    /// The sandbox's "WeChat Pay" private key (PKCS#8 PEM) behind that public key id.
    pub(crate) wechatpay_key_pem: String,
    /// The first platform certificate (PEM); rotations add more at run time.
    pub(crate) platform_cert_pem: String,
    /// Its private key (PKCS#8 PEM).
    pub(crate) platform_key_pem: String,
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

/// A fresh RSA-2048 private key as PKCS#8 PEM (the form `apiclient_key.pem` has).
pub(crate) fn rsa_key_pem() -> Result<String, SandboxError> {
    let der = BASE64
        .decode(generate_private_key()?)
        .map_err(|_| SandboxError::Key(crate::alipay_keys::KeyError::Generation))?;
    Ok(pem_block("PRIVATE KEY", &der))
}

/// `der` as a PEM block with 64-character lines.
pub(crate) fn pem_block(label: &str, der: &[u8]) -> String {
    let text = BASE64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in text.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A self-signed RSA certificate for `key_pem` with a random 40-hex-digit serial (the shape
/// of WeChat's merchant and platform certificate serials), valid from last year for five.
pub(crate) fn rsa_certificate(key_pem: &str, common_name: &str) -> Result<String, SandboxError> {
    use chrono::Datelike as _;
    let certificate_error = |e: rcgen::Error| SandboxError::Certificate(e.to_string());
    let key = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(key_pem, &rcgen::PKCS_RSA_SHA256)
        .map_err(certificate_error)?;
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(certificate_error)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let mut serial: [u8; 20] = rand::rng().random();
    // A positive INTEGER without a leading zero byte: exactly 40 hex digits.
    serial[0] = 0x10 + serial[0] % 0x70;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let year = chrono::Utc::now().year();
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 4, 1, 1);
    Ok(params.self_signed(&key).map_err(certificate_error)?.pem())
}

/// Runs the key generations `jobs` on their own threads (key generation, a random prime
/// search of 50–150 ms per RSA-2048 key here, is most of a fresh `paygate serve`'s cold start).
fn generate_concurrently<const N: usize>(
    jobs: [fn() -> Result<String, SandboxError>; N],
) -> Result<[String; N], SandboxError> {
    let results = std::thread::scope(|scope| {
        let handles = jobs.map(|job| scope.spawn(job));
        handles.map(|handle| {
            handle.join().unwrap_or(Err(SandboxError::Key(
                crate::alipay_keys::KeyError::Generation,
            )))
        })
    });
    let mut keys: [String; N] = std::array::from_fn(|_| String::new());
    for (slot, result) in keys.iter_mut().zip(results) {
        *slot = result?;
    }
    Ok(keys)
}

/// A fresh Alipay-form key (bare base64 PKCS#8), as a generation job.
fn alipay_key() -> Result<String, SandboxError> {
    generate_private_key().map_err(SandboxError::from)
}

impl V3Keys {
    /// Fresh APIv3 material around two RSA keys (PKCS#8 PEM): the merchant's, and the
    /// simulated WeChat Pay's, which signs as the public key and as the first platform
    /// certificate (one key behind two ids saves a key generation at every fresh start;
    /// a rotation makes a certificate with a key of its own).
    fn from_keys(
        mch_id: &str,
        merchant: String,
        wechatpay: String,
    ) -> Result<V3Keys, SandboxError> {
        Ok(V3Keys {
            merchant_cert_pem: rsa_certificate(&merchant, &format!("{mch_id} sandbox merchant"))?,
            merchant_key_pem: merchant,
            apiv3_key: random_text(32),
            public_key_id: format!("PUB_KEY_ID_01{}", random_digits(32)),
            platform_cert_pem: rsa_certificate(&wechatpay, "WeChat Pay sandbox platform")?,
            platform_key_pem: wechatpay.clone(),
            wechatpay_key_pem: wechatpay,
        })
    }

    /// Fresh APIv3 material, its two keys made concurrently.
    fn generate(mch_id: &str) -> Result<V3Keys, SandboxError> {
        let [merchant, wechatpay] = generate_concurrently([rsa_key_pem, rsa_key_pem])?;
        V3Keys::from_keys(mch_id, merchant, wechatpay)
    }
}

impl SandboxKeys {
    /// Fills in what older keys files lack, so they keep working; true when it added any.
    fn complete(mut self) -> Result<(SandboxKeys, bool), SandboxError> {
        let mut added = false;
        if self.wechat_cert_pem.is_empty() || self.wechat_cert_key_pem.is_empty() {
            let (cert, key) = merchant_certificate(&self.wechat_mch_id)?;
            self.wechat_cert_pem = cert;
            self.wechat_cert_key_pem = key;
            added = true;
        }
        if self.wechat_v3.is_none() {
            self.wechat_v3 = Some(V3Keys::generate(&self.wechat_mch_id)?);
            added = true;
        }
        Ok((self, added))
    }

    /// Fresh identities: `wx…` appid, 10-digit mch_id, 32-char API key, 2021… app_id, 2088… seller,
    /// and the APIv3 material; the four RSA keys are made concurrently.
    pub(crate) fn generate() -> Result<SandboxKeys, SandboxError> {
        let [app_key, platform_key, v3_merchant, wechatpay] =
            generate_concurrently([alipay_key, alipay_key, rsa_key_pem, rsa_key_pem])?;
        let wechat_mch_id = format!("1{}", random_digits(9));
        let wechat_v3 = V3Keys::from_keys(&wechat_mch_id, v3_merchant, wechatpay)?;
        SandboxKeys {
            wechat_appid: format!("wx{}", hex::encode(rand::rng().random::<[u8; 8]>())),
            wechat_mch_id,
            wechat_cert_pem: String::new(),
            wechat_cert_key_pem: String::new(),
            wechat_api_key: random_text(32),
            wechat_app_secret: hex::encode(rand::rng().random::<[u8; 16]>()),
            alipay_app_id: format!("2021{}", random_digits(12)),
            alipay_seller_id: format!("2088{}", random_digits(12)),
            alipay_app_private_key: app_key,
            alipay_platform_private_key: platform_key,
            wechat_v3: Some(wechat_v3),
        }
        .complete()
        .map(|(keys, _)| keys)
    }

    /// Loads the keys file, or generates keys and writes it when it does not exist.
    pub(crate) fn load_or_create(path: &Path) -> Result<SandboxKeys, SandboxError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let (keys, added) = serde_json::from_str::<SandboxKeys>(&text)
                    .map_err(|source| SandboxError::KeysFile {
                        path: path.to_owned(),
                        reason: source.to_string(),
                    })?
                    .complete()?;
                if added {
                    // Written back so the next start (and a gateway configured from it) keeps
                    // the keys just generated.
                    keys.save(path, true)?;
                }
                Ok(keys)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let keys = SandboxKeys::generate()?;
                keys.save(path, false)?;
                Ok(keys)
            }
            Err(e) => Err(SandboxError::KeysFile {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
        }
    }
}

impl SandboxKeys {
    /// Writes the keys file (private to its owner); `replace` overwrites an existing one.
    fn save(&self, path: &Path, replace: bool) -> Result<(), SandboxError> {
        let failed = |reason: String| SandboxError::KeysFile {
            path: path.to_owned(),
            reason,
        };
        let text = serde_json::to_string_pretty(self).map_err(|e| failed(e.to_string()))?;
        if replace {
            let temporary = path.with_extension("json.tmp");
            let _ = std::fs::remove_file(&temporary);
            write_private_file(&temporary, &text).map_err(|e| failed(e.to_string()))?;
            std::fs::rename(&temporary, path).map_err(|e| failed(e.to_string()))
        } else {
            write_private_file(path, &text).map_err(|e| failed(e.to_string()))
        }
    }

    /// The APIv3 material; always present after [`SandboxKeys::complete`].
    pub(crate) fn v3(&self) -> Result<&V3Keys, SandboxError> {
        self.wechat_v3
            .as_ref()
            .ok_or_else(|| SandboxError::Certificate("APIv3 keys missing".into()))
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

/// The sandbox's WeChat merchant as an APIv3 merchant (the same appid and mchid as v2), with
/// the simulated WeChat Pay's verification keys in both modes.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct WechatV3Credentials {
    /// The appid orders are placed under.
    pub appid: String,
    /// The merchant id.
    pub mchid: String,
    /// The merchant API certificate serial (`Authorization serial_no`), 40 upper-case hex digits.
    pub merchant_serial_no: String,
    /// The merchant API certificate (RSA-2048, PEM).
    pub merchant_certificate_pem: String,
    /// The merchant API private key (PKCS#8 PEM, secret).
    pub merchant_private_key_pem: String,
    /// The 32-character APIv3 key (secret).
    pub apiv3_key: String,
    /// The WeChat Pay public key id (`PUB_KEY_ID_…`).
    pub public_key_id: String,
    /// The WeChat Pay public key (SPKI PEM).
    pub public_key_pem: String,
    /// The serial of the platform certificate the sandbox starts with (`/v3/certificates`
    /// lists it and any rotated in later).
    pub platform_certificate_serial: String,
    /// Base of the pay API (`{api_base}/v3/pay/transactions/jsapi`).
    pub api_base: String,
}

impl fmt::Debug for WechatV3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WechatV3Credentials")
            .field("appid", &self.appid)
            .field("mchid", &self.mchid)
            .field("merchant_serial_no", &self.merchant_serial_no)
            .field("merchant_private_key_pem", &"[redacted]")
            .field("apiv3_key", &"[redacted]")
            .field("public_key_id", &self.public_key_id)
            .field(
                "platform_certificate_serial",
                &self.platform_certificate_serial,
            )
            .field("api_base", &self.api_base)
            .finish_non_exhaustive()
    }
}

/// Everything a merchant (the gateway, a test) needs to talk to this sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxCredentials {
    /// The WeChat merchant.
    pub wechat: WechatCredentials,
    /// The same WeChat merchant through APIv3.
    #[serde(default)]
    pub wechat_v3: WechatV3Credentials,
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
        let v3 = keys.v3()?;
        let serial_of = |pem: &str| {
            paygate_wechat_v3::keys::CertificateInfo::from_pem(pem)
                .map(|c| c.serial)
                .map_err(|e| SandboxError::Certificate(e.to_string()))
        };
        let wechatpay_key = BASE64
            .encode(pem_contents(&v3.wechatpay_key_pem).ok_or_else(|| {
                SandboxError::Certificate("the WeChat Pay key is not PEM".into())
            })?);
        Ok(SandboxCredentials {
            wechat_v3: WechatV3Credentials {
                appid: keys.wechat_appid.clone(),
                mchid: keys.wechat_mch_id.clone(),
                merchant_serial_no: serial_of(&v3.merchant_cert_pem)?,
                merchant_certificate_pem: v3.merchant_cert_pem.clone(),
                merchant_private_key_pem: v3.merchant_key_pem.clone(),
                apiv3_key: v3.apiv3_key.clone(),
                public_key_id: v3.public_key_id.clone(),
                public_key_pem: pem_block(
                    "PUBLIC KEY",
                    &BASE64
                        .decode(public_key_of(&wechatpay_key)?)
                        .map_err(|_| SandboxError::Certificate("public key".into()))?,
                ),
                platform_certificate_serial: serial_of(&v3.platform_cert_pem)?,
                api_base: base_url.to_owned(),
            },
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

/// The base64 body of a PEM block, joined.
pub(crate) fn pem_contents(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .map(str::trim)
        .collect();
    BASE64.decode(body).ok()
}

impl SandboxCredentials {
    /// The APIv3 merchant as a gateway `[wechat.<app_name>]` table with `api = "v3"`, in
    /// public-key mode with platform certificates on too (the migration setting, so both key
    /// modes are exercised), serving every channel. Separate from [`Self::export_toml`] so a
    /// config made from that keeps one WeChat app, which orders need not name. It contains
    /// secrets.
    pub fn export_v3_toml(&self, app_name: &str) -> String {
        let w = &self.wechat_v3;
        let mut out = format!("[wechat.{app_name}]\napi = \"v3\"\n");
        for (key, value) in [
            ("appid", &w.appid),
            ("mchid", &w.mchid),
            ("merchant_serial_no", &w.merchant_serial_no),
            ("merchant_certificate", &w.merchant_certificate_pem),
            ("private_key", &w.merchant_private_key_pem),
            ("apiv3_key", &w.apiv3_key),
            ("public_key_id", &w.public_key_id),
            ("public_key", &w.public_key_pem),
            ("api_base", &w.api_base),
        ] {
            out.push_str(&format!("{key} = {}\n", toml_string(value)));
        }
        out.push_str("platform_certificates = true\n");
        out.push_str(
            "channels = [\"mini_program\", \"jsapi\", \"app\", \"native\", \"h5\"]\n\
             h5_info = { type = \"Wap\", app_name = \"paygate sandbox\", app_url = \"http://127.0.0.1\" }\n",
        );
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
    /// The APIv3 side of the WeChat merchant and of WeChat Pay.
    pub(crate) v3: crate::v3_keys::V3ServerKeys,
}

impl ServerKeys {
    pub(crate) fn new(keys: SandboxKeys) -> Result<ServerKeys, SandboxError> {
        let (_, app_public) = key_pair(&keys.alipay_app_private_key)?;
        let (platform_signer, _) = key_pair(&keys.alipay_platform_private_key)?;
        let v3 =
            crate::v3_keys::V3ServerKeys::new(keys.v3()?, &keys.wechat_appid, &keys.wechat_mch_id)?;
        Ok(ServerKeys {
            v3,
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
        let v3 = keys.v3().unwrap();
        assert!(!debug.contains(&v3.apiv3_key));
        assert!(!debug.contains(&credentials.wechat_v3.merchant_private_key_pem));
        assert!(debug.contains(&v3.public_key_id));
    }

    #[test]
    fn the_v3_merchant_has_wechat_shaped_serials_and_keys() {
        let keys = SandboxKeys::generate().unwrap();
        let credentials = SandboxCredentials::new(&keys, "http://127.0.0.1:1").unwrap();
        let v3 = &credentials.wechat_v3;
        for serial in [&v3.merchant_serial_no, &v3.platform_certificate_serial] {
            assert_eq!(serial.len(), 40, "{serial}");
            assert!(
                serial
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
            );
        }
        assert_ne!(v3.merchant_serial_no, v3.platform_certificate_serial);
        assert_eq!(v3.apiv3_key.len(), 32);
        assert!(paygate_wechat_v3::verify::is_public_key_id(
            &v3.public_key_id
        ));
        assert_eq!(v3.public_key_id.len(), "PUB_KEY_ID_".len() + 34);
        assert_eq!(
            (v3.appid.as_str(), v3.mchid.as_str()),
            (keys.wechat_appid.as_str(), keys.wechat_mch_id.as_str())
        );
        assert!(paygate_wechat_v3::keys::VerifyingKey::from_pem(&v3.public_key_pem).is_ok());
    }

    #[test]
    fn a_keys_file_from_before_apiv3_gains_v3_keys_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let mut old = serde_json::to_value(SandboxKeys::generate().unwrap()).unwrap();
        old.as_object_mut().unwrap().remove("wechat_v3");
        std::fs::write(&path, old.to_string()).unwrap();
        let first = SandboxKeys::load_or_create(&path).unwrap();
        let second = SandboxKeys::load_or_create(&path).unwrap();
        assert_eq!(
            first.v3().unwrap().apiv3_key,
            second.v3().unwrap().apiv3_key,
            "written back, not made anew each start"
        );
        assert_eq!(
            first.wechat_api_key,
            old["wechat_api_key"].as_str().unwrap()
        );
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
