//! Structured logs. `RUST_LOG` filters them (default `info`); `PAYGATE_LOG_FORMAT=json` makes
//! them one JSON object per line for log shippers. Secrets never reach a log line: they live
//! in `secrecy` types whose Debug prints nothing.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls (tests) are ignored.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("PAYGATE_LOG_FORMAT").is_ok_and(|f| f == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
