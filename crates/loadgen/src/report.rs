//! Turning samples into the figures people compare: throughput, p50/p90/p99/max latency and
//! errors per operation and overall, plus the gateway's start-up time and memory.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::gateway::Memory;
use crate::workload::{Operation, RunOutcome, Sample};

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest request.
    pub max_ms: f64,
}

/// The figures for one operation, or for all together.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// Requests answered (successes and failures).
    pub requests: usize,
    /// Requests whose answer was not the expected success.
    pub errors: usize,
    /// Successful requests per second of run time.
    pub throughput_per_s: f64,
    /// Latency of every answered request.
    pub latency: Percentiles,
}

/// Start-up and memory figures of a gateway this tool spawned.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GatewayFigures {
    /// Spawn → first 200 on `/readyz` on a fresh database (includes generating the sandbox's
    /// RSA keys), ms.
    pub first_start_ms: Option<f64>,
    /// Spawn → first 200 on `/readyz` when restarted on the same database, each restart, ms.
    pub restart_ms: Vec<f64>,
    /// Memory at the end of the run (peak is over the whole life of the serving process).
    pub memory: Option<Memory>,
    /// CPU seconds the gateway used during the timed run (user + system, all threads).
    pub cpu_s: Option<f64>,
}

/// Everything one run reports; `--json` prints exactly this.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// How load was offered (`concurrency 32`, `rate 2000/s`).
    pub pace: String,
    /// Run time in seconds.
    pub elapsed_s: f64,
    /// All operations together.
    pub total: Figures,
    /// Per operation.
    pub operations: BTreeMap<Operation, Figures>,
    /// Fixed-rate arrivals not sent because too many were in flight.
    pub dropped: usize,
    /// Notifies that repeated an already-paid order because the prepared pool ran out.
    pub repeated_notifies: usize,
    /// A few distinct failures.
    pub error_examples: Vec<String>,
    /// CPU seconds this tool used during the timed run: on a shared 2-core box, the client's
    /// share is capacity the gateway did not get.
    pub client_cpu_s: Option<f64>,
    /// The spawned gateway's figures (absent with `--target`).
    pub gateway: Option<GatewayFigures>,
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Nearest-rank percentiles of `latencies` (sorted in place).
pub fn percentiles(latencies: &mut [Duration]) -> Percentiles {
    if latencies.is_empty() {
        return Percentiles::default();
    }
    latencies.sort_unstable();
    let rank = |p: f64| {
        let index = ((p / 100.0) * latencies.len() as f64).ceil() as usize;
        millis(latencies[index.clamp(1, latencies.len()) - 1])
    };
    Percentiles {
        p50_ms: rank(50.0),
        p90_ms: rank(90.0),
        p99_ms: rank(99.0),
        max_ms: rank(100.0),
    }
}

fn figures<'a>(samples: impl Iterator<Item = &'a Sample>, elapsed: Duration) -> Figures {
    let mut latencies = Vec::new();
    let mut errors = 0;
    for sample in samples {
        latencies.push(sample.latency);
        errors += usize::from(!sample.ok);
    }
    let requests = latencies.len();
    Figures {
        requests,
        errors,
        throughput_per_s: (requests - errors) as f64 / elapsed.as_secs_f64().max(1e-9),
        latency: percentiles(&mut latencies),
    }
}

impl Report {
    /// Summarises a run.
    pub fn new(
        pace: String,
        outcome: &RunOutcome,
        client_cpu_s: Option<f64>,
        gateway: Option<GatewayFigures>,
    ) -> Report {
        let mut operations = BTreeMap::new();
        let mut kinds: Vec<Operation> = outcome.samples.iter().map(|s| s.operation).collect();
        kinds.sort_unstable();
        kinds.dedup();
        for op in kinds {
            let of_kind = outcome.samples.iter().filter(|s| s.operation == op);
            operations.insert(op, figures(of_kind, outcome.elapsed));
        }
        Report {
            pace,
            elapsed_s: outcome.elapsed.as_secs_f64(),
            total: figures(outcome.samples.iter(), outcome.elapsed),
            operations,
            dropped: outcome.dropped,
            repeated_notifies: outcome.repeated_notifies,
            error_examples: outcome.error_examples.clone(),
            client_cpu_s,
            gateway,
        }
    }

    /// A human-readable table.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{} for {:.1} s", self.pace, self.elapsed_s);
        let _ = writeln!(
            out,
            "{:<14} {:>9} {:>7} {:>10} {:>8} {:>8} {:>8} {:>8}",
            "operation", "requests", "errors", "ok/s", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        let rows = self
            .operations
            .iter()
            .map(|(op, f)| (op.name(), f))
            .chain(std::iter::once(("total", &self.total)));
        for (name, f) in rows {
            let _ = writeln!(
                out,
                "{name:<14} {:>9} {:>7} {:>10.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                f.requests,
                f.errors,
                f.throughput_per_s,
                f.latency.p50_ms,
                f.latency.p90_ms,
                f.latency.p99_ms,
                f.latency.max_ms
            );
        }
        if self.dropped > 0 {
            let _ = writeln!(
                out,
                "dropped arrivals (too many in flight): {}",
                self.dropped
            );
        }
        if self.repeated_notifies > 0 {
            let _ = writeln!(
                out,
                "notifies repeating an already-paid order (raise --notify-orders): {}",
                self.repeated_notifies
            );
        }
        for example in &self.error_examples {
            let _ = writeln!(out, "error: {example}");
        }
        if let Some(cpu) = self.client_cpu_s {
            let _ = writeln!(out, "load generator CPU: {cpu:.2} s");
        }
        if let Some(gateway) = &self.gateway {
            if let Some(cpu) = gateway.cpu_s {
                let per_request = cpu * 1e6 / self.total.requests.max(1) as f64;
                let _ = writeln!(
                    out,
                    "gateway CPU: {cpu:.2} s ({:.2} cores, {per_request:.0} µs per request)",
                    cpu / self.elapsed_s.max(1e-9)
                );
            }
            if let Some(ms) = gateway.first_start_ms {
                let _ = writeln!(out, "cold start to ready, fresh database: {ms:.1} ms");
            }
            if !gateway.restart_ms.is_empty() {
                let list: Vec<String> = gateway
                    .restart_ms
                    .iter()
                    .map(|ms| format!("{ms:.1}"))
                    .collect();
                let _ = writeln!(out, "cold start to ready, restarts: {} ms", list.join(", "));
            }
            if let Some(memory) = gateway.memory {
                let _ = writeln!(
                    out,
                    "gateway RSS: peak {:.1} MiB, at end {:.1} MiB",
                    memory.peak_rss_kib as f64 / 1024.0,
                    memory.rss_kib as f64 / 1024.0
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_of_one_to_a_hundred_ms() {
        let mut latencies: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let p = percentiles(&mut latencies);
        assert_eq!(p.p50_ms, 50.0);
        assert_eq!(p.p90_ms, 90.0);
        assert_eq!(p.p99_ms, 99.0);
        assert_eq!(p.max_ms, 100.0);
    }

    #[test]
    fn a_single_sample_is_every_percentile() {
        let p = percentiles(&mut [Duration::from_millis(7)]);
        assert_eq!((p.p50_ms, p.max_ms), (7.0, 7.0));
    }
}
