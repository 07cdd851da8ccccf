//! Starting and stopping the sandbox, and the Rust API tests and the gateway use.

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use paygate_core::ProviderKind;

use crate::config::SandboxConfig;
use crate::credentials::{SandboxCredentials, SandboxKeys, ServerKeys};
use crate::error::SandboxError;
use crate::faults::{Fault, FaultBook};
use crate::notify::{DispatchContext, Dispatcher, NotifyDelivery, NotifyLog};
use crate::routes::{self, PayRequest};
use crate::state::{LoginState, SandboxState};
use crate::trades::{Trade, TradeBook};

/// Entry point: builds a sandbox from its config.
pub struct Sandbox;

impl Sandbox {
    /// Binds the address, loads or generates keys and spawns the server on the current tokio
    /// runtime (like zero2prod's `spawn_app`). Notifies are delivered from that runtime too.
    pub async fn start(config: SandboxConfig) -> Result<RunningSandbox, SandboxError> {
        let keys = match &config.keys_file {
            Some(path) => SandboxKeys::load_or_create(path)?,
            None => SandboxKeys::generate()?,
        };
        let listener = TcpListener::bind(config.listen).map_err(|source| SandboxError::Bind {
            addr: config.listen,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| SandboxError::Bind {
            addr: config.listen,
            source,
        })?;
        let base_url = config
            .public_base_url
            .clone()
            .map(|url| url.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| format!("http://{addr}"));
        let credentials = SandboxCredentials::new(&keys, &base_url)?;
        let server_keys = Arc::new(ServerKeys::new(keys)?);
        let client = reqwest::Client::builder()
            .timeout(config.notify_timeout)
            .build()
            .map_err(SandboxError::Client)?;
        let state_lock = match &config.state_file {
            Some(path) => Some(lock_state_file(path)?),
            None => None,
        };
        let faults = Arc::new(FaultBook::default());
        let log = Arc::new(NotifyLog::new());
        let state = Arc::new(SandboxState {
            keys: Arc::clone(&server_keys),
            trades: TradeBook::open(config.state_file.clone()),
            faults: Arc::clone(&faults),
            log: Arc::clone(&log),
            dispatcher: Arc::new(Dispatcher {
                client,
                runtime: tokio::runtime::Handle::current(),
                time_scale: config.time_scale,
            }),
            context: Arc::new(DispatchContext {
                keys: server_keys,
                faults,
                log,
            }),
            base_url: base_url.clone(),
            login: Mutex::new(LoginState::default()),
            issued_bills: crate::bills::IssuedBills::default(),
        });
        let data = web::Data::from(Arc::clone(&state));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(64 * 1024))
                .configure(routes::configure)
        })
        .workers(2)
        .disable_signals()
        .listen(listener)
        .map_err(|source| SandboxError::Bind {
            addr: config.listen,
            source,
        })?
        .run();
        let handle = server.handle();
        let join = tokio::spawn(server);
        tracing::info!(%base_url, "sandbox listening");
        Ok(RunningSandbox {
            addr,
            base_url,
            credentials,
            state,
            handle,
            join,
            _state_lock: state_lock,
        })
    }
}

/// Locks `<state file>.lock` for this process's lifetime: two sandboxes appending to one trade
/// journal corrupt each other's trades (and a gateway's reconciler then closes orders the
/// other one's buyers paid).
fn lock_state_file(state_file: &std::path::Path) -> Result<std::fs::File, SandboxError> {
    let mut lock_path = state_file.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = std::path::PathBuf::from(lock_path);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| SandboxError::StateInUse {
            path: state_file.to_owned(),
            reason: format!("cannot open {}: {e}", lock_path.display()),
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(SandboxError::StateInUse {
            path: state_file.to_owned(),
            reason: "another sandbox process holds it".into(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(SandboxError::StateInUse {
            path: state_file.to_owned(),
            reason: format!("cannot lock {}: {e}", lock_path.display()),
        }),
    }
}

/// A running sandbox: its URLs and credentials, plus the buyer/fault/notify controls.
pub struct RunningSandbox {
    addr: SocketAddr,
    base_url: String,
    credentials: SandboxCredentials,
    state: Arc<SandboxState>,
    handle: actix_web::dev::ServerHandle,
    join: tokio::task::JoinHandle<std::io::Result<()>>,
    /// Held while this sandbox journals to its state file (see `lock_state_file`).
    _state_lock: Option<std::fs::File>,
}

impl RunningSandbox {
    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://host:port`, the root of every route.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// What a WeChat client uses instead of `https://api.mch.weixin.qq.com`.
    pub fn wechat_api_base(&self) -> &str {
        &self.credentials.wechat.api_base
    }

    /// What a WeChat client uses instead of `https://api.weixin.qq.com`.
    pub fn wechat_login_base(&self) -> &str {
        &self.credentials.wechat.login_base
    }

    /// What an Alipay client uses instead of `https://openapi.alipay.com/gateway.do`.
    pub fn alipay_gateway_url(&self) -> &str {
        &self.credentials.alipay.gateway_url
    }

    /// The merchant identities and keys to configure a client with.
    pub fn credentials(&self) -> &SandboxCredentials {
        &self.credentials
    }

    /// Plays the buyer paying a trade; the notify follows in the background.
    pub fn pay(&self, provider: ProviderKind, out_trade_no: &str) -> Result<Trade, SandboxError> {
        routes::pay(
            &self.state,
            PayRequest::Trade {
                provider,
                out_trade_no: out_trade_no.to_owned(),
            },
        )
    }

    /// Plays the Alipay app: verifies an orderString as Alipay would, creates and pays the trade.
    pub fn pay_order_string(&self, order_string: &str) -> Result<Trade, SandboxError> {
        routes::pay(
            &self.state,
            PayRequest::OrderString {
                order_string: order_string.to_owned(),
            },
        )
    }

    /// Plays the WeChat client paying a prepay_id.
    pub fn pay_prepay_id(&self, prepay_id: &str) -> Result<Trade, SandboxError> {
        routes::pay(
            &self.state,
            PayRequest::PrepayId {
                prepay_id: prepay_id.to_owned(),
            },
        )
    }

    /// A copy of one trade.
    pub fn trade(&self, provider: ProviderKind, out_trade_no: &str) -> Option<Trade> {
        self.state.trades.get(provider, out_trade_no)
    }

    /// Every trade, oldest first.
    pub fn trades(&self) -> Vec<Trade> {
        self.state.trades.list()
    }

    /// Adds a fault rule.
    pub fn add_fault(&self, fault: Fault) {
        self.state.faults.add(fault);
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.state.faults.clear();
    }

    /// Every notify delivery attempt so far, in the order they finished.
    pub fn notify_deliveries(&self) -> Vec<NotifyDelivery> {
        self.state.log.list()
    }

    /// Waits until `done` holds over the deliveries (checked after each one), giving up after
    /// `limit` so a broken test fails instead of hanging.
    pub async fn wait_for_deliveries(
        &self,
        limit: Duration,
        done: impl Fn(&[NotifyDelivery]) -> bool,
    ) -> Result<Vec<NotifyDelivery>, SandboxError> {
        self.state.log.wait_until(limit, done).await
    }

    /// Adds a new WeChat Pay platform certificate that signs from now on (the old ones stay
    /// listed in `/v3/certificates`); returns its serial.
    pub fn rotate_wechat_v3_certificate(&self) -> Result<String, SandboxError> {
        self.state.keys.v3.rotate()
    }

    /// The serials `/v3/certificates` lists, oldest first.
    pub fn wechat_v3_certificate_serials(&self) -> Vec<String> {
        self.state.keys.v3.certificate_serials()
    }

    /// Chooses the key APIv3 notifies are signed with from now on.
    pub fn set_wechat_v3_notify_signer(&self, signer: crate::V3NotifySigner) {
        self.state.keys.v3.set_notify_signer(signer);
    }

    /// The openid the sandbox's jscode2session / oauth2 return for `code`.
    pub fn openid_for_code(&self, code: &str) -> String {
        routes::wechat::openid_for_code(&self.credentials.wechat.appid, code)
    }

    /// Stops accepting requests and waits for the server to finish.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        if let Err(e) = self.join.await {
            tracing::warn!(error = %e, "sandbox server task ended abnormally");
        }
        let state = Arc::clone(&self.state);
        let flushed = tokio::task::spawn_blocking(move || state.trades.flush()).await;
        if let Err(e) = flushed {
            tracing::warn!(error = %e, "sandbox journal did not flush");
        }
    }
}
