//! The simulated Alipay: `gateway.do` (query, close, refund, refund query, precreate, create;
//! wap/page pay as a small pay page) and the app-pay endpoint that plays the Alipay app
//! receiving an orderString.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use paygate_core::{Fen, ProviderKind};
use serde_json::{Map, Value, json};

use crate::faults::FaultKind;
use crate::routes::{corrupted_signature, empty_ok, html_escape, status_only, truncated};
use crate::state::{SandboxState, china_time, digits};
use crate::trades::{AlipayTrade, RefundRefusal, Trade, TradeDetail, TradeStatus};
use paygate_alipay::form::decode_unique_form;
use paygate_alipay::response::{response_key, sign_response_body};
use paygate_alipay::sign::{Params as AlipayParams, SignScope, verify_params};

/// The answer of one gateway call before it is wrapped and signed.
pub(crate) enum AlipayReply {
    /// `code=10000` with these fields.
    Success(Map<String, Value>),
    /// `code=40004` business failure.
    BusinessFail {
        sub_code: &'static str,
        sub_msg: &'static str,
    },
    /// Gateway-level errors (`40001`, `40002`), unsigned like Alipay's.
    Invalid {
        code: &'static str,
        sub_code: &'static str,
        sub_msg: &'static str,
    },
}

fn business(sub_code: &'static str, sub_msg: &'static str) -> AlipayReply {
    AlipayReply::BusinessFail { sub_code, sub_msg }
}

fn invalid(sub_code: &'static str, sub_msg: &'static str) -> AlipayReply {
    AlipayReply::Invalid {
        code: "40002",
        sub_code,
        sub_msg,
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The content type of every gateway answer.
const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

fn json_response(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(JSON_CONTENT_TYPE)
        .body(body)
}

/// Alipay's "unknown error, try again" (code `20000`).
fn unknown_error() -> Map<String, Value> {
    object(json!({
        "code": "20000",
        "msg": "Service Currently Unavailable",
        "sub_code": "isp.unknow-error",
        "sub_msg": "系统繁忙",
    }))
}

/// A signed answer whose `sign` no longer matches its content (unsigned answers unchanged);
/// the content text stays byte for byte what was signed.
fn with_corrupted_signature(body: &str) -> String {
    const SIGN: &str = "\"sign\":\"";
    match body
        .rfind(SIGN)
        .and_then(|at| body.split_at_checked(at + SIGN.len()))
    {
        Some((head, sign_and_tail)) => format!("{head}{}", corrupted_signature(sign_and_tail)),
        None => body.to_owned(),
    }
}

/// Wraps and signs a reply as `{"<method>_response":{…},"sign":"…"}`.
fn respond(state: &SandboxState, method: &str, reply: AlipayReply) -> HttpResponse {
    match reply_body(state, method, reply) {
        Ok(body) => json_response(body),
        Err(e) => {
            tracing::error!(error = %e, "cannot sign Alipay response");
            HttpResponse::InternalServerError().finish()
        }
    }
}

/// The answer's JSON text: wrapped, and signed unless it is a gateway-level error.
fn reply_body(
    state: &SandboxState,
    method: &str,
    reply: AlipayReply,
) -> Result<String, paygate_alipay::AlipayError> {
    let (content, signer) = match reply {
        AlipayReply::Success(fields) => {
            let mut content = object(json!({"code": "10000", "msg": "Success"}));
            content.extend(fields);
            (content, Some(&state.keys.platform_signer))
        }
        AlipayReply::BusinessFail { sub_code, sub_msg } => (
            object(
                json!({"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg}),
            ),
            Some(&state.keys.platform_signer),
        ),
        AlipayReply::Invalid {
            code,
            sub_code,
            sub_msg,
        } => {
            let msg = if code == "40001" {
                "Missing Required Arguments"
            } else {
                "Invalid Arguments"
            };
            (
                object(json!({"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg})),
                None,
            )
        }
    };
    let response_method = if method.is_empty() { "error" } else { method };
    envelope(response_method, &content, signer)
}

fn param<'a>(params: &'a AlipayParams, name: &str) -> Option<&'a str> {
    params.get(name).map(String::as_str)
}

/// Writes `{"<method>_response":{…},"sign":"…"}`, signed over exactly the content text when
/// `signer` is given (gateway-level errors go unsigned, as Alipay's do).
fn envelope(
    method: &str,
    content: &Map<String, Value>,
    signer: Option<&paygate_alipay::keys::SigningKey>,
) -> Result<String, paygate_alipay::AlipayError> {
    let content_text = Value::Object(content.clone()).to_string();
    match signer {
        Some(key) => sign_response_body(method, &content_text, key, None),
        None => Ok(format!(
            "{{{}:{content_text}}}",
            Value::String(response_key(method))
        )),
    }
}

/// Checks a request exactly as Alipay does: `sign_type` RSA2, our app_id, RSA2 signature with
/// the app public key over every parameter but `sign` (so `sign_type` is signed).
pub(crate) fn verify_request(
    state: &SandboxState,
    params: &AlipayParams,
) -> Result<(), AlipayReply> {
    if param(params, "sign").is_none_or(str::is_empty) {
        return Err(AlipayReply::Invalid {
            code: "40001",
            sub_code: "isv.missing-signature",
            sub_msg: "缺少签名参数",
        });
    }
    if param(params, "sign_type") != Some("RSA2") {
        return Err(invalid("isv.invalid-signature-type", "无效的签名类型"));
    }
    if param(params, "app_id") != Some(state.keys.keys.alipay_app_id.as_str()) {
        return Err(invalid("isv.invalid-app-id", "无效的AppID参数"));
    }
    if verify_params(params, SignScope::Request, &state.keys.app_public).is_err() {
        return Err(invalid(
            "isv.invalid-signature",
            "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配",
        ));
    }
    Ok(())
}

fn biz_content(params: &AlipayParams) -> Result<Map<String, Value>, AlipayReply> {
    let text = param(params, "biz_content").ok_or(AlipayReply::Invalid {
        code: "40001",
        sub_code: "isv.missing-biz-content",
        sub_msg: "缺少biz_content参数",
    })?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(invalid(
            "isv.invalid-biz-content",
            "biz_content不是合法JSON",
        )),
    }
}

fn biz_str(biz: &Map<String, Value>, name: &str) -> Option<String> {
    biz.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Finds the trade a call names by `out_trade_no` or `trade_no`.
fn find_trade(state: &SandboxState, biz: &Map<String, Value>) -> Option<Trade> {
    if let Some(no) = biz_str(biz, "out_trade_no") {
        return state.trades.get(ProviderKind::ALIPAY, &no);
    }
    let trade_no = biz_str(biz, "trade_no")?;
    state.trades.find(|t| {
        t.provider == ProviderKind::ALIPAY
            && t.provider_trade_no.as_deref() == Some(trade_no.as_str())
    })
}

fn alipay_trade_status(trade: &Trade) -> &'static str {
    match trade.status {
        TradeStatus::AwaitingPayment => "WAIT_BUYER_PAY",
        TradeStatus::Closed => "TRADE_CLOSED",
        TradeStatus::Paid if trade.fully_refunded() => "TRADE_CLOSED",
        TradeStatus::Paid => "TRADE_SUCCESS",
    }
}

/// Creates (or, for an identical retry, returns) the trade a payment call describes.
pub(crate) fn create_trade(
    state: &SandboxState,
    method: &str,
    params: &AlipayParams,
    biz: &Map<String, Value>,
) -> Result<Trade, AlipayReply> {
    let (Some(out_trade_no), Some(total_amount), Some(subject)) = (
        biz_str(biz, "out_trade_no"),
        biz_str(biz, "total_amount"),
        biz_str(biz, "subject"),
    ) else {
        return Err(AlipayReply::Invalid {
            code: "40001",
            sub_code: "isv.missing-required-arguments",
            sub_msg: "缺少out_trade_no、total_amount或subject",
        });
    };
    let valid_no = out_trade_no.len() <= 64
        && out_trade_no
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid_no {
        return Err(invalid("isv.invalid-out-trade-no", "商户订单号格式错误"));
    }
    let amount = match Fen::parse_yuan(&total_amount) {
        Ok(fen) if fen.get() >= 1 && fen <= Fen::MAX_ORDER => fen,
        _ => return Err(business("ACQ.INVALID_PARAMETER", "订单总金额格式错误")),
    };
    let buyer_id = biz_str(biz, "buyer_id").or_else(|| biz_str(biz, "buyer_open_id"));
    if method == "alipay.trade.create" && buyer_id.is_none() {
        return Err(business(
            "ACQ.INVALID_PARAMETER",
            "买家信息缺失: buyer_id/buyer_open_id",
        ));
    }
    state
        .trades
        .update(ProviderKind::ALIPAY, &out_trade_no, |slot| {
            if let Some(existing) = slot.as_ref() {
                let outcome = match existing.status {
                    TradeStatus::Paid => Err(business("ACQ.TRADE_HAS_SUCCESS", "交易已被支付")),
                    TradeStatus::Closed => Err(business("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")),
                    TradeStatus::AwaitingPayment
                        if existing.amount == amount && existing.subject == subject =>
                    {
                        Ok(existing.clone())
                    }
                    TradeStatus::AwaitingPayment => {
                        Err(business("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改"))
                    }
                };
                return (outcome, false);
            }
            let now = Utc::now();
            let trade_no = format!("{}22001{}", china_time(now).format("%Y%m%d"), digits(15));
            let qr_code = (method == "alipay.trade.precreate")
                .then(|| format!("https://qr.alipay.com/bax0{}", &crate::state::nonce()[..20]));
            let trade = Trade {
                provider: ProviderKind::ALIPAY,
                out_trade_no: out_trade_no.clone(),
                amount,
                status: TradeStatus::AwaitingPayment,
                subject: subject.clone(),
                notify_url: param(params, "notify_url")
                    .filter(|u| !u.is_empty())
                    .map(str::to_owned),
                provider_trade_no: Some(trade_no),
                created_at: now,
                paid_at: None,
                refunds: Vec::new(),
                detail: TradeDetail::Alipay(AlipayTrade {
                    app_id: param(params, "app_id").unwrap_or_default().to_owned(),
                    method: method.to_owned(),
                    buyer_id: buyer_id.clone(),
                    body: biz_str(biz, "body"),
                    passback_params: biz_str(biz, "passback_params"),
                    qr_code,
                }),
            };
            *slot = Some(trade.clone());
            (Ok(trade), true)
        })
}

fn trade_ids(trade: &Trade) -> Map<String, Value> {
    object(json!({
        "trade_no": trade.provider_trade_no.clone().unwrap_or_default(),
        "out_trade_no": trade.out_trade_no,
    }))
}

fn query(state: &SandboxState, biz: &Map<String, Value>) -> AlipayReply {
    let Some(trade) = find_trade(state, biz) else {
        return business("ACQ.TRADE_NOT_EXIST", "交易不存在");
    };
    let mut out = trade_ids(&trade);
    let amount = trade.amount.to_yuan_string();
    out.extend(object(json!({
        "trade_status": alipay_trade_status(&trade),
        "total_amount": amount,
        "buyer_logon_id": "159****5620",
    })));
    if let Some(buyer) = trade.alipay().and_then(|a| a.buyer_id.clone()) {
        out.insert("buyer_user_id".into(), Value::String(buyer));
    }
    if let Some(paid_at) = trade.paid_at {
        out.extend(object(json!({
            "buyer_pay_amount": amount,
            "receipt_amount": amount,
            "invoice_amount": amount,
            "point_amount": "0.00",
            "send_pay_date": china_time(paid_at).format("%Y-%m-%d %H:%M:%S").to_string(),
        })));
    } else {
        out.extend(object(
            json!({"buyer_pay_amount": "0.00", "receipt_amount": "0.00"}),
        ));
    }
    AlipayReply::Success(out)
}

fn close(state: &SandboxState, biz: &Map<String, Value>) -> AlipayReply {
    let Some(trade) = find_trade(state, biz) else {
        return business("ACQ.TRADE_NOT_EXIST", "交易不存在");
    };
    state
        .trades
        .update(ProviderKind::ALIPAY, &trade.out_trade_no, |slot| {
            let Some(trade) = slot.as_mut() else {
                return (business("ACQ.TRADE_NOT_EXIST", "交易不存在"), false);
            };
            if trade.status != TradeStatus::AwaitingPayment {
                return (business("ACQ.TRADE_STATUS_ERROR", "交易状态不合法"), false);
            }
            trade.status = TradeStatus::Closed;
            (AlipayReply::Success(trade_ids(trade)), true)
        })
}

fn refund(state: &SandboxState, biz: &Map<String, Value>) -> AlipayReply {
    let Some(trade) = find_trade(state, biz) else {
        return business("ACQ.TRADE_NOT_EXIST", "交易不存在");
    };
    let Some(amount) = biz_str(biz, "refund_amount")
        .and_then(|a| Fen::parse_yuan(&a).ok())
        .filter(|a| a.get() > 0)
    else {
        return business("ACQ.INVALID_PARAMETER", "退款金额无效");
    };
    // Without out_request_no the request number is the trade's own, which only a full refund
    // may use.
    let explicit_request_no = biz_str(biz, "out_request_no");
    if explicit_request_no.is_none() && amount != trade.amount {
        return business("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额与订单金额不一致");
    }
    let out_request_no = explicit_request_no.unwrap_or_else(|| trade.out_trade_no.clone());
    let outcome = state
        .trades
        .refund(
            ProviderKind::ALIPAY,
            &trade.out_trade_no,
            &out_request_no,
            amount,
            || format!("R{}", digits(27)),
        )
        .map_err(|refusal| match refusal {
            RefundRefusal::NoTrade => business("ACQ.TRADE_NOT_EXIST", "交易不存在"),
            RefundRefusal::NotPaid => business("ACQ.TRADE_STATUS_ERROR", "交易状态不合法"),
            // Idempotent: the same out_request_no never refunds twice (fund_change=N).
            RefundRefusal::ConflictingRetry => {
                business("ACQ.REASON_TRADE_REFUND_FEE_ERR", "退款金额无效")
            }
            RefundRefusal::ExceedsRefundable => {
                business("ACQ.REASON_TRADE_REFUND_FEE_ERR", "退款金额超限")
            }
        });
    let (trade, refund, fund_change) = match outcome {
        Ok(done) => done,
        Err(reply) => return reply,
    };
    if fund_change {
        state.send_refund_notify(&trade, &refund, None);
    }
    let mut out = trade_ids(&trade);
    out.extend(object(json!({
        "buyer_logon_id": "159****5620",
        "fund_change": if fund_change { "Y" } else { "N" },
        "refund_fee": trade.refunded().to_yuan_string(),
        "gmt_refund_pay": china_time(refund.refunded_at).format("%Y-%m-%d %H:%M:%S").to_string(),
        "buyer_user_id": trade.alipay().and_then(|a| a.buyer_id.clone()).unwrap_or_default(),
        "out_request_no": refund.out_refund_no,
    })));
    AlipayReply::Success(out)
}

fn refund_query(state: &SandboxState, biz: &Map<String, Value>) -> AlipayReply {
    let Some(out_request_no) = biz_str(biz, "out_request_no") else {
        return AlipayReply::Invalid {
            code: "40001",
            sub_code: "isv.missing-required-arguments",
            sub_msg: "缺少out_request_no",
        };
    };
    let Some(trade) = find_trade(state, biz) else {
        return business("ACQ.TRADE_NOT_EXIST", "交易不存在");
    };
    let mut out = trade_ids(&trade);
    out.insert(
        "out_request_no".into(),
        Value::String(out_request_no.clone()),
    );
    // No refund data in a 10000 answer means "not refunded" (Alipay's documented contract).
    if let Some(refund) = trade
        .refunds
        .iter()
        .find(|r| r.out_refund_no == out_request_no)
    {
        out.extend(object(json!({
            "total_amount": trade.amount.to_yuan_string(),
            "refund_amount": refund.amount.to_yuan_string(),
            "refund_status": "REFUND_SUCCESS",
            "gmt_refund_pay": china_time(refund.refunded_at).format("%Y-%m-%d %H:%M:%S").to_string(),
        })));
    }
    AlipayReply::Success(out)
}

fn precreate(state: &SandboxState, params: &AlipayParams, biz: &Map<String, Value>) -> AlipayReply {
    match create_trade(state, "alipay.trade.precreate", params, biz) {
        Ok(trade) => AlipayReply::Success(object(json!({
            "out_trade_no": trade.out_trade_no,
            "qr_code": trade.alipay().and_then(|a| a.qr_code.clone()).unwrap_or_default(),
        }))),
        Err(reply) => reply,
    }
}

fn create(state: &SandboxState, params: &AlipayParams, biz: &Map<String, Value>) -> AlipayReply {
    match create_trade(state, "alipay.trade.create", params, biz) {
        Ok(trade) => AlipayReply::Success(trade_ids(&trade)),
        Err(reply) => reply,
    }
}

fn dispatch(state: &SandboxState, method: &str, params: &AlipayParams) -> AlipayReply {
    if let Err(reply) = verify_request(state, params) {
        return reply;
    }
    let biz = match biz_content(params) {
        Ok(biz) => biz,
        Err(reply) => return reply,
    };
    match method {
        "alipay.trade.query" => query(state, &biz),
        "alipay.trade.close" => close(state, &biz),
        "alipay.trade.refund" => refund(state, &biz),
        "alipay.trade.fastpay.refund.query" => refund_query(state, &biz),
        "alipay.trade.precreate" => precreate(state, params, &biz),
        "alipay.trade.create" => create(state, params, &biz),
        crate::routes::bills::ALIPAY_METHOD => {
            crate::routes::bills::alipay_download_url(state, &biz)
        }
        _ => invalid("isv.invalid-method", "不存在的方法名"),
    }
}

/// Query string plus form body, the way the real gateway reads a call.
/// A repeated key (within or across query and body) is refused: two readers could otherwise
/// see different values under one signature.
fn gateway_params(request: &HttpRequest, body: &[u8]) -> Result<AlipayParams, AlipayReply> {
    let malformed = || invalid("isv.invalid-parameter", "参数格式错误或重复");
    let mut params =
        decode_unique_form(request.query_string().as_bytes()).map_err(|_| malformed())?;
    for (key, value) in decode_unique_form(body).map_err(|_| malformed())? {
        if params.insert(key, value).is_some() {
            return Err(malformed());
        }
    }
    Ok(params)
}

async fn gateway(
    state: web::Data<SandboxState>,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let params = match gateway_params(&request, &body) {
        Ok(params) => params,
        Err(reply) => return respond(&state, "", reply),
    };
    let method = param(&params, "method").unwrap_or_default().to_owned();
    if method == "alipay.trade.wap.pay" || method == "alipay.trade.page.pay" {
        return pay_page(&state, &method, &params);
    }
    if method.is_empty() {
        return respond(
            &state,
            "",
            AlipayReply::Invalid {
                code: "40001",
                sub_code: "isv.missing-method",
                sub_msg: "缺少方法名参数",
            },
        );
    }
    let out_trade_no = param(&params, "biz_content")
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .and_then(|biz| {
            biz.get("out_trade_no")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
    if let Some(fault) =
        state
            .faults
            .take_api_fault(ProviderKind::ALIPAY, &method, out_trade_no.as_deref())
    {
        // With `processed` the provider does the work and only the answer goes wrong.
        let done = fault.processed.then(|| dispatch(&state, &method, &params));
        let busy = match envelope(&method, &unknown_error(), Some(&state.keys.platform_signer)) {
            Ok(body) => body,
            Err(_) => return HttpResponse::InternalServerError().finish(),
        };
        // The answer an unusable-answer fault bends: the real one when processed.
        let real_or_busy = |done: Option<AlipayReply>| match done {
            Some(reply) => reply_body(&state, &method, reply).unwrap_or_default(),
            None => busy.clone(),
        };
        if let Some(reply) = crate::routes::bills::alipay_fault_reply(&fault.kind) {
            return respond(&state, &method, reply);
        }
        match fault.kind {
            FaultKind::HttpStatus { status } => return status_only(status),
            FaultKind::Timeout { millis } => {
                tokio::time::sleep(Duration::from_millis(millis)).await;
                if let Some(reply) = done {
                    return respond(&state, &method, reply);
                }
            }
            FaultKind::EmptyBody => return empty_ok(JSON_CONTENT_TYPE),
            FaultKind::TruncatedBody => {
                return truncated(JSON_CONTENT_TYPE, &real_or_busy(done));
            }
            FaultKind::BadAnswerSignature => {
                return json_response(with_corrupted_signature(&real_or_busy(done)));
            }
            FaultKind::Refused { code } => {
                let refusal = object(json!({
                    "code": "40004",
                    "msg": "Business Failed",
                    "sub_code": code,
                    "sub_msg": "sandbox refusal",
                }));
                return match envelope(&method, &refusal, Some(&state.keys.platform_signer)) {
                    Ok(body) => json_response(body),
                    Err(_) => HttpResponse::InternalServerError().finish(),
                };
            }
            _ => {}
        }
        return json_response(busy);
    }
    let reply = dispatch(&state, &method, &params);
    respond(&state, &method, reply)
}

/// wap/page pay: verify, create the trade, show a page where the buyer presses "pay".
fn pay_page(state: &SandboxState, method: &str, params: &AlipayParams) -> HttpResponse {
    let created = verify_request(state, params)
        .and_then(|()| biz_content(params))
        .and_then(|biz| create_trade(state, method, params, &biz));
    let page = match created {
        Ok(trade) => format!(
            "<!doctype html><meta charset=utf-8><title>Alipay sandbox</title>\
             <h1>支付宝 sandbox</h1><p>{subject}</p><p>¥{amount}</p>\
             <form method=post action=\"/sandbox/pay-form\">\
             <input type=hidden name=provider value=alipay>\
             <input type=hidden name=out_trade_no value=\"{no}\">\
             <button type=submit>pay</button></form>",
            subject = html_escape(&trade.subject),
            amount = trade.amount.to_yuan_string(),
            no = html_escape(&trade.out_trade_no),
        ),
        Err(
            AlipayReply::Invalid {
                sub_code, sub_msg, ..
            }
            | AlipayReply::BusinessFail { sub_code, sub_msg },
        ) => {
            return HttpResponse::BadRequest()
                .content_type("text/html; charset=utf-8")
                .body(format!(
                    "<!doctype html><meta charset=utf-8><title>Alipay sandbox</title><h1>{}</h1><p>{}</p>",
                    html_escape(sub_code),
                    html_escape(sub_msg)
                ));
        }
        Err(AlipayReply::Success(_)) => String::new(),
    };
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(page)
}

/// Plays the Alipay app receiving an orderString: form-decode each value once, verify over all
/// but `sign` (so `sign_type` is signed), create the trade. Returns the trade.
pub(crate) fn accept_order_string(
    state: &SandboxState,
    order_string: &str,
) -> Result<Trade, String> {
    let params = paygate_alipay::order_string::parse_order_string(order_string.trim())
        .map_err(|e| e.to_string())?;
    if param(&params, "method") != Some("alipay.trade.app.pay") {
        return Err("method is not alipay.trade.app.pay".into());
    }
    let describe = |reply: AlipayReply| match reply {
        AlipayReply::Invalid { sub_code, .. } | AlipayReply::BusinessFail { sub_code, .. } => {
            sub_code.to_owned()
        }
        AlipayReply::Success(_) => "unexpected".to_owned(),
    };
    verify_request(state, &params).map_err(describe)?;
    let biz = biz_content(&params).map_err(describe)?;
    create_trade(state, "alipay.trade.app.pay", &params, &biz).map_err(describe)
}

async fn app_pay(state: web::Data<SandboxState>, body: String) -> HttpResponse {
    match accept_order_string(&state, &body) {
        Ok(trade) => HttpResponse::Ok().json(json!({
            "out_trade_no": trade.out_trade_no,
            "trade_no": trade.provider_trade_no,
            "trade_status": alipay_trade_status(&trade),
        })),
        Err(reason) => HttpResponse::BadRequest().json(json!({"error": reason})),
    }
}

/// Mounts the Alipay routes.
pub(crate) fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/gateway.do", web::post().to(gateway))
        .route("/gateway.do", web::get().to(gateway))
        .route("/sandbox/alipay/app-pay", web::post().to(app_pay));
}
