//! The `paygate-loadgen` command line: parse options, start or target a gateway, prepare,
//! run, report.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use paygate_loadgen::LoadError;
use paygate_loadgen::gateway::{
    SpawnedGateway, cpu_time_of, default_binary, ensure_loopback, memory_of,
};
use paygate_loadgen::notifies::{NotifySigner, SandboxKeys};
use paygate_loadgen::report::{GatewayFigures, PaidCheck, Report};
use paygate_loadgen::workload::{MAX_DURATION, Mix, Operation, Pace, Target, Workload};

/// Load a paygate gateway on loopback with orders, notifies and finance queries.
#[derive(Debug, Parser)]
#[command(name = "paygate-loadgen", version, about)]
struct Options {
    /// An already-running gateway (loopback only); give it once per replica to spread requests
    /// over several, round robin. Without it the tool starts `paygate serve` on a fresh
    /// database.
    #[arg(long = "target")]
    targets: Vec<String>,
    /// Merchant API key for `--target`.
    #[arg(long, requires = "targets")]
    key: Option<String>,
    /// Finance API key for `--target` (needed for finance_list).
    #[arg(long, requires = "targets")]
    finance_key: Option<String>,
    /// The sandbox keys file of the `--target` gateway (needed for notifies).
    #[arg(long)]
    sandbox_keys: Option<PathBuf>,
    /// The `paygate` binary to start (default: beside this executable).
    #[arg(long)]
    paygate: Option<PathBuf>,
    /// Database for the started gateway: an empty, throwaway PostgreSQL database URL
    /// (default: a temp SQLite file).
    #[arg(long)]
    database_url: Option<String>,
    /// Start this many `paygate serve` replicas on the one database and spread requests over
    /// them round robin (more than one needs a PostgreSQL --database-url and
    /// --external-sandbox, which all replicas share).
    #[arg(long, default_value_t = 1, conflicts_with = "targets")]
    replicas: usize,
    /// Run the provider simulators in this process (trades in memory) and configure the
    /// gateway with them as ordinary provider apps, instead of the gateway's embedded sandbox
    /// (which rewrites its whole trades file on every change).
    #[arg(long)]
    external_sandbox: bool,
    /// Weighted operations: alipay_app, wechat_mini, wechat_notify, alipay_notify, finance_list.
    #[arg(
        long,
        default_value = "alipay_app=1,wechat_mini=1,wechat_notify=1,alipay_notify=1,finance_list=1"
    )]
    mix: String,
    /// Requests in flight (closed loop). Ignored with --rate.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Fixed arrival rate, requests per second (open loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds of load.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Orders prepared per notify provider (each gets one paid notify before repeats).
    #[arg(long, default_value_t = 2000)]
    notify_orders: usize,
    /// Restarts of each started replica to time cold start on an existing database.
    #[arg(long, default_value_t = 3)]
    restarts: usize,
    /// Worker threads of this tool's own runtime (the gateway needs the other cores).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn pace(options: &Options) -> Result<Pace, LoadError> {
    match options.rate {
        Some(rate) if rate > 0.0 && rate <= 1_000_000.0 => Ok(Pace::Rate(rate)),
        Some(_) => Err(LoadError::InvalidOption {
            option: "--rate",
            reason: "must be in (0, 1000000]".into(),
        }),
        None if (1..=10_000).contains(&options.concurrency) => {
            Ok(Pace::Concurrency(options.concurrency))
        }
        None => Err(LoadError::InvalidOption {
            option: "--concurrency",
            reason: "must be 1…10000".into(),
        }),
    }
}

fn duration(options: &Options) -> Result<Duration, LoadError> {
    Duration::try_from_secs_f64(options.duration)
        .ok()
        .filter(|d| !d.is_zero() && *d <= MAX_DURATION)
        .ok_or(LoadError::InvalidOption {
            option: "--duration",
            reason: format!("must be in (0, {}] seconds", MAX_DURATION.as_secs()),
        })
}

async fn run(options: Options) -> Result<Report, LoadError> {
    let mix = Mix::parse(&options.mix)?;
    let pace = pace(&options)?;
    let duration = duration(&options)?;
    let probe = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;

    let mut spawned = None;
    let mut replica_figures: Vec<GatewayFigures> = Vec::new();
    let (target, keys_file) = if options.targets.is_empty() {
        let binary = options.paygate.clone().unwrap_or_else(default_binary);
        let mut gateway = SpawnedGateway::prepare(
            &binary,
            options.database_url.as_deref(),
            options.external_sandbox,
            options.replicas,
        )
        .await?;
        for ready in gateway.start(&probe).await? {
            replica_figures.push(GatewayFigures {
                first_start_ms: Some(ready.as_secs_f64() * 1000.0),
                ..GatewayFigures::default()
            });
        }
        for _ in 0..options.restarts {
            for (index, figures) in replica_figures.iter_mut().enumerate() {
                gateway.stop_replica(index);
                let ready = gateway.start_replica(index, &probe).await?;
                figures.restart_ms.push(ready.as_secs_f64() * 1000.0);
            }
        }
        let target = gateway.target.clone();
        let keys_file = Some(gateway.sandbox_keys_file());
        spawned = Some(gateway);
        (target, keys_file)
    } else {
        for url in &options.targets {
            ensure_loopback(url)?;
        }
        let target = Target {
            base_urls: options
                .targets
                .iter()
                .map(|url| url.trim_end_matches('/').to_owned())
                .collect(),
            merchant_key: options.key.clone().unwrap_or_default(),
            finance_key: options.finance_key.clone().unwrap_or_default(),
        };
        (target, options.sandbox_keys.clone())
    };

    let connections = match pace {
        Pace::Concurrency(n) => n,
        Pace::Rate(_) => 1024,
    };
    let base_urls = target.base_urls.clone();
    let can_read_orders = !target.finance_key.is_empty();
    let mut workload = Workload::new(target, mix.clone(), connections)?;
    let sends_notifies =
        mix.contains(Operation::WechatNotify) || mix.contains(Operation::AlipayNotify);
    if sends_notifies {
        let path = keys_file.ok_or(LoadError::InvalidOption {
            option: "--sandbox-keys",
            reason: "notifies need the target's sandbox keys file".into(),
        })?;
        let signer = NotifySigner::new(SandboxKeys::load(&path)?)?;
        workload
            .prepare_notifies(&signer, options.notify_orders)
            .await?;
    }
    let pids = spawned
        .as_ref()
        .map(SpawnedGateway::pids)
        .unwrap_or_default();
    let client_cpu_before = cpu_time_of(std::process::id());
    let cpu_before: Vec<_> = pids.iter().map(|pid| pid.and_then(cpu_time_of)).collect();
    let workload = Arc::new(workload);
    let outcome = workload.clone().run(pace, duration).await;
    let client_cpu_s = cpu_time_of(std::process::id())
        .zip(client_cpu_before)
        .map(|(after, before)| after.saturating_sub(before).as_secs_f64());
    for ((figures, pid), before) in replica_figures.iter_mut().zip(&pids).zip(cpu_before) {
        figures.memory = pid.and_then(memory_of);
        figures.cpu_s = pid
            .and_then(cpu_time_of)
            .zip(before)
            .map(|(after, before)| after.saturating_sub(before).as_secs_f64());
    }
    let paid_check = if sends_notifies && can_read_orders {
        Some(PaidCheck::new(
            outcome.notifies,
            workload.paid_prepared_orders().await?,
        ))
    } else {
        None
    };
    let pace_text = match pace {
        Pace::Concurrency(n) => format!("concurrency {n}"),
        Pace::Rate(r) => format!("rate {r}/s"),
    };
    drop(spawned);
    let gateway_figures =
        (!replica_figures.is_empty()).then(|| GatewayFigures::sum(&replica_figures));
    let mut report = Report::new(pace_text, &outcome, client_cpu_s, gateway_figures);
    if base_urls.len() > 1 {
        let spawned_figures = (!replica_figures.is_empty()).then_some(replica_figures.as_slice());
        report = report.with_replicas(&outcome, &base_urls, spawned_figures);
    }
    report.paid_check = paid_check;
    Ok(report)
}

#[allow(clippy::print_stdout)]
fn main() -> ExitCode {
    let options = Options::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.client_threads.clamp(1, 64))
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("paygate-loadgen: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let json = options.json;
    match runtime.block_on(run(options)) {
        Ok(report) => {
            let violated = report.paid_check.is_some_and(|check| !check.holds);
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(error) => {
                        eprintln!("paygate-loadgen: {error}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", report.to_text());
            }
            if violated {
                eprintln!(
                    "paygate-loadgen: the orders paid do not match the notifies acknowledged"
                );
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("paygate-loadgen: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::Options;

    #[test]
    fn the_options_are_consistent() {
        // clap's own checks: every `requires`/`conflicts_with` names an argument that exists.
        Options::command().debug_assert();
    }

    #[test]
    fn a_key_needs_a_target_and_replicas_exclude_targets() {
        assert!(Options::try_parse_from(["paygate-loadgen", "--key", "k"]).is_err());
        let two = [
            "--target",
            "http://127.0.0.1:1",
            "--target",
            "http://127.0.0.1:2",
        ];
        let parsed = Options::try_parse_from(
            ["paygate-loadgen"]
                .into_iter()
                .chain(two)
                .chain(["--key", "k"]),
        )
        .unwrap();
        assert_eq!(parsed.targets.len(), 2);
        assert!(
            Options::try_parse_from(
                ["paygate-loadgen"]
                    .into_iter()
                    .chain(two)
                    .chain(["--replicas", "2"])
            )
            .is_err()
        );
    }
}
