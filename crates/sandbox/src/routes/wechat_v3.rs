//! The simulated WeChat Pay APIv3 (protocol notes `wechat-v3.md` §1–§5), beside v2 for the
//! same merchant: orders (`POST /v3/pay/transactions/{jsapi|app|h5|native}`), queries by
//! `out_trade_no` and by transaction id, close (204), refunds and refund queries
//! (`/v3/refund/domestic/refunds`), and the platform certificate list (`GET /v3/certificates`).
//!
//! Every request must carry `Accept` and `User-Agent` (else `400 INVALID_REQUEST`) and an
//! `Authorization` that verifies over the method, the raw request-target and the raw body with
//! the merchant certificate's key (else `401 SIGN_ERROR`). Every answer — 2xx, 204 and errors —
//! is signed with the `Wechatpay-*` headers: by the WeChat Pay public key when the request's
//! `Wechatpay-Serial` named it, else by the newest platform certificate. The checks and the
//! signing are `paygate_wechat_v3::peer`'s.
//!
//! API faults match `api` against these names: `/v3/pay/transactions/jsapi` (`app`, `h5`,
//! `native`), `/v3/pay/transactions/out-trade-no/{out_trade_no}`,
//! `/v3/pay/transactions/id/{transaction_id}`,
//! `/v3/pay/transactions/out-trade-no/{out_trade_no}/close`, `/v3/refund/domestic/refunds`,
//! `/v3/refund/domestic/refunds/{out_refund_no}` and `/v3/certificates`.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use paygate_core::{Fen, ProviderKind};
use paygate_wechat_v3::peer;
use paygate_wechat_v3::verify::header;
use paygate_wechat_v3::wire::format_time;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::faults::{Fault, FaultKind};
use crate::routes;
use crate::state::{SandboxState, china_time, digits, nonce};
use crate::trades::{Refund, RefundRefusal, Trade, TradeDetail, TradeStatus, WechatTrade};
use crate::v3_keys::{V3NotifySigner, signature_nonce};

/// What one operation answers, before it is signed.
pub(crate) enum V3Reply {
    /// 200 with this JSON.
    Json(Value),
    /// 200 with this JSON text, as made (the certificate list).
    Text(String),
    /// 204 with an empty (still signed) body.
    NoContent,
    /// An error answer `{"code","message"}`.
    Error {
        status: u16,
        code: String,
        message: String,
    },
}

pub(crate) fn error(status: u16, code: &str, message: impl Into<String>) -> V3Reply {
    V3Reply::Error {
        status,
        code: code.to_owned(),
        message: message.into(),
    }
}

fn param_error(message: impl Into<String>) -> V3Reply {
    error(400, "PARAM_ERROR", message)
}

fn system_error() -> V3Reply {
    error(500, "SYSTEM_ERROR", "系统错误")
}

/// The HTTP status WeChat answers an error code with (protocol §5.6).
fn status_of(code: &str) -> u16 {
    match code {
        "SIGN_ERROR" => 401,
        "NO_AUTH"
        | "OUT_TRADE_NO_USED"
        | "NOT_ENOUGH"
        | "USER_ACCOUNT_ABNORMAL"
        | "RULELIMIT"
        | "TRADE_ERROR"
        | "ACCOUNTERROR" => 403,
        "ORDER_NOT_EXIST" | "RESOURCE_NOT_EXISTS" => 404,
        "FREQUENCY_LIMITED" | "RATELIMIT_EXCEEDED" => 429,
        "SYSTEM_ERROR" | "BANK_ERROR" => 500,
        "SERVICE_UNAVAILABLE" => 503,
        _ => 400,
    }
}

/// The body bytes and status of a reply.
fn reply_parts(reply: &V3Reply) -> (StatusCode, Vec<u8>) {
    let (status, body) = match reply {
        V3Reply::Json(value) => (200, value.to_string()),
        V3Reply::Text(text) => (200, text.clone()),
        V3Reply::NoContent => (204, String::new()),
        V3Reply::Error {
            status,
            code,
            message,
        } => (
            *status,
            json!({"code": code, "message": message}).to_string(),
        ),
    };
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body.into_bytes(),
    )
}

/// How an answer is bent on its way out (API faults).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bend {
    None,
    BadSignature,
    Truncated,
}

/// Signs `reply` with the key the request selects and builds the response.
pub(crate) fn respond(
    state: &SandboxState,
    request: &HttpRequest,
    reply: &V3Reply,
    bend: Bend,
) -> HttpResponse {
    let (status, mut body) = reply_parts(reply);
    let requested = request
        .headers()
        .get(header::SERIAL)
        .and_then(|v| v.to_str().ok());
    let signer = state.keys.v3.answer_signer(requested);
    let headers = match peer::signature_headers(
        &signer.key,
        &signer.serial,
        &body,
        Utc::now().timestamp(),
        &signature_nonce(),
    ) {
        Ok(headers) => headers,
        Err(e) => {
            tracing::error!(error = %e, "cannot sign an APIv3 answer");
            return HttpResponse::InternalServerError().finish();
        }
    };
    let mut response = HttpResponse::build(status);
    for (name, value) in headers {
        let value = if bend == Bend::BadSignature && name == header::SIGNATURE {
            routes::corrupted_signature(&value)
        } else {
            value
        };
        response.insert_header((name, value));
    }
    response.insert_header((header::REQUEST_ID, format!("08{}", digits(30))));
    if bend == Bend::Truncated {
        body.truncate(body.len() / 2);
    }
    if body.is_empty() {
        return response.finish();
    }
    response.content_type("application/json").body(body)
}

/// The raw request-target (path and query) a request's `Authorization` signs.
pub(crate) fn request_target(request: &HttpRequest) -> String {
    request
        .uri()
        .path_and_query()
        .map_or_else(|| request.path().to_owned(), |pq| pq.as_str().to_owned())
}

/// The header rules and the `Authorization` check every APIv3 call passes first: the signed
/// refusal to send, if the call fails them.
pub(crate) fn refuse_caller(
    state: &SandboxState,
    request: &HttpRequest,
    body: &[u8],
) -> Option<HttpResponse> {
    let headers = request.headers();
    let has = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| !v.trim().is_empty())
    };
    if !has("accept") || !has("user-agent") {
        let reply = error(400, "INVALID_REQUEST", "Http头缺少Accept或User-Agent");
        return Some(respond(state, request, &reply, Bend::None));
    }
    let target = request_target(request);
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    if let Err(e) =
        state
            .keys
            .v3
            .check_request(authorization, request.method().as_str(), &target, body)
    {
        let reply = error(401, "SIGN_ERROR", "签名错误");
        tracing::debug!(reason = %e, body = %peer::sign_error_body(&e), "APIv3 request refused");
        return Some(respond(state, request, &reply, Bend::None));
    }
    None
}

/// The common part of every APIv3 call: header rules, `Authorization`, API faults, then the
/// operation, then the signed answer.
async fn run(
    state: web::Data<SandboxState>,
    request: HttpRequest,
    body: web::Bytes,
    api: &'static str,
    out_trade_no: Option<String>,
    operation: impl FnOnce(&SandboxState, &[u8]) -> V3Reply,
) -> HttpResponse {
    if let Some(refusal) = refuse_caller(&state, &request, &body) {
        return refusal;
    }
    let fault = state
        .faults
        .take_api_fault(ProviderKind::WECHAT, api, out_trade_no.as_deref());
    let Some(fault) = fault else {
        let reply = operation(state.get_ref(), &body[..]);
        return respond(&state, &request, &reply, Bend::None);
    };
    apply_fault(state.get_ref(), &request, &body[..], fault, operation).await
}

/// Answers under an API fault; with `processed` the operation runs first and only the answer
/// goes wrong.
pub(crate) async fn apply_fault(
    state: &SandboxState,
    request: &HttpRequest,
    body: &[u8],
    fault: Fault,
    operation: impl FnOnce(&SandboxState, &[u8]) -> V3Reply,
) -> HttpResponse {
    let done = fault.processed.then(|| operation(state, body));
    let real_or_busy = |done: Option<V3Reply>| done.unwrap_or_else(system_error);
    match fault.kind {
        FaultKind::HttpStatus { status } => routes::status_only(status),
        FaultKind::Timeout { millis } => {
            tokio::time::sleep(Duration::from_millis(millis)).await;
            respond(state, request, &real_or_busy(done), Bend::None)
        }
        FaultKind::EmptyBody => HttpResponse::Ok().content_type("application/json").finish(),
        FaultKind::TruncatedBody => respond(state, request, &real_or_busy(done), Bend::Truncated),
        FaultKind::BadAnswerSignature => {
            respond(state, request, &real_or_busy(done), Bend::BadSignature)
        }
        FaultKind::Refused { code } => {
            let reply = error(status_of(&code), &code, "sandbox refusal");
            respond(state, request, &reply, Bend::None)
        }
        _ => respond(state, request, &system_error(), Bend::None),
    }
}

/// A transaction as the query answers it and a `TRANSACTION.SUCCESS` notify carries it.
pub(crate) fn transaction_json(trade: &Trade, mchid: &str) -> Value {
    // The same states as v2's query: one merchant, one order book.
    let (state, description) = super::wechat::trade_state(trade);
    let total = trade.amount.get();
    let mut out = json!({
        "mchid": mchid,
        "out_trade_no": trade.out_trade_no,
        "trade_state": state,
        "trade_state_desc": description,
        "amount": {"total": total, "currency": "CNY"},
    });
    if let Some(wechat) = trade.wechat() {
        out["appid"] = json!(wechat.appid);
        out["trade_type"] = json!(wechat.trade_type);
        if let Some(attach) = &wechat.attach {
            out["attach"] = json!(attach);
        }
        if trade.status == TradeStatus::Paid {
            out["payer"] = json!({"openid": wechat.openid.clone().unwrap_or_default()});
        }
    }
    if trade.status == TradeStatus::Paid {
        out["transaction_id"] = json!(trade.provider_trade_no.clone().unwrap_or_default());
        out["bank_type"] = json!("OTHERS");
        out["success_time"] = json!(format_time(trade.paid_at.unwrap_or_else(Utc::now)));
        out["amount"] = json!({
            "total": total,
            "payer_total": total,
            "currency": "CNY",
            "payer_currency": "CNY",
        });
    }
    out
}

fn refund_amount(trade: &Trade, refund: &Refund) -> Value {
    let (total, amount) = (trade.amount.get(), refund.amount.get());
    json!({"total": total, "refund": amount, "payer_total": total, "payer_refund": amount})
}

/// A refund as the refund call and its query answer it.
fn refund_json(trade: &Trade, refund: &Refund, status: &str) -> Value {
    let mut amount = refund_amount(trade, refund);
    amount["settlement_refund"] = json!(refund.amount.get());
    amount["settlement_total"] = json!(trade.amount.get());
    amount["discount_refund"] = json!(0);
    amount["currency"] = json!("CNY");
    amount["from"] = json!([]);
    let mut out = json!({
        "refund_id": refund.refund_id,
        "out_refund_no": refund.out_refund_no,
        "transaction_id": trade.provider_trade_no.clone().unwrap_or_default(),
        "out_trade_no": trade.out_trade_no,
        "channel": "ORIGINAL",
        "user_received_account": "支付用户零钱",
        "create_time": format_time(refund.refunded_at),
        "status": status,
        "funds_account": "AVAILABLE",
        "amount": amount,
    });
    if status == "SUCCESS" {
        out["success_time"] = json!(format_time(refund.refunded_at));
    }
    out
}

/// A refund as a `REFUND.SUCCESS` notify carries it.
pub(crate) fn refund_notify_json(trade: &Trade, refund: &Refund, mchid: &str) -> Value {
    json!({
        "mchid": mchid,
        "out_trade_no": trade.out_trade_no,
        "transaction_id": trade.provider_trade_no.clone().unwrap_or_default(),
        "out_refund_no": refund.out_refund_no,
        "refund_id": refund.refund_id,
        "refund_status": "SUCCESS",
        "success_time": format_time(refund.refunded_at),
        "user_received_account": "支付用户零钱",
        "amount": refund_amount(trade, refund),
    })
}

fn parse_body(body: &[u8]) -> Result<Value, V3Reply> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| param_error("请求体不是合法的JSON对象"))
}

fn text<'a>(body: &'a Value, pointer: &str) -> Option<&'a str> {
    body.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn valid_out_trade_no(no: &str) -> bool {
    (6..=32).contains(&no.len())
        && no
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-|*".contains(&b))
}

/// SHA-256 of the body as parsed, to tell an identical re-order from a conflicting one.
fn body_digest(body: &Value) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        body.to_string().as_bytes(),
    ))
}

fn prepay_answer(trade: &Trade) -> V3Reply {
    let Some(wechat) = trade.wechat() else {
        return system_error();
    };
    match (wechat.trade_type.as_str(), &wechat.pay_url) {
        ("NATIVE", Some(url)) => V3Reply::Json(json!({"code_url": url})),
        ("MWEB", Some(url)) => V3Reply::Json(json!({"h5_url": url})),
        _ => V3Reply::Json(json!({"prepay_id": wechat.prepay_id})),
    }
}

/// `POST /v3/pay/transactions/{product}`.
fn prepay(state: &SandboxState, product: &str, body: &[u8]) -> V3Reply {
    let body = match parse_body(body) {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let v3 = &state.keys.v3;
    for required in [
        "/appid",
        "/mchid",
        "/description",
        "/out_trade_no",
        "/notify_url",
    ] {
        if text(&body, required).is_none() {
            return param_error(format!("输入源“{required}”映射到值字段缺失"));
        }
    }
    if text(&body, "/mchid") != Some(v3.mchid.as_str()) {
        return param_error("mchid与请求方商户号不一致");
    }
    if text(&body, "/appid") != Some(v3.appid.as_str()) {
        return error(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配");
    }
    let Some(amount) = body
        .pointer("/amount/total")
        .and_then(Value::as_i64)
        .filter(|&t| t > 0 && t <= i64::from(i32::MAX))
        .and_then(|t| Fen::new(t).ok())
    else {
        return param_error("amount.total 必须为正整数(分)");
    };
    if body
        .pointer("/amount/currency")
        .is_some_and(|c| c.as_str() != Some("CNY"))
    {
        return param_error("amount.currency 只支持CNY");
    }
    let description = text(&body, "/description").unwrap_or_default().to_owned();
    if description.chars().count() > 127 {
        return param_error("description 超过127个字符");
    }
    let out_trade_no = text(&body, "/out_trade_no").unwrap_or_default().to_owned();
    if !valid_out_trade_no(&out_trade_no) {
        return param_error("out_trade_no 格式错误");
    }
    let trade_type = match product {
        "jsapi" => {
            if text(&body, "/payer/openid").is_none() {
                return param_error("JSAPI下单必须传payer.openid");
            }
            "JSAPI"
        }
        "app" => "APP",
        "h5" => {
            if text(&body, "/scene_info/payer_client_ip").is_none()
                || text(&body, "/scene_info/h5_info/type").is_none()
            {
                return param_error("H5下单必须传scene_info.payer_client_ip和h5_info.type");
            }
            "MWEB"
        }
        _ => "NATIVE",
    };
    let digest = body_digest(&body);
    let base_url = state.base_url.clone();
    state
        .trades
        .update(ProviderKind::WECHAT, &out_trade_no, |slot| {
            if let Some(existing) = slot.as_ref() {
                let reply = match existing.status {
                    TradeStatus::Paid => error(400, "ORDERPAID", "该订单已支付"),
                    TradeStatus::Closed => error(400, "ORDER_CLOSED", "订单已关闭"),
                    TradeStatus::AwaitingPayment
                        if existing
                            .wechat()
                            .is_some_and(|w| w.api_v3 && w.request_digest == digest) =>
                    {
                        prepay_answer(existing)
                    }
                    TradeStatus::AwaitingPayment => {
                        error(403, "OUT_TRADE_NO_USED", "商户订单号重复")
                    }
                };
                return (reply, false);
            }
            let now = Utc::now();
            let prepay_id = format!(
                "wx{}{}",
                china_time(now).format("%Y%m%d%H%M%S"),
                &nonce()[..20]
            );
            let pay_url = match trade_type {
                "NATIVE" => Some(format!("weixin://wxpay/bizpayurl?pr={}", &nonce()[..7])),
                "MWEB" => Some(format!("{base_url}/sandbox?prepay_id={prepay_id}")),
                _ => None,
            };
            let trade = Trade {
                provider: ProviderKind::WECHAT,
                out_trade_no: out_trade_no.clone(),
                amount,
                status: TradeStatus::AwaitingPayment,
                subject: description.clone(),
                notify_url: text(&body, "/notify_url").map(str::to_owned),
                provider_trade_no: None,
                created_at: now,
                paid_at: None,
                refunds: Vec::new(),
                detail: TradeDetail::Wechat(WechatTrade {
                    appid: v3.appid.clone(),
                    trade_type: trade_type.to_owned(),
                    sign_type: paygate_wechat::sign::SignType::HmacSha256,
                    prepay_id,
                    pay_url,
                    openid: text(&body, "/payer/openid").map(str::to_owned),
                    attach: text(&body, "/attach").map(str::to_owned),
                    request_digest: digest.clone(),
                    api_v3: true,
                }),
            };
            let reply = prepay_answer(&trade);
            *slot = Some(trade);
            (reply, true)
        })
}

/// `?mchid=` of the queries: required, and the caller's own.
#[derive(Debug, Deserialize)]
struct MchidQuery {
    mchid: Option<String>,
}

fn check_mchid(state: &SandboxState, mchid: Option<&str>) -> Result<(), V3Reply> {
    match mchid {
        None | Some("") => Err(param_error("缺少参数mchid")),
        Some(m) if m == state.keys.v3.mchid => Ok(()),
        Some(_) => Err(param_error("mchid与请求方商户号不一致")),
    }
}

/// A query's answer: the caller's own `mchid` first, then the transaction or `ORDER_NOT_EXIST`.
fn query_answer(state: &SandboxState, mchid: Option<&str>, trade: Option<Trade>) -> V3Reply {
    if let Err(reply) = check_mchid(state, mchid) {
        return reply;
    }
    match trade {
        Some(trade) => V3Reply::Json(transaction_json(&trade, &state.keys.v3.mchid)),
        None => error(404, "ORDER_NOT_EXIST", "订单不存在"),
    }
}

fn trade_by_transaction_id(state: &SandboxState, transaction_id: &str) -> Option<Trade> {
    state.trades.find(|t| {
        t.provider == ProviderKind::WECHAT && t.provider_trade_no.as_deref() == Some(transaction_id)
    })
}

/// `POST …/out-trade-no/{no}/close`: 204 for an unpaid (or already closed) order.
fn close(state: &SandboxState, out_trade_no: &str, body: &[u8]) -> V3Reply {
    let body = match parse_body(body) {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    if let Err(reply) = check_mchid(state, text(&body, "/mchid")) {
        return reply;
    }
    state
        .trades
        .update(ProviderKind::WECHAT, out_trade_no, |slot| {
            let Some(trade) = slot.as_mut() else {
                return (error(404, "ORDER_NOT_EXIST", "订单不存在"), false);
            };
            match trade.status {
                TradeStatus::Paid => (error(400, "ORDERPAID", "订单已支付"), false),
                TradeStatus::Closed => (V3Reply::NoContent, false),
                TradeStatus::AwaitingPayment => {
                    trade.status = TradeStatus::Closed;
                    (V3Reply::NoContent, true)
                }
            }
        })
}

/// The trade a refund request names: `transaction_id` first, then `out_trade_no`.
fn refund_trade(state: &SandboxState, body: &Value) -> Option<Trade> {
    if let Some(id) = text(body, "/transaction_id") {
        return trade_by_transaction_id(state, id);
    }
    text(body, "/out_trade_no").and_then(|no| state.trades.get(ProviderKind::WECHAT, no))
}

/// `POST /v3/refund/domestic/refunds`: accepted as `PROCESSING`; the money goes back at once,
/// so the query says `SUCCESS` and the refund notify follows.
fn refund(state: &SandboxState, body: &[u8]) -> V3Reply {
    let body = match parse_body(body) {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let Some(out_refund_no) = text(&body, "/out_refund_no").map(str::to_owned) else {
        return param_error("缺少参数out_refund_no");
    };
    if text(&body, "/transaction_id").is_none() && text(&body, "/out_trade_no").is_none() {
        return param_error("transaction_id和out_trade_no必须二选一");
    }
    let fen = |pointer: &str| {
        body.pointer(pointer)
            .and_then(Value::as_i64)
            .filter(|&v| v > 0)
            .and_then(|v| Fen::new(v).ok())
    };
    let (Some(refund_amount), Some(total)) = (fen("/amount/refund"), fen("/amount/total")) else {
        return param_error("amount.refund和amount.total必须为正整数(分)");
    };
    if text(&body, "/amount/currency") != Some("CNY") {
        return param_error("amount.currency 只支持CNY");
    }
    let Some(trade) = refund_trade(state, &body) else {
        return error(404, "RESOURCE_NOT_EXISTS", "订单不存在");
    };
    if total != trade.amount {
        return param_error("订单金额与原订单不一致");
    }
    let outcome = state.trades.refund(
        ProviderKind::WECHAT,
        &trade.out_trade_no,
        &out_refund_no,
        refund_amount,
        || format!("503{}", digits(26)),
    );
    let (trade, refund, is_new) = match outcome {
        Ok(done) => done,
        Err(RefundRefusal::NoTrade | RefundRefusal::NotPaid) => {
            return error(404, "RESOURCE_NOT_EXISTS", "订单不存在或未支付");
        }
        Err(RefundRefusal::ConflictingRetry) => {
            return param_error("同一退款单号的退款金额与之前请求不一致");
        }
        Err(RefundRefusal::ExceedsRefundable) => {
            return error(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额");
        }
    };
    if is_new {
        state.send_refund_notify(
            &trade,
            &refund,
            text(&body, "/notify_url").map(str::to_owned),
        );
        V3Reply::Json(refund_json(&trade, &refund, "PROCESSING"))
    } else {
        V3Reply::Json(refund_json(&trade, &refund, "SUCCESS"))
    }
}

fn trade_with_refund(state: &SandboxState, out_refund_no: &str) -> Option<Trade> {
    state.trades.find(|t| {
        t.provider == ProviderKind::WECHAT
            && t.refunds.iter().any(|r| r.out_refund_no == out_refund_no)
    })
}

fn refund_query(state: &SandboxState, out_refund_no: &str) -> V3Reply {
    let found = trade_with_refund(state, out_refund_no).and_then(|trade| {
        let refund = trade
            .refunds
            .iter()
            .find(|r| r.out_refund_no == out_refund_no)
            .cloned()?;
        Some((trade, refund))
    });
    match found {
        Some((trade, refund)) => V3Reply::Json(refund_json(&trade, &refund, "SUCCESS")),
        None => error(404, "RESOURCE_NOT_EXISTS", "退款单不存在"),
    }
}

fn certificates(state: &SandboxState) -> V3Reply {
    match state.keys.v3.certificates_body() {
        Ok(body) => V3Reply::Text(body),
        Err(e) => {
            tracing::error!(error = %e, "cannot seal the certificate list");
            system_error()
        }
    }
}

async fn prepay_route(
    state: web::Data<SandboxState>,
    request: HttpRequest,
    product: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let api = match product.as_str() {
        "jsapi" => "/v3/pay/transactions/jsapi",
        "app" => "/v3/pay/transactions/app",
        "h5" => "/v3/pay/transactions/h5",
        "native" => "/v3/pay/transactions/native",
        _ => return HttpResponse::NotFound().finish(),
    };
    let out_trade_no = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|b| text(&b, "/out_trade_no").map(str::to_owned));
    let product = product.into_inner();
    run(state, request, body, api, out_trade_no, move |s, b| {
        prepay(s, &product, b)
    })
    .await
}

async fn query_by_out_trade_no_route(
    state: web::Data<SandboxState>,
    request: HttpRequest,
    out_trade_no: web::Path<String>,
    query: web::Query<MchidQuery>,
    body: web::Bytes,
) -> HttpResponse {
    let out_trade_no = out_trade_no.into_inner();
    let api = "/v3/pay/transactions/out-trade-no/{out_trade_no}";
    let no = out_trade_no.clone();
    run(
        state,
        request,
        body,
        api,
        Some(out_trade_no),
        move |s, _| {
            let trade = s.trades.get(ProviderKind::WECHAT, &no);
            query_answer(s, query.mchid.as_deref(), trade)
        },
    )
    .await
}

async fn query_by_id_route(
    state: web::Data<SandboxState>,
    request: HttpRequest,
    transaction_id: web::Path<String>,
    query: web::Query<MchidQuery>,
    body: web::Bytes,
) -> HttpResponse {
    let transaction_id = transaction_id.into_inner();
    let out_trade_no =
        trade_by_transaction_id(&state, &transaction_id).map(|t| t.out_trade_no.clone());
    let api = "/v3/pay/transactions/id/{transaction_id}";
    run(state, request, body, api, out_trade_no, move |s, _| {
        let trade = trade_by_transaction_id(s, &transaction_id);
        query_answer(s, query.mchid.as_deref(), trade)
    })
    .await
}

async fn close_route(
    state: web::Data<SandboxState>,
    request: HttpRequest,
    out_trade_no: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let out_trade_no = out_trade_no.into_inner();
    let api = "/v3/pay/transactions/out-trade-no/{out_trade_no}/close";
    let no = out_trade_no.clone();
    run(
        state,
        request,
        body,
        api,
        Some(out_trade_no),
        move |s, b| close(s, &no, b),
    )
    .await
}

async fn refund_route(
    state: web::Data<SandboxState>,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let out_trade_no = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|b| refund_trade(&state, &b))
        .map(|t| t.out_trade_no.clone());
    run(
        state,
        request,
        body,
        "/v3/refund/domestic/refunds",
        out_trade_no,
        refund,
    )
    .await
}

async fn refund_query_route(
    state: web::Data<SandboxState>,
    request: HttpRequest,
    out_refund_no: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let out_refund_no = out_refund_no.into_inner();
    let out_trade_no = trade_with_refund(&state, &out_refund_no).map(|t| t.out_trade_no.clone());
    let api = "/v3/refund/domestic/refunds/{out_refund_no}";
    run(state, request, body, api, out_trade_no, move |s, _| {
        refund_query(s, &out_refund_no)
    })
    .await
}

async fn certificates_route(
    state: web::Data<SandboxState>,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    run(state, request, body, "/v3/certificates", None, |s, _| {
        certificates(s)
    })
    .await
}

/// `POST /sandbox/wechat-v3/rotate-certificate`: a new platform certificate, listed at once
/// and signing from now on; answers its serial and every listed serial.
async fn rotate_route(state: web::Data<SandboxState>) -> HttpResponse {
    let keys = state.keys.clone();
    match web::block(move || keys.v3.rotate()).await {
        Ok(Ok(serial)) => HttpResponse::Ok().json(json!({
            "serial_no": serial,
            "serials": state.keys.v3.certificate_serials(),
        })),
        Ok(Err(e)) => HttpResponse::InternalServerError().json(json!({"error": e.to_string()})),
        Err(e) => HttpResponse::InternalServerError().json(json!({"error": e.to_string()})),
    }
}

/// The body of `POST /sandbox/wechat-v3/notify-signer`.
#[derive(Debug, Deserialize)]
struct NotifySignerRequest {
    signer: V3NotifySigner,
}

/// `POST /sandbox/wechat-v3/notify-signer` `{"signer":"public_key"|"certificate"}`: which key
/// signs notifies from now on.
async fn notify_signer_route(
    state: web::Data<SandboxState>,
    request: web::Json<NotifySignerRequest>,
) -> HttpResponse {
    state.keys.v3.set_notify_signer(request.signer);
    HttpResponse::Ok().json(json!({"signer": request.signer}))
}

/// Mounts the APIv3 routes and their sandbox controls.
pub(crate) fn configure(config: &mut web::ServiceConfig) {
    config
        .route(
            "/v3/pay/transactions/out-trade-no/{out_trade_no}",
            web::get().to(query_by_out_trade_no_route),
        )
        .route(
            "/v3/pay/transactions/out-trade-no/{out_trade_no}/close",
            web::post().to(close_route),
        )
        .route(
            "/v3/pay/transactions/id/{transaction_id}",
            web::get().to(query_by_id_route),
        )
        .route(
            "/v3/pay/transactions/{product}",
            web::post().to(prepay_route),
        )
        .route("/v3/refund/domestic/refunds", web::post().to(refund_route))
        .route(
            "/v3/refund/domestic/refunds/{out_refund_no}",
            web::get().to(refund_query_route),
        )
        .route("/v3/certificates", web::get().to(certificates_route))
        .route(
            "/sandbox/wechat-v3/rotate-certificate",
            web::post().to(rotate_route),
        )
        .route(
            "/sandbox/wechat-v3/notify-signer",
            web::post().to(notify_signer_route),
        );
}
