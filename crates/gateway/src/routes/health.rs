//! Liveness, readiness and metrics.

use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};

use crate::state::AppState;

/// `GET /healthz`: the process is up. Never touches the database, so a slow database cannot
/// make a healthy process look dead.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "The process is up")))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// How long a write probe's verdict is reused, so that however often `/readyz` is polled the
/// database sees at most one probe write (rolled back) per interval.
const WRITE_PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// The last verdict of the readiness write probe.
#[derive(Debug, Default)]
pub struct WriteProbe {
    last: tokio::sync::Mutex<Option<(Instant, bool)>>,
}

impl WriteProbe {
    /// Whether the database took a (rolled-back) write within the last probe interval; probes
    /// again when the verdict is older. Concurrent callers wait for one probe.
    async fn writable(&self, store: &paygate_store::Store) -> bool {
        let mut last = self.last.lock().await;
        if let Some((at, writable)) = *last
            && at.elapsed() < WRITE_PROBE_INTERVAL
        {
            return writable;
        }
        let writable = match store.check_writable().await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "readiness write probe failed");
                false
            }
        };
        *last = Some((Instant::now(), writable));
        writable
    }
}

/// `GET /readyz`: the database answers, has the schema this binary was built for (a replica
/// left on an older binary after a newer one migrated, or a table changed by hand, would fail
/// some writes: it is taken out of rotation instead), and takes writes.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "The database answers with the expected schema and takes writes"), (status = 503, description = "The database is unreachable, its schema does not match this binary, or it refuses writes")))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let unavailable = |reason: &str| {
        HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "status": "unavailable", "reason": reason }))
    };
    if let Err(error) = state.store.ping().await {
        tracing::warn!(%error, "readiness check failed");
        return unavailable("database unreachable");
    }
    // Before the schema check, whose migration-table look-up is itself refused by a read-only
    // PostgreSQL: the reason given should be the writes.
    if !state.write_probe.writable(&state.store).await {
        return unavailable("database refuses writes");
    }
    if let Err(error) = state.store.check_schema().await {
        tracing::warn!(%error, "readiness check failed");
        return unavailable(match error {
            paygate_store::StoreError::SchemaMismatch(_) => "database schema mismatch",
            _ => "database unreachable",
        });
    }
    HttpResponse::Ok().json(serde_json::json!({ "status": "ready" }))
}

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    // The two ages are read at scrape time; a database that cannot answer leaves the last
    // values (readiness reports the outage).
    let now = chrono::Utc::now();
    let age = |at: Option<chrono::DateTime<chrono::Utc>>| {
        at.map_or(0.0, |at| {
            (now - at).num_milliseconds().max(0) as f64 / 1000.0
        })
    };
    match state.store.oldest_backlog().await {
        Ok(backlog) => {
            state.metrics.outbox_lag.set(age(backlog.undelivered_event));
            state
                .metrics
                .oldest_pending_order_age
                .set(age(backlog.pending_order));
        }
        Err(error) => tracing::warn!(%error, "metrics: backlog ages not read"),
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
