//! Prometheus metrics served at `/metrics`. One registry per `Application`, not a global, so
//! parallel test servers do not share counters.

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The gateway's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// HTTP requests by method, matched route pattern and status.
    pub http_requests: IntCounterVec,
    /// HTTP latency by matched route pattern.
    pub http_latency: HistogramVec,
    /// Provider callbacks by provider and verdict.
    pub callbacks: IntCounterVec,
    /// Unverifiable callbacks over their source's budget: counted, answered, not stored.
    pub callbacks_unrecorded: IntCounterVec,
    /// Order status transitions by event.
    pub transitions: IntCounterVec,
    /// Failed provider calls by provider, operation and kind of failure.
    pub provider_errors: IntCounterVec,
    /// Refused API authentications: `unknown_key` (401) or `throttled` (429).
    pub failed_authentications: IntCounterVec,
    /// Provider call latency by provider, operation and outcome.
    pub provider_calls: HistogramVec,
    /// Age of the oldest merchant webhook event not yet delivered (0 when none), set at scrape.
    pub outbox_lag: Gauge,
    /// Age of the oldest pending order (0 when none), set at scrape.
    pub oldest_pending_order_age: Gauge,
    /// 1 while an app's bill for yesterday is still not reconciled past the alert deadline.
    pub statement_overdue: IntGaugeVec,
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new_custom(Some("paygate".to_owned()), None)?;
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests served"),
            &["method", "route", "status"],
        )?;
        let http_latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency").buckets(
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            ),
            &["route"],
        )?;
        let callbacks = IntCounterVec::new(
            Opts::new("callbacks_total", "Provider callbacks by verdict"),
            &["provider", "verdict"],
        )?;
        let callbacks_unrecorded = IntCounterVec::new(
            Opts::new(
                "callbacks_unrecorded_total",
                "Unverifiable callbacks answered without an audit row (over their source's budget)",
            ),
            &["provider", "verdict"],
        )?;
        let transitions = IntCounterVec::new(
            Opts::new(
                "order_transitions_total",
                "Order status transitions applied",
            ),
            &["event"],
        )?;
        let provider_errors = IntCounterVec::new(
            Opts::new("provider_errors_total", "Failed provider calls"),
            &["provider", "operation", "kind"],
        )?;
        let failed_authentications = IntCounterVec::new(
            Opts::new(
                "failed_authentications_total",
                "API requests refused for an unknown key, or throttled after too many",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(failed_authentications.clone()))?;
        let provider_calls = HistogramVec::new(
            HistogramOpts::new(
                "provider_call_duration_seconds",
                "Provider API calls by provider, operation and outcome",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["provider", "operation", "outcome"],
        )?;
        registry.register(Box::new(provider_calls.clone()))?;
        let outbox_lag = Gauge::with_opts(Opts::new(
            "outbox_lag_seconds",
            "Age of the oldest merchant webhook event not yet delivered (0 when none)",
        ))?;
        registry.register(Box::new(outbox_lag.clone()))?;
        let oldest_pending_order_age = Gauge::with_opts(Opts::new(
            "oldest_pending_order_age_seconds",
            "Age of the oldest pending order (0 when none)",
        ))?;
        registry.register(Box::new(oldest_pending_order_age.clone()))?;
        let statement_overdue = IntGaugeVec::new(
            Opts::new(
                "statement_overdue",
                "1 while yesterday's bill of an app is not reconciled past the alert deadline",
            ),
            &["provider", "app"],
        )?;
        registry.register(Box::new(statement_overdue.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_latency.clone()))?;
        registry.register(Box::new(callbacks.clone()))?;
        registry.register(Box::new(callbacks_unrecorded.clone()))?;
        registry.register(Box::new(transitions.clone()))?;
        registry.register(Box::new(provider_errors.clone()))?;
        Ok(Metrics {
            registry,
            http_requests,
            http_latency,
            callbacks,
            callbacks_unrecorded,
            transitions,
            provider_errors,
            failed_authentications,
            provider_calls,
            outbox_lag,
            oldest_pending_order_age,
            statement_overdue,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec cannot fail for the text format; an empty page is the fallback.
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}
