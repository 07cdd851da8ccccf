//! HTTP routes: the providers (WeChat Pay v2 and APIv3, Alipay) at their real paths, and `/sandbox/*` for the buyer and for
//! tests (pay, faults, notify log, the HTML trade list).

pub(crate) mod alipay;
pub(crate) mod bills;
pub(crate) mod wechat;
pub(crate) mod wechat_v3;

use actix_web::{HttpResponse, web};
use paygate_core::ProviderKind;
use serde::Deserialize;
use serde_json::json;

use crate::error::SandboxError;
use crate::faults::Fault;
use crate::state::SandboxState;
use crate::trades::{Trade, TradeStatus};

/// Escapes text for HTML element content and quoted attributes.
pub(crate) fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// An empty answer with the given HTTP status (a 5xx from the provider's front end).
pub(crate) fn status_only(status: u16) -> HttpResponse {
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
    )
    .finish()
}

/// An HTTP 200 answer with no body at all (the `empty_body` fault).
pub(crate) fn empty_ok(content_type: &str) -> HttpResponse {
    HttpResponse::Ok().content_type(content_type).finish()
}

/// An HTTP 200 answer carrying only the first half of `body` (the `truncated_body` fault), as
/// a proxy that lost the rest of the connection would pass it on.
pub(crate) fn truncated(content_type: &str, body: &str) -> HttpResponse {
    let mut bytes = body.as_bytes().to_vec();
    bytes.truncate(bytes.len() / 2);
    HttpResponse::Ok().content_type(content_type).body(bytes)
}

/// `sign` with its first character changed (the `bad_answer_signature` fault): still
/// well-formed hex or base64, so the answer parses, but it never verifies.
pub(crate) fn corrupted_signature(sign: &str) -> String {
    let replacement = if sign.starts_with('A') { "B" } else { "A" };
    let rest = sign.get(1..).unwrap_or_default();
    format!("{replacement}{rest}")
}

/// What `POST /sandbox/pay` accepts: a trade by provider and number, an Alipay orderString
/// (the app-pay flow, verified and created first), or a WeChat prepay_id.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum PayRequest {
    /// `{"provider":"wechat","out_trade_no":"…"}`.
    Trade {
        provider: ProviderKind,
        out_trade_no: String,
    },
    /// `{"order_string":"app_id=…&sign=…"}`.
    OrderString { order_string: String },
    /// `{"prepay_id":"wx…"}`.
    PrepayId { prepay_id: String },
}

/// Carries out a buyer's payment for the HTTP and Rust APIs alike.
pub(crate) fn pay(state: &SandboxState, request: PayRequest) -> Result<Trade, SandboxError> {
    match request {
        PayRequest::Trade {
            provider,
            out_trade_no,
        } => state.pay(provider, &out_trade_no),
        PayRequest::OrderString { order_string } => {
            let trade = alipay::accept_order_string(state, &order_string)
                .map_err(SandboxError::OrderStringRejected)?;
            state.pay(ProviderKind::ALIPAY, &trade.out_trade_no)
        }
        PayRequest::PrepayId { prepay_id } => state.pay_prepay_id(&prepay_id),
    }
}

fn pay_error(error: &SandboxError) -> HttpResponse {
    let body = json!({"error": error.to_string()});
    match error {
        SandboxError::TradeNotFound { .. } => HttpResponse::NotFound().json(body),
        SandboxError::NotPayable { .. } => HttpResponse::Conflict().json(body),
        _ => HttpResponse::BadRequest().json(body),
    }
}

async fn pay_json(state: web::Data<SandboxState>, request: web::Json<PayRequest>) -> HttpResponse {
    match pay(&state, request.into_inner()) {
        Ok(trade) => HttpResponse::Ok().json(trade),
        Err(e) => pay_error(&e),
    }
}

/// The HTML page's "pay" button.
#[derive(Debug, Deserialize)]
struct PayForm {
    provider: ProviderKind,
    out_trade_no: String,
}

async fn pay_form(state: web::Data<SandboxState>, form: web::Form<PayForm>) -> HttpResponse {
    let form = form.into_inner();
    match state.pay(form.provider, &form.out_trade_no) {
        Ok(_) => HttpResponse::SeeOther()
            .insert_header(("location", "/sandbox"))
            .finish(),
        Err(e) => pay_error(&e),
    }
}

async fn list_trades(state: web::Data<SandboxState>) -> HttpResponse {
    HttpResponse::Ok().json(state.trades.list())
}

/// `GET /sandbox/notifies?out_trade_no=…`: the filter lets a test in another process look at
/// one trade's deliveries only.
#[derive(Debug, Deserialize)]
struct NotifyFilter {
    out_trade_no: Option<String>,
}

async fn list_notifies(
    state: web::Data<SandboxState>,
    filter: web::Query<NotifyFilter>,
) -> HttpResponse {
    let deliveries: Vec<_> = state
        .log
        .list()
        .into_iter()
        .filter(|d| {
            filter
                .out_trade_no
                .as_ref()
                .is_none_or(|no| *no == d.out_trade_no)
        })
        .collect();
    HttpResponse::Ok().json(deliveries)
}

async fn add_fault(state: web::Data<SandboxState>, fault: web::Json<Fault>) -> HttpResponse {
    state.faults.add(fault.into_inner());
    HttpResponse::Created().json(state.faults.list())
}

async fn list_faults(state: web::Data<SandboxState>) -> HttpResponse {
    HttpResponse::Ok().json(state.faults.list())
}

async fn clear_faults(state: web::Data<SandboxState>) -> HttpResponse {
    state.faults.clear();
    HttpResponse::NoContent().finish()
}

fn status_label(trade: &Trade) -> &'static str {
    match trade.status {
        TradeStatus::AwaitingPayment => "awaiting payment",
        TradeStatus::Closed => "closed",
        TradeStatus::Paid if trade.fully_refunded() => "refunded",
        TradeStatus::Paid if !trade.refunds.is_empty() => "partly refunded",
        TradeStatus::Paid => "paid",
    }
}

/// `GET /sandbox`: every trade with a "pay" button, server-rendered, no external assets.
async fn trades_page(state: web::Data<SandboxState>) -> HttpResponse {
    let mut rows = String::new();
    for trade in state.trades.list().iter().rev() {
        let button = if trade.status == TradeStatus::AwaitingPayment {
            format!(
                "<form method=post action=\"/sandbox/pay-form\">\
                 <input type=hidden name=provider value={provider}>\
                 <input type=hidden name=out_trade_no value=\"{no}\">\
                 <button type=submit>pay</button></form>",
                provider = trade.provider,
                no = html_escape(&trade.out_trade_no),
            )
        } else {
            String::new()
        };
        rows.push_str(&format!(
            "<tr><td>{provider}</td><td>{no}</td><td>{subject}</td><td>¥{amount}</td><td>{status}</td><td>{button}</td></tr>",
            provider = trade.provider,
            no = html_escape(&trade.out_trade_no),
            subject = html_escape(&trade.subject),
            amount = trade.amount.to_yuan_string(),
            status = status_label(trade),
        ));
    }
    let page = format!(
        "<!doctype html><html><head><meta charset=utf-8><title>paygate sandbox</title>\
         <style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.3em .8em;text-align:left}}</style>\
         </head><body><h1>paygate sandbox</h1>\
         <p>Trades the simulated WeChat Pay and Alipay hold. Press pay to play the buyer; the signed notify goes to the trade's notify_url.</p>\
         <table><tr><th>provider</th><th>out_trade_no</th><th>subject</th><th>amount</th><th>status</th><th></th></tr>{rows}</table>\
         </body></html>"
    );
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(page)
}

/// Mounts every route.
pub(crate) fn configure(config: &mut web::ServiceConfig) {
    wechat::configure(config);
    wechat_v3::configure(config);
    bills::configure(config);
    alipay::configure(config);
    config
        .route("/sandbox", web::get().to(trades_page))
        .route("/sandbox/pay", web::post().to(pay_json))
        .route("/sandbox/pay-form", web::post().to(pay_form))
        .route("/sandbox/trades", web::get().to(list_trades))
        .route("/sandbox/notifies", web::get().to(list_notifies))
        .route("/sandbox/faults", web::post().to(add_fault))
        .route("/sandbox/faults", web::get().to(list_faults))
        .route("/sandbox/faults", web::delete().to(clear_faults));
}
