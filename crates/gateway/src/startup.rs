//! Building and running the server: `Application::build(settings)` binds the listener,
//! connects the database, starts the embedded sandbox when configured and wires the routes;
//! `port()` tells tests where it is; `run_until_stopped()` serves.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use actix_web::dev::Server;
use actix_web::http::KeepAlive;
use actix_web::{App, web};
use paygate_sandbox::{RunningSandbox, Sandbox, SandboxConfig};
use paygate_store::{ServeLock, Store};

use crate::config::{ConfigError, HttpSettings, Settings};
use crate::error::{ApiError, ErrorCode};
use crate::metrics::Metrics;
use crate::middleware::BodyTimeout;
use crate::registry::ProviderApp;
use crate::routes;
use crate::state::AppState;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The settings are not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Store(#[from] paygate_store::StoreError),
    /// The listener could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The embedded sandbox could not start.
    #[error("embedded sandbox: {0}")]
    Sandbox(String),
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// A built, not yet running, gateway.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
    sandbox: Option<RunningSandbox>,
    background: crate::reconciler::Background,
    /// Held while this process serves a SQLite file, so that a second `paygate serve` on the
    /// same file is refused instead of racing this one's reconciler and sandbox.
    _serve_lock: Option<ServeLock>,
    shutdown_timeout: Duration,
}

impl Application {
    /// Binds, connects, migrates and wires everything; nothing is served until
    /// [`Application::run_until_stopped`].
    pub async fn build(settings: Settings) -> Result<Application, StartError> {
        Application::build_with(settings, Vec::new()).await
    }

    /// [`Application::build`] with provider apps beyond those the config describes: how a
    /// provider implemented outside this workspace (or a test's) is plugged in. They join the
    /// same registry as configured apps; an app whose provider and name are already taken is
    /// refused.
    pub async fn build_with(
        settings: Settings,
        extra_apps: Vec<ProviderApp>,
    ) -> Result<Application, StartError> {
        let listener = TcpListener::bind(settings.listen).map_err(|source| StartError::Bind {
            address: settings.listen,
            source,
        })?;
        let bound = listener.local_addr().map_err(|source| StartError::Bind {
            address: settings.listen,
            source,
        })?;
        let serve_lock = ServeLock::claim(&settings.database_url)?;
        let store = Store::connect(&settings.database_url, settings.pool_options()).await?;
        let public_base_url = settings.public_base_url(bound);

        let (registry, sandbox) = if settings.uses_embedded_providers() {
            let mut config = SandboxConfig::new(settings.sandbox.listen);
            config.keys_file = Some(sandbox_keys_file(&settings));
            config.time_scale = settings.sandbox.time_scale;
            config.state_file = config
                .keys_file
                .as_ref()
                .map(|k| k.with_extension("trades.json"));
            let sandbox = Sandbox::start(config)
                .await
                .map_err(|e| StartError::Sandbox(e.to_string()))?;
            let registry = crate::providers::from_sandbox(
                sandbox.credentials(),
                std::time::Duration::from_millis(settings.sandbox.provider_timeout_ms),
            )?;
            (registry, Some(sandbox))
        } else {
            (crate::providers::from_settings(&settings)?, None)
        };
        let mut registry = registry;
        for app in extra_apps {
            if registry.get(app.kind(), &app.name).is_some() {
                return Err(crate::config::ConfigError::Invalid {
                    key: format!("{}.{}", app.kind(), app.name),
                    reason: "an app of that provider and name is already configured".to_owned(),
                }
                .into());
            }
            registry.insert(app);
        }

        let background = crate::reconciler::Background::from_settings(&settings)?;
        let metrics = Metrics::new()?;
        let latency = metrics.provider_calls.clone();
        let registry = registry.map_providers(|provider| {
            std::sync::Arc::new(crate::observed::Observed::new(provider, latency.clone()))
        });
        let state = web::Data::new(AppState {
            store,
            registry,
            metrics,
            limits: settings.limits.clone(),
            public_base_url,
            keys: crate::auth::KeyCache::new(crate::auth::KEY_CACHE_TTL),
            unverified_callbacks: crate::routes::notify::unverified_callback_throttle(),
            failed_authentications: crate::auth::failed_authentication_throttle(),
            write_probe: Default::default(),
            refunds_in_flight: Default::default(),
        });
        let shutdown_timeout = Duration::from_secs(settings.shutdown_timeout_seconds);
        let server = serve(
            listener,
            state.clone(),
            settings.limits.api_body_bytes,
            &settings.http,
            shutdown_timeout,
        )
        .map_err(|source| StartError::Bind {
            address: bound,
            source,
        })?;
        Ok(Application {
            port: bound.port(),
            server,
            state,
            sandbox,
            background,
            _serve_lock: serve_lock,
            shutdown_timeout,
        })
    }

    /// The port the server is bound to (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The embedded sandbox, when running.
    pub fn sandbox(&self) -> Option<&RunningSandbox> {
        self.sandbox.as_ref()
    }

    /// The shared state (store, registry) — for the CLI's start-up tasks and tests.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until SIGINT or SIGTERM, with the reconciler and the webhook dispatcher running
    /// beside it; then stops as [`Application::run_until`] does.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(stop_signal()).await
    }

    /// Serves until `stop` resolves, then stops within `shutdown_timeout_seconds`: the HTTP
    /// drain (no new connections, in-flight requests finish) and the background stop run
    /// together, not one after the other, each bounded by the same budget, and the leases and
    /// webhook delivery claims are released even when a hung endpoint had to be cut short.
    pub async fn run_until(
        self,
        stop: impl std::future::Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let budget = self.shutdown_timeout;
        let background = self.background.start(self.state.clone());
        let handle = self.server.handle();
        let mut server = std::pin::pin!(self.server);
        let result = tokio::select! {
            // The server ended on its own (it only does on an error).
            result = &mut server => {
                background.stop(budget).await;
                result
            }
            () = stop => {
                let started = Instant::now();
                // The server future does the stopping, so it is polled beside the handle's.
                let drain = async { tokio::join!(server, handle.stop(true)).0 };
                let (result, ()) = tokio::join!(drain, background.stop(budget));
                tracing::info!(took = ?started.elapsed(), "stopped");
                result
            }
        };
        if let Some(sandbox) = self.sandbox {
            sandbox.stop().await;
        }
        result
    }
}

/// Resolves on the first SIGINT or SIGTERM. A signal that cannot be listened for is logged
/// and ignored: the other one (or a kill) still stops the process.
async fn stop_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                terminate.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT: stopping"),
        () = terminate => tracing::info!("SIGTERM: stopping"),
    }
}

/// Where the embedded sandbox keeps its keys: beside the SQLite file, so the database and the
/// keys that can pay its orders travel together.
fn sandbox_keys_file(settings: &Settings) -> PathBuf {
    if let Some(path) = &settings.sandbox.keys_file {
        return path.clone();
    }
    let db_path = settings
        .database_url
        .strip_prefix("sqlite://")
        .or_else(|| settings.database_url.strip_prefix("sqlite:"))
        .filter(|p| !p.starts_with(":memory:") && !p.is_empty())
        .map(PathBuf::from);
    match db_path.as_ref().and_then(|p| p.parent()) {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join("paygate-sandbox.json"),
        _ => PathBuf::from("paygate-sandbox.json"),
    }
}

fn json_error(
    error: actix_web::error::JsonPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as E;
    let api = match &error {
        E::OverflowKnownLength { limit, .. } => ApiError::PayloadTooLarge { limit: *limit },
        E::Overflow { limit } => ApiError::PayloadTooLarge { limit: *limit },
        E::ContentType => ApiError::invalid(
            ErrorCode::InvalidContentType,
            "send the body as application/json",
        ),
        E::Deserialize(e) if e.is_data() => {
            ApiError::invalid(ErrorCode::InvalidField, e.to_string())
        }
        other => ApiError::BadRequest {
            code: ErrorCode::InvalidJson,
            message: other.to_string(),
        },
    };
    api.into()
}

fn query_error(
    error: actix_web::error::QueryPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    ApiError::invalid(ErrorCode::InvalidQuery, error.to_string()).into()
}

fn path_error(error: actix_web::error::PathError, _: &actix_web::HttpRequest) -> actix_web::Error {
    ApiError::NotFound(error.to_string()).into()
}

fn serve(
    listener: TcpListener,
    state: web::Data<AppState>,
    api_body_bytes: usize,
    http: &HttpSettings,
    shutdown_timeout: Duration,
) -> std::io::Result<Server> {
    let body_timeout = BodyTimeout(Duration::from_millis(http.request_body_timeout_ms));
    let keep_alive = match http.keep_alive_ms {
        0 => KeepAlive::Disabled,
        ms => KeepAlive::Timeout(Duration::from_millis(ms)),
    };
    let server = actix_web::HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(body_timeout)
            .app_data(
                web::JsonConfig::default()
                    .limit(api_body_bytes)
                    .error_handler(json_error),
            )
            .app_data(web::QueryConfig::default().error_handler(query_error))
            .app_data(web::PathConfig::default().error_handler(path_error))
            .wrap(actix_web::middleware::from_fn(
                crate::middleware::record_metrics,
            ))
            .wrap(actix_web::middleware::from_fn(
                crate::middleware::limit_body_time,
            ))
            .wrap(tracing_actix_web::TracingLogger::default())
            .route("/healthz", web::get().to(routes::health::healthz))
            .route("/readyz", web::get().to(routes::health::readyz))
            .route("/metrics", web::get().to(routes::health::metrics))
            .route("/openapi.json", web::get().to(crate::openapi::openapi_json))
            .service(
                web::scope("/notify")
                    .route(
                        "/{provider}/{app}",
                        web::post().to(routes::notify::payment_notify),
                    )
                    .route(
                        "/{provider}/{app}/{route}",
                        web::post().to(routes::notify::routed_notify),
                    ),
            )
            .service(
                web::scope("/v1")
                    // Orders, keys' scopes and finance figures must not sit in a proxy's or
                    // browser's cache.
                    .wrap(
                        actix_web::middleware::DefaultHeaders::new()
                            .add((actix_web::http::header::CACHE_CONTROL, "no-store")),
                    )
                    .route("/orders", web::post().to(routes::orders::create_order))
                    .route("/orders", web::get().to(routes::finance::list_orders))
                    .route(
                        "/orders/export.csv",
                        web::get().to(routes::finance::export_orders),
                    )
                    .route("/orders/{id}", web::get().to(routes::orders::get_order))
                    .route(
                        "/orders/{id}/sync",
                        web::post().to(routes::orders::sync_order),
                    )
                    .route(
                        "/orders/{id}/close",
                        web::post().to(routes::orders::close_order),
                    )
                    .route(
                        "/orders/{id}/refunds",
                        web::post().to(routes::orders::create_refund),
                    )
                    .route(
                        "/orders/{id}/refunds",
                        web::get().to(routes::orders::list_refunds),
                    )
                    .route("/reports/summary", web::get().to(routes::finance::summary))
                    .route("/anomalies", web::get().to(routes::finance::anomalies))
                    .route("/callbacks", web::get().to(routes::finance::callbacks))
                    .route(
                        "/reconciliation/runs",
                        web::get().to(routes::statements::list_runs),
                    )
                    .route(
                        "/reconciliation/runs",
                        web::post().to(routes::statements::reconcile_now),
                    )
                    .route(
                        "/reconciliation/differences",
                        web::get().to(routes::statements::list_differences),
                    )
                    .route(
                        "/reconciliation/differences.csv",
                        web::get().to(routes::statements::export_differences),
                    )
                    .route(
                        "/reconciliation/differences/{id}/resolution",
                        web::put().to(routes::statements::resolve),
                    )
                    .route(
                        "/reconciliation/files/{id}",
                        web::get().to(routes::statements::bill_file),
                    )
                    .route("/events", web::get().to(routes::events::list_events))
                    .route(
                        "/events/{id}/redeliver",
                        web::post().to(routes::events::redeliver_event),
                    )
                    .route("/wechat/{app}/login", web::post().to(routes::wechat::login))
                    .route(
                        "/wechat/{app}/jsapi-config",
                        web::post().to(routes::wechat::jsapi_config),
                    )
                    .route(
                        "/wechat/{app}/oauth/authorize-url",
                        web::post().to(routes::wechat::oauth_authorize_url),
                    )
                    .route(
                        "/wechat/{app}/oauth/openid",
                        web::post().to(routes::wechat::oauth_openid),
                    ),
            )
            .configure(crate::console::routes)
            .default_service(web::to(|| async {
                crate::error::ErrorResponse::new(ErrorCode::NotFound, "no such endpoint")
                    .into_response()
            }))
    })
    .client_request_timeout(Duration::from_millis(http.request_head_timeout_ms))
    .client_disconnect_timeout(Duration::from_millis(http.disconnect_timeout_ms))
    .keep_alive(keep_alive)
    .listen(listener)?
    // Signals are `run_until_stopped`'s, so the drain and the background stop start together.
    .disable_signals()
    .shutdown_timeout(shutdown_timeout.as_secs())
    .run();
    Ok(server)
}
