//! What every handler shares: the store, the provider registry, metrics and limits.

use crate::config::Limits;
use crate::metrics::Metrics;
use crate::registry::{ProviderApp, Registry};

/// Shared application state, cloned cheaply into each actix worker.
pub struct AppState {
    /// The database.
    pub store: paygate_store::Store,
    /// Configured provider apps.
    pub registry: Registry,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Body size limits.
    pub limits: Limits,
    /// Base URL providers reach us at (no trailing slash).
    pub public_base_url: String,
    /// Recently authenticated API keys.
    pub keys: crate::auth::KeyCache,
    /// How many unverifiable callbacks per source get an audit row and a warning.
    pub unverified_callbacks: crate::throttle::SourceThrottle,
    /// Budget of failed API-key authentications per source address.
    pub failed_authentications: crate::throttle::SourceThrottle,
    /// Refunds whose first provider call is under way, which the reconciler leaves alone.
    pub refunds_in_flight: crate::refunds::RefundsInFlight,
    /// The readiness check's throttled write probe.
    pub write_probe: crate::routes::health::WriteProbe,
}

impl AppState {
    /// Where `app`'s payment notifies go.
    pub fn notify_url(&self, app: &ProviderApp) -> String {
        format!(
            "{}/notify/{}/{}",
            self.public_base_url,
            app.kind().as_str(),
            app.name
        )
    }

    /// Where `app`'s refund notifies go: the route the provider declares for them, or the
    /// payment route when it reports refunds on its trade notify (Alipay).
    pub fn refund_notify_url(&self, app: &ProviderApp) -> String {
        let suffix = app
            .provider
            .capabilities()
            .refund_callback
            .map_or("", |route| route.suffix);
        format!("{}{suffix}", self.notify_url(app))
    }
}
