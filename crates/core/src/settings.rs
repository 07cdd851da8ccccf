//! What every provider's settings share, so that each provider crate can own its settings type
//! and still read secrets, check URLs and name the key at fault the same way.
//!
//! A secret is given inline (`api_key = "…"`) or by file (`api_key_file = "/run/secrets/…"`),
//! exactly one of the two: files let secrets come from a mounted secret store instead of the
//! config file. Errors name the key (relative to the app's table; the gateway prefixes it),
//! never the value.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

/// Why a provider setting cannot be used: the key at fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting `{key}`: {reason}")]
pub struct SettingError {
    /// The setting at fault, relative to the app's table, e.g. `api_key_file`.
    pub key: String,
    /// What is wrong with it (never the secret itself).
    pub reason: String,
}

impl SettingError {
    /// An error naming `key`.
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// A setting given inline (`KEY`) or by file (`KEY_file`), exactly one of them.
#[derive(Clone, Copy)]
pub struct InlineOrFile<'a> {
    key: &'a str,
    inline: Option<&'a str>,
    file: Option<&'a Path>,
}

impl<'a> InlineOrFile<'a> {
    /// A secret setting (`SecretString` inline) named `key`.
    pub fn secret(
        key: &'a str,
        inline: &'a Option<SecretString>,
        file: &'a Option<PathBuf>,
    ) -> Self {
        Self {
            key,
            inline: inline.as_ref().map(|secret| secret.expose_secret()),
            file: file.as_deref(),
        }
    }

    /// A non-secret setting (a certificate, a public key) named `key`.
    pub fn value(key: &'a str, inline: &'a Option<String>, file: &'a Option<PathBuf>) -> Self {
        Self {
            key,
            inline: inline.as_deref(),
            file: file.as_deref(),
        }
    }

    /// Whether either form is set.
    pub fn is_given(&self) -> bool {
        self.inline.is_some() || self.file.is_some()
    }

    /// The key the value came from: `KEY` when inline, `KEY_file` when from a file, so that a
    /// check of the value points at the line the operator has to change.
    pub fn source_key(&self) -> String {
        match self.file {
            Some(_) if self.inline.is_none() => format!("{}_file", self.key),
            _ => self.key.to_owned(),
        }
    }

    /// Refuses both forms at once, and neither.
    pub fn check_exactly_one(&self) -> Result<(), SettingError> {
        match (self.inline.is_some(), self.file.is_some()) {
            (true, false) | (false, true) => Ok(()),
            (false, false) => Err(SettingError::new(
                self.key,
                format!("give `{0}` or `{0}_file`", self.key),
            )),
            (true, true) => Err(SettingError::new(
                self.key,
                format!("give `{0}` or `{0}_file`, not both", self.key),
            )),
        }
    }

    /// Reads the value: inline as given, a file's contents without the trailing newline
    /// editors add. Both or neither set is an error; so is an unreadable or empty file.
    pub fn read(&self) -> Result<SecretString, SettingError> {
        self.check_exactly_one()?;
        if let Some(inline) = self.inline {
            return Ok(SecretString::from(inline.to_owned()));
        }
        let file_key = format!("{}_file", self.key);
        let path = self
            .file
            .ok_or_else(|| SettingError::new(&file_key, "missing"))?;
        let text = std::fs::read_to_string(path).map_err(|e| {
            SettingError::new(&file_key, format!("cannot read {}: {e}", path.display()))
        })?;
        let trimmed = text.trim_end_matches(['\n', '\r']);
        if trimmed.is_empty() {
            return Err(SettingError::new(
                &file_key,
                format!("{} is empty", path.display()),
            ));
        }
        Ok(SecretString::from(trimmed.to_owned()))
    }

    /// Reads a non-secret value (see [`InlineOrFile::read`]).
    pub fn read_value(&self) -> Result<String, SettingError> {
        Ok(self.read()?.expose_secret().to_owned())
    }

    /// Reads the value when one of the forms is set, `None` when neither is.
    pub fn read_optional(&self) -> Result<Option<SecretString>, SettingError> {
        if self.is_given() {
            self.read().map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Whether a configuration moves real money, which decides the provider hosts its URLs may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointPolicy {
    /// Simulators only: every base URL must be given (the defaults are the real providers)
    /// and none may name a real provider host.
    Sandbox,
    /// Real providers only: a given URL must name a real provider host.
    Production,
}

/// The hosts of the real providers' APIs; a sandbox config naming one would sign test orders
/// with real keys, a production config naming another would send real keys to a simulator.
pub const PRODUCTION_HOSTS: [&str; 4] = [
    "api.mch.weixin.qq.com",
    "api.weixin.qq.com",
    "open.weixin.qq.com",
    "openapi.alipay.com",
];

impl EndpointPolicy {
    /// Checks a provider base URL setting: http(s), and on the side of the line this policy
    /// allows. `None` means the real provider's default, which a sandbox config may not use
    /// when `required_in_sandbox`.
    pub fn check(
        self,
        key: &str,
        url: Option<&str>,
        required_in_sandbox: bool,
    ) -> Result<(), SettingError> {
        let Some(url) = url else {
            return match self {
                EndpointPolicy::Sandbox if required_in_sandbox => Err(SettingError::new(
                    key,
                    "a sandbox environment must name the sandbox's URL (the default is the real provider)",
                )),
                _ => Ok(()),
            };
        };
        check_url(key, url)?;
        let host = host_of(url);
        let is_production_host = PRODUCTION_HOSTS.contains(&host.as_str());
        match self {
            EndpointPolicy::Production if !is_production_host => Err(SettingError::new(
                key,
                format!("environment is production but {host} is not a production provider host"),
            )),
            EndpointPolicy::Sandbox if is_production_host => Err(SettingError::new(
                key,
                format!("environment is sandbox but {host} is a production provider host"),
            )),
            _ => Ok(()),
        }
    }
}

/// The lower-cased host of a URL, without port, path or query.
pub fn host_of(url: &str) -> String {
    url.split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(url)
        .split(['/', ':', '?'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Refuses anything but an http:// or https:// URL.
pub fn check_url(key: &str, url: &str) -> Result<(), SettingError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(SettingError::new(key, "must be an http:// or https:// URL"))
    }
}

/// Refuses an empty or blank value.
pub fn non_empty(key: &str, value: &str) -> Result<(), SettingError> {
    if value.trim().is_empty() {
        Err(SettingError::new(key, "must not be empty"))
    } else {
        Ok(())
    }
}

/// Refuses a channel the provider does not have.
pub fn check_channels(
    key: &str,
    provider: crate::ProviderKind,
    supported: &[crate::Channel],
    channels: &Option<Vec<crate::Channel>>,
) -> Result<(), SettingError> {
    match channels
        .iter()
        .flatten()
        .find(|channel| !supported.contains(channel))
    {
        Some(channel) => Err(SettingError::new(
            key,
            format!("{provider} has no channel {channel}"),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_comes_inline_or_from_a_file_but_not_both() {
        let inline = Some(SecretString::from("k1".to_owned()));
        let dir = std::env::temp_dir().join(format!("paygate-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("key");
        std::fs::write(&path, "from-file\r\n").expect("write");
        let file = Some(path);
        let none_secret = None;
        let none_file = None;

        let read = |inline, file| InlineOrFile::secret("api_key", inline, file).read();
        assert_eq!(
            read(&inline, &none_file).expect("inline").expose_secret(),
            "k1"
        );
        assert_eq!(
            read(&none_secret, &file).expect("file").expose_secret(),
            "from-file"
        );
        assert_eq!(
            read(&inline, &file).expect_err("both").reason,
            "give `api_key` or `api_key_file`, not both"
        );
        assert_eq!(
            read(&none_secret, &none_file).expect_err("neither").key,
            "api_key"
        );
        assert_eq!(
            InlineOrFile::secret("api_key", &none_secret, &file).source_key(),
            "api_key_file"
        );

        std::fs::write(dir.join("empty"), "\n").expect("write");
        let empty = Some(dir.join("empty"));
        let error = read(&none_secret, &empty).expect_err("empty");
        assert_eq!(error.key, "api_key_file");
        let missing = Some(dir.join("absent"));
        assert!(
            read(&none_secret, &missing)
                .expect_err("absent")
                .reason
                .starts_with("cannot read")
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn errors_never_carry_the_secret() {
        let inline = Some(SecretString::from("s3cr3t-value".to_owned()));
        let file = Some(PathBuf::from("/nonexistent/also"));
        let error = InlineOrFile::secret("api_key", &inline, &file)
            .read()
            .expect_err("both");
        assert!(!error.to_string().contains("s3cr3t"));
    }

    #[test]
    fn endpoints_stay_on_their_side_of_the_money_line() {
        let real = Some("https://api.mch.weixin.qq.com");
        let local = Some("http://127.0.0.1:9000");
        assert!(
            EndpointPolicy::Sandbox
                .check("api_base", local, true)
                .is_ok()
        );
        assert!(
            EndpointPolicy::Sandbox
                .check("api_base", real, true)
                .is_err()
        );
        assert!(
            EndpointPolicy::Sandbox
                .check("api_base", None, true)
                .is_err()
        );
        assert!(
            EndpointPolicy::Sandbox
                .check("oauth_base", None, false)
                .is_ok()
        );
        assert!(
            EndpointPolicy::Production
                .check("api_base", real, true)
                .is_ok()
        );
        assert!(
            EndpointPolicy::Production
                .check("api_base", local, true)
                .is_err()
        );
        assert!(
            EndpointPolicy::Production
                .check("api_base", None, true)
                .is_ok()
        );
        assert_eq!(
            EndpointPolicy::Sandbox
                .check("api_base", Some("ftp://x"), true)
                .expect_err("scheme")
                .reason,
            "must be an http:// or https:// URL"
        );
        assert_eq!(
            host_of("https://OpenAPI.alipay.com:443/gateway.do"),
            "openapi.alipay.com"
        );
    }
}
