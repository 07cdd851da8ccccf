//! `paygate-sandbox`: runs the simulated WeChat Pay and Alipay standalone and prints the
//! credentials (as the gateway's TOML) to point a gateway at it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use paygate_sandbox::{Sandbox, SandboxConfig};

const USAGE: &str = "usage: paygate-sandbox [--listen ADDR] [--keys-file PATH] [--state-file PATH] [--time-scale N] [--public-url URL]";

/// Reads the command line (without the program name) into a config.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<SandboxConfig, String> {
    let mut config = SandboxConfig::new(SocketAddr::from(([127, 0, 0, 1], 8090)));
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--listen" => {
                config.listen = value()?.parse().map_err(|e| format!("--listen: {e}"))?;
            }
            "--keys-file" => config.keys_file = Some(PathBuf::from(value()?)),
            "--state-file" => config.state_file = Some(PathBuf::from(value()?)),
            "--time-scale" => {
                config.time_scale = value()?.parse().map_err(|e| format!("--time-scale: {e}"))?;
            }
            "--public-url" => config.public_base_url = Some(value()?),
            "--help" | "-h" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(config)
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let sandbox = match Sandbox::start(config).await {
        Ok(sandbox) => sandbox,
        Err(e) => {
            eprintln!("paygate-sandbox: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The bin's whole job is to tell a person where the sandbox is and how to configure it.
    #[allow(clippy::print_stdout)]
    {
        println!(
            "paygate sandbox on {}  (trades: {}/sandbox)",
            sandbox.base_url(),
            sandbox.base_url()
        );
        println!("# gateway config for this sandbox (contains secrets):");
        println!("{}", sandbox.credentials().export_toml("sandbox"));
        println!("# the same WeChat merchant through APIv3 (orders then name the app):");
        println!("{}", sandbox.credentials().export_v3_toml("sandbox-v3"));
    }
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("paygate-sandbox: cannot wait for Ctrl-C: {e}");
    }
    sandbox.stop().await;
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn listen_keys_file_and_time_scale_are_read_from_the_command_line() {
        let config = parse_args(args(
            "--listen 0.0.0.0:9000 --keys-file k.json --time-scale 60",
        ))
        .unwrap();
        assert_eq!(config.listen, SocketAddr::from(([0, 0, 0, 0], 9000)));
        assert_eq!(config.keys_file, Some(PathBuf::from("k.json")));
        assert!((config.time_scale - 60.0).abs() < f64::EPSILON);
    }

    #[test]
    fn an_unknown_flag_or_a_missing_value_is_refused_with_the_usage() {
        assert!(parse_args(args("--bogus")).unwrap_err().contains("usage"));
        assert!(
            parse_args(args("--listen"))
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(parse_args(args("--listen not-an-address")).is_err());
    }
}
