//! The gateway under load: either a `paygate serve` child process this tool starts on a
//! fresh database (so it can time the cold start and read the child's peak RSS), or an
//! already-running gateway named by URL.

use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::LoadError;
use crate::workload::Target;

/// How long a starting gateway may take to answer `/readyz` before we give up.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Refuses anything but loopback, so the tool cannot be pointed at someone else's server.
pub fn ensure_loopback(url: &str) -> Result<(), LoadError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| LoadError::InvalidOption {
        option: "--target",
        reason: e.to_string(),
    })?;
    let host = parsed.host_str().unwrap_or_default();
    let literal_loopback = host
        .trim_matches(['[', ']'])
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback());
    if literal_loopback || host == "localhost" {
        Ok(())
    } else {
        Err(LoadError::NotLoopback(url.to_owned()))
    }
}

/// Memory figures of a process, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Memory {
    /// Peak resident set size (`VmHWM`), KiB.
    pub peak_rss_kib: u64,
    /// Current resident set size (`VmRSS`), KiB.
    pub rss_kib: u64,
}

/// Reads `VmHWM`/`VmRSS` of `pid`; `None` when /proc is unavailable.
pub fn memory_of(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
    };
    Some(Memory {
        peak_rss_kib: field("VmHWM:")?,
        rss_kib: field("VmRSS:")?,
    })
}

/// CPU time (user + system) a process has used so far, from `/proc/<pid>/stat`; `None` when
/// /proc is unavailable. Assumes the usual 100 clock ticks per second.
pub fn cpu_time_of(pid: u32) -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after_name = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(std::time::Duration::from_millis(ticks * 10))
}

/// The `paygate serve` processes this tool started on one database (one, or `--replicas N`
/// on PostgreSQL); each is stopped (SIGTERM, then kill) when dropped.
pub struct SpawnedGateway {
    binary: PathBuf,
    /// The temp dir holding the SQLite database, the sandbox keys and the servers' logs.
    dir: tempfile::TempDir,
    database_url: String,
    /// One per replica, in the order the workload's round robin visits them.
    replicas: Vec<ServeProcess>,
    /// A sandbox run by this tool instead of the gateway's embedded one, kept alive here.
    external_sandbox: Option<paygate_sandbox::RunningSandbox>,
    /// The target (URLs and keys) for the workload.
    pub target: Target,
}

/// One `paygate serve` of a [`SpawnedGateway`].
struct ServeProcess {
    port: u16,
    child: Option<Child>,
}

impl std::fmt::Debug for SpawnedGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpawnedGateway")
            .field("binary", &self.binary)
            .field(
                "ports",
                &self.replicas.iter().map(|r| r.port).collect::<Vec<_>>(),
            )
            .field("pids", &self.pids())
            .field("external_sandbox", &self.external_sandbox.is_some())
            .finish_non_exhaustive()
    }
}

/// The `paygate` beside this executable (both are built into the same target dir).
pub fn default_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("paygate")))
        .unwrap_or_else(|| PathBuf::from("paygate"))
}

/// Quotes a value as a TOML basic string (JSON escaping is a subset TOML accepts).
fn toml_string(value: &str) -> String {
    serde_json::Value::String(value.to_owned()).to_string()
}

/// A gateway config naming the sandbox's merchant as ordinary provider apps. Written here
/// rather than with `SandboxCredentials::export_toml`, whose `merchant_certificate` table the
/// gateway's config refuses (it takes `cert_pem_file`/`key_pem_file`).
fn gateway_config(
    dir: &Path,
    credentials: &paygate_sandbox::SandboxCredentials,
) -> Result<String, LoadError> {
    let (w, a) = (&credentials.wechat, &credentials.alipay);
    let cert = dir.join("wechat-cert.pem");
    let key = dir.join("wechat-key.pem");
    std::fs::write(&cert, &w.merchant_cert_pem)?;
    std::fs::write(&key, &w.merchant_key_pem)?;
    let app = crate::notifies::SANDBOX_APP;
    let mut toml = format!("[sandbox]\nenabled = false\n\n[wechat.{app}]\n");
    for (name, value) in [
        ("appid", w.appid.as_str()),
        ("mch_id", &w.mch_id),
        ("api_key", &w.api_key),
        ("sign_type", "HMAC-SHA256"),
        ("api_base", &w.api_base),
        ("login_base", &w.login_base),
        ("app_secret", &w.app_secret),
        ("server_ip", "127.0.0.1"),
        ("cert_pem_file", &cert.display().to_string()),
        ("key_pem_file", &key.display().to_string()),
    ] {
        toml.push_str(&format!("{name} = {}\n", toml_string(value)));
    }
    toml.push_str(&format!("\n[alipay.{app}]\n"));
    for (name, value) in [
        ("app_id", &a.app_id),
        ("seller_id", &a.seller_id),
        ("app_private_key", &a.app_private_key),
        ("alipay_public_key", &a.alipay_public_key),
        ("gateway_url", &a.gateway_url),
    ] {
        toml.push_str(&format!("{name} = {}\n", toml_string(value)));
    }
    Ok(toml)
}

/// `count` distinct free loopback ports: every listener is held until all are picked, so the
/// operating system cannot hand one port out twice.
fn free_ports(count: usize) -> Result<Vec<u16>, LoadError> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

impl SpawnedGateway {
    /// Creates a merchant and a finance key with `paygate keys create` (which also migrates
    /// the database) and picks a free loopback port for each of `replicas` `paygate serve`
    /// processes ([`SpawnedGateway::start`] starts them). `database_url` `None` means a fresh
    /// SQLite file in a temp dir; a PostgreSQL URL should name an empty, throwaway database.
    ///
    /// With `external_sandbox` the simulators run in this process with their trades kept in
    /// memory only, and the gateway gets them as ordinary configured provider apps; without
    /// it the gateway embeds them (and the embedded sandbox saves every trade to a file).
    /// Several replicas need PostgreSQL (SQLite is one process's database) and the external
    /// sandbox (replicas must share their providers as they share the database).
    pub async fn prepare(
        binary: &Path,
        database_url: Option<&str>,
        external_sandbox: bool,
        replicas: usize,
    ) -> Result<SpawnedGateway, LoadError> {
        check_replicas(replicas, database_url, external_sandbox)?;
        let dir = tempfile::Builder::new().prefix("paygate-load").tempdir()?;
        let database_url = database_url.map_or_else(
            || format!("sqlite://{}", dir.path().join("paygate.db").display()),
            str::to_owned,
        );
        let ports = free_ports(replicas)?;
        let mut gateway = SpawnedGateway {
            binary: binary.to_owned(),
            dir,
            database_url,
            replicas: ports
                .iter()
                .map(|&port| ServeProcess { port, child: None })
                .collect(),
            external_sandbox: None,
            target: Target {
                base_urls: ports
                    .iter()
                    .map(|port| format!("http://127.0.0.1:{port}"))
                    .collect(),
                merchant_key: String::new(),
                finance_key: String::new(),
            },
        };
        if external_sandbox {
            let mut config = paygate_sandbox::SandboxConfig::for_tests(1.0);
            config.keys_file = Some(gateway.sandbox_keys_file());
            let sandbox = paygate_sandbox::Sandbox::start(config)
                .await
                .map_err(|e| LoadError::Sandbox(e.to_string()))?;
            let toml = gateway_config(gateway.dir.path(), sandbox.credentials())?;
            std::fs::write(gateway.config_file(), toml)?;
            gateway.external_sandbox = Some(sandbox);
        }
        gateway.target.merchant_key = gateway.create_key("merchant")?;
        gateway.target.finance_key = gateway.create_key("finance")?;
        Ok(gateway)
    }

    /// Where the embedded sandbox keeps its keys (we point it there explicitly).
    pub fn sandbox_keys_file(&self) -> PathBuf {
        self.dir.path().join("paygate-sandbox.json")
    }

    fn config_file(&self) -> PathBuf {
        self.dir.path().join("paygate.toml")
    }

    fn log_file(&self, replica: usize) -> PathBuf {
        if replica == 0 {
            self.dir.path().join("paygate.log")
        } else {
            self.dir.path().join(format!("paygate-{replica}.log"))
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .current_dir(self.dir.path())
            .env("PAYGATE__DATABASE_URL", &self.database_url)
            .env("PAYGATE__SANDBOX__KEYS_FILE", self.sandbox_keys_file())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            );
        if self.external_sandbox.is_some() {
            command.arg("--config").arg(self.config_file());
        }
        command
    }

    fn create_key(&self, role: &str) -> Result<String, LoadError> {
        let output = self
            .command()
            .args(["keys", "create", "--role", role, "--name"])
            .arg(format!("loadgen {role}"))
            .output()
            .map_err(|source| LoadError::Spawn {
                path: self.binary.clone(),
                source,
            })?;
        let key = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if !output.status.success() || key.is_empty() {
            return Err(LoadError::Command {
                command: format!("keys create --role {role}"),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        Ok(key)
    }

    /// How many replicas this gateway runs.
    pub fn replica_count(&self) -> usize {
        self.replicas.len()
    }

    /// Starts every replica in turn and returns, for each, the time from its spawn to its
    /// first 200 on `/readyz`.
    pub async fn start(&mut self, client: &reqwest::Client) -> Result<Vec<Duration>, LoadError> {
        let mut ready = Vec::with_capacity(self.replicas.len());
        for replica in 0..self.replicas.len() {
            ready.push(self.start_replica(replica, client).await?);
        }
        Ok(ready)
    }

    /// Starts `paygate serve` for replica `index` and returns the time from spawn to the first
    /// 200 on its `/readyz`.
    pub async fn start_replica(
        &mut self,
        index: usize,
        client: &reqwest::Client,
    ) -> Result<Duration, LoadError> {
        let port = self.process(index)?.port;
        let log_file = self.log_file(index);
        let log = std::fs::File::create(&log_file)?;
        let spawned_at = Instant::now();
        let child = self
            .command()
            .args(["serve", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|source| LoadError::Spawn {
                path: self.binary.clone(),
                source,
            })?;
        self.process(index)?.child = Some(child);
        let ready_url = format!("http://127.0.0.1:{port}/readyz");
        while spawned_at.elapsed() < READY_TIMEOUT {
            if let Ok(response) = client.get(&ready_url).send().await
                && response.status().as_u16() == 200
            {
                return Ok(spawned_at.elapsed());
            }
            if let Some(child) = self.process(index)?.child.as_mut()
                && let Ok(Some(_exited)) = child.try_wait()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Err(LoadError::NotReady {
            seconds: READY_TIMEOUT.as_secs(),
            log: std::fs::read_to_string(log_file).unwrap_or_default(),
        })
    }

    fn process(&mut self, index: usize) -> Result<&mut ServeProcess, LoadError> {
        self.replicas
            .get_mut(index)
            .ok_or_else(|| LoadError::InvalidOption {
                option: "--replicas",
                reason: format!("no replica {index}"),
            })
    }

    /// Each replica's process id while it runs, in replica order.
    pub fn pids(&self) -> Vec<Option<u32>> {
        self.replicas
            .iter()
            .map(|r| r.child.as_ref().map(Child::id))
            .collect()
    }

    /// Stops replica `index`: SIGTERM (graceful drain), then a kill after five seconds.
    pub fn stop_replica(&mut self, index: usize) {
        let Some(mut child) = self.replicas.get_mut(index).and_then(|r| r.child.take()) else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Stops every replica.
    pub fn stop(&mut self) {
        for index in 0..self.replicas.len() {
            self.stop_replica(index);
        }
    }
}

/// The most replicas the tool starts: each is a process with its own pools and writer
/// connections on a box the tool shares with them.
pub const MAX_REPLICAS: usize = 16;

/// Refuses a replica count the topology cannot serve correctly: more than one replica needs
/// PostgreSQL and one shared sandbox (see docs/deploy.md, *Scaling*).
pub fn check_replicas(
    replicas: usize,
    database_url: Option<&str>,
    external_sandbox: bool,
) -> Result<(), LoadError> {
    let invalid = |reason: &str| {
        Err(LoadError::InvalidOption {
            option: "--replicas",
            reason: reason.to_owned(),
        })
    };
    if !(1..=MAX_REPLICAS).contains(&replicas) {
        return invalid(&format!("must be 1…{MAX_REPLICAS}"));
    }
    if replicas == 1 {
        return Ok(());
    }
    let postgres = database_url
        .is_some_and(|url| url.starts_with("postgres://") || url.starts_with("postgresql://"));
    if !postgres {
        return invalid(
            "several replicas need --database-url postgres://… (SQLite is one process's database)",
        );
    }
    if !external_sandbox {
        return invalid(
            "several replicas need --external-sandbox: replicas must share their providers, and each embedded sandbox knows only its own trades",
        );
    }
    Ok(())
}

impl Drop for SpawnedGateway {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_replicas_need_postgres_and_the_external_sandbox() {
        let pg = Some("postgres://postgres@127.0.0.1:5432/x");
        assert!(check_replicas(1, None, false).is_ok());
        assert!(check_replicas(3, pg, true).is_ok());
        assert!(check_replicas(3, None, true).is_err());
        assert!(check_replicas(3, Some("sqlite:///tmp/x.db"), true).is_err());
        assert!(check_replicas(3, pg, false).is_err());
        assert!(check_replicas(0, pg, true).is_err());
        assert!(check_replicas(MAX_REPLICAS + 1, pg, true).is_err());
    }

    #[test]
    fn free_ports_are_distinct() {
        let ports = free_ports(4).unwrap();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 4, "{ports:?}");
    }

    #[test]
    fn only_loopback_targets_are_accepted() {
        assert!(ensure_loopback("http://127.0.0.1:8080").is_ok());
        assert!(ensure_loopback("http://[::1]:8080").is_ok());
        assert!(ensure_loopback("http://192.0.2.1:8080").is_err());
        assert!(ensure_loopback("http://example.com").is_err());
    }

    #[test]
    fn cpu_time_of_this_process_grows_while_it_computes() {
        let before = cpu_time_of(std::process::id()).unwrap();
        let mut x = 0u64;
        let started = Instant::now();
        while cpu_time_of(std::process::id()).unwrap() <= before {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            assert!(started.elapsed() < Duration::from_secs(30), "{x}");
        }
    }

    #[test]
    fn memory_of_this_process_reports_a_peak_at_least_the_current_size() {
        let memory = memory_of(std::process::id()).unwrap();
        assert!(memory.peak_rss_kib >= memory.rss_kib, "{memory:?}");
        assert!(memory.rss_kib > 0);
    }
}
