//! What to send and how fast: the operation mix, the pacing (fixed concurrency or fixed
//! arrival rate), the preparation of notify targets, and the timed run itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use paygate_core::Fen;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::LoadError;
use crate::notifies::{NotifySigner, OPENID, SANDBOX_APP};

/// The longest run the tool accepts, so a typo cannot load a machine for hours.
pub const MAX_DURATION: Duration = Duration::from_secs(600);

/// How long the client keeps an idle connection for reuse: under the gateway's default
/// `http.keep_alive_ms` (5 s), so the client never sends on a connection the server is closing
/// as idle (that race fails the request with a reset, which a proxy avoids the same way).
const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// Requests in flight at once in fixed-rate mode before arrivals are counted as dropped.
const MAX_IN_FLIGHT: usize = 4096;

/// Amount of every load order, in fen (¥19.99).
const ORDER_AMOUNT_FEN: i64 = 1999;

const SUBJECT: &str = "Oolong tea";

/// One kind of request in the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// `POST /v1/orders` provider=alipay channel=app: RSA-2048 signs the orderString.
    AlipayApp,
    /// `POST /v1/orders` provider=wechat channel=mini_program: unified order at the sandbox.
    WechatMini,
    /// `POST /notify/wechat/sandbox`: a signed paid notify (HMAC-SHA256).
    WechatNotify,
    /// `POST /notify/alipay/sandbox`: a signed paid notify (RSA2 verify).
    AlipayNotify,
    /// `GET /v1/orders?limit=20` with the finance key.
    FinanceList,
}

impl Operation {
    const ALL: [Operation; 5] = [
        Operation::AlipayApp,
        Operation::WechatMini,
        Operation::WechatNotify,
        Operation::AlipayNotify,
        Operation::FinanceList,
    ];

    /// The name used on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Operation::AlipayApp => "alipay_app",
            Operation::WechatMini => "wechat_mini",
            Operation::WechatNotify => "wechat_notify",
            Operation::AlipayNotify => "alipay_notify",
            Operation::FinanceList => "finance_list",
        }
    }

    fn parse(text: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|op| op.name() == text)
    }
}

/// The weighted mix, expanded into a repeating schedule so the proportions are exact.
#[derive(Debug, Clone)]
pub struct Mix {
    schedule: Vec<Operation>,
}

impl Mix {
    /// Parses `alipay_app=1,wechat_mini=2,…` (weights are small integers).
    pub fn parse(text: &str) -> Result<Mix, LoadError> {
        let invalid = |reason: String| LoadError::InvalidOption {
            option: "--mix",
            reason,
        };
        let mut schedule = Vec::new();
        for part in text.split(',').filter(|p| !p.trim().is_empty()) {
            let (name, weight) = part.split_once('=').unwrap_or((part, "1"));
            let op = Operation::parse(name.trim()).ok_or_else(|| {
                invalid(format!(
                    "unknown operation {name:?}; known: {}",
                    Operation::ALL.map(Operation::name).join(", ")
                ))
            })?;
            let weight: usize = weight
                .trim()
                .parse()
                .ok()
                .filter(|w| (1..=1000).contains(w))
                .ok_or_else(|| invalid(format!("weight of {name} must be 1…1000")))?;
            schedule.extend(std::iter::repeat_n(op, weight));
        }
        if schedule.is_empty() {
            return Err(invalid("empty mix".into()));
        }
        // Interleave instead of running each operation's block back to back.
        schedule.sort_by_key(|op| *op as usize);
        let mut interleaved = Vec::with_capacity(schedule.len());
        let mut buckets: Vec<Vec<Operation>> = Operation::ALL
            .iter()
            .map(|op| schedule.iter().copied().filter(|s| s == op).collect())
            .collect();
        while interleaved.len() < schedule.len() {
            for bucket in &mut buckets {
                if let Some(op) = bucket.pop() {
                    interleaved.push(op);
                }
            }
        }
        Ok(Mix {
            schedule: interleaved,
        })
    }

    /// Whether the mix sends `op` at all.
    pub fn contains(&self, op: Operation) -> bool {
        self.schedule.contains(&op)
    }

    fn pick(&self, sequence: usize) -> Operation {
        self.schedule[sequence % self.schedule.len()]
    }
}

/// How requests are offered.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// N workers, each sending its next request as soon as the previous one is answered.
    Concurrency(usize),
    /// Requests start on a fixed schedule of this many per second, whatever the answers do.
    Rate(f64),
}

/// Where to send and with which keys.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://127.0.0.1:PORT` of each replica; requests go to them round robin, as a load
    /// balancer without affinity would send them.
    pub base_urls: Vec<String>,
    /// A merchant API key.
    pub merchant_key: String,
    /// A finance API key.
    pub finance_key: String,
}

/// One request's outcome.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// What was sent.
    pub operation: Operation,
    /// Which replica it went to (an index into [`Target::base_urls`]).
    pub replica: usize,
    /// From the scheduled start to the full response body.
    pub latency: Duration,
    /// Whether the answer was the expected success.
    pub ok: bool,
}

/// Everything the timed run produced.
#[derive(Debug)]
pub struct RunOutcome {
    /// Every request's outcome.
    pub samples: Vec<Sample>,
    /// Wall time from the first scheduled request to the last answer.
    pub elapsed: Duration,
    /// Fixed-rate arrivals not sent because [`MAX_IN_FLIGHT`] requests were outstanding.
    pub dropped: usize,
    /// A few failure descriptions, for diagnosis.
    pub error_examples: Vec<String>,
    /// Notifies sent beyond the prepared orders (repeats of an already-paid order).
    pub repeated_notifies: usize,
    /// First deliveries of prepared notifies: how many were sent, and how many the gateway
    /// acknowledged with the provider's success answer.
    pub notifies: NotifyCounts,
}

/// First deliveries of the prepared notifies (repeats of an already-paid order not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct NotifyCounts {
    /// Sent, whatever the answer.
    pub sent: usize,
    /// Answered with the provider's success acknowledgement.
    pub acknowledged: usize,
}

/// Pre-signed notify bodies for orders that exist and are pending, handed out in order.
#[derive(Debug, Default)]
pub struct NotifyPool {
    bodies: Vec<String>,
    next: AtomicUsize,
    /// First deliveries answered with the success acknowledgement.
    acknowledged: AtomicUsize,
}

impl NotifyPool {
    fn take(&self) -> (&str, bool) {
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        let repeated = index >= self.bodies.len();
        let body = self
            .bodies
            .get(index % self.bodies.len().max(1))
            .map_or("", String::as_str);
        (body, repeated)
    }

    fn repeats(&self) -> usize {
        self.next
            .load(Ordering::Relaxed)
            .saturating_sub(self.bodies.len())
    }

    /// Counts an acknowledged first delivery.
    fn acknowledge(&self) {
        self.acknowledged.fetch_add(1, Ordering::Relaxed);
    }

    fn counts(&self) -> NotifyCounts {
        NotifyCounts {
            sent: self.next.load(Ordering::Relaxed).min(self.bodies.len()),
            acknowledged: self.acknowledged.load(Ordering::Relaxed),
        }
    }
}

/// Shared state of a run.
#[derive(Debug)]
pub struct Workload {
    client: reqwest::Client,
    target: Target,
    mix: Mix,
    wechat_notifies: NotifyPool,
    alipay_notifies: NotifyPool,
    /// Numbers the orders this run creates.
    sequence: AtomicUsize,
    /// Walks the mix schedule (separate from `sequence` so the proportions stay exact).
    picks: AtomicUsize,
    /// Walks the replicas, round robin.
    turns: AtomicUsize,
    run_id: String,
}

/// An error with its causes (`error sending request: … : connection reset by peer`), so a
/// failed request says what failed.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

fn order_body(op: Operation, out_trade_no: &str) -> Value {
    match op {
        Operation::WechatMini | Operation::WechatNotify => json!({
            "provider": "wechat",
            "app": SANDBOX_APP,
            "channel": "mini_program",
            "out_trade_no": out_trade_no,
            "amount": ORDER_AMOUNT_FEN,
            "subject": SUBJECT,
            "openid": OPENID,
            "client_ip": "203.0.113.7",
        }),
        _ => json!({
            "provider": "alipay",
            "app": SANDBOX_APP,
            "channel": "app",
            "out_trade_no": out_trade_no,
            "amount": ORDER_AMOUNT_FEN,
            "subject": SUBJECT,
        }),
    }
}

impl Workload {
    /// A workload against `target`.
    pub fn new(target: Target, mix: Mix, connections: usize) -> Result<Workload, LoadError> {
        if target.base_urls.is_empty() {
            return Err(LoadError::InvalidOption {
                option: "--target",
                reason: "no gateway to send to".into(),
            });
        }
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(connections)
            .pool_idle_timeout(CLIENT_IDLE_TIMEOUT)
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Workload {
            client,
            target,
            mix,
            wechat_notifies: NotifyPool::default(),
            alipay_notifies: NotifyPool::default(),
            sequence: AtomicUsize::new(0),
            picks: AtomicUsize::new(0),
            turns: AtomicUsize::new(0),
            run_id: ulid::Ulid::new().to_string().to_lowercase(),
        })
    }

    fn next_out_trade_no(&self, prefix: &str) -> String {
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        format!("{}{n}", self.out_trade_no_prefix(prefix))
    }

    /// What every order number of this run's `prefix` kind starts with.
    fn out_trade_no_prefix(&self, prefix: &str) -> String {
        format!("lg{prefix}{}", &self.run_id[20..])
    }

    /// The next replica in turn, and its base URL.
    fn next_replica(&self) -> (usize, &str) {
        let urls = &self.target.base_urls;
        let index = self.turns.fetch_add(1, Ordering::Relaxed) % urls.len().max(1);
        (index, urls.get(index).map_or("", String::as_str))
    }

    /// Creates `count` pending orders per notify provider in the mix and signs a paid notify
    /// for each, before the clock starts.
    pub async fn prepare_notifies(
        &mut self,
        signer: &NotifySigner,
        count: usize,
    ) -> Result<(), LoadError> {
        let amount = Fen::new(ORDER_AMOUNT_FEN).map_err(|e| LoadError::Prepare(e.to_string()))?;
        for op in [Operation::WechatNotify, Operation::AlipayNotify] {
            if !self.mix.contains(op) {
                continue;
            }
            let numbers = self.create_orders(op, count).await?;
            let bodies = numbers
                .iter()
                .map(|no| match op {
                    Operation::WechatNotify => signer.wechat_paid(no, amount),
                    _ => signer.alipay_paid(no, amount, SUBJECT),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let pool = NotifyPool {
                bodies,
                ..NotifyPool::default()
            };
            match op {
                Operation::WechatNotify => self.wechat_notifies = pool,
                _ => self.alipay_notifies = pool,
            }
        }
        Ok(())
    }

    /// Creates `count` orders for `op`'s provider, 16 at a time, returning their numbers.
    async fn create_orders(&self, op: Operation, count: usize) -> Result<Vec<String>, LoadError> {
        let numbers: Vec<String> = (0..count).map(|_| self.next_out_trade_no("p")).collect();
        for chunk in numbers.chunks(16) {
            let mut tasks = tokio::task::JoinSet::new();
            for no in chunk {
                let (_, base) = self.next_replica();
                let request = self
                    .client
                    .post(format!("{base}/v1/orders"))
                    .bearer_auth(&self.target.merchant_key)
                    .json(&order_body(op, no));
                tasks.spawn(async move {
                    let response = request.send().await.map_err(|e| e.to_string())?;
                    let status = response.status();
                    if status.as_u16() == 201 {
                        Ok(())
                    } else {
                        Err(format!(
                            "{status}: {}",
                            response.text().await.unwrap_or_default()
                        ))
                    }
                });
            }
            while let Some(joined) = tasks.join_next().await {
                joined
                    .map_err(|e| LoadError::Prepare(e.to_string()))?
                    .map_err(LoadError::Prepare)?;
            }
        }
        Ok(numbers)
    }

    /// Sends one request of kind `op` to the replica at `base`; `Err` describes an
    /// unexpected answer.
    async fn send(&self, op: Operation, base: &str) -> Result<(), String> {
        let mut first_delivery = None;
        let request = match op {
            Operation::AlipayApp | Operation::WechatMini => self
                .client
                .post(format!("{base}/v1/orders"))
                .bearer_auth(&self.target.merchant_key)
                .json(&order_body(op, &self.next_out_trade_no("r"))),
            Operation::WechatNotify => {
                let (body, repeated) = self.wechat_notifies.take();
                first_delivery = (!repeated).then_some(&self.wechat_notifies);
                self.client
                    .post(format!("{base}/notify/wechat/{SANDBOX_APP}"))
                    .header("Content-Type", "text/xml")
                    .body(body.to_owned())
            }
            Operation::AlipayNotify => {
                let (body, repeated) = self.alipay_notifies.take();
                first_delivery = (!repeated).then_some(&self.alipay_notifies);
                self.client
                    .post(format!("{base}/notify/alipay/{SANDBOX_APP}"))
                    .header(
                        "Content-Type",
                        "application/x-www-form-urlencoded; charset=utf-8",
                    )
                    .body(body.to_owned())
            }
            Operation::FinanceList => self
                .client
                .get(format!("{base}/v1/orders?limit=20"))
                .bearer_auth(&self.target.finance_key),
        };
        let response = request.send().await.map_err(|e| with_causes(&e))?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| with_causes(&e))?;
        let ok = match op {
            Operation::AlipayApp | Operation::WechatMini => status == 201,
            Operation::WechatNotify => status == 200 && text.contains("SUCCESS"),
            Operation::AlipayNotify => status == 200 && text.trim() == "success",
            Operation::FinanceList => status == 200,
        };
        if ok {
            if let Some(pool) = first_delivery {
                pool.acknowledge();
            }
            Ok(())
        } else {
            let snippet: String = text.chars().take(200).collect();
            Err(format!("{} → {status} {snippet}", op.name()))
        }
    }

    async fn timed(&self, scheduled: Instant) -> (Sample, Option<String>) {
        let op = self.mix.pick(self.picks.fetch_add(1, Ordering::Relaxed));
        let (replica, base) = self.next_replica();
        let result = self.send(op, base).await;
        let sample = Sample {
            operation: op,
            replica,
            latency: scheduled.elapsed(),
            ok: result.is_ok(),
        };
        (sample, result.err())
    }

    /// Runs the mix at `pace` for `duration` and collects every sample.
    pub async fn run(self: Arc<Self>, pace: Pace, duration: Duration) -> RunOutcome {
        let started = Instant::now();
        let deadline = started + duration;
        let mut tasks = tokio::task::JoinSet::new();
        let mut dropped = 0;
        match pace {
            Pace::Concurrency(workers) => {
                for _ in 0..workers {
                    let workload = self.clone();
                    tasks.spawn(async move {
                        let mut samples = Vec::new();
                        let mut errors = Vec::new();
                        while Instant::now() < deadline {
                            let (sample, error) = workload.timed(Instant::now()).await;
                            samples.push(sample);
                            errors.extend(error);
                        }
                        (samples, errors)
                    });
                }
            }
            Pace::Rate(per_second) => {
                let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
                let period = Duration::from_secs_f64(1.0 / per_second);
                let mut ticker = tokio::time::interval(period);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                loop {
                    let tick = ticker.tick().await.into_std();
                    if tick >= deadline {
                        break;
                    }
                    let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                        dropped += 1;
                        continue;
                    };
                    let workload = self.clone();
                    tasks.spawn(async move {
                        let _permit = permit;
                        let (sample, error) = workload.timed(tick).await;
                        (vec![sample], error.into_iter().collect::<Vec<_>>())
                    });
                }
            }
        }
        let mut samples = Vec::new();
        let mut error_examples = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            if let Ok((mut s, errors)) = joined {
                samples.append(&mut s);
                for error in errors {
                    if error_examples.len() < 5 && !error_examples.contains(&error) {
                        error_examples.push(error);
                    }
                }
            }
        }
        RunOutcome {
            samples,
            elapsed: started.elapsed(),
            dropped,
            error_examples,
            repeated_notifies: self.wechat_notifies.repeats() + self.alipay_notifies.repeats(),
            notifies: {
                let (w, a) = (self.wechat_notifies.counts(), self.alipay_notifies.counts());
                NotifyCounts {
                    sent: w.sent + a.sent,
                    acknowledged: w.acknowledged + a.acknowledged,
                }
            },
        }
    }

    /// How many of the orders prepared for notifies are paid now, read through the finance
    /// API (`GET /v1/orders?status=paid`, this run's prepared order numbers, page by page).
    /// Called after the run, it is the other half of the exactly-once check: every
    /// acknowledged notify paid its order, and nothing paid an order no notify was sent for.
    pub async fn paid_prepared_orders(&self) -> Result<usize, LoadError> {
        let prefix = self.out_trade_no_prefix("p");
        let (_, base) = self.next_replica();
        let mut paid = 0;
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![
                ("status", "paid".to_owned()),
                ("out_trade_no_prefix", prefix.clone()),
                ("limit", "500".to_owned()),
            ];
            if let Some(cursor) = cursor.take() {
                query.push(("cursor", cursor));
            }
            let response = self
                .client
                .get(format!("{base}/v1/orders"))
                .bearer_auth(&self.target.finance_key)
                .query(&query)
                .send()
                .await?;
            let status = response.status();
            if !status.is_success() {
                return Err(LoadError::Check(format!(
                    "listing paid orders: {status} {}",
                    response.text().await.unwrap_or_default()
                )));
            }
            let page: Value = response.json().await?;
            paid += page["data"].as_array().map_or(0, Vec::len);
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return Ok(paid),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mix_repeats_operations_in_proportion_to_their_weights() {
        let mix = Mix::parse("alipay_app=1,wechat_notify=3").unwrap();
        let picked: Vec<Operation> = (0..8).map(|i| mix.pick(i)).collect();
        let notifies = picked
            .iter()
            .filter(|op| **op == Operation::WechatNotify)
            .count();
        assert_eq!(notifies, 6);
        assert_eq!(picked.len() - notifies, 2);
    }

    #[test]
    fn unknown_operations_and_zero_weights_are_refused() {
        assert!(Mix::parse("alipay_web=1").is_err());
        assert!(Mix::parse("alipay_app=0").is_err());
        assert!(Mix::parse("").is_err());
    }

    #[test]
    fn a_notify_pool_hands_out_each_body_once_before_repeating() {
        let pool = NotifyPool {
            bodies: vec!["a".into(), "b".into()],
            ..NotifyPool::default()
        };
        assert_eq!(pool.take(), ("a", false));
        assert_eq!(pool.take(), ("b", false));
        assert_eq!(pool.take(), ("a", true));
        assert_eq!(pool.repeats(), 1);
        pool.acknowledge();
        assert_eq!(
            pool.counts(),
            NotifyCounts {
                sent: 2,
                acknowledged: 1
            }
        );
    }

    #[test]
    fn requests_take_the_replicas_in_turn() {
        let target = Target {
            base_urls: (0..3)
                .map(|n| format!("http://127.0.0.1:{}", 9000 + n))
                .collect(),
            merchant_key: String::new(),
            finance_key: String::new(),
        };
        let workload = Workload::new(target, Mix::parse("finance_list").unwrap(), 1).unwrap();
        let visited: Vec<usize> = (0..7).map(|_| workload.next_replica().0).collect();
        assert_eq!(visited, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(workload.next_replica().1, "http://127.0.0.1:9001");
    }
}
