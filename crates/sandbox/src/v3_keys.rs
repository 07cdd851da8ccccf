//! The simulated WeChat Pay's APIv3 keys at run time: the merchant's certificate key (to check
//! `Authorization`), the APIv3 key (to seal notifies and the certificate list), and the keys
//! WeChat Pay signs with — its public key (`PUB_KEY_ID_…`) and its platform certificates,
//! newest last, to which a rotation adds one.
//!
//! The checking, signing and sealing themselves are `paygate_wechat_v3::peer`'s, so the
//! sandbox and the merchant crate cannot drift apart.

use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use paygate_wechat_v3::aead::ApiV3Key;
use paygate_wechat_v3::keys::{CertificateInfo, MerchantKey, VerifyingKey};
use paygate_wechat_v3::peer::{self, ListedCertificate, RequestAuthError, RequestingMerchant};
use serde::{Deserialize, Serialize};

use crate::credentials::{V3Keys, rsa_certificate, rsa_key_pem};
use crate::error::SandboxError;

/// Which of its keys the simulated WeChat Pay signs notifies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum V3NotifySigner {
    /// The WeChat Pay public key (`Wechatpay-Serial: PUB_KEY_ID_…`), what new merchants get.
    #[default]
    PublicKey,
    /// The newest platform certificate (`Wechatpay-Serial:` its serial).
    Certificate,
}

/// One platform certificate the sandbox holds, with the key that signs under it.
pub(crate) struct PlatformCertificate {
    pub(crate) serial: String,
    pub(crate) pem: String,
    pub(crate) key: Arc<MerchantKey>,
    pub(crate) not_before: DateTime<Utc>,
    pub(crate) not_after: DateTime<Utc>,
}

impl PlatformCertificate {
    fn new(cert_pem: &str, key_pem: &str) -> Result<PlatformCertificate, SandboxError> {
        let info = CertificateInfo::from_pem(cert_pem)
            .map_err(|e| SandboxError::Certificate(e.to_string()))?;
        let key =
            MerchantKey::from_pem(key_pem).map_err(|e| SandboxError::Certificate(e.to_string()))?;
        Ok(PlatformCertificate {
            serial: info.serial,
            pem: cert_pem.to_owned(),
            key: Arc::new(key),
            not_before: info.not_before,
            not_after: info.not_after,
        })
    }
}

/// A key to sign one answer or notify with, and the `Wechatpay-Serial` it goes under.
pub(crate) struct Signer {
    pub(crate) serial: String,
    pub(crate) key: Arc<MerchantKey>,
}

/// The APIv3 keys, parsed once at start.
pub(crate) struct V3ServerKeys {
    pub(crate) mchid: String,
    pub(crate) appid: String,
    merchant_serial: String,
    merchant_key: VerifyingKey,
    pub(crate) apiv3_key: ApiV3Key,
    pub(crate) public_key_id: String,
    public_key_signer: Arc<MerchantKey>,
    platform: RwLock<Vec<PlatformCertificate>>,
    notify_signer: Mutex<V3NotifySigner>,
}

impl V3ServerKeys {
    pub(crate) fn new(
        keys: &V3Keys,
        appid: &str,
        mchid: &str,
    ) -> Result<V3ServerKeys, SandboxError> {
        let key_error = |e: paygate_wechat_v3::keys::KeyError| {
            SandboxError::Certificate(format!("APIv3 key: {e}"))
        };
        let merchant = CertificateInfo::from_pem(&keys.merchant_cert_pem).map_err(key_error)?;
        Ok(V3ServerKeys {
            mchid: mchid.to_owned(),
            appid: appid.to_owned(),
            merchant_serial: merchant.serial.clone(),
            merchant_key: merchant.verifying_key().map_err(key_error)?,
            apiv3_key: ApiV3Key::new(&keys.apiv3_key)
                .map_err(|e| SandboxError::Certificate(e.to_string()))?,
            public_key_id: keys.public_key_id.clone(),
            public_key_signer: Arc::new(
                MerchantKey::from_pem(&keys.wechatpay_key_pem).map_err(key_error)?,
            ),
            platform: RwLock::new(vec![PlatformCertificate::new(
                &keys.platform_cert_pem,
                &keys.platform_key_pem,
            )?]),
            notify_signer: Mutex::new(V3NotifySigner::default()),
        })
    }

    /// Checks a request's `Authorization` as WeChat does.
    pub(crate) fn check_request(
        &self,
        authorization: Option<&str>,
        method: &str,
        target: &str,
        body: &[u8],
    ) -> Result<(), RequestAuthError> {
        peer::check_request(
            authorization,
            method,
            target,
            body,
            &RequestingMerchant {
                mchid: &self.mchid,
                serial_no: &self.merchant_serial,
                public_key: &self.merchant_key,
            },
            Utc::now().timestamp(),
        )
    }

    fn platform(&self) -> std::sync::RwLockReadGuard<'_, Vec<PlatformCertificate>> {
        self.platform.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The public-key signer.
    pub(crate) fn public_key(&self) -> Signer {
        Signer {
            serial: self.public_key_id.clone(),
            key: Arc::clone(&self.public_key_signer),
        }
    }

    /// The newest platform certificate's signer.
    pub(crate) fn newest_certificate(&self) -> Option<Signer> {
        self.platform().last().map(|c| Signer {
            serial: c.serial.clone(),
            key: Arc::clone(&c.key),
        })
    }

    /// The key an API answer is signed with: the public key when the request named it in
    /// `Wechatpay-Serial` (public-key mode, §2.4), else the newest platform certificate.
    pub(crate) fn answer_signer(&self, requested_serial: Option<&str>) -> Signer {
        if requested_serial == Some(self.public_key_id.as_str()) {
            return self.public_key();
        }
        self.newest_certificate()
            .unwrap_or_else(|| self.public_key())
    }

    /// The key notifies are signed with now.
    pub(crate) fn notify_signer(&self) -> Signer {
        let mode = *self.notify_signer.lock().unwrap_or_else(|p| p.into_inner());
        match mode {
            V3NotifySigner::PublicKey => self.public_key(),
            V3NotifySigner::Certificate => self
                .newest_certificate()
                .unwrap_or_else(|| self.public_key()),
        }
    }

    /// Chooses the notify key.
    pub(crate) fn set_notify_signer(&self, signer: V3NotifySigner) {
        *self.notify_signer.lock().unwrap_or_else(|p| p.into_inner()) = signer;
    }

    /// Adds a fresh platform certificate, which signs from now on (WeChat lists a new one a
    /// day ahead; the sandbox compresses that day to nothing so a test sees the switch).
    /// Returns the new serial.
    pub(crate) fn rotate(&self) -> Result<String, SandboxError> {
        let key = rsa_key_pem()?;
        let certificate =
            PlatformCertificate::new(&rsa_certificate(&key, "WeChat Pay sandbox platform")?, &key)?;
        let serial = certificate.serial.clone();
        self.platform
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(certificate);
        Ok(serial)
    }

    /// The serials of the platform certificates, oldest first.
    pub(crate) fn certificate_serials(&self) -> Vec<String> {
        self.platform().iter().map(|c| c.serial.clone()).collect()
    }

    /// The `/v3/certificates` body: every certificate, sealed under the APIv3 key.
    pub(crate) fn certificates_body(&self) -> Result<String, SandboxError> {
        let platform = self.platform();
        let texts: Vec<(String, String, String)> = platform
            .iter()
            .map(|c| {
                (
                    paygate_wechat_v3::wire::format_time(c.not_before),
                    paygate_wechat_v3::wire::format_time(c.not_after),
                    nonce12(),
                )
            })
            .collect();
        let listed: Vec<ListedCertificate<'_>> = platform
            .iter()
            .zip(&texts)
            .map(|(c, (effective, expire, nonce))| ListedCertificate {
                serial_no: &c.serial,
                pem: &c.pem,
                effective_time: effective,
                expire_time: expire,
                nonce,
            })
            .collect();
        peer::seal_certificates(&self.apiv3_key, &listed)
            .map_err(|e| SandboxError::Certificate(e.to_string()))
    }
}

/// A 12-character nonce for AES-GCM, letters and digits as WeChat writes them.
pub(crate) fn nonce12() -> String {
    use rand::Rng as _;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..12)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// A 32-character signature nonce.
pub(crate) fn signature_nonce() -> String {
    paygate_wechat_v3::sign::nonce()
}
