//! Bill downloads at the real endpoints: WeChat `POST /pay/downloadbill` (the gzip body, or
//! the unsigned XML error), WeChat APIv3 `GET /v3/bill/tradebill` (a signed answer with the
//! SHA1 of the uncompressed file and a five-minute `download_url`) and the unsigned gzip
//! behind that URL, Alipay `alipay.data.dataservice.bill.downloadurl.query` (through
//! `gateway.do`) and the zip behind its URL, `GET /downloadBillFile.resource`.
//!
//! The sandbox serves any day, today included (built from the trades so far), so a test need
//! not wait for tomorrow. A day without payments or refunds has no bill, as at the providers.
//! Faults: `bill_not_ready` (WeChat `Bill Creating`; Alipay, which cannot tell, answers
//! `isp.bill_not_exist`) and `no_bill`, matched on the API `/pay/downloadbill` or the Alipay
//! method; on WeChat also `truncated_body` (half the file) and `http_status`. Bill-content
//! faults name a trade (`out_trade_no`) and shape the next bill: `bill_omit_trade`,
//! `bill_amount_delta` (`fen`), `bill_foreign_trade` (`fen`, a trade the merchant never saw).

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{NaiveDate, Utc};
use paygate_core::ProviderKind;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::bills;
use crate::faults::FaultKind;
use crate::routes::alipay::AlipayReply;
use crate::routes::wechat::{request_sign_type, signature_valid};
use crate::routes::wechat_v3::{self as v3, V3Reply};
use crate::state::SandboxState;
use paygate_wechat::sign::Params as WechatParams;
use paygate_wechat::xml;

/// The WeChat API path.
pub(crate) const WECHAT_API: &str = "/pay/downloadbill";
/// The WeChat APIv3 path that applies for a bill (faults name it as `api`).
pub(crate) const WECHAT_V3_API: &str = "/v3/bill/tradebill";
/// Where the APIv3 download URLs point.
const WECHAT_V3_DOWNLOAD: &str = "/v3/billdownload/file";
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

/// The query of `GET /v3/bill/tradebill`.
#[derive(Debug, Deserialize)]
struct TradeBillQuery {
    bill_date: Option<String>,
    bill_type: Option<String>,
    tar_type: Option<String>,
}

/// Builds the APIv3 bill of the asked day, keeps the file behind a fresh download URL and
/// answers its SHA1 (of the file before compression) and that URL. With `cut`, the file kept
/// is only the first half of what the hash covers (a connection cut mid-file).
fn v3_trade_bill(state: &SandboxState, query: &TradeBillQuery, cut: bool) -> V3Reply {
    if query.bill_type.as_deref().is_some_and(|t| t != "ALL") {
        // Only ALL is simulated.
        return v3::error(400, "PARAM_ERROR", "bill_type 只支持ALL");
    }
    let Some(day) = query
        .bill_date
        .as_deref()
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
    else {
        return v3::error(400, "PARAM_ERROR", "bill_date 格式错误");
    };
    let edits = bills::BillEdits::new(
        state
            .faults
            .take_bill_edits(ProviderKind::WECHAT, WECHAT_V3_API),
    );
    let now = Utc::now();
    let trades = edits.apply(state.trades.list(), ProviderKind::WECHAT, day, now);
    if !bills::has_lines(&trades, ProviderKind::WECHAT, day) {
        return v3::error(400, "NO_STATEMENT_EXIST", "请求的账单文件不存在");
    }
    // The same bill as v2's (one merchant, one bill), with the LF line ends seen in v3 files;
    // free text never carries a line break, so only line ends change.
    let text = bills::wechat_bill_text(&trades, &state.keys.v3.mchid, day).replace("\r\n", "\n");
    let hash_value = bills::sha1_hex(text.as_bytes());
    let mut file = if query.tar_type.as_deref() == Some("GZIP") {
        match bills::gzip(text.as_bytes()) {
            Ok(bytes) => bytes,
            Err(_) => return v3::error(500, "SYSTEM_ERROR", "系统错误"),
        }
    } else {
        text.into_bytes()
    };
    if cut {
        file.truncate(file.len() / 2);
    }
    let token = format!("{}{}", crate::state::nonce(), crate::state::nonce());
    let download_url = format!(
        "{}{WECHAT_V3_DOWNLOAD}?token={token}",
        state.base_url.trim_end_matches('/')
    );
    state.issued_bills.issue(token, file, now);
    V3Reply::Json(json!({
        "hash_type": "SHA1",
        "hash_value": hash_value,
        "download_url": download_url,
    }))
}

/// `GET /v3/bill/tradebill`: checked and signed like every APIv3 call. Faults on this API:
/// `bill_not_ready` (`STATEMENT_CREATING`), `no_bill` (`NO_STATEMENT_EXIST`),
/// `truncated_body` (the file behind the URL is cut in half, so its SHA1 cannot match), the
/// bill-content edits, and the generic answer faults.
async fn v3_trade_bill_route(
    state: web::Data<SandboxState>,
    request: HttpRequest,
    query: web::Query<TradeBillQuery>,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(refusal) = v3::refuse_caller(&state, &request, &body) {
        return refusal;
    }
    let fault = state
        .faults
        .take_api_fault(ProviderKind::WECHAT, WECHAT_V3_API, None);
    let reply = match fault {
        None => v3_trade_bill(&state, &query, false),
        Some(fault) => match &fault.kind {
            FaultKind::BillNotReady => v3::error(400, "STATEMENT_CREATING", "账单生成中"),
            FaultKind::NoBill => v3::error(400, "NO_STATEMENT_EXIST", "请求的账单文件不存在"),
            FaultKind::TruncatedBody => v3_trade_bill(&state, &query, true),
            _ => {
                let query = query.into_inner();
                return v3::apply_fault(&state, &request, &body, fault, move |s, _| {
                    v3_trade_bill(s, &query, false)
                })
                .await;
            }
        },
    };
    v3::respond(&state, &request, &reply, v3::Bend::None)
}

/// `GET /v3/billdownload/file?token=…`: the file, signed for by the caller over the path and
/// query (no `Accept` is required: the file is not JSON), answered **unsigned** as WeChat does.
async fn v3_download_route(
    state: web::Data<SandboxState>,
    request: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let refuse = |status: u16, code: &str, message: &str| {
        HttpResponse::build(
            actix_web::http::StatusCode::from_u16(status)
                .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST),
        )
        .content_type("application/json")
        .body(json!({"code": code, "message": message}).to_string())
    };
    let target = v3::request_target(&request);
    let authorization = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if state
        .keys
        .v3
        .check_request(authorization, "GET", &target, b"")
        .is_err()
    {
        return refuse(401, "SIGN_ERROR", "签名错误");
    }
    let file = query
        .get("token")
        .and_then(|token| state.issued_bills.get(token, Utc::now()));
    match file {
        Some(body) => HttpResponse::Ok()
            .content_type("application/octet-stream")
            .body(body),
        // Expired or never issued: WeChat's advice is to apply again.
        None => refuse(400, "INVALID_REQUEST", "下载链接已失效"),
    }
}

/// Mounts the bill routes.
pub(crate) fn configure(config: &mut web::ServiceConfig) {
    config
        .route(WECHAT_V3_API, web::get().to(v3_trade_bill_route))
        .route(WECHAT_V3_DOWNLOAD, web::get().to(v3_download_route))
        .route(WECHAT_API, web::post().to(download_bill))
        .route(
            "/downloadBillFile.resource",
            web::get().to(alipay_bill_file),
        );
}
