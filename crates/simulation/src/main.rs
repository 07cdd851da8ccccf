//! `paygate-sim`: runs the randomized fault simulation against a `paygate` binary, seed after
//! seed, and prints each seed's verdict; a failure prints the seed, the violations and the
//! operations to reproduce it, and makes the exit status non-zero.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use paygate_simulation::ops::generate;
use paygate_simulation::{
    DatabaseTarget, GeneratorVersion, REGRESSION_SEEDS, SeedReport, SeedRun, SimConfig, SimError,
    parse_seeds, run_steps, shrink,
};

/// Shrinks a failure and prints the operations that still reproduce it.
#[allow(clippy::print_stdout)]
async fn print_shrunk(
    config: &SimConfig,
    run: SeedRun,
    failed: &SeedReport,
) -> Result<(), SimError> {
    match shrink(config, run.seed, failed).await? {
        Some(shrunk) => {
            let indices: Vec<String> = shrunk.steps.iter().map(|s| s.index.to_string()).collect();
            println!(
                "shrunk to {} operations:\n{}  reproduce: paygate-sim --seed {} --ops {} --generator {} --only {}",
                shrunk.steps.len(),
                shrunk.report.failure_text(run.ops),
                run.seed,
                run.ops,
                run.version,
                indices.join(",")
            );
        }
        None => println!("the failure did not reproduce with fewer operations (timing)"),
    }
    Ok(())
}

/// Randomized fault simulation of paygate's payment lifecycle.
#[derive(Debug, Parser)]
#[command(name = "paygate-sim", version, about)]
struct Options {
    /// Run these seeds (repeatable); otherwise seeds are drawn at random and printed.
    #[arg(long = "seed")]
    seeds: Vec<u64>,
    /// How many random seeds to run (ignored with --seed; unbounded with --minutes).
    #[arg(long = "seeds", default_value_t = 1)]
    count: u64,
    /// Keep running random seeds until this many minutes have passed.
    #[arg(long)]
    minutes: Option<u64>,
    /// Operations per seed.
    #[arg(long, default_value_t = 300)]
    ops: usize,
    /// The operation mix (`v1`, `v2`): a seed replays its scenario only with the version it
    /// was drawn with (the regression seeds name theirs).
    #[arg(long, default_value_t = GeneratorVersion::NEWEST)]
    generator: GeneratorVersion,
    /// `sqlite`, or a PostgreSQL admin URL under which each seed gets a fresh database.
    #[arg(long, default_value = "sqlite")]
    database: String,
    /// The `paygate` binary (default: beside this executable).
    #[arg(long)]
    paygate_bin: Option<PathBuf>,
    /// Seconds the system gets to converge after the last operation.
    #[arg(long, default_value_t = 45)]
    converge_seconds: u64,
    /// Orders per reconciler pass in the simulated gateway's config (small on purpose, so
    /// that starvation of newer pending orders is reachable).
    #[arg(long, default_value_t = paygate_simulation::topology::RECONCILER_BATCH)]
    reconciler_batch: u32,
    /// Print every operation as it completes.
    #[arg(long, short)]
    verbose: bool,
    /// Run the regression seeds (crates/simulation/seeds.txt) with their operation counts.
    #[arg(long, conflicts_with = "seeds")]
    regression: bool,
    /// Run only these operations of the seed (comma-separated indices, as a shrunk failure
    /// prints them).
    #[arg(long, value_delimiter = ',', requires = "seeds")]
    only: Vec<usize>,
    /// Re-run a failing seed with fewer operations and print the smallest that still fails.
    #[arg(long)]
    shrink: bool,
    /// Keep going after a failing seed.
    #[arg(long)]
    keep_going: bool,
}

#[allow(clippy::print_stdout)]
async fn run(options: Options) -> Result<bool, SimError> {
    let paygate_bin = match options.paygate_bin {
        Some(path) => path,
        None => paygate_simulation::binary_beside(&std::env::current_exe()?),
    };
    let mut config = SimConfig::new(paygate_bin, DatabaseTarget::parse(&options.database)?);
    config.ops = options.ops;
    config.converge_within = Duration::from_secs(options.converge_seconds);
    config.echo = options.verbose;
    config.reconciler_batch = options.reconciler_batch;
    let started = Instant::now();
    let deadline = options.minutes.map(|m| Duration::from_secs(m * 60));
    let mut fixed: Vec<SeedRun> = options
        .seeds
        .iter()
        .map(|&seed| SeedRun {
            seed,
            ops: options.ops,
            version: options.generator,
        })
        .collect();
    if options.regression {
        fixed = parse_seeds(REGRESSION_SEEDS, options.ops)?;
    }
    let random = fixed.is_empty();
    let mut fixed = fixed.into_iter();
    let (mut runs, mut failures, mut total_ops) = (0u64, 0u64, 0usize);
    loop {
        let run = match (random, deadline) {
            (false, _) => match fixed.next() {
                Some(run) => run,
                None => break,
            },
            (true, Some(limit)) if started.elapsed() >= limit => break,
            (true, None) if runs >= options.count => break,
            (true, _) => SeedRun {
                seed: rand::random(),
                ops: options.ops,
                version: options.generator,
            },
        };
        config.ops = run.ops;
        config.generator = run.version;
        let mut steps = generate(run.version, run.seed, run.ops);
        if !options.only.is_empty() {
            steps.retain(|s| options.only.contains(&s.index));
        }
        let report = run_steps(&config, run.seed, steps).await?;
        runs += 1;
        total_ops += report.log.len();
        if report.passed() {
            println!("{}", report.summary());
        } else {
            failures += 1;
            println!("{}", report.failure_text(run.ops));
            if options.shrink {
                print_shrunk(&config, run, &report).await?;
            }
            if !options.keep_going {
                break;
            }
        }
    }
    println!(
        "{runs} seeds, {total_ops} operations, {failures} failed, {:.0} s ({})",
        started.elapsed().as_secs_f64(),
        config.database.backend()
    );
    Ok(failures == 0)
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Options::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("paygate-sim: {error}");
            ExitCode::from(2)
        }
    }
}
