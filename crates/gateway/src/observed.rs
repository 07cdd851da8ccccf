//! Every provider call observable, whatever the provider: [`Observed`] wraps any
//! `dyn Provider` so each network operation runs in a tracing span and lands in the
//! `paygate_provider_call_duration_seconds{provider, operation, outcome}` histogram. The label
//! values are bounded: providers are the configured ones, operations and outcomes are the
//! fixed lists below.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use paygate_core::{
    CallbackAck, CallbackOutcome, Capabilities, CreatePayment, CreatedPayment, InboundCallback,
    MerchantIdentity, Notice, NotifyError, Provider, ProviderError, ProviderKind, RefundFacts,
    RefundQuery, RefundRequest, TradeFacts, TradeRef,
};
use prometheus::HistogramVec;
use tracing::Instrument;

/// A provider whose calls are timed and traced.
pub struct Observed {
    inner: Arc<dyn Provider>,
    latency: HistogramVec,
}

impl Observed {
    /// Wraps `inner`, recording into `latency` (labels: provider, operation, outcome).
    pub fn new(inner: Arc<dyn Provider>, latency: HistogramVec) -> Observed {
        Observed { inner, latency }
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        call: impl std::future::Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        let provider = self.inner.kind();
        let span = tracing::info_span!("provider_call", %provider, operation, outcome = tracing::field::Empty);
        let started = Instant::now();
        let result = call.instrument(span.clone()).await;
        let outcome = outcome(&result);
        span.record("outcome", outcome);
        self.latency
            .with_label_values(&[provider.as_str(), operation, outcome])
            .observe(started.elapsed().as_secs_f64());
        // Recorded as an error value so the log line carries the whole cause chain (the
        // connection refused under a transport failure), which callers' messages summarise.
        if let Err(
            error @ (ProviderError::OutcomeUnknown(_)
            | ProviderError::UntrustedResponse(_)
            | ProviderError::Configuration(_)),
        ) = &result
        {
            tracing::info!(
                parent: &span,
                error = error as &dyn std::error::Error,
                "provider call failed"
            );
        }
        result
    }
}

/// The outcome label of a provider call: one of a fixed set.
fn outcome<T>(result: &Result<T, ProviderError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(ProviderError::OutcomeUnknown(_)) => "unknown",
        Err(ProviderError::UntrustedResponse(_)) => "untrusted",
        Err(ProviderError::Refused { .. }) => "refused",
        Err(ProviderError::AlreadyPaid) => "already_paid",
        Err(ProviderError::AlreadyClosed) => "already_closed",
        Err(ProviderError::NotFound) => "not_found",
        Err(ProviderError::InvalidRequest(_)) => "invalid_request",
        Err(ProviderError::Configuration(_)) => "configuration",
    }
}

#[async_trait]
impl Provider for Observed {
    fn kind(&self) -> ProviderKind {
        self.inner.kind()
    }

    fn merchant(&self) -> &MerchantIdentity {
        self.inner.merchant()
    }

    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    fn check_payment_request(&self, request: &CreatePayment) -> Result<(), ProviderError> {
        self.inner.check_payment_request(request)
    }

    async fn create_payment(
        &self,
        request: &CreatePayment,
    ) -> Result<CreatedPayment, ProviderError> {
        self.timed("create", self.inner.create_payment(request))
            .await
    }

    fn verify_callback(&self, callback: &InboundCallback<'_>) -> Result<Notice, NotifyError> {
        self.inner.verify_callback(callback)
    }

    fn acknowledge(&self, outcome: CallbackOutcome) -> CallbackAck {
        self.inner.acknowledge(outcome)
    }

    async fn query_payment(&self, trade: &TradeRef) -> Result<TradeFacts, ProviderError> {
        self.timed("query", self.inner.query_payment(trade)).await
    }

    async fn close_payment(&self, trade: &TradeRef) -> Result<(), ProviderError> {
        self.timed("close", self.inner.close_payment(trade)).await
    }

    async fn refund(&self, request: &RefundRequest) -> Result<RefundFacts, ProviderError> {
        self.timed("refund", self.inner.refund(request)).await
    }

    async fn query_refund(&self, query: &RefundQuery) -> Result<RefundFacts, ProviderError> {
        self.timed("refund_query", self.inner.query_refund(query))
            .await
    }

    async fn download_bill(
        &self,
        day: chrono::NaiveDate,
    ) -> Result<paygate_core::BillDownload, ProviderError> {
        self.timed("download_bill", self.inner.download_bill(day))
            .await
    }
}
