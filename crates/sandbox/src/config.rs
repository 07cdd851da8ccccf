//! How to start a sandbox.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Settings for [`crate::Sandbox::start`].
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Where to listen; port 0 picks a free port (tests, embedding).
    pub listen: SocketAddr,
    /// A JSON file holding the keys; created when missing so restarts keep them. `None`
    /// generates fresh keys every start.
    pub keys_file: Option<PathBuf>,
    /// A JSON file holding the trades, rewritten after every change, so a restarted sandbox
    /// still knows every order it issued. `None` keeps trades in memory only.
    pub state_file: Option<PathBuf>,
    /// Divides the providers' notify retry schedules (15s, 4m, …): 1.0 is real time, 10_000.0
    /// turns WeChat's first 15 s retry into 1.5 ms for tests.
    pub time_scale: f64,
    /// The base URL clients should use when it differs from the bound address (behind a proxy).
    pub public_base_url: Option<String>,
    /// How long one notify delivery may take before it counts as failed.
    pub notify_timeout: std::time::Duration,
}

impl SandboxConfig {
    /// Real-time schedules on `listen`, fresh keys, state in memory.
    pub fn new(listen: SocketAddr) -> SandboxConfig {
        SandboxConfig {
            listen,
            keys_file: None,
            state_file: None,
            time_scale: 1.0,
            public_base_url: None,
            notify_timeout: std::time::Duration::from_secs(10),
        }
    }

    /// A test setup: `127.0.0.1:0`, schedules sped up by `time_scale`.
    pub fn for_tests(time_scale: f64) -> SandboxConfig {
        SandboxConfig {
            time_scale,
            ..SandboxConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)))
        }
    }
}
