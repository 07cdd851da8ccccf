//! Settings: built-in defaults < TOML file (`--config` / `PAYGATE_CONFIG`) < `PAYGATE__…`
//! environment variables. Secrets may be given inline or as `…_file` paths so that they can
//! come from a mounted secret rather than the config file. Nothing here is global: the loaded
//! `Settings` value is passed to `Application::build`, which keeps tests independent.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
pub use paygate_alipay::settings::AlipayAppSettings;
use paygate_core::AppName;
use paygate_core::settings::{EndpointPolicy, InlineOrFile, SettingError};
use paygate_store::PoolOptions;
pub use paygate_wechat::settings::{H5SceneSettings, WechatAppSettings};
use paygate_wechat_v3::config::WechatV3Settings;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// The longest `database_acquire_timeout_ms` accepted: a request that waited a minute for a
/// connection is lost to its client anyway, and a larger value is more likely a unit mistake.
const MAX_ACQUIRE_TIMEOUT_MS: u64 = 60_000;

/// Why the settings cannot be used; every message names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or environment could not be parsed into settings.
    #[error("invalid configuration: {0}")]
    Parse(Box<figment::Error>),
    /// A value parsed but is not acceptable.
    #[error("invalid configuration key `{key}`: {reason}")]
    Invalid {
        /// Dotted path of the key, e.g. `wechat.shop.api_key`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl ConfigError {
    /// A provider crate's setting error, its key prefixed with the app's table
    /// (`wechat.shop`), or taken as it is when `table` is empty.
    pub fn in_table(table: &str, error: SettingError) -> Self {
        let key = if table.is_empty() {
            error.key
        } else {
            format!("{table}.{}", error.key)
        };
        ConfigError::Invalid {
            key,
            reason: error.reason,
        }
    }

    fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Whether the configured providers move real money.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    /// Providers are simulators (the embedded sandbox, or a provider's own sandbox).
    #[default]
    Sandbox,
    /// Providers are the real WeChat Pay and Alipay.
    Production,
}

/// Every setting of a paygate process.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// Base URL providers reach this gateway at; notify URLs are derived from it. Defaults to
    /// `http://{listen}`.
    pub public_base_url: Option<String>,
    /// `sqlite://path`, `sqlite::memory:` or `postgres://…`.
    pub database_url: String,
    /// Database connection pool size.
    pub database_pool_size: u32,
    /// How long a request waits for a pooled database connection (or for room in a write
    /// queue) before it is answered 503, in milliseconds (1–60000).
    pub database_acquire_timeout_ms: u64,
    /// Sandbox or production: a mismatch with the provider URLs is refused at start.
    pub environment: Environment,
    /// The embedded provider simulators.
    pub sandbox: SandboxSettings,
    /// Request size limits.
    pub limits: Limits,
    /// Configured WeChat Pay apps by name, each on API v2 or v3.
    pub wechat: BTreeMap<String, WechatApp>,
    /// Configured Alipay apps by name.
    pub alipay: BTreeMap<String, AlipayAppSettings>,
    /// The background reconciler that settles what notifies did not.
    pub reconciler: ReconcilerSettings,
    /// Merchant webhooks: where events go and how deliveries are retried.
    pub webhooks: WebhookSettings,
    /// The daily statement (bill) reconciliation job.
    pub statements: crate::statements::job::StatementSettings,
    /// How the process logs.
    pub log: LogSettings,
    /// How long clients get to send their requests.
    pub http: HttpSettings,
    /// On SIGTERM/SIGINT, the HTTP drain and the background stop run together and the process
    /// exits within about this many seconds, whatever a hung endpoint or provider does: keep it
    /// under the stop timeout of systemd (`TimeoutStopSec`, 90 s) or Kubernetes
    /// (`terminationGracePeriodSeconds`, 30 s).
    pub shutdown_timeout_seconds: u64,
}

/// Deadlines for clients: a connection that sends its request too slowly is answered 408 (or
/// simply closed) so that slow or stalled clients cannot hold connections and memory.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Time to receive a request's head (request line and headers), in milliseconds.
    pub request_head_timeout_ms: u64,
    /// Time to receive a request's whole body once its head is in, in milliseconds.
    pub request_body_timeout_ms: u64,
    /// How long an idle keep-alive connection stays open, in milliseconds; 0 disables
    /// keep-alive.
    pub keep_alive_ms: u64,
    /// How long a connection being closed may take to shut down, in milliseconds.
    pub disconnect_timeout_ms: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            request_head_timeout_ms: 5_000,
            request_body_timeout_ms: 10_000,
            keep_alive_ms: 5_000,
            disconnect_timeout_ms: 1_000,
        }
    }
}

/// Logging. `RUST_LOG` still filters, and `PAYGATE_LOG_FORMAT` overrides `format`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `text` (default; plain unless stderr is a terminal) or `json`.
    pub format: crate::telemetry::LogFormat,
}

/// The reconciler: queries pending orders, closes expired ones at the provider first, and
/// settles refunds still processing. One replica runs it at a time (a database lease).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconcilerSettings {
    /// Run it in `serve` (off only for tests or a replica that must never touch providers).
    pub enabled: bool,
    /// Time between passes, in milliseconds.
    pub interval_ms: u64,
    /// A pending order is first queried at the provider this many seconds after creation
    /// (its notify should have arrived by then).
    pub query_pending_after_seconds: u64,
    /// Between two queries of the same pending order the wait doubles from this, in
    /// milliseconds, up to `query_backoff_max_ms` (15 s, 30 s, 1 min, … by default).
    pub query_backoff_ms: u64,
    /// The longest wait between two queries of one pending order, in milliseconds.
    pub query_backoff_max_ms: u64,
    /// An order is closed (at the provider first) once `expires_at + expiry_grace_seconds`
    /// has passed. The grace lets a payment made at the last second arrive by notify. A
    /// negative grace closes orders before their nominal expiry: the sandbox environment allows
    /// it (tests and the simulation expire orders quickly with it), production refuses it.
    pub expiry_grace_seconds: i64,
    /// How many orders or refunds one pass handles per kind of work.
    pub batch_size: u32,
}

impl Default for ReconcilerSettings {
    fn default() -> Self {
        ReconcilerSettings {
            enabled: true,
            interval_ms: 15_000,
            query_pending_after_seconds: 60,
            query_backoff_ms: 15_000,
            query_backoff_max_ms: 600_000,
            expiry_grace_seconds: 60,
            batch_size: 100,
        }
    }
}

/// Merchant webhooks.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Run the dispatcher in `serve`.
    pub enabled: bool,
    /// How often the dispatcher looks for due events, in milliseconds.
    pub poll_interval_ms: u64,
    /// The wait after a first failed delivery, in milliseconds; it doubles per failure (with
    /// up to 50 % random jitter added) up to `max_backoff_ms`.
    pub initial_backoff_ms: u64,
    /// The longest wait between two deliveries of one event, in milliseconds.
    pub max_backoff_ms: u64,
    /// How long an endpoint has to answer, in milliseconds.
    pub timeout_ms: u64,
    /// Endpoints by app name: every event of an order of that app goes to each of them.
    pub endpoints: BTreeMap<String, Vec<WebhookEndpointSettings>>,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            enabled: true,
            poll_interval_ms: 1_000,
            initial_backoff_ms: 5_000,
            max_backoff_ms: 3_600_000,
            timeout_ms: 10_000,
            endpoints: BTreeMap::new(),
        }
    }
}

/// One merchant endpoint receiving signed events.
#[derive(Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpointSettings {
    /// Where events are POSTed.
    pub url: String,
    /// The signing secret shared with the receiver, inline.
    #[serde(default, skip_serializing)]
    #[schemars(with = "Option<String>")]
    pub secret: Option<SecretString>,
    /// File holding the signing secret.
    pub secret_file: Option<PathBuf>,
}

/// The embedded sandbox.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxSettings {
    /// Run the simulators in this process and, when no provider app is configured, configure
    /// one WeChat and one Alipay app against them.
    pub enabled: bool,
    /// Where the simulators listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// File the sandbox's generated keys are kept in, so a restart keeps orders payable.
    /// Defaults to `paygate-sandbox.json` beside the SQLite database (or the working directory).
    pub keys_file: Option<PathBuf>,
    /// Divides the providers' notify retry schedules; 1.0 is real time (tests speed it up).
    pub time_scale: f64,
    /// How long paygate waits for the embedded providers' answers, in milliseconds; past it
    /// the outcome is unknown (504) and resolved by query, as with the real providers.
    pub provider_timeout_ms: u64,
}

/// Size limits that protect the server.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest accepted provider callback body, in bytes; larger ones get 413.
    pub notify_body_bytes: usize,
    /// Largest accepted JSON API body, in bytes.
    pub api_body_bytes: usize,
}

/// One `[wechat.NAME]` app: merchant API v2 unless the table says `api = "v3"`. Both are the
/// provider `wechat`; the version is a property of the app.
#[derive(Clone, Debug)]
pub enum WechatApp {
    /// API v2 (XML, MD5 / HMAC-SHA256).
    V2(WechatAppSettings),
    /// API v3, in the provider crate's own settings type (checked by its `load`).
    V3(WechatV3Settings),
}

impl<'de> Deserialize<'de> for WechatApp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        // Read the table once, then choose the strict type by `api`, so each version keeps
        // `deny_unknown_fields` and its own error messages.
        let mut table = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        match table.get("api").map(|api| api.as_str()) {
            Some(Some("v3")) => serde_json::from_value(serde_json::Value::Object(table))
                .map(WechatApp::V3)
                .map_err(D::Error::custom),
            None | Some(Some("v2")) => {
                table.remove("api");
                serde_json::from_value(serde_json::Value::Object(table))
                    .map(WechatApp::V2)
                    .map_err(D::Error::custom)
            }
            Some(_) => Err(D::Error::custom("api must be \"v2\" or \"v3\"")),
        }
    }
}

impl schemars::JsonSchema for WechatApp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("WechatApp")
    }

    /// Either version's table: `api` picks one, as [`WechatApp`]'s `Deserialize` does.
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "One WeChat Pay merchant app: API v2 unless `api = \"v3\"`.",
            "anyOf": [
                generator.subschema_for::<WechatAppSettings>(),
                generator.subschema_for::<WechatV3Settings>(),
            ]
        })
    }
}

impl Serialize for WechatApp {
    /// v2 as its settings (secrets skipped); v3 as its version and identity only, since its
    /// settings type is read-only and holds secrets.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            WechatApp::V2(app) => app.serialize(serializer),
            WechatApp::V3(app) => serde_json::json!({
                "api": "v3",
                "appid": app.appid,
                "mchid": app.mchid,
            })
            .serialize(serializer),
        }
    }
}

/// Debug that never prints secrets, even redacted ones' lengths.
macro_rules! redacted_debug {
    ($ty:ident { $($field:ident),* }) => {
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($field), &self.$field))*
                    .finish_non_exhaustive()
            }
        }
    };
}
redacted_debug!(WebhookEndpointSettings { url, secret_file });

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_base_url: None,
            database_url: "sqlite://paygate.db".to_owned(),
            database_pool_size: 8,
            database_acquire_timeout_ms: 10_000,
            environment: Environment::Sandbox,
            sandbox: SandboxSettings {
                enabled: true,
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                keys_file: None,
                time_scale: 1.0,
                provider_timeout_ms: 10_000,
            },
            limits: Limits {
                notify_body_bytes: 64 * 1024,
                api_body_bytes: 64 * 1024,
            },
            wechat: BTreeMap::new(),
            alipay: BTreeMap::new(),
            reconciler: ReconcilerSettings::default(),
            webhooks: WebhookSettings::default(),
            statements: Default::default(),
            log: LogSettings::default(),
            http: HttpSettings::default(),
            shutdown_timeout_seconds: 20,
        }
    }
}

impl Settings {
    /// Loads defaults, then the TOML file if given, then `PAYGATE__…` environment variables
    /// (`PAYGATE__LISTEN`, `PAYGATE__WECHAT__SHOP__API_KEY`, …), and validates the result.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_from(file, Env::prefixed("PAYGATE__").split("__"))
    }

    fn load_from(file: Option<&Path>, env: Env) -> Result<Settings, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::invalid(
                    "--config",
                    format!("{} is not a readable file", path.display()),
                ));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let settings: Settings = figment
            .merge(env)
            .extract()
            .map_err(|e| ConfigError::Parse(Box::new(e)))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Parses settings from TOML text alone (tests and `--check`).
    pub fn from_toml(text: &str) -> Result<Settings, ConfigError> {
        let settings: Settings = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| ConfigError::Parse(Box::new(e)))?;
        settings.validate()?;
        Ok(settings)
    }

    /// The base URL providers should post notifies to.
    pub fn public_base_url(&self, bound: SocketAddr) -> String {
        match &self.public_base_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{bound}"),
        }
    }

    /// The store's pool: `database_pool_size` connections, waited for at most
    /// `database_acquire_timeout_ms`.
    pub fn pool_options(&self) -> PoolOptions {
        PoolOptions {
            size: self.database_pool_size,
            acquire_timeout: Duration::from_millis(self.database_acquire_timeout_ms),
        }
    }

    /// Whether the embedded sandbox providers are configured (no provider app given).
    pub fn uses_embedded_providers(&self) -> bool {
        self.sandbox.enabled && self.wechat.is_empty() && self.alipay.is_empty()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.validate_background()?;
        self.validate_http()?;
        if let Some(url) = &self.public_base_url {
            check_url("public_base_url", url)?;
        }
        check_database_url(&self.database_url)?;
        for (key, value) in [
            ("limits.notify_body_bytes", self.limits.notify_body_bytes),
            ("limits.api_body_bytes", self.limits.api_body_bytes),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        if !(self.sandbox.time_scale >= 1.0 && self.sandbox.time_scale.is_finite()) {
            return Err(ConfigError::invalid(
                "sandbox.time_scale",
                "must be a finite number ≥ 1",
            ));
        }
        if self.database_pool_size == 0 {
            return Err(ConfigError::invalid(
                "database_pool_size",
                "must be at least 1",
            ));
        }
        if !(1..=MAX_ACQUIRE_TIMEOUT_MS).contains(&self.database_acquire_timeout_ms) {
            return Err(ConfigError::invalid(
                "database_acquire_timeout_ms",
                format!("must be 1…{MAX_ACQUIRE_TIMEOUT_MS} (milliseconds)"),
            ));
        }
        if self.environment == Environment::Production && self.sandbox.enabled {
            return Err(ConfigError::invalid(
                "sandbox.enabled",
                "the embedded sandbox cannot run in a production environment; set it to false",
            ));
        }
        let policy = self.endpoint_policy();
        for (name, app) in &self.wechat {
            let table = format!("wechat.{name}");
            AppName::parse(name.as_str())
                .map_err(|e| ConfigError::invalid(format!("{table}.name"), e.to_string()))?;
            match app {
                WechatApp::V2(app) => app.validate(policy),
                WechatApp::V3(app) => validate_wechat_v3(app, policy),
            }
            .map_err(|e| ConfigError::in_table(&table, e))?;
        }
        for (name, app) in &self.alipay {
            let table = format!("alipay.{name}");
            AppName::parse(name.as_str())
                .map_err(|e| ConfigError::invalid(format!("{table}.name"), e.to_string()))?;
            app.validate(policy)
                .map_err(|e| ConfigError::in_table(&table, e))?;
        }
        // Every notify URL paygate signs into a real order derives from it: over http, or
        // defaulting to the listen address, providers would post payments in clear text or to
        // an address they cannot reach.
        if self.environment == Environment::Production
            && !self
                .public_base_url
                .as_deref()
                .is_some_and(|url| url.starts_with("https://"))
        {
            return Err(ConfigError::invalid(
                "public_base_url",
                "a production environment needs the gateway's public https:// URL (providers post notifies to it)",
            ));
        }
        Ok(())
    }

    /// Checks the client deadlines: a zero would close every connection at once.
    fn validate_http(&self) -> Result<(), ConfigError> {
        let http = &self.http;
        for (key, value) in [
            ("http.request_head_timeout_ms", http.request_head_timeout_ms),
            ("http.request_body_timeout_ms", http.request_body_timeout_ms),
            ("http.disconnect_timeout_ms", http.disconnect_timeout_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        Ok(())
    }

    /// Checks the reconciler's and the webhook dispatcher's settings.
    fn validate_background(&self) -> Result<(), ConfigError> {
        let positive = [
            ("reconciler.interval_ms", self.reconciler.interval_ms),
            (
                "reconciler.query_backoff_ms",
                self.reconciler.query_backoff_ms,
            ),
            ("webhooks.poll_interval_ms", self.webhooks.poll_interval_ms),
            (
                "webhooks.initial_backoff_ms",
                self.webhooks.initial_backoff_ms,
            ),
            ("webhooks.timeout_ms", self.webhooks.timeout_ms),
            ("shutdown_timeout_seconds", self.shutdown_timeout_seconds),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        if self.environment == Environment::Production && self.reconciler.expiry_grace_seconds < 0 {
            return Err(ConfigError::invalid(
                "reconciler.expiry_grace_seconds",
                "must be 0 or more in production: a negative grace closes orders the buyer may still pay",
            ));
        }
        if self.reconciler.batch_size == 0 {
            return Err(ConfigError::invalid(
                "reconciler.batch_size",
                "must be at least 1",
            ));
        }
        for (app, endpoints) in &self.webhooks.endpoints {
            AppName::parse(app.as_str()).map_err(|e| {
                ConfigError::invalid(format!("webhooks.endpoints.{app}"), e.to_string())
            })?;
            for (index, endpoint) in endpoints.iter().enumerate() {
                let key = |field: &str| format!("webhooks.endpoints.{app}[{index}].{field}");
                check_url(&key("url"), &endpoint.url)?;
                InlineOrFile::secret(&key("secret"), &endpoint.secret, &endpoint.secret_file)
                    .check_exactly_one()
                    .map_err(|e| ConfigError::in_table("", e))?;
            }
        }
        Ok(())
    }

    /// Which provider hosts the configured apps may name.
    pub fn endpoint_policy(&self) -> EndpointPolicy {
        match self.environment {
            Environment::Production => EndpointPolicy::Production,
            Environment::Sandbox => EndpointPolicy::Sandbox,
        }
    }
}

/// What can be checked of a v3 app without reading its keys (they are read and checked when
/// the registry is built, naming the key at fault): its URL and channels.
fn validate_wechat_v3(app: &WechatV3Settings, policy: EndpointPolicy) -> Result<(), SettingError> {
    policy.check("api_base", app.api_base.as_deref(), true)?;
    // Login sends the AppSecret to the login host: an app with one must name the sandbox's in a
    // sandbox environment, as a v2 app must.
    let has_app_secret = app.app_secret.is_some() || app.app_secret_file.is_some();
    policy.check("login_base", app.login_base.as_deref(), has_app_secret)?;
    policy.check("oauth_base", app.oauth_base.as_deref(), false)?;
    paygate_core::settings::check_channels(
        "channels",
        paygate_core::ProviderKind::WECHAT,
        &paygate_wechat_v3::CHANNELS,
        &app.channels,
    )
}

/// Refuses a database URL of no known scheme, which the store would otherwise open as a SQLite
/// file of that name. The message never repeats the URL: it may carry a password.
fn check_database_url(url: &str) -> Result<(), ConfigError> {
    let known = [
        "sqlite://",
        "sqlite:",
        "file:",
        "postgres://",
        "postgresql://",
    ];
    let path_given = known
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme))
        .is_some_and(|rest| !rest.trim().is_empty());
    if path_given {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            "database_url",
            "must be sqlite://PATH, sqlite::memory: or postgres://USER@HOST/DATABASE",
        ))
    }
}

fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    paygate_core::settings::check_url(key, url).map_err(|e| ConfigError::in_table("", e))
}

/// Reads a secret given inline or by file (the gateway's own: webhook secrets); file contents
/// are trimmed of the trailing newline editors add. The error names the key, never the value.
pub fn read_secret(
    key: &str,
    inline: &Option<SecretString>,
    file: &Option<PathBuf>,
) -> Result<SecretString, ConfigError> {
    InlineOrFile::secret(key, inline, file)
        .read()
        .map_err(|e| ConfigError::in_table("", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use paygate_core::Channel;
    use secrecy::ExposeSecret;

    #[test]
    fn webhook_endpoints_and_reconciler_intervals_come_from_toml() {
        let s = Settings::from_toml(
            "[reconciler]\ninterval_ms = 250\nexpiry_grace_seconds = 30\n\
             [[webhooks.endpoints.shop]]\nurl = \"https://merchant.example/hooks\"\nsecret = \"whsec_1\"\n\
             [[webhooks.endpoints.shop]]\nurl = \"https://audit.example/hooks\"\nsecret_file = \"/run/secrets/hook\"\n",
        )
        .unwrap();
        assert_eq!(s.reconciler.interval_ms, 250);
        assert_eq!(s.reconciler.expiry_grace_seconds, 30);
        let shop = &s.webhooks.endpoints["shop"];
        assert_eq!(shop.len(), 2);
        assert_eq!(
            shop[1].secret_file.as_deref(),
            Some(Path::new("/run/secrets/hook"))
        );
        assert!(
            !format!("{:?}", shop[0]).contains("whsec_1"),
            "secrets stay out of Debug"
        );
    }

    #[test]
    fn a_webhook_endpoint_without_a_secret_or_with_a_zero_interval_is_refused_by_name() {
        let err = Settings::from_toml(
            "[[webhooks.endpoints.shop]]\nurl = \"https://merchant.example/hooks\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("webhooks.endpoints.shop[0].secret"), "{err}");
        let err = Settings::from_toml("[reconciler]\ninterval_ms = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("reconciler.interval_ms"), "{err}");
    }

    /// A `[wechat.shop]` v3 app on the wechat-v3 crate's vendored keys, with `apiv3_key`.
    fn wechat_v3_toml(apiv3_key: &str) -> String {
        let keys = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../wechat-v3/tests/data/vectors/wechat-v3/keys"
        );
        format!(
            "[wechat.shop]\napi = \"v3\"\nappid = \"wxd678efh567hg6787\"\nmchid = \"1230000109\"\n\
             api_base = \"http://127.0.0.1:9\"\napiv3_key = \"{apiv3_key}\"\n\
             merchant_certificate_file = \"{keys}/merchant_apiclient_cert.pem\"\n\
             private_key_file = \"{keys}/merchant_apiclient_key.pem\"\n\
             public_key_id = \"PUB_KEY_ID_0112300001092025010100000000000001\"\n\
             public_key_file = \"{keys}/wechatpay_pub_key.pem\"\n\
             channels = [\"native\", \"jsapi\"]\n\
             [wechat.legacy]\nappid = \"wx1\"\nmch_id = \"1\"\napi_key = \"0123456789abcdef0123456789abcdef\"\n\
             api_base = \"http://127.0.0.1:9\"\nlogin_base = \"http://127.0.0.1:9\"\n"
        )
    }

    #[test]
    fn a_v3_app_loads_beside_a_v2_app_and_both_are_the_wechat_provider() {
        let settings =
            Settings::from_toml(&wechat_v3_toml("0123456789abcdefghijklmnopqrstuv")).unwrap();
        assert!(matches!(settings.wechat["shop"], WechatApp::V3(_)));
        assert!(matches!(settings.wechat["legacy"], WechatApp::V2(_)));
        let registry = crate::providers::from_settings(&settings).unwrap();
        let name = |n: &str| AppName::parse(n).unwrap();
        let v3 = registry
            .get(paygate_core::ProviderKind::WECHAT, &name("shop"))
            .unwrap();
        assert_eq!(v3.provider.merchant().merchant_id, "1230000109");
        assert!(v3.offers(Channel::Native) && !v3.offers(Channel::App));
        assert!(
            v3.wechat.is_some(),
            "login is WeChat's, whatever the pay API"
        );
        let v2 = registry
            .get(paygate_core::ProviderKind::WECHAT, &name("legacy"))
            .unwrap();
        assert!(v2.wechat.is_some());
    }

    #[test]
    fn a_v3_app_with_a_short_apiv3_key_is_refused_at_start_naming_the_key() {
        // The TOML parses (keys are read when the registry is built, as for v2 key files).
        let settings = Settings::from_toml(&wechat_v3_toml("too-short")).unwrap();
        let err = crate::providers::from_settings(&settings)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("wechat.shop.apiv3_key"), "{err}");
        assert!(!err.contains("too-short"), "the secret stays out: {err}");
    }

    #[test]
    fn an_unknown_api_version_or_a_v2_field_in_a_v3_app_is_refused() {
        let text = wechat_v3_toml("0123456789abcdefghijklmnopqrstuv");
        let err = Settings::from_toml(&text.replacen("api = \"v3\"", "api = \"v4\"", 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("v3"), "{err}");
        let err = Settings::from_toml(&text.replacen("mchid", "mch_id", 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("mch_id"), "{err}");
    }

    #[test]
    fn the_pool_takes_its_size_and_acquire_timeout_from_the_settings() {
        let default = Settings::from_toml("").unwrap().pool_options();
        assert_eq!(default, PoolOptions::sized(8));
        let set =
            Settings::from_toml("database_pool_size = 3\ndatabase_acquire_timeout_ms = 250\n")
                .unwrap()
                .pool_options();
        assert_eq!(set.size, 3);
        assert_eq!(set.acquire_timeout, Duration::from_millis(250));
    }

    #[test]
    fn no_config_gives_the_embedded_default() {
        let s = Settings::from_toml("").unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert!(s.uses_embedded_providers());
        assert_eq!(s.database_url, "sqlite://paygate.db");
    }

    #[test]
    fn an_invalid_value_names_its_key() {
        let err = Settings::from_toml("listen = \"nowhere\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen"), "{err}");
        let err = Settings::from_toml("bogus = 1").unwrap_err().to_string();
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn a_wechat_app_without_its_key_is_refused_by_name() {
        let err = Settings::from_toml(
            "[wechat.shop]\nappid = \"wx1\"\nmch_id = \"1\"\napi_base = \"http://127.0.0.1:9\"\nlogin_base = \"http://127.0.0.1:9\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("wechat.shop.api_key"), "{err}");
    }

    #[test]
    fn production_credentials_cannot_point_at_a_sandbox() {
        let toml = "environment = \"production\"\n[sandbox]\nenabled = false\nlisten = \"127.0.0.1:0\"\n\
            [alipay.main]\napp_id = \"1\"\nseller_id = \"2088\"\napp_private_key = \"k\"\n\
            alipay_public_key = \"p\"\ngateway_url = \"https://openapi-sandbox.dl.alipaydev.com/gateway.do\"\n";
        let err = Settings::from_toml(toml).unwrap_err().to_string();
        assert!(
            err.contains("alipay.main.gateway_url") && err.contains("production"),
            "{err}"
        );
    }

    #[test]
    fn sandbox_credentials_cannot_point_at_production() {
        let toml = "[alipay.main]\napp_id = \"1\"\nseller_id = \"2088\"\napp_private_key = \"k\"\n\
            alipay_public_key = \"p\"\ngateway_url = \"https://openapi.alipay.com/gateway.do\"\n";
        let err = Settings::from_toml(toml).unwrap_err().to_string();
        assert!(
            err.contains("sandbox") && err.contains("openapi.alipay.com"),
            "{err}"
        );
        let toml = "[alipay.main]\napp_id = \"1\"\nseller_id = \"2088\"\napp_private_key = \"k\"\n\
            alipay_public_key = \"p\"\n";
        let err = Settings::from_toml(toml).unwrap_err().to_string();
        assert!(err.contains("alipay.main.gateway_url"), "{err}");
    }

    #[test]
    fn unusable_values_are_refused_at_load_naming_their_key() {
        let wechat = |api_key: &str| {
            format!(
                "[wechat.shop]\nappid = \"wx1\"\nmch_id = \"1\"\napi_key = \"{api_key}\"\n\
                 api_base = \"http://127.0.0.1:9\"\nlogin_base = \"http://127.0.0.1:9\"\n"
            )
        };
        let cases = [
            (wechat("12345"), "wechat.shop.api_key"),
            (
                "[limits]\nnotify_body_bytes = 0\n".to_owned(),
                "limits.notify_body_bytes",
            ),
            (
                "[limits]\napi_body_bytes = 0\n".to_owned(),
                "limits.api_body_bytes",
            ),
            (
                "environment = \"production\"\npublic_base_url = \"https://pay.example.com\"\n\
                 [sandbox]\nenabled = false\nlisten = \"127.0.0.1:0\"\n\
                 [reconciler]\nexpiry_grace_seconds = -1\n"
                    .to_owned(),
                "reconciler.expiry_grace_seconds",
            ),
            ("database_url = \"garbage\"\n".to_owned(), "database_url"),
            (
                "database_acquire_timeout_ms = 0\n".to_owned(),
                "database_acquire_timeout_ms",
            ),
            (
                "database_acquire_timeout_ms = 60001\n".to_owned(),
                "database_acquire_timeout_ms",
            ),
            ("database_url = \"sqlite://\"\n".to_owned(), "database_url"),
        ];
        for (toml, key) in cases {
            let err = Settings::from_toml(&toml).unwrap_err().to_string();
            assert!(err.contains(&format!("`{key}`")), "{toml}: {err}");
        }
        let err = Settings::from_toml(&wechat("12345"))
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("12345"),
            "the key itself is never shown: {err}"
        );
        Settings::from_toml(&wechat("0123456789abcdef0123456789abcdef")).unwrap();
        for url in ["sqlite::memory:", "sqlite:///tmp/p.db", "postgres://u@h/db"] {
            Settings::from_toml(&format!("database_url = \"{url}\"\n")).unwrap();
        }
    }

    #[test]
    fn a_wechat_api_key_file_of_the_wrong_length_is_refused_naming_the_file_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api-key");
        std::fs::write(&path, "short\n").unwrap();
        let toml = format!(
            "[sandbox]\nenabled = false\nlisten = \"127.0.0.1:0\"\n\
             [wechat.shop]\nappid = \"wx1\"\nmch_id = \"1\"\napi_key_file = \"{}\"\n\
             api_base = \"http://127.0.0.1:9\"\nlogin_base = \"http://127.0.0.1:9\"\n",
            path.display()
        );
        let settings = Settings::from_toml(&toml).unwrap();
        let err = crate::providers::from_settings(&settings)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("wechat.shop.api_key_file"), "{err}");
    }

    #[test]
    fn production_refuses_the_embedded_sandbox() {
        let err = Settings::from_toml("environment = \"production\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sandbox.enabled"), "{err}");
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let toml = "[wechat.shop]\nappid = \"wx1\"\nmch_id = \"1\"\napi_key = \"TOPSECRETKEY0123456789abcdefghij\"\n\
            api_base = \"http://127.0.0.1:9\"\nlogin_base = \"http://127.0.0.1:9\"\napp_secret = \"ALSOSECRET\"\n";
        let s = Settings::from_toml(toml).unwrap();
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("TOPSECRETKEY") && !debug.contains("ALSOSECRET"),
            "{debug}"
        );
    }

    #[test]
    fn secrets_can_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "filekey\n").unwrap();
        let secret = read_secret("wechat.shop.api_key", &None, &Some(path)).unwrap();
        assert_eq!(secret.expose_secret(), "filekey");
        let err =
            read_secret("wechat.shop.api_key", &None, &Some(dir.path().join("nope"))).unwrap_err();
        assert!(err.to_string().contains("wechat.shop.api_key_file"));
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn environment_variables_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("paygate.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9000\"\n").unwrap();
        figment::Jail::expect_with(|jail| {
            jail.set_env("PAYGATE__LISTEN", "127.0.0.1:9100");
            let s = Settings::load(Some(&path)).unwrap();
            assert_eq!(s.listen.port(), 9100);
            Ok(())
        });
    }
}
