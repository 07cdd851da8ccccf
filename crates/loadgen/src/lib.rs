//! `paygate-loadgen`: drives a paygate gateway over loopback HTTP with a weighted mix of the
//! requests that matter for capacity — Alipay app orders (RSA-signed orderString), WeChat
//! mini-program orders (a unified-order round trip to the sandbox), signed paid notifies for
//! both providers, and finance list queries — at a fixed concurrency or a fixed arrival rate,
//! and reports throughput, latency percentiles, errors and the gateway's peak RSS.
//!
//! Design decisions:
//! - **Real HTTP client** (`reqwest` on tokio, keep-alive pool), never a hand-rolled stack,
//!   so the figures are what a merchant's client would see.
//! - **Work that is not under test is done before the clock starts**: the orders that the
//!   notifies pay are created, and every notify body is signed, in a preparation phase. An
//!   RSA signature in the load generator would otherwise steal one of the two cores from the
//!   gateway it is measuring.
//! - **Notifies are genuine**: signed with the sandbox's own keys (read from the keys file the
//!   embedded sandbox writes beside the database) through `paygate-wechat`/`paygate-alipay`'s
//!   public signing functions, so the gateway runs its full verify → look up → compare-and-set
//!   path, not a rejection shortcut.
//! - **The gateway's own cost is separable**: `--external-sandbox` runs the provider
//!   simulators in this process with trades in memory and hands them to the gateway as
//!   ordinary provider apps, so a WeChat create measures the gateway rather than the embedded
//!   sandbox's bookkeeping; the report also gives the CPU seconds of both processes.
//! - **Fixed rate measures from the scheduled send time**, so a stalled server shows up in
//!   the percentiles instead of silently lowering the offered load (coordinated omission).
//! - **Replicas like production**: `--replicas N` starts N `paygate serve` processes on one
//!   PostgreSQL database with one shared external sandbox (never a sandbox per replica) and
//!   sends round robin, as a load balancer without affinity would; each replica's share is
//!   reported, and a run with notifies ends with an exactly-once check read back through the
//!   finance API (the orders paid lie between the notifies acknowledged and sent).
//! - **Bounded**: loopback targets only, and a duration capped at [`workload::MAX_DURATION`].

pub mod gateway;
pub mod notifies;
pub mod report;
pub mod workload;

use std::path::PathBuf;

/// Why a load run could not be carried out (request failures during the run are counted,
/// not raised).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A command-line value is unusable.
    #[error("invalid {option}: {reason}")]
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The target is not a loopback address.
    #[error(
        "refusing to load {0}: only loopback targets (127.0.0.0/8, ::1, localhost) are allowed"
    )]
    NotLoopback(String),
    /// The `paygate` binary could not be run.
    #[error("cannot run {path}: {source}")]
    Spawn {
        /// The binary.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A `paygate` sub-command failed.
    #[error("`paygate {command}` failed: {stderr}")]
    Command {
        /// The sub-command.
        command: String,
        /// What it printed on standard error.
        stderr: String,
    },
    /// The gateway never answered 200 on `/readyz`.
    #[error("the gateway was not ready within {seconds} s (its log: {log})")]
    NotReady {
        /// How long we waited.
        seconds: u64,
        /// Its standard error, for diagnosis.
        log: String,
    },
    /// The external sandbox could not start.
    #[error("sandbox: {0}")]
    Sandbox(String),
    /// The sandbox keys file could not be read.
    #[error("sandbox keys file {path}: {reason}")]
    SandboxKeys {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A notify body could not be signed with the sandbox's keys.
    #[error("signing a notify: {0}")]
    Sign(String),
    /// Preparing the orders that the notifies pay failed.
    #[error("preparing orders: {0}")]
    Prepare(String),
    /// A check after the run could not be made.
    #[error("checking the run: {0}")]
    Check(String),
    /// A local I/O error (temp dir, files).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}
