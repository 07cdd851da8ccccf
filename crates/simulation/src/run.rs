//! One simulation run: start the topology, issue the seed's operations (one chain per trade,
//! trades concurrently; restarts and outages across all of them), heal the faults, wait for
//! convergence and check the invariants.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::SimError;
use crate::invariants::{self, History, PaygateOrder, Snapshot, Violation};
use crate::merchant::{Answer, Merchant, OrderView};
use crate::ops::{GeneratorVersion, Op, Step, StopSignal, TradeNo, generate};
use crate::statements::StatementBook;
use crate::topology::{DatabaseTarget, Outage, Topology};

/// How a run is set up.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The `paygate` binary under test.
    pub paygate_bin: PathBuf,
    /// The database backend.
    pub database: DatabaseTarget,
    /// Operations per seed.
    pub ops: usize,
    /// The operation mix seeds are drawn with.
    pub generator: GeneratorVersion,
    /// How long the system gets, after the last operation and with every fault healed, to
    /// make both sides' books agree.
    pub converge_within: Duration,
    /// Print every operation as it completes.
    pub echo: bool,
    /// Orders per reconciler pass ([`crate::topology::RECONCILER_BATCH`] by default).
    pub reconciler_batch: u32,
}

impl SimConfig {
    /// Defaults for `paygate_bin` on `database`: 300 operations of the newest generator, 45 s
    /// to converge.
    pub fn new(paygate_bin: PathBuf, database: DatabaseTarget) -> SimConfig {
        SimConfig {
            paygate_bin,
            database,
            ops: 300,
            generator: GeneratorVersion::NEWEST,
            converge_within: Duration::from_secs(45),
            echo: false,
            reconciler_batch: crate::topology::RECONCILER_BATCH,
        }
    }
}

/// One line of the operation log: the step and what it came to.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// The step.
    pub step: Step,
    /// What happened, e.g. `201` or `504 provider_timeout, 200`.
    pub outcome: String,
}

/// What a run found.
#[derive(Debug)]
pub struct SeedReport {
    /// The seed.
    pub seed: u64,
    /// The generator its operations were drawn with.
    pub generator: GeneratorVersion,
    /// The backend.
    pub backend: &'static str,
    /// The operation log, in issue order.
    pub log: Vec<LogLine>,
    /// Broken invariants (empty: the run is clean).
    pub violations: Vec<Violation>,
    /// How long the whole run took.
    pub elapsed: Duration,
    /// How long convergence took, when it happened.
    pub converged_after: Option<Duration>,
    /// Orders and provider trades checked at the end.
    pub orders_checked: usize,
    /// Trades that did not converge but that paygate flagged to finance as anomalies.
    pub flagged: Vec<String>,
}

impl SeedReport {
    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// One line: seed, backend, operations, orders, time, verdict.
    pub fn summary(&self) -> String {
        let verdict = if self.passed() {
            let flagged = if self.flagged.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} left to finance as anomalies: {})",
                    self.flagged.len(),
                    self.flagged.join(", ")
                )
            };
            match self.converged_after {
                Some(after) => format!("ok, converged in {:.1} s{flagged}", after.as_secs_f64()),
                None => format!("ok{flagged}"),
            }
        } else {
            format!("FAILED: {} violations", self.violations.len())
        };
        format!(
            "seed {} {} ({}): {} ops, {} orders, {:.1} s: {verdict}",
            self.seed,
            self.generator,
            self.backend,
            self.log.len(),
            self.orders_checked,
            self.elapsed.as_secs_f64()
        )
    }

    /// The failure as a reproduction: the seed, the violations, and the operations that
    /// touched the failing trades plus every global one (restarts, outages, pauses).
    pub fn failure_text(&self, ops: usize) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "{}", self.summary());
        for violation in &self.violations {
            let _ = writeln!(text, "  violation: {violation}");
        }
        let failing: BTreeSet<&str> = self
            .violations
            .iter()
            .map(Violation::out_trade_no)
            .collect();
        let _ = writeln!(
            text,
            "  operations on {} plus every global one:",
            failing.iter().copied().collect::<Vec<_>>().join(", ")
        );
        let steps: Vec<Step> = self.log.iter().map(|l| l.step.clone()).collect();
        let kept: BTreeSet<usize> = relevant_steps(&steps, &self.violations)
            .iter()
            .map(|s| s.index)
            .collect();
        for line in self.log.iter().filter(|l| kept.contains(&l.step.index)) {
            let _ = writeln!(text, "    {} → {}", line.step, line.outcome);
        }
        let database = match self.backend {
            "sqlite" => "sqlite",
            _ => "postgres://…",
        };
        let _ = writeln!(
            text,
            "  reproduce: paygate-sim --seed {} --ops {ops} --generator {} --database {database}",
            self.seed, self.generator
        );
        text
    }
}

/// The steps of `steps` a failure needs at most: those on the failing trades and every
/// global one.
pub fn relevant_steps(steps: &[Step], violations: &[Violation]) -> Vec<Step> {
    let failing: BTreeSet<&str> = violations.iter().map(Violation::out_trade_no).collect();
    steps
        .iter()
        .filter(|s| {
            s.op.trade()
                .is_none_or(|t| failing.contains(t.out_trade_no().as_str()))
        })
        .cloned()
        .collect()
}

/// A failure reproduced with fewer operations.
#[derive(Debug)]
pub struct Shrunk {
    /// The operations kept.
    pub steps: Vec<Step>,
    /// The run that still failed with them.
    pub report: SeedReport,
}

/// Re-runs a failure with fewer operations: first only the failing trades' operations and
/// the global ones, then without the global ones; keeps each cut that still fails. Timing is
/// real, so a cut that passes may only have missed a race: the result is an upper bound.
pub async fn shrink(
    config: &SimConfig,
    seed: u64,
    failed: &SeedReport,
) -> Result<Option<Shrunk>, SimError> {
    let all: Vec<Step> = failed.log.iter().map(|l| l.step.clone()).collect();
    let mut best: Option<Shrunk> = None;
    let mut candidate = relevant_steps(&all, &failed.violations);
    for cut in 0..2 {
        if cut == 1 {
            candidate.retain(|s| s.op.trade().is_some());
        }
        let report = run_steps(config, seed, candidate.clone()).await?;
        if !report.passed() {
            candidate = relevant_steps(&candidate, &report.violations);
            best = Some(Shrunk {
                steps: candidate.clone(),
                report,
            });
        } else if let Some(best) = &best {
            candidate = best.steps.clone();
        } else {
            return Ok(None);
        }
    }
    Ok(best)
}

/// The trades' paygate orders as the simulated merchant learnt them.
type KnownOrders = Arc<Mutex<HashMap<TradeNo, OrderView>>>;

/// Runs the operations `seed` generates with `config.generator`.
pub async fn run_seed(config: &SimConfig, seed: u64) -> Result<SeedReport, SimError> {
    run_steps(config, seed, generate(config.generator, seed, config.ops)).await
}

/// Runs `steps` (a seed's operations drawn with `config.generator`, possibly with some
/// removed).
pub async fn run_steps(
    config: &SimConfig,
    seed: u64,
    steps: Vec<Step>,
) -> Result<SeedReport, SimError> {
    let started = Instant::now();
    let mut topology = Topology::start(
        &config.paygate_bin,
        &config.database,
        config.reconciler_batch,
    )
    .await?;
    let merchant = Merchant::new(
        &topology.base_url,
        topology.sandbox.base_url(),
        topology.keys.clone(),
    )?;
    let history = Arc::new(Mutex::new(History::default()));
    let stop_watching = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(watch(
        merchant.clone(),
        history.clone(),
        stop_watching.clone(),
    ));

    let (log, statement_violations) = issue(config, &mut topology, &merchant, steps).await?;

    // Heal: no more faults; the gateway must be up.
    topology.sandbox.clear_faults();
    if !topology.gateway_running() {
        topology.start_gateway().await?;
    }
    // From here on only the snapshots below record statuses, in the order they were read.
    stop_watching.store(true, Ordering::SeqCst);
    let _ = watcher.await;
    let converge_started = Instant::now();
    let mut unreadable: Option<SimError> = None;
    let mut last: Option<Snapshot> = None;
    let converged = loop {
        let timed_out = converge_started.elapsed() > config.converge_within;
        match snapshot(&topology, &merchant).await {
            Ok(Some(snapshot)) => {
                lock(&history).record(&snapshot);
                unreadable = None;
                let clean = invariants::check_converged(&snapshot).is_empty();
                last = Some(snapshot);
                if clean {
                    break Some(converge_started.elapsed());
                }
            }
            Ok(None) => {}
            Err(error) => unreadable = Some(error),
        }
        if timed_out {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut violations = last
        .as_ref()
        .map(invariants::check_converged)
        .unwrap_or_default();
    violations.extend(invariants::check_history(&lock(&history)));
    violations.extend(statement_violations);
    let orders_checked = last.as_ref().map_or(0, |s| s.orders.len());
    let flagged = last
        .as_ref()
        .map(invariants::flagged_differences)
        .unwrap_or_default();
    if last.is_none() {
        return Err(unreadable.unwrap_or_else(|| {
            SimError::Gateway("the books never held still long enough to be read".to_owned())
        }));
    }
    topology.stop_gateway(false).await?;
    Ok(SeedReport {
        seed,
        generator: config.generator,
        backend: config.database.backend(),
        log,
        violations,
        elapsed: started.elapsed(),
        converged_after: converged,
        orders_checked,
        flagged,
    })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Watches paygate's order statuses during the run, for the "never backwards" invariant.
async fn watch(merchant: Merchant, history: Arc<Mutex<History>>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        if let Ok(orders) = merchant.orders().await {
            let mut history = lock(&history);
            for order in orders {
                history.order(&order.out_trade_no, order.status);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What identifies a moment of paygate's books: every order's status and refunded amount.
fn fingerprint(
    orders: &[OrderView],
) -> Vec<(String, paygate_core::OrderStatus, paygate_core::Fen)> {
    orders
        .iter()
        .map(|o| (o.out_trade_no.clone(), o.status, o.refunded_amount))
        .collect()
}

/// Both sides' books now; `None` when they moved while being read (the orders, refunds and
/// events are separate requests, so a snapshot only counts when the orders and the
/// provider's trades read the same before and after).
async fn snapshot(topology: &Topology, merchant: &Merchant) -> Result<Option<Snapshot>, SimError> {
    let trades_before = topology.sandbox.trades();
    let listed = merchant.orders().await?;
    let mut orders = BTreeMap::new();
    for order in &listed {
        let refunds = merchant.refunds(&order.id).await?;
        let events = merchant.events(&order.id).await?;
        orders.insert(
            order.out_trade_no.clone(),
            PaygateOrder {
                order: order.clone(),
                refunds,
                events,
            },
        );
    }
    let anomalies = merchant.anomalies().await?;
    let still = fingerprint(&merchant.orders().await?) == fingerprint(&listed);
    let trades_after = topology.sandbox.trades();
    if !still || trades_after != trades_before {
        return Ok(None);
    }
    Ok(Some(Snapshot {
        trades: trades_after
            .into_iter()
            .map(|t| (t.out_trade_no.clone(), t))
            .collect(),
        orders,
        anomalies,
    }))
}

/// Issues every step: trade operations run as one chain per trade (each waits for the
/// trade's previous one), trades concurrently; restarts and statement runs happen in line,
/// outages in the background (one at a time). Returns the log and what the statement runs
/// found wrong.
async fn issue(
    config: &SimConfig,
    topology: &mut Topology,
    merchant: &Merchant,
    steps: Vec<Step>,
) -> Result<(Vec<LogLine>, Vec<Violation>), SimError> {
    let known: KnownOrders = Arc::new(Mutex::new(HashMap::new()));
    let mut statements = StatementBook::default();
    let mut statement_violations = Vec::new();
    let lines: Arc<Mutex<Vec<LogLine>>> = Arc::new(Mutex::new(Vec::new()));
    let mut chains: HashMap<TradeNo, JoinHandle<()>> = HashMap::new();
    let mut outage: Option<JoinHandle<Result<(), SimError>>> = None;
    let echo = config.echo;
    let record = move |lines: &Mutex<Vec<LogLine>>, step: Step, outcome: String| {
        if echo {
            echo_line(&step, &outcome);
        }
        lock(lines).push(LogLine { step, outcome });
    };
    for step in steps {
        tokio::time::sleep(Duration::from_millis(step.gap_ms)).await;
        match &step.op {
            Op::Restart { signal, down_ms } => {
                let stopped = topology.stop_gateway(*signal == StopSignal::Kill).await;
                tokio::time::sleep(Duration::from_millis(*down_ms)).await;
                topology.start_gateway().await?;
                let outcome = match stopped {
                    Ok(()) => format!("up again (start #{})", topology.starts),
                    Err(error) => format!("stop failed: {error}; up again"),
                };
                record(&lines, step, outcome);
            }
            Op::DatabaseOutage { millis } => {
                if let Some(previous) = outage.take() {
                    previous.await??;
                }
                let url = topology.database.url.clone();
                let admin = topology.admin_url().map(str::to_owned);
                let millis = *millis;
                outage = Some(tokio::task::spawn_blocking(move || {
                    let outage = Outage::start(&url, admin.as_deref())?;
                    std::thread::sleep(Duration::from_millis(millis));
                    outage.end()
                }));
                record(&lines, step, "started".to_owned());
            }
            Op::Pause { millis } => {
                tokio::time::sleep(Duration::from_millis(*millis)).await;
                record(&lines, step, "done".to_owned());
            }
            Op::Statement(run) => {
                // The lost trade's own operations first, so its payment does not race them.
                let mut lost_order = None;
                if let Some(trade) = run.lost {
                    if let Some(chain) = chains.remove(&trade) {
                        let _ = chain.await;
                    }
                    lost_order = order_of(merchant, &known, trade).await;
                }
                let outcome = statements
                    .execute(topology, merchant, run, lost_order.as_ref())
                    .await;
                statement_violations.extend(outcome.violations);
                record(&lines, step, outcome.outcome);
            }
            op => {
                let Some(trade) = op.trade() else { continue };
                let previous = chains.remove(&trade);
                let (merchant, known, lines) = (merchant.clone(), known.clone(), lines.clone());
                chains.insert(
                    trade,
                    tokio::spawn(async move {
                        if let Some(previous) = previous {
                            let _ = previous.await;
                        }
                        let outcome = execute(&merchant, &known, &step.op).await;
                        record(&lines, step, outcome);
                    }),
                );
            }
        }
    }
    for (_, chain) in chains {
        let _ = chain.await;
    }
    if let Some(previous) = outage.take() {
        previous.await??;
    }
    let mut log = std::mem::take(&mut *lock(&lines));
    log.sort_by_key(|line| line.step.index);
    Ok((log, statement_violations))
}

/// Prints a finished operation (the CLI's `--verbose`).
#[allow(clippy::print_stderr)]
fn echo_line(step: &Step, outcome: &str) {
    eprintln!("{step} → {outcome}");
}

fn answers(answers: &[Answer]) -> String {
    answers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The trade's order: as the create answered it, or looked up (the create's answer was lost).
async fn order_of(merchant: &Merchant, known: &KnownOrders, trade: TradeNo) -> Option<OrderView> {
    if let Some(order) = lock(known).get(&trade) {
        return Some(order.clone());
    }
    let found = merchant.find_order(trade).await?;
    lock(known).insert(trade, found.clone());
    Some(found)
}

/// Runs one trade operation; returns what it came to.
async fn execute(merchant: &Merchant, known: &KnownOrders, op: &Op) -> String {
    match op {
        Op::Create { trade, order } => {
            let (answered, order) = merchant.create(*trade, order).await;
            if let Some(order) = order {
                lock(known).insert(*trade, order);
            }
            answers(&answered)
        }
        Op::Pay { trade } => {
            let order = order_of(merchant, known, *trade).await;
            merchant.pay(*trade, order.as_ref()).await.to_string()
        }
        Op::Refund { trade, refunds } => {
            let Some(order) = order_of(merchant, known, *trade).await else {
                return "skipped: no order".to_owned();
            };
            // A merchant refunds what it has seen paid: wait a little for the notify.
            merchant
                .wait_until_paid(&order.id, Duration::from_secs(3))
                .await;
            let requests = refunds.iter().map(|r| {
                let out_refund_no = trade.out_refund_no(r.number);
                let (merchant, id, amount) = (merchant.clone(), order.id.clone(), r.amount);
                async move { merchant.refund(&id, &out_refund_no, amount).await }
            });
            let results = futures_join_all(requests).await;
            results
                .iter()
                .map(|a| answers(a))
                .collect::<Vec<_>>()
                .join(" | ")
        }
        Op::Sync { trade } => match order_of(merchant, known, *trade).await {
            Some(order) => answers(&merchant.sync(&order.id).await),
            None => "skipped: no order".to_owned(),
        },
        Op::Close { trade } => match order_of(merchant, known, *trade).await {
            Some(order) => answers(&merchant.close(&order.id).await),
            None => "skipped: no order".to_owned(),
        },
        Op::Fault { fault, .. } => match merchant.add_fault(fault).await {
            Ok(()) => "armed".to_owned(),
            Err(error) => format!("not armed: {error}"),
        },
        Op::Restart { .. } | Op::DatabaseOutage { .. } | Op::Pause { .. } | Op::Statement(_) => {
            String::new()
        }
    }
}

/// Runs futures concurrently on this task and collects their outputs in order.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<JoinHandle<F::Output>> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        if let Ok(output) = handle.await {
            outputs.push(output);
        }
    }
    outputs
}
