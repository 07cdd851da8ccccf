//! Liveness, readiness and metrics.

use actix_web::{HttpResponse, web};

use crate::state::AppState;

/// `GET /healthz`: the process is up. Never touches the database, so a slow database cannot
/// make a healthy process look dead.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "The process is up")))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: the database answers and has the schema this binary was built for (a
/// replica left on an older binary after a newer one migrated, or a table changed by hand,
/// would fail some writes: it is taken out of rotation instead).
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "The database answers with the expected schema"), (status = 503, description = "The database is unreachable or its schema does not match this binary")))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.store.check_schema().await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            let reason = match error {
                paygate_store::StoreError::SchemaMismatch(_) => "database schema mismatch",
                _ => "database unreachable",
            };
            HttpResponse::ServiceUnavailable()
                .json(serde_json::json!({ "status": "unavailable", "reason": reason }))
        }
    }
}

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
