//! Bill downloads at the real endpoints: WeChat `POST /pay/downloadbill` (the gzip body, or
//! the unsigned XML error), Alipay `alipay.data.dataservice.bill.downloadurl.query` (through
//! `gateway.do`) and the zip behind its URL, `GET /downloadBillFile.resource`.
//!
//! The sandbox serves any day, today included (built from the trades so far), so a test need
//! not wait for tomorrow. A day without payments or refunds has no bill, as at the providers.
//! Faults: `bill_not_ready` (WeChat `Bill Creating`; Alipay, which cannot tell, answers
//! `isp.bill_not_exist`) and `no_bill`, matched on the API `/pay/downloadbill` or the Alipay
//! method; on WeChat also `truncated_body` (half the file) and `http_status`. Bill-content
//! faults name a trade (`out_trade_no`) and shape the next bill: `bill_omit_trade`,
//! `bill_amount_delta` (`fen`), `bill_foreign_trade` (`fen`, a trade the merchant never saw).

use actix_web::{HttpResponse, web};
use chrono::{NaiveDate, Utc};
use paygate_core::ProviderKind;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::bills;
use crate::faults::FaultKind;
use crate::routes::alipay::AlipayReply;
use crate::routes::wechat::{request_sign_type, signature_valid};
use crate::state::SandboxState;
use paygate_wechat::sign::Params as WechatParams;
use paygate_wechat::xml;

/// The WeChat API path.
pub(crate) const WECHAT_API: &str = "/pay/downloadbill";
/// The Alipay method.
pub(crate) const ALIPAY_METHOD: &str = "alipay.data.dataservice.bill.downloadurl.query";

/// WeChat's unsigned error document.
fn wechat_error(message: &str, code: Option<&str>) -> HttpResponse {
    let mut params = WechatParams::new();
    params.insert("return_code".into(), "FAIL".into());
    params.insert("return_msg".into(), message.into());
    if let Some(code) = code {
        params.insert("error_code".into(), code.into());
    }
    match xml::write(&params) {
        Ok(body) => HttpResponse::Ok()
            .content_type("text/xml; charset=utf-8")
            .body(body),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

async fn download_bill(state: web::Data<SandboxState>, body: String) -> HttpResponse {
    let Ok(request) = xml::parse(body.as_bytes()) else {
        return wechat_error("data format error", None);
    };
    let keys = &state.keys.keys;
    let Some(sign_type) = request_sign_type(&request) else {
        return wechat_error("sign error", Some("20001"));
    };
    if request.get("mch_id") != Some(&keys.wechat_mch_id)
        || !signature_valid(&request, sign_type, &state.keys.wechat_api_key)
    {
        return wechat_error("sign error", Some("20001"));
    }
    if request.get("bill_type").is_some_and(|t| t != "ALL") {
        // Only ALL is simulated; say so the way WeChat refuses a bill type.
        return wechat_error("invalid bill_type", None);
    }
    let Some(day) = request
        .get("bill_date")
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok())
    else {
        return wechat_error("invalid bill_date", None);
    };
    let fault = state
        .faults
        .take_api_fault(ProviderKind::WECHAT, WECHAT_API, None)
        .map(|f| f.kind);
    match fault {
        Some(FaultKind::BillNotReady) => return wechat_error("Bill Creating", None),
        Some(FaultKind::NoBill) => return wechat_error("No Bill Exist", Some("20002")),
        Some(FaultKind::HttpStatus { status }) => return crate::routes::status_only(status),
        _ => {}
    }
    let edits = bills::BillEdits::new(
        state
            .faults
            .take_bill_edits(ProviderKind::WECHAT, WECHAT_API),
    );
    let trades = edits.apply(state.trades.list(), ProviderKind::WECHAT, day, Utc::now());
    if !bills::has_lines(&trades, ProviderKind::WECHAT, day) {
        return wechat_error("No Bill Exist", Some("20002"));
    }
    let text = bills::wechat_bill_text(&trades, &keys.wechat_mch_id, day);
    let gzip = request.get("tar_type").is_some_and(|t| t == "GZIP");
    let body = if gzip {
        match bills::gzip(text.as_bytes()) {
            Ok(bytes) => bytes,
            Err(_) => return wechat_error("CompressGZip Error", None),
        }
    } else {
        text.into_bytes()
    };
    // A connection cut mid-file: what arrives is a corrupt bill.
    let body = if fault == Some(FaultKind::TruncatedBody) {
        body[..body.len() / 2].to_vec()
    } else {
        body
    };
    HttpResponse::Ok()
        .content_type(if gzip {
            "application/octet-stream"
        } else {
            "text/plain; charset=utf-8"
        })
        .body(body)
}

/// The account a bill names: the seller PID followed by `0156`.
fn alipay_account(state: &SandboxState) -> String {
    format!("{}0156", state.keys.keys.alipay_seller_id)
}

/// The reply to an Alipay bill fault, if `kind` is one.
pub(crate) fn alipay_fault_reply(kind: &FaultKind) -> Option<AlipayReply> {
    matches!(kind, FaultKind::BillNotReady | FaultKind::NoBill).then_some(
        AlipayReply::BusinessFail {
            sub_code: "isp.bill_not_exist",
            sub_msg: "账单不存在",
        },
    )
}

/// `alipay.data.dataservice.bill.downloadurl.query` (already verified by the gateway).
pub(crate) fn alipay_download_url(state: &SandboxState, biz: &Map<String, Value>) -> AlipayReply {
    let invalid = AlipayReply::BusinessFail {
        sub_code: "isv.invalid_arguments",
        sub_msg: "入参不合法",
    };
    if biz.get("bill_type").and_then(Value::as_str) != Some("trade") {
        return invalid;
    }
    // Only days are simulated, not months (yyyy-MM).
    let Some(day) = biz
        .get("bill_date")
        .and_then(Value::as_str)
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
    else {
        return invalid;
    };
    if !bills::has_lines(&state.trades.list(), ProviderKind::ALIPAY, day) {
        return AlipayReply::BusinessFail {
            sub_code: "isp.bill_not_exist",
            sub_msg: "账单不存在",
        };
    }
    let account = alipay_account(state);
    let date = day.format("%Y%m%d");
    let url = format!(
        "{}/downloadBillFile.resource?bizType=trade&userId={account}&fileType=csv.zip&bizDates={date}&downloadFileName={account}_{date}.csv.zip&timestamp={}&token={}",
        state.base_url.trim_end_matches('/'),
        Utc::now().timestamp(),
        crate::state::nonce(),
    );
    match json!({ "bill_download_url": url }) {
        Value::Object(fields) => AlipayReply::Success(fields),
        _ => invalid,
    }
}

/// The query of the bill file URL.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BillFileQuery {
    biz_dates: String,
}

async fn alipay_bill_file(
    state: web::Data<SandboxState>,
    query: web::Query<BillFileQuery>,
) -> HttpResponse {
    let Ok(day) = NaiveDate::parse_from_str(&query.biz_dates, "%Y%m%d") else {
        return HttpResponse::BadRequest().body("bizDates");
    };
    // The edits are taken when the file is built, which is when they show.
    let edits = bills::BillEdits::new(
        state
            .faults
            .take_bill_edits(ProviderKind::ALIPAY, ALIPAY_METHOD),
    );
    let trades = edits.apply(state.trades.list(), ProviderKind::ALIPAY, day, Utc::now());
    match bills::alipay_bill_zip(&trades, &alipay_account(&state), day, Utc::now()) {
        Ok(zip) => HttpResponse::Ok()
            .content_type("application/octet-stream")
            .insert_header((
                "Content-Disposition",
                format!(
                    "attachment; filename={}_{}.csv.zip",
                    alipay_account(&state),
                    query.biz_dates
                ),
            ))
            .body(zip),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

/// Mounts the bill routes.
pub(crate) fn configure(config: &mut web::ServiceConfig) {
    config
        .route(WECHAT_API, web::post().to(download_bill))
        .route(
            "/downloadBillFile.resource",
            web::get().to(alipay_bill_file),
        );
}
