//! Several `paygate serve` replicas on one PostgreSQL database and one sandbox: the topology a
//! merchant who outgrows one box runs behind a load balancer. The scale-out proofs (every
//! notify applied once however many replicas receive it, refunds never over the paid amount,
//! leased work on one replica at a time and taken over after a SIGKILL, rolling restarts that
//! fail no request) drive it from `crates/gateway/tests/replicas.rs`.
//!
//! Every replica has its own port and config file but the same database, providers and
//! background settings (fast reconciler and webhook passes, so lease hand-overs happen within
//! a second). The client side spreads requests over the replicas itself, round robin over the
//! ones it considers up: what a health-checking load balancer does, without a proxy to build.

use std::net::TcpListener;
use std::path::Path;

use paygate_sandbox::{RunningSandbox, Sandbox, SandboxConfig};

use crate::SimError;
use crate::merchant::Merchant;
use crate::topology::{
    DatabaseTarget, GatewayProcess, Keys, RunDatabase, TIME_SCALE, check_binary, gateway_config,
};

/// Orders per reconciler pass in the replica harness: large enough that a pass is real work.
const REPLICA_RECONCILER_BATCH: u32 = 50;

/// N replicas, their database and the sandbox, torn down when dropped.
pub struct Replicas {
    // Declared first so the processes are killed before the directory and database go.
    replicas: Vec<GatewayProcess>,
    _dir: tempfile::TempDir,
    /// The shared database.
    pub database: RunDatabase,
    /// The simulated providers.
    pub sandbox: RunningSandbox,
    /// The API keys (valid on every replica: they live in the database).
    pub keys: Keys,
}

impl Replicas {
    /// Creates a fresh database on the PostgreSQL server behind `admin_url`, starts the
    /// sandbox, creates the API keys and starts `count` replicas of `binary`.
    pub async fn start(binary: &Path, admin_url: &str, count: usize) -> Result<Replicas, SimError> {
        check_binary(binary)?;
        let mut dir = tempfile::Builder::new()
            .prefix("paygate-replicas")
            .tempdir()?;
        // PAYGATE_REPLICA_KEEP_LOGS keeps the replicas' logs (and configs) for a post-mortem.
        if std::env::var_os("PAYGATE_REPLICA_KEEP_LOGS").is_some() {
            dir.disable_cleanup(true);
            eprintln!("replicas: logs kept in {}", dir.path().display());
        }
        let database = RunDatabase::create(
            &DatabaseTarget::Postgres {
                admin_url: admin_url.to_owned(),
            },
            dir.path(),
        )?;
        let sandbox = Sandbox::start(SandboxConfig::for_tests(TIME_SCALE))
            .await
            .map_err(|e| SimError::Sandbox(e.to_string()))?;
        let mut replicas = Vec::with_capacity(count);
        for index in 0..count {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let config = dir.path().join(format!("replica-{index}.toml"));
            std::fs::write(
                &config,
                gateway_config(port, &database.url, &sandbox, REPLICA_RECONCILER_BATCH),
            )?;
            replicas.push(GatewayProcess::new(
                binary,
                dir.path(),
                config,
                &format!("replica-{index}"),
                port,
            ));
        }
        let first = replicas
            .first()
            .ok_or_else(|| SimError::Usage("a replica set needs at least one replica".into()))?;
        let keys = Keys {
            merchant: first.create_key("merchant")?,
            finance: first.create_key("finance")?,
        };
        let mut set = Replicas {
            replicas,
            _dir: dir,
            database,
            sandbox,
            keys,
        };
        for index in 0..count {
            set.start_replica(index).await?;
        }
        Ok(set)
    }

    /// How many replicas there are (running or not).
    pub fn len(&self) -> usize {
        self.replicas.len()
    }

    /// Whether the set is empty (never, once started).
    pub fn is_empty(&self) -> bool {
        self.replicas.is_empty()
    }

    fn replica(&mut self, index: usize) -> Result<&mut GatewayProcess, SimError> {
        self.replicas
            .get_mut(index)
            .ok_or_else(|| SimError::Usage(format!("no replica {index}")))
    }

    /// `http://127.0.0.1:PORT` of replica `index`.
    pub fn base_url(&self, index: usize) -> Option<&str> {
        self.replicas.get(index).map(|r| r.base_url.as_str())
    }

    /// A merchant backend talking to replica `index` only.
    pub fn merchant(&self, index: usize) -> Result<Merchant, SimError> {
        let base = self
            .base_url(index)
            .ok_or_else(|| SimError::Usage(format!("no replica {index}")))?;
        Merchant::new(base, self.sandbox.base_url(), self.keys.clone())
    }

    /// Starts replica `index` and waits until it is ready.
    pub async fn start_replica(&mut self, index: usize) -> Result<(), SimError> {
        self.replica(index)?.start().await
    }

    /// Stops replica `index`: SIGKILL, or SIGTERM with its drain.
    pub async fn stop_replica(&mut self, index: usize, kill: bool) -> Result<(), SimError> {
        self.replica(index)?.stop(kill).await
    }

    /// Whether replica `index` is running.
    pub fn running(&mut self, index: usize) -> bool {
        self.replica(index).is_ok_and(GatewayProcess::running)
    }

    /// The process id of replica `index` while it runs.
    pub fn pid(&self, index: usize) -> Option<u32> {
        self.replicas.get(index).and_then(GatewayProcess::pid)
    }
}
