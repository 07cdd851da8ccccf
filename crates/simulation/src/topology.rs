//! What a simulation runs against: a fresh database, the sandbox providers in this process
//! (a real provider does not die with the gateway, so its notify retries keep coming to a
//! restarted one), and the real `paygate serve` as a child process configured with the
//! sandbox as its providers, fast reconciler and webhook settings.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::{Connection, RunQueryDsl};
use paygate_sandbox::{RunningSandbox, Sandbox, SandboxConfig};

use crate::SimError;

/// Divides the providers' notify retry schedules: WeChat's 15 s becomes 15 ms.
pub const TIME_SCALE: f64 = 1000.0;

/// How long a starting gateway may take to answer `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Which database backend a run uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    /// A fresh SQLite file per run.
    Sqlite,
    /// A fresh database per run on this PostgreSQL server, created and dropped through this
    /// admin URL (e.g. `postgres://postgres@127.0.0.1:5432/postgres`).
    Postgres {
        /// Where to create and drop the run's database.
        admin_url: String,
    },
}

impl DatabaseTarget {
    /// `sqlite`, or a `postgres://` admin URL.
    pub fn parse(text: &str) -> Result<DatabaseTarget, SimError> {
        if text == "sqlite" {
            Ok(DatabaseTarget::Sqlite)
        } else if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Ok(DatabaseTarget::Postgres {
                admin_url: text.to_owned(),
            })
        } else {
            Err(SimError::Usage(format!(
                "--database must be sqlite or a postgres:// URL, not {text:?}"
            )))
        }
    }

    /// `sqlite` or `postgres`, for reports.
    pub fn backend(&self) -> &'static str {
        match self {
            DatabaseTarget::Sqlite => "sqlite",
            DatabaseTarget::Postgres { .. } => "postgres",
        }
    }
}

/// The run's own database, dropped (PostgreSQL) or deleted with the run's directory (SQLite)
/// when the run ends.
#[derive(Debug)]
pub struct RunDatabase {
    /// What the gateway connects to.
    pub url: String,
    admin: Option<(String, String)>,
}

impl RunDatabase {
    /// Creates an empty database for one run.
    pub fn create(target: &DatabaseTarget, dir: &Path) -> Result<RunDatabase, SimError> {
        match target {
            DatabaseTarget::Sqlite => Ok(RunDatabase {
                url: format!("sqlite://{}", dir.join("paygate.db").display()),
                admin: None,
            }),
            DatabaseTarget::Postgres { admin_url } => {
                let name = format!(
                    "paygate_sim_{}",
                    ulid::Ulid::new().to_string().to_lowercase()
                );
                let mut admin = diesel::PgConnection::establish(admin_url)
                    .map_err(|e| SimError::Database(e.to_string()))?;
                diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
                    .execute(&mut admin)
                    .map_err(|e| SimError::Database(e.to_string()))?;
                let base = admin_url
                    .rsplit_once('/')
                    .map_or(admin_url.as_str(), |(base, _)| base);
                Ok(RunDatabase {
                    url: format!("{base}/{name}"),
                    admin: Some((admin_url.clone(), name)),
                })
            }
        }
    }
}

impl Drop for RunDatabase {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = &self.admin
            && let Ok(mut conn) = diesel::PgConnection::establish(admin_url)
        {
            let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
            let _ = diesel::sql_query(drop).execute(&mut conn);
        }
    }
}

/// A database outage made from outside the gateway: on SQLite another connection holds the
/// write lock (the gateway's writers give up after their busy timeout); on PostgreSQL the
/// database refuses new connections and the gateway's are terminated.
pub enum Outage {
    /// The connection holding `BEGIN IMMEDIATE`.
    Sqlite(diesel::SqliteConnection),
    /// The database whose connections are refused.
    Postgres {
        /// The admin URL that can re-allow them.
        admin_url: String,
        /// The database's name.
        name: String,
    },
}

impl Outage {
    /// Takes the database away (blocking: call from a blocking thread).
    pub fn start(database_url: &str, admin_url: Option<&str>) -> Result<Outage, SimError> {
        let failed = |e: &dyn std::fmt::Display| SimError::Database(format!("outage: {e}"));
        match (database_url.strip_prefix("sqlite://"), admin_url) {
            (Some(path), _) => {
                let mut conn = diesel::SqliteConnection::establish(path).map_err(|e| failed(&e))?;
                conn.batch_execute("PRAGMA busy_timeout = 5000; BEGIN IMMEDIATE")
                    .map_err(|e| failed(&e))?;
                Ok(Outage::Sqlite(conn))
            }
            (None, Some(admin_url)) => {
                let name = database_url
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let mut admin =
                    diesel::PgConnection::establish(admin_url).map_err(|e| failed(&e))?;
                diesel::sql_query(format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"))
                    .execute(&mut admin)
                    .map_err(|e| failed(&e))?;
                diesel::sql_query(format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = '{name}' AND pid <> pg_backend_pid()"
                ))
                .execute(&mut admin)
                .map_err(|e| failed(&e))?;
                Ok(Outage::Postgres {
                    admin_url: admin_url.to_owned(),
                    name,
                })
            }
            (None, None) => Err(SimError::Database(
                "a PostgreSQL outage needs the admin URL".to_owned(),
            )),
        }
    }

    /// Gives the database back (blocking).
    pub fn end(self) -> Result<(), SimError> {
        let failed = |e: &dyn std::fmt::Display| SimError::Database(format!("outage end: {e}"));
        match self {
            Outage::Sqlite(mut conn) => conn.batch_execute("ROLLBACK").map_err(|e| failed(&e)),
            Outage::Postgres { admin_url, name } => {
                let mut admin =
                    diesel::PgConnection::establish(&admin_url).map_err(|e| failed(&e))?;
                diesel::sql_query(format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"))
                    .execute(&mut admin)
                    .map(drop)
                    .map_err(|e| failed(&e))
            }
        }
    }
}

/// Quotes a value as a TOML basic string (JSON escaping is a subset TOML accepts).
fn toml_string(value: &str) -> String {
    serde_json::Value::String(value.to_owned()).to_string()
}

/// How many orders one reconciler pass handles in a simulation by default: with passes every
/// 100 ms and a back-off capped at 400 ms, a few dozen pending orders exceed
/// `batch_size × backoff_max / interval`, so a reconciler that is not fair starves the newer
/// ones. (A larger batch tells starvation apart from other causes.)
pub const RECONCILER_BATCH: u32 = 2;

/// The gateway's background settings in a simulation: reconciler passes every 100 ms of
/// `batch_size` orders each, with a back-off capped at 400 ms; orders closed 50 s before
/// their nominal expiry, so a 60 s order expires in 10 s; webhook polls every 50 ms. The daily
/// statement job is off: statement runs are operations, and the job would take their bill
/// faults.
fn background_toml(batch_size: u32) -> String {
    format!(
        "[reconciler]
interval_ms = 100
query_pending_after_seconds = 0
query_backoff_ms = 100
query_backoff_max_ms = 400
expiry_grace_seconds = -50
batch_size = {batch_size}

[webhooks]
poll_interval_ms = 50
initial_backoff_ms = 50
max_backoff_ms = 200

[statements]
enabled = false
"
    )
}

/// The app name the sandbox's merchant is configured under.
pub const APP: &str = "sim";

/// The app name of the sandbox's merchant through WeChat Pay APIv3 (the same `mch_id` as the
/// v2 app, so one WeChat bill covers both).
pub const V3_APP: &str = "sim-v3";

/// Keys of the sandbox's exported config that the simulation does not use and that a gateway
/// built before them (run with `--paygate-bin`) would refuse as unknown.
const UNUSED_KEYS: [&str; 1] = ["oauth_base"];

/// A gateway config naming the sandbox's merchant as ordinary (external) provider apps: WeChat
/// v2 and Alipay as [`APP`], WeChat APIv3 as [`V3_APP`] (WeChat orders name their app).
pub(crate) fn gateway_config(
    port: u16,
    database_url: &str,
    sandbox: &RunningSandbox,
    batch_size: u32,
) -> String {
    format!(
        "listen = {}\ndatabase_url = {}\n\n[sandbox]\nenabled = false\n\n{}\n{}\n\n{}",
        toml_string(&format!("127.0.0.1:{port}")),
        toml_string(database_url),
        background_toml(batch_size),
        sandbox
            .credentials()
            .export_toml(APP)
            .lines()
            .filter(|line| !UNUSED_KEYS
                .iter()
                .any(|key| line.starts_with(&format!("{key} ="))))
            .collect::<Vec<_>>()
            .join("\n"),
        sandbox.credentials().export_v3_toml(V3_APP),
    )
}

/// The API keys the simulation uses.
#[derive(Clone)]
pub struct Keys {
    /// A merchant key (creates, refunds, closes).
    pub merchant: String,
    /// A finance key (lists, events, anomalies).
    pub finance: String,
}

/// One `paygate serve` child process with its own config file: started (and retried until
/// `/readyz` answers), stopped with SIGTERM or SIGKILL, and killed when dropped. A simulation
/// runs one, the replica harness several on one database.
pub struct GatewayProcess {
    binary: PathBuf,
    dir: PathBuf,
    config: PathBuf,
    name: String,
    child: Option<Child>,
    /// `http://127.0.0.1:PORT` of the gateway.
    pub base_url: String,
    /// How many times it has been started.
    pub starts: u32,
}

impl GatewayProcess {
    /// A gateway named `name` (for its log files) run from `dir` with the config `config`,
    /// listening on `port`; not started.
    pub fn new(binary: &Path, dir: &Path, config: PathBuf, name: &str, port: u16) -> Self {
        GatewayProcess {
            binary: binary.to_owned(),
            dir: dir.to_owned(),
            config,
            name: name.to_owned(),
            child: None,
            base_url: format!("http://127.0.0.1:{port}"),
            starts: 0,
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .current_dir(&self.dir)
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "error")
            .stdin(Stdio::null());
        command
    }

    /// Creates an API key of `role` with the CLI (which migrates the database first).
    pub fn create_key(&self, role: &str) -> Result<String, SimError> {
        let output = self
            .command()
            .args(["keys", "create", "--role", role, "--name"])
            .arg(format!("sim {role}"))
            .output()?;
        let key = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if !output.status.success() || key.is_empty() {
            return Err(SimError::Gateway(format!(
                "keys create --role {role}: {}",
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        Ok(key)
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join(format!("{}-{}.log", self.name, self.starts))
    }

    /// Starts `paygate serve` and waits for `/readyz`; a start that fails (the database is
    /// away) is tried again until the ready timeout.
    pub async fn start(&mut self) -> Result<(), SimError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let ready_url = format!("{}/readyz", self.base_url);
        let started = Instant::now();
        while started.elapsed() < READY_TIMEOUT {
            self.starts += 1;
            let log = std::fs::File::create(self.log_file())?;
            let mut child = self
                .command()
                .arg("serve")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?;
            loop {
                if let Ok(response) = http.get(&ready_url).send().await
                    && response.status().is_success()
                {
                    self.child = Some(child);
                    return Ok(());
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if started.elapsed() > READY_TIMEOUT {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(SimError::Gateway(format!(
            "not ready within {} s: {}",
            READY_TIMEOUT.as_secs(),
            std::fs::read_to_string(self.log_file()).unwrap_or_default()
        )))
    }

    /// Stops the gateway: SIGKILL at once, or SIGTERM and a drain of up to 40 s (a request
    /// may be waiting out a provider timeout), then SIGKILL.
    pub async fn stop(&mut self, kill: bool) -> Result<(), SimError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if !kill {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(40);
            while Instant::now() < deadline {
                if let Some(status) = child.try_wait()? {
                    if !status.success() {
                        return Err(SimError::Gateway(format!(
                            "exit after SIGTERM: {status}: {}",
                            std::fs::read_to_string(self.log_file()).unwrap_or_default()
                        )));
                    }
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Whether the process is running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Everything one run needs, torn down when dropped.
pub struct Topology {
    // Declared first so it is dropped (killed) before the directory and database go.
    gateway: GatewayProcess,
    _dir: tempfile::TempDir,
    /// The run's database.
    pub database: RunDatabase,
    admin_url: Option<String>,
    /// The simulated providers.
    pub sandbox: RunningSandbox,
    /// `http://127.0.0.1:PORT` of the gateway.
    pub base_url: String,
    /// The API keys.
    pub keys: Keys,
    /// How many times the gateway has been started.
    pub starts: u32,
}

impl Topology {
    /// Starts the sandbox, writes the gateway's config (with `batch_size` orders per
    /// reconciler pass), creates the API keys (which migrates the database) and starts the
    /// gateway.
    pub async fn start(
        binary: &Path,
        target: &DatabaseTarget,
        batch_size: u32,
    ) -> Result<Topology, SimError> {
        check_binary(binary)?;
        let dir = tempfile::Builder::new().prefix("paygate-sim").tempdir()?;
        let database = RunDatabase::create(target, dir.path())?;
        let sandbox = Sandbox::start(SandboxConfig::for_tests(TIME_SCALE))
            .await
            .map_err(|e| SimError::Sandbox(e.to_string()))?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let config = dir.path().join("paygate.toml");
        std::fs::write(
            &config,
            gateway_config(port, &database.url, &sandbox, batch_size),
        )?;
        let admin_url = match target {
            DatabaseTarget::Postgres { admin_url } => Some(admin_url.clone()),
            DatabaseTarget::Sqlite => None,
        };
        let gateway = GatewayProcess::new(binary, dir.path(), config, "paygate", port);
        let keys = Keys {
            merchant: gateway.create_key("merchant")?,
            finance: gateway.create_key("finance")?,
        };
        let mut topology = Topology {
            base_url: gateway.base_url.clone(),
            gateway,
            _dir: dir,
            database,
            admin_url,
            sandbox,
            keys,
            starts: 0,
        };
        topology.start_gateway().await?;
        Ok(topology)
    }

    /// The admin URL of a PostgreSQL run (for outages).
    pub fn admin_url(&self) -> Option<&str> {
        self.admin_url.as_deref()
    }

    /// Starts `paygate serve` and waits for `/readyz`.
    pub async fn start_gateway(&mut self) -> Result<(), SimError> {
        let started = self.gateway.start().await;
        self.starts = self.gateway.starts;
        started
    }

    /// Stops the gateway (see [`GatewayProcess::stop`]).
    pub async fn stop_gateway(&mut self, kill: bool) -> Result<(), SimError> {
        self.gateway.stop(kill).await
    }

    /// Whether the gateway process is running.
    pub fn gateway_running(&mut self) -> bool {
        self.gateway.running()
    }
}

/// Refuses to start without a paygate binary, naming how to get one.
pub(crate) fn check_binary(binary: &Path) -> Result<(), SimError> {
    if binary.is_file() {
        Ok(())
    } else {
        Err(SimError::Usage(format!(
            "no paygate binary at {} (build it, or pass --paygate-bin)",
            binary.display()
        )))
    }
}
