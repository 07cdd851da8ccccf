//! Finance's statement-reconciliation endpoints (finance keys only): the runs of a range of
//! days with both sides' totals, a day's differences, the raw bill file as evidence, a
//! difference's resolution, and "reconcile this day now". Thin: the work is in
//! [`crate::statements`] and the store.

use actix_web::{HttpResponse, web};
use chrono::NaiveDate;
use paygate_core::{AppName, BillLineKind, ProviderKind};
use paygate_reconciliation::Category;
use paygate_store::{
    BillDayKey, BillFileId, Difference, DifferenceId, ReconciliationRun, Resolution,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Principal, Role};
use crate::error::{ApiError, ErrorCode};
use crate::registry::ProviderApp;
use crate::routes::finance::csv_cell;
use crate::state::AppState;
use crate::statements::{AppLookupError, BillSource, DayOutcome, find_app, reconcile_day};

fn day(field: &str, text: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        ApiError::invalid(
            ErrorCode::InvalidFilter,
            format!("{field} must be YYYY-MM-DD"),
        )
    })
}

fn app_name(text: &str) -> Result<AppName, ApiError> {
    AppName::parse(text)
        .map_err(|e| ApiError::invalid(ErrorCode::InvalidFilter, format!("app: {e}")))
}

/// The configured app called `name` (of `provider`, required when two providers use it).
fn configured<'a>(
    state: &'a AppState,
    name: &AppName,
    provider: Option<&str>,
) -> Result<&'a ProviderApp, ApiError> {
    let provider = provider
        .map(ProviderKind::parse)
        .transpose()
        .map_err(|e| ApiError::invalid(ErrorCode::InvalidFilter, format!("provider: {e}")))?;
    find_app(state, name, provider).map_err(|e| match e {
        AppLookupError::NotFound(_) => ApiError::NotFound(e.to_string()),
        AppLookupError::Ambiguous(_) => ApiError::invalid(ErrorCode::InvalidFilter, e.to_string()),
    })
}

/// One run as the API shows it.
pub fn run_view(run: &ReconciliationRun) -> Value {
    let t = &run.totals;
    json!({
        "id": run.id.to_string(),
        "app": run.app,
        "provider": run.provider,
        "day": run.bill_day.format("%Y-%m-%d").to_string(),
        "status": run.status.as_str(),
        "failure_reason": run.failure_reason,
        "bill_file_id": run.bill_file_id.as_ref().map(ToString::to_string),
        "bill": {
            "payments_count": t.bill_payments_count,
            "gross": t.bill_gross,
            "settlement_gross": t.bill_settlement_gross,
            "refunds_count": t.bill_refunds_count,
            "refunds": t.bill_refunds,
            "fees": t.bill_fees_fen,
            "net": t.bill_net_fen(),
        },
        "local": {
            "payments_count": t.local_payments_count,
            "gross": t.local_gross,
            "refunds_count": t.local_refunds_count,
            "refunds": t.local_refunds,
        },
        "differences_count": run.differences_count,
        "held_count": run.held_count,
        "finished_at": run.finished_at,
    })
}

fn difference_view(d: &Difference) -> Value {
    json!({
        "id": d.id.to_string(),
        "kind": match d.kind { BillLineKind::Payment => "payment", BillLineKind::Refund => "refund" },
        "category": d.category.as_str(),
        "out_trade_no": d.out_trade_no,
        "out_refund_no": d.out_refund_no,
        "provider_trade_no": d.provider_trade_no,
        "provider_refund_no": d.provider_refund_no,
        "bill_amount": d.bill_amount,
        "bill_time": d.bill_time,
        "bill_status": d.bill_status,
        "local_amount": d.local_amount,
        "local_time": d.local_time,
        "local_status": d.local_status,
        "near_midnight": d.near_midnight,
        "held": d.held,
        "refund_status_differs": d.refund_status_differs,
        "resolution": d.resolution.as_ref().map(|r| json!({"note": r.note, "by": r.by, "at": r.at})),
    })
}

/// Query of `GET /v1/reconciliation/runs`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    /// First Beijing day, `YYYY-MM-DD`.
    pub from: String,
    /// Last Beijing day (inclusive).
    pub to: String,
    /// Only this app.
    pub app: Option<String>,
}

/// `GET /v1/reconciliation/runs`: each day's run per app, bill totals beside ours.
#[utoipa::path(get, path = "/v1/reconciliation/runs", tag = "finance", params(RunsQuery), responses((status = 200, description = "`{data: [Run]}`")), security(("bearer" = [])))]
pub async fn list_runs(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<RunsQuery>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Role::Finance)?;
    let app = query.app.as_deref().map(app_name).transpose()?;
    let runs = state
        .store
        .reconciliation_runs(
            app.as_ref(),
            day("from", &query.from)?,
            day("to", &query.to)?,
        )
        .await?;
    let data: Vec<Value> = runs.iter().map(run_view).collect();
    Ok(HttpResponse::Ok().json(json!({ "data": data })))
}

/// Body of `POST /v1/reconciliation/runs`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// The app.
    pub app: String,
    /// `wechat` or `alipay`, when the app name is used by both.
    pub provider: Option<String>,
    /// The Beijing day, `YYYY-MM-DD`.
    pub day: String,
}

/// `POST /v1/reconciliation/runs`: fetch the day's bill now and reconcile it, replacing the
/// day's earlier run. 200 with the run; 409 `bill_not_ready` / `bill_missing` when the
/// provider has none yet.
#[utoipa::path(post, path = "/v1/reconciliation/runs", tag = "finance", request_body = RunRequest, responses((status = 200, description = "`{run, paid: [out_trade_no]}`"), (status = 409, description = "The bill is not ready or missing")), security(("bearer" = [])))]
pub async fn reconcile_now(
    state: web::Data<AppState>,
    principal: Principal,
    body: web::Json<RunRequest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Role::Finance)?;
    let app = configured(&state, &app_name(&body.app)?, body.provider.as_deref())?;
    let day = day("day", &body.day)?;
    let conflict = |code, message: &str| ApiError::Conflict {
        code,
        message: message.to_owned(),
    };
    match reconcile_day(&state, app, day, BillSource::Download).await {
        Ok(DayOutcome::Reconciled { run, paid }) => {
            Ok(HttpResponse::Ok().json(json!({ "run": run_view(&run), "paid": paid })))
        }
        Ok(DayOutcome::NotReady) => Err(conflict(
            ErrorCode::BillNotReady,
            "the provider is still making this bill; try again later",
        )),
        Ok(DayOutcome::BillMissing) => Err(conflict(
            ErrorCode::BillMissing,
            "the provider has no bill for a day with payments or refunds in our books",
        )),
        Ok(DayOutcome::Unsupported) => Err(conflict(
            ErrorCode::BillUnsupported,
            "this app's provider offers no bill download",
        )),
        Err(crate::statements::StatementError::Store(error)) => Err(error.into()),
        Err(crate::statements::StatementError::Provider(error)) => Err(error.into()),
    }
}

/// Query of `GET /v1/reconciliation/differences`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DifferencesQuery {
    /// The app.
    pub app: String,
    /// `wechat` or `alipay`, when the app name is used by both.
    pub provider: Option<String>,
    /// The Beijing day, `YYYY-MM-DD`.
    pub day: String,
    /// Only this category (`missing_local`, `status_mismatch`, …).
    pub category: Option<String>,
}

/// The differences CSV's header: one line per difference, both sides, the resolution.
pub const DIFFERENCES_CSV_HEADER: &str = "category,kind,out_trade_no,out_refund_no,provider_trade_no,provider_refund_no,bill_amount_fen,bill_amount_yuan,bill_time,bill_status,local_amount_fen,local_amount_yuan,local_time,local_status,near_midnight,held,resolution_note,resolved_by,resolved_at\r\n";

/// One difference as a CSV line (CRLF included), in [`DIFFERENCES_CSV_HEADER`]'s columns.
fn difference_csv_row(d: &Difference) -> String {
    let fen = |f: Option<paygate_core::Fen>| f.map(|f| f.get().to_string()).unwrap_or_default();
    let yuan = |f: Option<paygate_core::Fen>| f.map(|f| f.to_yuan_string()).unwrap_or_default();
    let time =
        |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
    let resolution = d.resolution.as_ref();
    let cells = [
        d.category.as_str().to_owned(),
        match d.kind {
            BillLineKind::Payment => "payment",
            BillLineKind::Refund => "refund",
        }
        .to_owned(),
        d.out_trade_no.clone(),
        d.out_refund_no.clone().unwrap_or_default(),
        d.provider_trade_no.clone().unwrap_or_default(),
        d.provider_refund_no.clone().unwrap_or_default(),
        fen(d.bill_amount),
        yuan(d.bill_amount),
        time(d.bill_time),
        d.bill_status.clone().unwrap_or_default(),
        fen(d.local_amount),
        yuan(d.local_amount),
        time(d.local_time),
        d.local_status.clone().unwrap_or_default(),
        d.near_midnight.to_string(),
        d.held.to_string(),
        resolution.map(|r| r.note.clone()).unwrap_or_default(),
        resolution.map(|r| r.by.clone()).unwrap_or_default(),
        time(resolution.map(|r| r.at)),
    ];
    let cells: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
    format!("{}\r\n", cells.join(","))
}

/// `GET /v1/reconciliation/differences.csv`: the same list as a CSV that Excel opens as
/// UTF-8 (it starts with a byte-order mark), formulas defused.
#[utoipa::path(get, path = "/v1/reconciliation/differences.csv", tag = "finance", params(DifferencesQuery), responses((status = 200, description = "CSV, UTF-8 with BOM", content_type = "text/csv")), security(("bearer" = [])))]
pub async fn export_differences(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<DifferencesQuery>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Role::Finance)?;
    let (run, differences) = run_differences(&state, &query).await?;
    let mut csv = String::from("\u{feff}");
    csv.push_str(DIFFERENCES_CSV_HEADER);
    for difference in &differences {
        csv.push_str(&difference_csv_row(difference));
    }
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            format!(
                "attachment; filename=\"differences-{}-{}-{}.csv\"",
                run.app,
                run.provider,
                run.bill_day.format("%Y-%m-%d")
            ),
        ))
        .body(csv))
}

/// The day's run and its differences (of the category asked for).
async fn run_differences(
    state: &AppState,
    query: &DifferencesQuery,
) -> Result<(ReconciliationRun, Vec<Difference>), ApiError> {
    let app = configured(state, &app_name(&query.app)?, query.provider.as_deref())?;
    let category = query
        .category
        .as_deref()
        .map(|c| {
            Category::parse(c).ok_or_else(|| {
                ApiError::invalid(ErrorCode::InvalidFilter, format!("unknown category {c:?}"))
            })
        })
        .transpose()?;
    let key = BillDayKey {
        app: app.name.clone(),
        provider: app.kind(),
        bill_day: day("day", &query.day)?,
    };
    let run = state
        .store
        .reconciliation_run(&key)
        .await?
        .ok_or_else(|| ApiError::NotFound("no reconciliation run for that day".into()))?;
    let differences = state
        .store
        .reconciliation_differences(&run.id, category)
        .await?;
    Ok((run, differences))
}

/// `GET /v1/reconciliation/differences`: the day's run and its differences, both sides.
#[utoipa::path(get, path = "/v1/reconciliation/differences", tag = "finance", params(DifferencesQuery), responses((status = 200, description = "`{run, data: [Difference]}`"), (status = 404, description = "No run for that day")), security(("bearer" = [])))]
pub async fn list_differences(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<DifferencesQuery>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Role::Finance)?;
    let (run, differences) = run_differences(&state, &query).await?;
    let data: Vec<Value> = differences.iter().map(difference_view).collect();
    Ok(HttpResponse::Ok().json(json!({ "run": run_view(&run), "data": data })))
}

/// `GET /v1/reconciliation/files/{id}`: the bill file exactly as the provider sent it.
#[utoipa::path(get, path = "/v1/reconciliation/files/{id}", tag = "finance", params(("id" = String, Path, description = "The run's `bill_file_id`")), responses((status = 200, description = "The raw bytes", content_type = "application/octet-stream")), security(("bearer" = [])))]
pub async fn bill_file(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Role::Finance)?;
    let id = BillFileId::parse(id.as_str())
        .map_err(|_| ApiError::NotFound("no such bill file".into()))?;
    let body = state.store.bill_file_body(&id).await?;
    let extension = match paygate_core::BillFormat::sniff(&body) {
        paygate_core::BillFormat::WechatGzip => "csv.gz",
        paygate_core::BillFormat::AlipayZip => "csv.zip",
        paygate_core::BillFormat::WechatText => "csv",
    };
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"bill-{id}.{extension}\""),
        ))
        .body(body))
}

/// Body of `PUT /v1/reconciliation/differences/{id}/resolution`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolutionRequest {
    /// What was done and why.
    pub note: String,
}

/// `PUT /v1/reconciliation/differences/{id}/resolution`: finance's note on a difference,
/// signed with the calling key's id.
#[utoipa::path(put, path = "/v1/reconciliation/differences/{id}/resolution", tag = "finance", params(("id" = String, Path, description = "The difference's id")), request_body = ResolutionRequest, responses((status = 200, description = "The difference")), security(("bearer" = [])))]
pub async fn resolve(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: web::Json<ResolutionRequest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Role::Finance)?;
    let id = DifferenceId::parse(id.as_str())
        .map_err(|_| ApiError::NotFound("no such difference".into()))?;
    let difference = state
        .store
        .resolve_difference(
            &id,
            Resolution {
                note: body.note.clone(),
                by: format!("key {}", principal.key_id),
                at: chrono::Utc::now(),
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(difference_view(&difference)))
}
