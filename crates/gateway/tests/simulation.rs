//! The randomized fault simulation (crates/simulation) against this build's `paygate`: the
//! regression seeds (crates/simulation/seeds.txt), each with the generator version it names,
//! and the newest generator's coverage seed, on SQLite, or on PostgreSQL when
//! `PAYGATE_TEST_DATABASE_URL` is set. Its own test binary, so it runs alone
//! rather than beside the API tests. The long run is `paygate-sim --minutes 30`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;

use paygate_simulation::{COVERAGE_SEED, DatabaseTarget, REGRESSION_SEEDS, SimConfig, parse_seeds};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_fault_simulation_finds_every_trade_converged_on_the_regression_and_coverage_seeds() {
    let database = match std::env::var("PAYGATE_TEST_DATABASE_URL") {
        Ok(admin_url) if !admin_url.is_empty() => DatabaseTarget::Postgres { admin_url },
        _ => DatabaseTarget::Sqlite,
    };
    let mut config = SimConfig::new(PathBuf::from(env!("CARGO_BIN_EXE_paygate")), database);
    let mut runs = parse_seeds(REGRESSION_SEEDS, config.ops).unwrap();
    assert!(!runs.is_empty(), "crates/simulation/seeds.txt lists seeds");
    runs.push(COVERAGE_SEED);
    let mut failures = Vec::new();
    for run in runs {
        config.ops = run.ops;
        config.generator = run.version;
        let report = paygate_simulation::run_seed(&config, run.seed)
            .await
            .expect("the simulation runs");
        eprintln!("{}", report.summary());
        if !report.passed() {
            failures.push(report.failure_text(run.ops));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
