//! Finance and listing endpoints: order lists with filters and cursors, the CSV export, the
//! summary report, anomalies and the callback audit trail.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, NaiveDate, Utc};
use paygate_core::{AppName, Channel, Fen, OrderId, OrderStatus, ProviderKind};
use paygate_store::{Cursor, GroupBy, OrderFilter, ReportZone};
use serde::{Deserialize, Serialize};

use crate::auth::{Principal, Role};
use crate::error::{ApiError, ErrorCode};
use crate::routes::orders::OrderView;
use crate::state::AppState;

/// Query string of `GET /v1/orders` and the export.
#[derive(Debug, Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct OrderListQuery {
    /// Exact merchant order number.
    pub out_trade_no: Option<String>,
    /// Merchant order number prefix.
    pub out_trade_no_prefix: Option<String>,
    /// Comma-separated statuses.
    pub status: Option<String>,
    /// `wechat` or `alipay`.
    pub provider: Option<String>,
    /// App name.
    pub app: Option<String>,
    /// Channel name.
    pub channel: Option<String>,
    /// Created at or after (RFC 3339 or `YYYY-MM-DD`, UTC).
    pub created_from: Option<String>,
    /// Created before.
    pub created_to: Option<String>,
    /// Paid at or after.
    pub paid_from: Option<String>,
    /// Paid before.
    pub paid_to: Option<String>,
    /// Smallest amount in fen.
    pub amount_min: Option<i64>,
    /// Largest amount in fen.
    pub amount_max: Option<i64>,
    /// Page size (1–500, default 50).
    pub limit: Option<u32>,
    /// Cursor from the previous page's `next_cursor`.
    pub cursor: Option<String>,
}

fn parse_instant(field: &'static str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    parse_instant_in(field, text, ReportZone::Utc)
}

/// An RFC 3339 instant as given, or a plain `YYYY-MM-DD` as that day's midnight in `zone`.
fn parse_instant_in(
    field: &'static str,
    text: &str,
    zone: ReportZone,
) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Ok(instant.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc() - chrono::Duration::seconds(i64::from(zone.offset_seconds())))
        .ok_or_else(|| {
            ApiError::invalid(
                ErrorCode::InvalidFilter,
                format!("{field} must be RFC 3339 or YYYY-MM-DD"),
            )
        })
}

fn opt_instant(
    field: &'static str,
    text: &Option<String>,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    text.as_deref().map(|t| parse_instant(field, t)).transpose()
}

fn opt_fen(field: &'static str, value: Option<i64>) -> Result<Option<Fen>, ApiError> {
    value
        .map(|v| {
            Fen::new(v)
                .map_err(|e| ApiError::invalid(ErrorCode::InvalidFilter, format!("{field}: {e}")))
        })
        .transpose()
}

impl OrderListQuery {
    /// The store filter, restricted to what `principal` may see.
    pub fn to_filter(&self, principal: &Principal) -> Result<OrderFilter, ApiError> {
        let bad = |field: &str, e: paygate_core::DomainError| {
            ApiError::invalid(ErrorCode::InvalidFilter, format!("{field}: {e}"))
        };
        let statuses = match &self.status {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|s| OrderStatus::parse(s.trim()).map_err(|e| bad("status", e)))
                .collect::<Result<_, _>>()?,
        };
        let mut apps: Vec<AppName> = match &self.app {
            Some(name) => vec![AppName::parse(name.as_str()).map_err(|e| bad("app", e))?],
            None => Vec::new(),
        };
        if principal.role == Role::Merchant && !principal.apps.is_empty() {
            if apps.is_empty() {
                apps = principal.apps.clone();
            } else if !apps.iter().all(|a| principal.apps.contains(a)) {
                return Err(ApiError::Forbidden(
                    "this key is not scoped to that app".into(),
                ));
            }
        }
        Ok(OrderFilter {
            statuses,
            provider: self
                .provider
                .as_deref()
                .map(ProviderKind::parse)
                .transpose()
                .map_err(|e| bad("provider", e))?,
            apps,
            channel: self
                .channel
                .as_deref()
                .map(Channel::parse)
                .transpose()
                .map_err(|e| bad("channel", e))?,
            out_trade_no: self.out_trade_no.clone(),
            out_trade_no_prefix: self.out_trade_no_prefix.clone(),
            created_from: opt_instant("created_from", &self.created_from)?,
            created_to: opt_instant("created_to", &self.created_to)?,
            paid_from: opt_instant("paid_from", &self.paid_from)?,
            paid_to: opt_instant("paid_to", &self.paid_to)?,
            amount_min: opt_fen("amount_min", self.amount_min)?,
            amount_max: opt_fen("amount_max", self.amount_max)?,
        })
    }

    fn limit(&self) -> Result<u32, ApiError> {
        match self.limit {
            None => Ok(50),
            Some(n @ 1..=500) => Ok(n),
            Some(_) => Err(ApiError::invalid(
                ErrorCode::InvalidFilter,
                "limit must be 1–500",
            )),
        }
    }
}

/// `GET /v1/orders`.
#[utoipa::path(get, path = "/v1/orders", tag = "finance", params(OrderListQuery), responses((status = 200, body = super::orders::OrderList, description = "One page of orders, newest first")), security(("bearer" = [])))]
pub async fn list_orders(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<OrderListQuery>,
) -> Result<HttpResponse, ApiError> {
    let filter = query.to_filter(&principal)?;
    let cursor = query.cursor.clone().map(Cursor::new);
    let page = state
        .store
        .list_orders(&filter, query.limit()?, cursor.as_ref())
        .await?;
    Ok(HttpResponse::Ok().json(super::orders::OrderList {
        data: page.items.into_iter().map(OrderView::from).collect(),
        next_cursor: page.next_cursor.map(|c| c.as_str().to_owned()),
    }))
}

/// `GET /v1/orders/export.csv`: the same filters, streamed page by page so a large export
/// never sits in memory.
#[utoipa::path(get, path = "/v1/orders/export.csv", tag = "finance", params(OrderListQuery), responses((status = 200, description = "CSV, streamed", content_type = "text/csv")), security(("bearer" = [])))]
pub async fn export_orders(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<OrderListQuery>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Role::Finance)?;
    let filter = query.to_filter(&principal)?;
    let state = state.into_inner();
    let stream = futures_util::stream::unfold(ExportState::Header, move |export| {
        let state = state.clone();
        let filter = filter.clone();
        async move { export.next(&state, &filter).await }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header(("Content-Disposition", "attachment; filename=\"orders.csv\""))
        .streaming(stream))
}

enum ExportState {
    Header,
    Page(Option<Cursor>),
    Done,
}

const EXPORT_PAGE: u32 = 500;
/// The export's header line; [`csv_row`] writes the matching rows.
pub const CSV_HEADER: &str = "id,provider,app,channel,out_trade_no,status,amount_fen,amount_yuan,refunded_fen,currency,provider_trade_no,payer_id,created_at,paid_at,closed_at,subject,description\n";

impl ExportState {
    async fn next(
        self,
        state: &AppState,
        filter: &OrderFilter,
    ) -> Option<(Result<web::Bytes, ApiError>, ExportState)> {
        match self {
            ExportState::Done => None,
            ExportState::Header => Some((
                Ok(web::Bytes::from_static(CSV_HEADER.as_bytes())),
                ExportState::Page(None),
            )),
            ExportState::Page(cursor) => {
                let page = match state
                    .store
                    .list_orders(filter, EXPORT_PAGE, cursor.as_ref())
                    .await
                {
                    Ok(page) => page,
                    Err(e) => return Some((Err(e.into()), ExportState::Done)),
                };
                let chunk: String = page.items.iter().map(csv_row).collect();
                let next = match page.next_cursor {
                    Some(c) => ExportState::Page(Some(c)),
                    None => ExportState::Done,
                };
                Some((Ok(web::Bytes::from(chunk)), next))
            }
        }
    }
}

/// One order as an export line (newline included), in [`CSV_HEADER`]'s columns. The API's
/// export and `paygate orders export` share it, so finance gets one format.
pub fn csv_row(o: &paygate_core::Order) -> String {
    let row = [
        o.id.to_string(),
        o.provider.to_string(),
        o.app.to_string(),
        o.channel.to_string(),
        o.out_trade_no.to_string(),
        o.status.to_string(),
        o.amount.get().to_string(),
        o.amount.to_yuan_string(),
        o.refunded_amount.get().to_string(),
        o.currency.to_string(),
        o.provider_trade_no.clone().unwrap_or_default(),
        o.payer_id.clone().unwrap_or_default(),
        o.created_at.to_rfc3339(),
        o.paid_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        o.closed_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        o.subject.clone(),
        o.description.clone().unwrap_or_default(),
    ];
    let cells: Vec<String> = row.iter().map(|c| csv_cell(c)).collect();
    format!("{}\n", cells.join(","))
}

/// Quotes a CSV cell when needed, and defuses spreadsheet formulas (`=`, `+`, `-`, `@` at the
/// start, or a tab or carriage return, which spreadsheets skip before reading a formula), since
/// finance opens these files in Excel.
pub(crate) fn csv_cell(value: &str) -> String {
    let defused = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if defused.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    }
}

/// Query of `GET /v1/reports/summary`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SummaryQuery {
    /// Start (inclusive), RFC 3339 or `YYYY-MM-DD` (midnight in `tz`).
    pub from: String,
    /// End (exclusive), RFC 3339 or `YYYY-MM-DD` (midnight in `tz`).
    pub to: String,
    /// `day`, `provider` or `app`.
    pub group_by: Option<String>,
    /// The zone days are counted in: `Asia/Shanghai` (default), `UTC` or a fixed offset
    /// `+HH:MM` / `-HH:MM` (at most 14:00).
    pub tz: Option<String>,
}

/// `GET /v1/reports/summary` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SummaryReport {
    /// Start of the range (inclusive), as an instant.
    pub from: DateTime<Utc>,
    /// End of the range (exclusive), as an instant.
    pub to: DateTime<Utc>,
    /// The zone days were counted in.
    pub tz: String,
    /// One row per group.
    pub data: Vec<SummaryRowView>,
}

/// One group of the summary.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SummaryRowView {
    /// The day (`YYYY-MM-DD` in `tz`), provider or app.
    pub key: String,
    /// Orders in the group.
    pub order_count: u64,
    /// Orders paid in the range.
    pub paid_count: u64,
    /// Paid, in fen.
    #[schema(value_type = i64)]
    pub paid_amount: Fen,
    /// Refunded, in fen.
    #[schema(value_type = i64)]
    pub refunded_amount: Fen,
    /// Paid minus refunded, in fen.
    #[schema(value_type = i64)]
    pub net_amount: Fen,
}

/// `GET /v1/reports/summary`.
#[utoipa::path(get, path = "/v1/reports/summary", tag = "finance", params(SummaryQuery), responses((status = 200, body = SummaryReport, description = "Counts and fen sums per group; day keys are dates in `tz` (default Asia/Shanghai)"), (status = 422, description = "Bad from, to, group_by or tz")), security(("bearer" = [])))]
pub async fn summary(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<SummaryQuery>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Role::Finance)?;
    let zone = match query.tz.as_deref() {
        None => ReportZone::default(),
        Some(text) => ReportZone::parse(text).ok_or_else(|| {
            ApiError::invalid(
                ErrorCode::InvalidFilter,
                "tz must be Asia/Shanghai, UTC or a fixed offset like +08:00",
            )
        })?,
    };
    let from = parse_instant_in("from", &query.from, zone)?;
    let to = parse_instant_in("to", &query.to, zone)?;
    if to <= from {
        return Err(ApiError::invalid(
            ErrorCode::InvalidFilter,
            "`to` must be after `from`",
        ));
    }
    let group_by = match query.group_by.as_deref().unwrap_or("day") {
        "day" => GroupBy::Day,
        "provider" => GroupBy::Provider,
        "app" => GroupBy::App,
        other => {
            return Err(ApiError::invalid(
                ErrorCode::InvalidFilter,
                format!("group_by {other:?} is not day, provider or app"),
            ));
        }
    };
    let data = state
        .store
        .summary_in(from, to, group_by, zone)
        .await?
        .into_iter()
        .map(|r| SummaryRowView {
            key: r.key,
            order_count: r.order_count,
            paid_count: r.paid_count,
            paid_amount: r.paid_amount,
            refunded_amount: r.refunded_amount,
            net_amount: r.net_amount,
        })
        .collect();
    Ok(HttpResponse::Ok().json(SummaryReport {
        from,
        to,
        tz: zone.name(),
        data,
    }))
}

/// Query of the anomaly list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Page size (1–500, default 50).
    pub limit: Option<u32>,
    /// Cursor from the previous page.
    pub cursor: Option<String>,
}

/// `GET /v1/anomalies` answer: one page.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AnomalyList {
    /// Newest first.
    pub data: Vec<AnomalyView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A genuine callback that did not match its order, or a late payment honoured.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AnomalyView {
    /// The anomaly's id.
    pub id: String,
    /// The order it concerns, when one was found.
    #[schema(value_type = Option<String>)]
    pub order_id: Option<OrderId>,
    /// `wechat` or `alipay`.
    #[schema(value_type = String)]
    pub provider: ProviderKind,
    /// The app the callback came for.
    pub app: String,
    /// What kind of mismatch (`amount_mismatch`, `late_payment_confirmed`, …).
    pub kind: &'static str,
    /// What differed, for people.
    pub detail: String,
    /// The raw callback (see `GET /v1/callbacks`).
    pub callback_id: Option<String>,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
}

/// `GET /v1/anomalies`.
#[utoipa::path(get, path = "/v1/anomalies", tag = "finance", params(PageQuery), responses((status = 200, body = AnomalyList, description = "One page of anomalies, newest first")), security(("bearer" = [])))]
pub async fn anomalies(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Role::Finance)?;
    let limit = query.limit.unwrap_or(50).clamp(1, 500);
    let cursor = query.cursor.clone().map(Cursor::new);
    let page = state.store.list_anomalies(limit, cursor.as_ref()).await?;
    let data = page
        .items
        .into_iter()
        .map(|a| AnomalyView {
            id: a.id.as_str().to_owned(),
            order_id: a.order_id,
            provider: a.provider,
            app: a.app,
            kind: a.kind.as_str(),
            detail: a.detail,
            callback_id: a.callback_id.map(|c| c.as_str().to_owned()),
            created_at: a.created_at,
        })
        .collect();
    Ok(HttpResponse::Ok().json(AnomalyList {
        data,
        next_cursor: page.next_cursor.map(|c| c.as_str().to_owned()),
    }))
}

/// Query of the callback audit trail.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CallbackQuery {
    /// The order whose callbacks to list.
    pub order_id: String,
}

/// `GET /v1/callbacks` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CallbackList {
    /// The order's callbacks, oldest first.
    pub data: Vec<CallbackView>,
}

/// One provider callback as received, with paygate's verdict.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CallbackView {
    /// The callback's id.
    pub id: String,
    /// `wechat` or `alipay`.
    #[schema(value_type = String)]
    pub provider: ProviderKind,
    /// The app it was posted for.
    pub app: String,
    /// Payment or refund notify.
    pub kind: &'static str,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// Its `Content-Type`.
    pub content_type: Option<String>,
    /// The body as received, shown as text (lossily, for people).
    pub body: String,
    /// `accepted`, `duplicate`, `bad_signature`, `mismatch`, …
    pub verdict: &'static str,
    /// Why, when not accepted.
    pub reason: Option<String>,
    /// The order it was matched to.
    #[schema(value_type = Option<String>)]
    pub order_id: Option<OrderId>,
}

/// `GET /v1/callbacks?order_id=`.
#[utoipa::path(get, path = "/v1/callbacks", tag = "finance", params(CallbackQuery), responses((status = 200, body = CallbackList, description = "Every raw callback of the order with its verdict")), security(("bearer" = [])))]
pub async fn callbacks(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<CallbackQuery>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Role::Finance)?;
    let id = OrderId::parse(query.order_id.as_str()).map_err(ApiError::from)?;
    let data = state
        .store
        .callbacks_for_order(&id)
        .await?
        .into_iter()
        .map(|c| CallbackView {
            id: c.id.as_str().to_owned(),
            provider: c.provider,
            app: c.app,
            kind: c.kind.as_str(),
            received_at: c.received_at,
            content_type: c.content_type,
            // Bodies are kept as received; shown lossily as text for people.
            body: String::from_utf8_lossy(&c.body).into_owned(),
            verdict: c.verdict.as_str(),
            reason: c.reason,
            order_id: c.order_id,
        })
        .collect();
    Ok(HttpResponse::Ok().json(CallbackList { data }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("-1"), "'-1");
        assert_eq!(csv_cell("\t=1+1"), "'\t=1+1");
        assert_eq!(csv_cell("\r=1+1"), "\"'\r=1+1\"");
    }

    #[test]
    fn dates_accept_rfc3339_and_plain_days() {
        assert_eq!(
            parse_instant("from", "2026-11-23").unwrap().to_rfc3339(),
            "2026-11-23T00:00:00+00:00"
        );
        assert_eq!(
            parse_instant("from", "2026-11-23T08:00:00+08:00")
                .unwrap()
                .to_rfc3339(),
            "2026-11-23T00:00:00+00:00"
        );
        assert!(parse_instant("from", "23/11/2026").is_err());
    }
}
