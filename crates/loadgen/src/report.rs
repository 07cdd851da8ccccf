//! Turning samples into the figures people compare: throughput, p50/p90/p99/max latency and
//! errors per operation and overall, plus the gateway's start-up time and memory.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::gateway::Memory;
use crate::workload::{NotifyCounts, Operation, RunOutcome, Sample};

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

impl GatewayFigures {
    /// The replicas together: CPU seconds and memory summed (the summed peak is an upper
    /// bound: the replicas need not peak at once), the slowest first start, every restart.
    pub fn sum(replicas: &[GatewayFigures]) -> GatewayFigures {
        let all = |f: fn(&GatewayFigures) -> Option<f64>| -> Option<Vec<f64>> {
            replicas.iter().map(f).collect()
        };
        let memory: Option<Vec<Memory>> = replicas.iter().map(|r| r.memory).collect();
        GatewayFigures {
            first_start_ms: all(|r| r.first_start_ms)
                .map(|starts| starts.into_iter().fold(0.0, f64::max)),
            restart_ms: replicas
                .iter()
                .flat_map(|r| r.restart_ms.iter().copied())
                .collect(),
            memory: memory.map(|memory| Memory {
                peak_rss_kib: memory.iter().map(|m| m.peak_rss_kib).sum(),
                rss_kib: memory.iter().map(|m| m.rss_kib).sum(),
            }),
            cpu_s: all(|r| r.cpu_s).map(|cpu| cpu.into_iter().sum()),
        }
    }
}

/// One replica's share of the run (with `--replicas` or several `--target`s).
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaFigures {
    /// Where its requests went.
    pub base_url: String,
    /// Requests sent to it (successes and failures).
    pub requests: usize,
    /// Requests to it whose answer was not the expected success.
    pub errors: usize,
    /// Its process's figures, when this tool started it.
    pub gateway: Option<GatewayFigures>,
}

/// The exactly-once check of a run with notifies: the orders paid among those prepared must
/// lie between the notifies acknowledged (each acknowledged one paid its order) and the
/// notifies sent (nothing paid an order twice over or without a notify).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PaidCheck {
    /// First deliveries of prepared notifies, sent and acknowledged.
    pub notifies: NotifyCounts,
    /// Prepared orders paid after the run, read through the finance API.
    pub paid: usize,
    /// `acknowledged ≤ paid ≤ sent`.
    pub holds: bool,
}

impl PaidCheck {
    /// Compares the notify counts with the paid orders.
    pub fn new(notifies: NotifyCounts, paid: usize) -> PaidCheck {
        PaidCheck {
            notifies,
            paid,
            holds: notifies.acknowledged <= paid && paid <= notifies.sent,
        }
    }
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
    /// The spawned gateway's figures (absent with `--target`); with several replicas, all of
    /// them together ([`GatewayFigures::sum`]).
    pub gateway: Option<GatewayFigures>,
    /// Per replica, when requests were spread over more than one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaFigures>,
    /// Notifies acknowledged against orders paid, when the run sent notifies and could read
    /// the orders back.
    pub paid_check: Option<PaidCheck>,
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
            replicas: Vec::new(),
            paid_check: None,
        }
    }

    /// Adds the per-replica figures: requests and errors counted from the samples, the
    /// processes' own figures from `spawned` (one per replica, in order) when this tool
    /// started them.
    pub fn with_replicas(
        mut self,
        outcome: &RunOutcome,
        base_urls: &[String],
        spawned: Option<&[GatewayFigures]>,
    ) -> Report {
        self.replicas = base_urls
            .iter()
            .enumerate()
            .map(|(index, base_url)| {
                let to_it = outcome.samples.iter().filter(|s| s.replica == index);
                let (requests, errors) =
                    to_it.fold((0, 0), |(n, e), s| (n + 1, e + usize::from(!s.ok)));
                ReplicaFigures {
                    base_url: base_url.clone(),
                    requests,
                    errors,
                    gateway: spawned.and_then(|figures| figures.get(index)).cloned(),
                }
            })
            .collect();
        self
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
        if let Some(check) = self.paid_check {
            let _ = writeln!(
                out,
                "exactly once: {} notifies sent, {} acknowledged, {} orders paid: {}",
                check.notifies.sent,
                check.notifies.acknowledged,
                check.paid,
                if check.holds { "holds" } else { "VIOLATED" }
            );
        }
        for (index, replica) in self.replicas.iter().enumerate() {
            let _ = write!(
                out,
                "replica {index} ({}): {} requests, {} errors",
                replica.base_url, replica.requests, replica.errors
            );
            if let Some(cpu) = replica.gateway.as_ref().and_then(|g| g.cpu_s) {
                let _ = write!(out, ", CPU {cpu:.2} s");
            }
            if let Some(memory) = replica.gateway.as_ref().and_then(|g| g.memory) {
                let _ = write!(
                    out,
                    ", RSS peak {:.1} MiB",
                    memory.peak_rss_kib as f64 / 1024.0
                );
            }
            let _ = writeln!(out);
        }
        if let Some(gateway) = &self.gateway {
            let all = if self.replicas.len() > 1 && gateway.cpu_s.is_some() {
                " (all replicas)"
            } else {
                ""
            };
            if let Some(cpu) = gateway.cpu_s {
                let per_request = cpu * 1e6 / self.total.requests.max(1) as f64;
                let _ = writeln!(
                    out,
                    "gateway CPU{all}: {cpu:.2} s ({:.2} cores, {per_request:.0} µs per request)",
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
                    "gateway RSS{all}: peak {:.1} MiB, at end {:.1} MiB",
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
    fn replicas_sum_cpu_and_memory_and_keep_the_slowest_start() {
        let replica = |cpu: f64, peak: u64, start: f64| GatewayFigures {
            first_start_ms: Some(start),
            restart_ms: vec![start / 2.0],
            memory: Some(Memory {
                peak_rss_kib: peak,
                rss_kib: peak / 2,
            }),
            cpu_s: Some(cpu),
        };
        let sum = GatewayFigures::sum(&[replica(1.5, 1000, 80.0), replica(2.0, 3000, 120.0)]);
        assert_eq!(sum.cpu_s, Some(3.5));
        assert_eq!(sum.first_start_ms, Some(120.0));
        assert_eq!(sum.restart_ms, [40.0, 60.0]);
        let memory = sum.memory.unwrap();
        assert_eq!((memory.peak_rss_kib, memory.rss_kib), (4000, 2000));
    }

    #[test]
    fn the_paid_check_holds_only_between_acknowledged_and_sent() {
        let notifies = NotifyCounts {
            sent: 10,
            acknowledged: 8,
        };
        assert!(PaidCheck::new(notifies, 8).holds);
        assert!(PaidCheck::new(notifies, 10).holds);
        assert!(
            !PaidCheck::new(notifies, 7).holds,
            "an acknowledged notify paid nothing"
        );
        assert!(!PaidCheck::new(notifies, 11).holds, "paid without a notify");
    }

    #[test]
    fn a_single_sample_is_every_percentile() {
        let p = percentiles(&mut [Duration::from_millis(7)]);
        assert_eq!((p.p50_ms, p.max_ms), (7.0, 7.0));
    }
}
