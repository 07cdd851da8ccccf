//! Finance's statement-reconciliation endpoints (finance keys only): the runs of a range of
//! days with both sides' totals, a day's differences, the raw bill file as evidence, a
//! difference's resolution, and "reconcile this day now". Thin: the work is in
//! [`crate::statements`] and the store.

use actix_web::{HttpResponse, web};
use chrono::NaiveDate;
use chrono::{DateTime, Utc};
use paygate_core::Fen;
use paygate_core::{AppName, BillLineKind, ProviderKind};
use paygate_reconciliation::Category;
use paygate_store::{
    BillDayKey, BillFileId, Difference, DifferenceId, ReconciliationRun, Resolution,
};
use serde::{Deserialize, Serialize};

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

/// One day's reconciliation run of one app, as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunView {
    /// The run's id.
    pub id: String,
    /// The app reconciled.
    #[schema(value_type = String)]
    pub app: AppName,
    /// `wechat` or `alipay`.
    #[schema(value_type = String)]
    pub provider: ProviderKind,
    /// The Beijing day, `YYYY-MM-DD`.
    pub day: String,
    /// How the run ended.
    pub status: &'static str,
    /// Why it failed, when it did.
    pub failure_reason: Option<String>,
    /// The bill file kept as evidence (`GET /v1/reconciliation/files/{id}`).
    pub bill_file_id: Option<String>,
    /// The provider's bill totals.
    pub bill: BillTotalsView,
    /// Our books' totals for the same day.
    pub local: LocalTotalsView,
    /// Lines that differ.
    pub differences_count: u64,
    /// Differences held for another day (near midnight).
    pub held_count: u64,
    /// When the run finished.
    pub finished_at: DateTime<Utc>,
}

/// The bill's side of a run, in fen.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BillTotalsView {
    /// Payment lines.
    pub payments_count: u64,
    /// Paid, in fen.
    #[schema(value_type = i64)]
    pub gross: Fen,
    /// Settled, in fen (without coupons the provider funds).
    #[schema(value_type = i64)]
    pub settlement_gross: Fen,
    /// Refund lines.
    pub refunds_count: u64,
    /// Refunded, in fen.
    #[schema(value_type = i64)]
    pub refunds: Fen,
    /// The provider's fees, in fen.
    pub fees: i64,
    /// Gross minus refunds minus fees, in fen.
    pub net: i64,
}

/// Our books' side of a run, in fen.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LocalTotalsView {
    /// Payments.
    pub payments_count: u64,
    /// Paid, in fen.
    #[schema(value_type = i64)]
    pub gross: Fen,
    /// Refunds.
    pub refunds_count: u64,
    /// Refunded, in fen.
    #[schema(value_type = i64)]
    pub refunds: Fen,
}

/// One run as the API shows it.
pub fn run_view(run: &ReconciliationRun) -> RunView {
    let t = &run.totals;
    RunView {
        id: run.id.to_string(),
        app: run.app.clone(),
        provider: run.provider,
        day: run.bill_day.format("%Y-%m-%d").to_string(),
        status: run.status.as_str(),
        failure_reason: run.failure_reason.clone(),
        bill_file_id: run.bill_file_id.as_ref().map(ToString::to_string),
        bill: BillTotalsView {
            payments_count: t.bill_payments_count,
            gross: t.bill_gross,
            settlement_gross: t.bill_settlement_gross,
            refunds_count: t.bill_refunds_count,
            refunds: t.bill_refunds,
            fees: t.bill_fees_fen,
            net: t.bill_net_fen(),
        },
        local: LocalTotalsView {
            payments_count: t.local_payments_count,
            gross: t.local_gross,
            refunds_count: t.local_refunds_count,
            refunds: t.local_refunds,
        },
        differences_count: run.differences_count,
        held_count: run.held_count,
        finished_at: run.finished_at,
    }
}

/// One line where the bill and our books disagree, both sides shown.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DifferenceView {
    /// The difference's id.
    pub id: String,
    /// `payment` or `refund`.
    pub kind: &'static str,
    /// The category (see reconciliation.md).
    pub category: &'static str,
    /// The order number.
    pub out_trade_no: String,
    /// The refund number, for refund lines.
    pub out_refund_no: Option<String>,
    /// The provider's trade number.
    pub provider_trade_no: Option<String>,
    /// The provider's refund number.
    pub provider_refund_no: Option<String>,
    /// The bill's amount, in fen.
    #[schema(value_type = Option<i64>)]
    pub bill_amount: Option<Fen>,
    /// The bill's time.
    pub bill_time: Option<DateTime<Utc>>,
    /// The bill's status.
    pub bill_status: Option<String>,
    /// Our amount, in fen.
    #[schema(value_type = Option<i64>)]
    pub local_amount: Option<Fen>,
    /// Our time.
    pub local_time: Option<DateTime<Utc>>,
    /// Our status.
    pub local_status: Option<String>,
    /// Within minutes of midnight (may be on the next day's bill).
    pub near_midnight: bool,
    /// Held for the next day's bill.
    pub held: bool,
    /// The refund's status differs between the two sides.
    pub refund_status_differs: bool,
    /// How finance resolved it, once they have.
    pub resolution: Option<ResolutionView>,
}

/// A difference's resolution.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResolutionView {
    /// What was done.
    pub note: String,
    /// Who resolved it (the key's name).
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
}

fn difference_view(d: &Difference) -> DifferenceView {
    DifferenceView {
        id: d.id.to_string(),
        kind: match d.kind {
            BillLineKind::Payment => "payment",
            BillLineKind::Refund => "refund",
        },
        category: d.category.as_str(),
        out_trade_no: d.out_trade_no.clone(),
        out_refund_no: d.out_refund_no.clone(),
        provider_trade_no: d.provider_trade_no.clone(),
        provider_refund_no: d.provider_refund_no.clone(),
        bill_amount: d.bill_amount,
        bill_time: d.bill_time,
        bill_status: d.bill_status.clone(),
        local_amount: d.local_amount,
        local_time: d.local_time,
        local_status: d.local_status.clone(),
        near_midnight: d.near_midnight,
        held: d.held,
        refund_status_differs: d.refund_status_differs,
        resolution: d.resolution.as_ref().map(|r| ResolutionView {
            note: r.note.clone(),
            by: r.by.clone(),
            at: r.at,
        }),
    }
}

/// `GET /v1/reconciliation/runs` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunList {
    /// The runs.
    pub data: Vec<RunView>,
}

/// `POST /v1/reconciliation/runs` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunOutcome {
    /// The stored run.
    pub run: RunView,
    /// Orders marked paid by the act step after a provider query (their out_trade_no).
    pub paid: Vec<String>,
}

/// `GET /v1/reconciliation/differences` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DifferenceList {
    /// The day's run.
    pub run: RunView,
    /// Its differences.
    pub data: Vec<DifferenceView>,
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
#[utoipa::path(get, path = "/v1/reconciliation/runs", tag = "finance", params(RunsQuery), responses((status = 200, body = RunList, description = "Each day's run per app")), security(("bearer" = [])))]
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
    let data = runs.iter().map(run_view).collect();
    Ok(HttpResponse::Ok().json(RunList { data }))
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
#[utoipa::path(post, path = "/v1/reconciliation/runs", tag = "finance", request_body = RunRequest, responses((status = 200, body = RunOutcome, description = "The run, and the orders it found paid"), (status = 409, description = "The bill is not ready or missing")), security(("bearer" = [])))]
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
        Ok(DayOutcome::Reconciled { run, paid }) => Ok(HttpResponse::Ok().json(RunOutcome {
            run: run_view(&run),
            paid,
        })),
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
#[utoipa::path(get, path = "/v1/reconciliation/differences", tag = "finance", params(DifferencesQuery), responses((status = 200, body = DifferenceList, description = "The day's run and its differences"), (status = 404, description = "No run for that day")), security(("bearer" = [])))]
pub async fn list_differences(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<DifferencesQuery>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Role::Finance)?;
    let (run, differences) = run_differences(&state, &query).await?;
    let data = differences.iter().map(difference_view).collect();
    Ok(HttpResponse::Ok().json(DifferenceList {
        run: run_view(&run),
        data,
    }))
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
#[utoipa::path(put, path = "/v1/reconciliation/differences/{id}/resolution", tag = "finance", params(("id" = String, Path, description = "The difference's id")), request_body = ResolutionRequest, responses((status = 200, body = DifferenceView, description = "The difference, resolved")), security(("bearer" = [])))]
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
