//! The `paygate` binary: wiring only. Everything it runs lives in the library so the tests
//! drive the same code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use paygate_gateway::cli;

/// paygate: one API for WeChat Pay and Alipay.
#[derive(Debug, Parser)]
#[command(name = "paygate", version, about)]
struct Cli {
    /// TOML config file (also `PAYGATE_CONFIG`); without one paygate runs on SQLite with the
    /// embedded sandbox providers.
    #[arg(long, global = true, env = "PAYGATE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Serve {
        /// Address to listen on, overriding the config (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Manage API keys.
    #[command(subcommand)]
    Keys(cli::KeysCommand),
    /// Query orders from a shell (finance).
    #[command(subcommand)]
    Orders(cli::OrdersCommand),
    /// Reconcile one app's provider bill of one Beijing day now (finance).
    Reconcile(cli::ReconcileCommand),
    /// Print the configuration reference (every key, its type, default and meaning) as
    /// Markdown: the generated part of docs/config.md.
    ConfigReference,
    /// Run only the provider simulators, printing their credentials.
    Sandbox {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: std::net::SocketAddr,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("paygate: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let config = cli.config.as_deref();
        match cli.command.unwrap_or(Command::Serve { listen: None }) {
            Command::Serve { listen } => cli::serve(config, listen).await,
            Command::Migrate => cli::migrate(config).await,
            Command::Keys(command) => cli::keys(config, command).await,
            Command::Orders(command) => cli::orders(config, command).await,
            Command::Reconcile(command) => cli::reconcile(config, command).await,
            Command::ConfigReference => cli::config_reference(),
            Command::Sandbox { listen } => cli::sandbox(listen).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("paygate: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
