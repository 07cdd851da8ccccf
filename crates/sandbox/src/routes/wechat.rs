//! The simulated WeChat: pay API v2 (`/pay/*`, `/secapi/pay/refund`), the login/token API
//! (`/sns/*`, `/cgi-bin/*`) and the official-account OAuth authorize page
//! (`/connect/oauth2/authorize`), at the real paths and with the real response shapes.

use std::borrow::Cow;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use chrono::Utc;
use paygate_core::{Fen, ProviderKind};
use serde::Deserialize;

use crate::faults::FaultKind;
use crate::routes;
use crate::state::{SandboxState, digits, nonce};
use crate::trades::{Refund, RefundRefusal, Trade, TradeDetail, TradeStatus, WechatTrade};
use paygate_wechat::sign::{self, ApiKey, Params as WechatParams, SignType};
use paygate_wechat::xml;

/// The answer of one pay API call before the common fields are added and it is signed.
enum WechatReply {
    /// `result_code=SUCCESS` with these fields.
    Success(WechatParams),
    /// `result_code=FAIL` with an `err_code`.
    BusinessFail {
        code: Cow<'static, str>,
        description: String,
    },
}

fn fail(code: &'static str, description: impl Into<String>) -> WechatReply {
    WechatReply::BusinessFail {
        code: Cow::Borrowed(code),
        description: description.into(),
    }
}

/// The content type of every WeChat pay API answer.
const XML_CONTENT_TYPE: &str = "text/xml; charset=utf-8";

fn xml_response(params: &WechatParams) -> HttpResponse {
    match xml::write(params) {
        Ok(body) => HttpResponse::Ok().content_type(XML_CONTENT_TYPE).body(body),
        Err(e) => {
            tracing::error!(error = %e, "cannot write WeChat XML");
            HttpResponse::InternalServerError().finish()
        }
    }
}

/// Reads a request's `sign_type` as WeChat does: absent means MD5, unknown is refused.
pub(crate) fn request_sign_type(request: &WechatParams) -> Option<SignType> {
    match request.get("sign_type") {
        None => Some(SignType::Md5),
        Some(declared) => SignType::parse(declared),
    }
}

/// Checks `sign` over every received field but `sign`, in constant time.
pub(crate) fn signature_valid(request: &WechatParams, sign_type: SignType, key: &ApiKey) -> bool {
    request
        .get("sign")
        .is_some_and(|received| sign::verify(request, key, sign_type, received))
}

/// `return_code=FAIL`: communication-level errors, unsigned, as WeChat sends them.
fn return_fail(message: &str) -> HttpResponse {
    let mut params = WechatParams::new();
    params.insert("return_code".into(), "FAIL".into());
    params.insert("return_msg".into(), message.into());
    xml_response(&params)
}

fn fields<const N: usize>(pairs: [(&str, String); N]) -> WechatParams {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// The common part of every pay API: parse, apply API faults, check mch_id, signature and
/// appid, run `operation`, then sign the answer with the request's algorithm.
async fn run(
    state: web::Data<SandboxState>,
    api: &'static str,
    body: String,
    operation: fn(&SandboxState, &WechatParams) -> WechatReply,
) -> HttpResponse {
    let request = match xml::parse(body.as_bytes()) {
        Ok(params) => params,
        Err(_) => return return_fail("XML格式错误"),
    };
    let out_trade_no = request.get("out_trade_no").map(String::as_str);
    let fault = state
        .faults
        .take_api_fault(ProviderKind::WECHAT, api, out_trade_no);
    let Some(sign_type) = request_sign_type(&request) else {
        return return_fail("签名类型错误");
    };
    let keys = &state.keys.keys;
    if let Some(fault) = fault {
        let appid = request.get("appid").cloned().unwrap_or_default();
        // With `processed` the provider does the work and only the answer goes wrong.
        let done = fault
            .processed
            .then(|| authenticated(&state, &request, sign_type, operation));
        // The answer an unusable-answer fault bends: the real one when processed.
        let real_or_busy = |done: Option<WechatReply>| {
            let reply = done.unwrap_or_else(|| fail("SYSTEMERROR", "系统超时"));
            signed_params(&state, sign_type, reply, appid.clone())
        };
        match fault.kind {
            FaultKind::HttpStatus { status } => return routes::status_only(status),
            FaultKind::Timeout { millis } => {
                tokio::time::sleep(Duration::from_millis(millis)).await;
                if let Some(reply) = done {
                    return signed(&state, sign_type, reply, appid);
                }
            }
            FaultKind::EmptyBody => return routes::empty_ok(XML_CONTENT_TYPE),
            FaultKind::TruncatedBody => {
                let body = xml::write(&real_or_busy(done)).unwrap_or_default();
                return routes::truncated(XML_CONTENT_TYPE, &body);
            }
            FaultKind::BadAnswerSignature => {
                let mut params = real_or_busy(done);
                if let Some(sign) = params.get_mut("sign") {
                    *sign = routes::corrupted_signature(sign);
                }
                return xml_response(&params);
            }
            FaultKind::Refused { code } => {
                let refusal = WechatReply::BusinessFail {
                    code: code.into(),
                    description: "sandbox refusal".to_owned(),
                };
                return signed(&state, sign_type, refusal, appid);
            }
            _ => {}
        }
        return signed(&state, sign_type, fail("SYSTEMERROR", "系统超时"), appid);
    }
    if request.get("mch_id") != Some(&keys.wechat_mch_id) {
        return return_fail("mch_id参数格式错误");
    }
    if !signature_valid(&request, sign_type, &state.keys.wechat_api_key) {
        return return_fail("签名错误");
    }
    let reply = authenticated(&state, &request, sign_type, operation);
    signed(
        &state,
        sign_type,
        reply,
        request.get("appid").cloned().unwrap_or_default(),
    )
}

fn authenticated(
    state: &SandboxState,
    request: &WechatParams,
    sign_type: SignType,
    operation: fn(&SandboxState, &WechatParams) -> WechatReply,
) -> WechatReply {
    let keys = &state.keys.keys;
    if request.get("mch_id") != Some(&keys.wechat_mch_id)
        || !signature_valid(request, sign_type, &state.keys.wechat_api_key)
    {
        return fail("SIGNERROR", "签名错误");
    }
    if request.get("appid") != Some(&keys.wechat_appid) {
        return fail("APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配");
    }
    operation(state, request)
}

fn signed(
    state: &SandboxState,
    sign_type: SignType,
    reply: WechatReply,
    appid: String,
) -> HttpResponse {
    xml_response(&signed_params(state, sign_type, reply, appid))
}

/// The answer's fields with the common ones added, signed with the request's algorithm.
fn signed_params(
    state: &SandboxState,
    sign_type: SignType,
    reply: WechatReply,
    appid: String,
) -> WechatParams {
    let keys = &state.keys.keys;
    let mut params = fields([
        ("return_code", "SUCCESS".to_owned()),
        ("return_msg", "OK".to_owned()),
        ("appid", appid),
        ("mch_id", keys.wechat_mch_id.clone()),
        ("nonce_str", nonce()),
    ]);
    match reply {
        WechatReply::Success(extra) => {
            params.insert("result_code".into(), "SUCCESS".into());
            params.extend(extra);
        }
        WechatReply::BusinessFail { code, description } => {
            params.insert("result_code".into(), "FAIL".into());
            params.insert("err_code".into(), code.into());
            params.insert("err_code_des".into(), description);
        }
    }
    sign::sign_in_place(&mut params, &state.keys.wechat_api_key, sign_type);
    params
}

const REQUIRED_UNIFIEDORDER: [&str; 7] = [
    "body",
    "out_trade_no",
    "total_fee",
    "spbill_create_ip",
    "notify_url",
    "trade_type",
    "nonce_str",
];

fn parse_fee(text: &str) -> Option<Fen> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<i64>()
        .ok()
        .and_then(|fen| Fen::new(fen).ok())
        .filter(|fen| fen.get() > 0)
}

fn prepay_response(trade: &Trade) -> WechatReply {
    let Some(wechat) = trade.wechat() else {
        return fail("SYSTEMERROR", "系统错误");
    };
    let mut out = fields([
        ("prepay_id", wechat.prepay_id.clone()),
        ("trade_type", wechat.trade_type.clone()),
    ]);
    match (wechat.trade_type.as_str(), &wechat.pay_url) {
        ("NATIVE", Some(url)) => {
            out.insert("code_url".into(), url.clone());
        }
        ("MWEB", Some(url)) => {
            out.insert("mweb_url".into(), url.clone());
        }
        _ => {}
    }
    WechatReply::Success(out)
}

fn unifiedorder(state: &SandboxState, request: &WechatParams) -> WechatReply {
    if let Some(missing) = REQUIRED_UNIFIEDORDER
        .iter()
        .find(|name| request.get(**name).is_none_or(String::is_empty))
    {
        return fail("LACK_PARAMS", format!("缺少参数{missing}"));
    }
    let field = |name: &str| request.get(name).cloned().unwrap_or_default();
    let Some(amount) = parse_fee(&field("total_fee")) else {
        return fail("PARAM_ERROR", "total_fee 参数格式错误");
    };
    let trade_type = field("trade_type");
    if !["JSAPI", "NATIVE", "APP", "MWEB"].contains(&trade_type.as_str()) {
        return fail("PARAM_ERROR", "trade_type参数错误");
    }
    if trade_type == "JSAPI" && request.get("openid").is_none_or(String::is_empty) {
        return fail("PARAM_ERROR", "JSAPI支付必须传openid");
    }
    let out_trade_no = field("out_trade_no");
    let valid_no = (6..=32).contains(&out_trade_no.len())
        && out_trade_no
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-|*".contains(&b));
    if !valid_no {
        return fail("PARAM_ERROR", "out_trade_no参数格式错误");
    }
    let mut request_fields = request.clone();
    request_fields.remove("sign");
    request_fields.remove("nonce_str");
    // MD5 spelled out or implied is the same order; only business fields must match.
    request_fields.remove("sign_type");
    let request_digest = crate::trades::request_digest(&request_fields);
    let sign_type = request_sign_type(request).unwrap_or(SignType::Md5);
    state
        .trades
        .update(ProviderKind::WECHAT, &out_trade_no, |slot| {
            if let Some(existing) = slot.as_ref() {
                let reply = match existing.status {
                    TradeStatus::Paid => fail("ORDERPAID", "该订单已支付"),
                    TradeStatus::Closed => fail("ORDERCLOSED", "该订单已关闭"),
                    TradeStatus::AwaitingPayment
                        if existing
                            .wechat()
                            .is_some_and(|w| w.request_digest == request_digest) =>
                    {
                        prepay_response(existing)
                    }
                    TradeStatus::AwaitingPayment => fail("OUT_TRADE_NO_USED", "商户订单号重复"),
                };
                return (reply, false);
            }
            let now = Utc::now();
            let prepay_id = format!(
                "wx{}{}",
                crate::state::china_time(now).format("%Y%m%d%H%M%S"),
                &nonce()[..20]
            );
            let pay_url = match trade_type.as_str() {
                "NATIVE" => Some(format!("weixin://wxpay/bizpayurl?pr={}", &nonce()[..7])),
                "MWEB" => Some(format!("{}/sandbox?prepay_id={prepay_id}", state.base_url)),
                _ => None,
            };
            let trade = Trade {
                provider: ProviderKind::WECHAT,
                out_trade_no: out_trade_no.clone(),
                amount,
                status: TradeStatus::AwaitingPayment,
                subject: field("body"),
                notify_url: Some(field("notify_url")),
                provider_trade_no: None,
                created_at: now,
                paid_at: None,
                refunds: Vec::new(),
                detail: TradeDetail::Wechat(WechatTrade {
                    appid: field("appid"),
                    trade_type: trade_type.clone(),
                    sign_type,
                    prepay_id,
                    pay_url,
                    openid: request.get("openid").cloned().filter(|o| !o.is_empty()),
                    attach: request.get("attach").cloned().filter(|a| !a.is_empty()),
                    request_digest: request_digest.clone(),
                    api_v3: false,
                }),
            };
            let reply = prepay_response(&trade);
            *slot = Some(trade);
            (reply, true)
        })
}

/// Finds the trade a query names: `transaction_id` first, then `out_trade_no`.
fn find_trade(state: &SandboxState, request: &WechatParams) -> Option<Trade> {
    if let Some(transaction_id) = request.get("transaction_id").filter(|t| !t.is_empty()) {
        return state.trades.find(|t| {
            t.provider == ProviderKind::WECHAT
                && t.provider_trade_no.as_ref() == Some(transaction_id)
        });
    }
    request
        .get("out_trade_no")
        .and_then(|no| state.trades.get(ProviderKind::WECHAT, no))
}

/// `trade_state` and its description, as v2's query and APIv3's query and notify write them.
pub(crate) fn trade_state(trade: &Trade) -> (&'static str, &'static str) {
    match trade.status {
        TradeStatus::AwaitingPayment => ("NOTPAY", "订单未支付"),
        TradeStatus::Closed => ("CLOSED", "订单已关闭"),
        TradeStatus::Paid if !trade.refunds.is_empty() => ("REFUND", "订单发生过退款"),
        TradeStatus::Paid => ("SUCCESS", "支付成功"),
    }
}

fn orderquery(state: &SandboxState, request: &WechatParams) -> WechatReply {
    let Some(trade) = find_trade(state, request) else {
        return fail("ORDERNOTEXIST", "订单不存在");
    };
    let (code, description) = trade_state(&trade);
    let fee = trade.amount.get().to_string();
    let mut out = fields([
        ("out_trade_no", trade.out_trade_no.clone()),
        ("trade_state", code.to_owned()),
        ("trade_state_desc", description.to_owned()),
        ("total_fee", fee.clone()),
        ("fee_type", "CNY".to_owned()),
    ]);
    if let Some(wechat) = trade.wechat() {
        out.insert("trade_type".into(), wechat.trade_type.clone());
        if let Some(attach) = &wechat.attach {
            out.insert("attach".into(), attach.clone());
        }
        if trade.status == TradeStatus::Paid {
            out.insert("openid".into(), wechat.openid.clone().unwrap_or_default());
        }
    }
    if trade.status == TradeStatus::Paid {
        let time_end = crate::state::china_time(trade.paid_at.unwrap_or_else(Utc::now))
            .format("%Y%m%d%H%M%S")
            .to_string();
        out.extend(fields([
            (
                "transaction_id",
                trade.provider_trade_no.clone().unwrap_or_default(),
            ),
            ("cash_fee", fee),
            ("bank_type", "CFT".to_owned()),
            ("is_subscribe", "N".to_owned()),
            ("time_end", time_end),
        ]));
    }
    WechatReply::Success(out)
}

fn closeorder(state: &SandboxState, request: &WechatParams) -> WechatReply {
    let Some(out_trade_no) = request.get("out_trade_no") else {
        return fail("LACK_PARAMS", "缺少参数out_trade_no");
    };
    state
        .trades
        .update(ProviderKind::WECHAT, out_trade_no, |slot| {
            let Some(trade) = slot.as_mut() else {
                return (fail("ORDERNOTEXIST", "订单不存在"), false);
            };
            match trade.status {
                TradeStatus::Paid => (fail("ORDERPAID", "订单已支付，不能发起关单"), false),
                TradeStatus::Closed => (fail("ORDERCLOSED", "订单已关闭"), false),
                TradeStatus::AwaitingPayment => {
                    trade.status = TradeStatus::Closed;
                    (WechatReply::Success(WechatParams::new()), true)
                }
            }
        })
}

fn refund(state: &SandboxState, request: &WechatParams) -> WechatReply {
    let field = |name: &str| request.get(name).cloned().unwrap_or_default();
    for required in ["out_refund_no", "total_fee", "refund_fee"] {
        if field(required).is_empty() {
            return fail("LACK_PARAMS", format!("缺少参数{required}"));
        }
    }
    let Some(trade) = find_trade(state, request) else {
        return fail("ORDERNOTEXIST", "订单不存在");
    };
    let (Some(total_fee), Some(refund_fee)) = (
        parse_fee(&field("total_fee")),
        parse_fee(&field("refund_fee")),
    ) else {
        return fail("PARAM_ERROR", "退款金额参数错误");
    };
    let out_refund_no = field("out_refund_no");
    if total_fee != trade.amount {
        return fail(
            "PARAM_ERROR",
            "订单金额或退款金额与之前请求不一致，请核实后再试",
        );
    }
    let outcome = state
        .trades
        .refund(
            ProviderKind::WECHAT,
            &trade.out_trade_no,
            &out_refund_no,
            refund_fee,
            || format!("503{}", digits(26)),
        )
        .map_err(|refusal| match refusal {
            RefundRefusal::NoTrade => fail("ORDERNOTEXIST", "订单不存在"),
            RefundRefusal::NotPaid => fail("TRADE_STATE_ERROR", "订单状态错误"),
            RefundRefusal::ConflictingRetry => fail(
                "PARAM_ERROR",
                "订单金额或退款金额与之前请求不一致，请核实后再试",
            ),
            RefundRefusal::ExceedsRefundable => fail("ERROR", "申请退款金额超过订单可退金额"),
        });
    let (trade, refund, is_new) = match outcome {
        Ok(done) => done,
        Err(reply) => return reply,
    };
    if is_new {
        state.send_refund_notify(
            &trade,
            &refund,
            request.get("notify_url").cloned().filter(|u| !u.is_empty()),
        );
    }
    let fee = trade.amount.get().to_string();
    let refund_fee = refund.amount.get().to_string();
    WechatReply::Success(fields([
        (
            "transaction_id",
            trade.provider_trade_no.clone().unwrap_or_default(),
        ),
        ("out_trade_no", trade.out_trade_no.clone()),
        ("out_refund_no", refund.out_refund_no.clone()),
        ("refund_id", refund.refund_id.clone()),
        ("refund_fee", refund_fee.clone()),
        ("settlement_refund_fee", refund_fee.clone()),
        ("total_fee", fee.clone()),
        ("settlement_total_fee", fee.clone()),
        ("fee_type", "CNY".to_owned()),
        ("cash_fee", fee),
        ("cash_refund_fee", refund_fee),
        ("refund_channel", String::new()),
    ]))
}

fn refundquery(state: &SandboxState, request: &WechatParams) -> WechatReply {
    let by = |name: &str| request.get(name).filter(|v| !v.is_empty()).cloned();
    let trade = if let Some(refund_id) = by("refund_id") {
        state
            .trades
            .find(|t| t.refunds.iter().any(|r| r.refund_id == refund_id))
    } else if let Some(out_refund_no) = by("out_refund_no") {
        state.trades.find(|t| {
            t.provider == ProviderKind::WECHAT
                && t.refunds.iter().any(|r| r.out_refund_no == out_refund_no)
        })
    } else {
        find_trade(state, request)
    };
    let Some(trade) = trade else {
        return fail("REFUNDNOTEXIST", "退款订单查询失败");
    };
    let refunds: Vec<&Refund> = trade
        .refunds
        .iter()
        .filter(|r| by("refund_id").is_none_or(|id| r.refund_id == id))
        .filter(|r| by("out_refund_no").is_none_or(|no| r.out_refund_no == no))
        .collect();
    if refunds.is_empty() {
        return fail("REFUNDNOTEXIST", "退款订单查询失败");
    }
    let fee = trade.amount.get().to_string();
    let mut out = fields([
        (
            "transaction_id",
            trade.provider_trade_no.clone().unwrap_or_default(),
        ),
        ("out_trade_no", trade.out_trade_no.clone()),
        ("total_fee", fee.clone()),
        ("cash_fee", fee),
        ("fee_type", "CNY".to_owned()),
        ("refund_count", refunds.len().to_string()),
        ("total_refund_count", trade.refunds.len().to_string()),
    ]);
    for (n, refund) in refunds.iter().enumerate() {
        let amount = refund.amount.get().to_string();
        let success_time = crate::state::china_time(refund.refunded_at)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string();
        out.extend(fields([
            (&format!("out_refund_no_{n}"), refund.out_refund_no.clone()),
            (&format!("refund_id_{n}"), refund.refund_id.clone()),
            (&format!("refund_fee_{n}"), amount.clone()),
            (&format!("settlement_refund_fee_{n}"), amount),
            (&format!("refund_status_{n}"), "SUCCESS".to_owned()),
            (
                &format!("refund_account_{n}"),
                "REFUND_SOURCE_RECHARGE_FUNDS".to_owned(),
            ),
            (
                &format!("refund_recv_accout_{n}"),
                "支付用户零钱".to_owned(),
            ),
            (&format!("refund_success_time_{n}"), success_time),
        ]));
    }
    WechatReply::Success(out)
}

async fn unifiedorder_route(state: web::Data<SandboxState>, body: String) -> HttpResponse {
    run(state, "/pay/unifiedorder", body, unifiedorder).await
}

async fn orderquery_route(state: web::Data<SandboxState>, body: String) -> HttpResponse {
    run(state, "/pay/orderquery", body, orderquery).await
}

async fn closeorder_route(state: web::Data<SandboxState>, body: String) -> HttpResponse {
    run(state, "/pay/closeorder", body, closeorder).await
}

async fn refund_route(state: web::Data<SandboxState>, body: String) -> HttpResponse {
    // Plain HTTP in the sandbox: no client certificate, but mch_id and the signature are
    // still checked by `run`.
    run(state, "/secapi/pay/refund", body, refund).await
}

async fn refundquery_route(state: web::Data<SandboxState>, body: String) -> HttpResponse {
    run(state, "/pay/refundquery", body, refundquery).await
}

/// Query parameters of the login/token endpoints (all optional so missing ones get WeChat's
/// own error codes rather than actix's 400).
#[derive(Debug, Deserialize)]
struct LoginQuery {
    appid: Option<String>,
    secret: Option<String>,
    js_code: Option<String>,
    code: Option<String>,
    grant_type: Option<String>,
    access_token: Option<String>,
    #[serde(rename = "type")]
    ticket_type: Option<String>,
}

/// The query of `open.weixin.qq.com/connect/oauth2/authorize`.
#[derive(Debug, Deserialize)]
struct AuthorizeQuery {
    appid: Option<String>,
    redirect_uri: Option<String>,
    response_type: Option<String>,
    scope: Option<String>,
    state: Option<String>,
}

/// Unexchanged OAuth codes kept at most (WeChat lets them expire after 5 minutes; the sandbox
/// forgets the oldest instead, so a client that never exchanges cannot grow it).
const MAX_PENDING_OAUTH_CODES: usize = 10_000;

/// The authorize error page WeChat shows in the buyer's browser (it never redirects then).
fn authorize_error(errcode: u32, message: &str) -> HttpResponse {
    HttpResponse::BadRequest()
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!DOCTYPE html><html><head><title>微信网页授权</title></head><body>\
             <p>Oops! Something went wrong:(</p><p>errcode {errcode}: {message}</p></body></html>"
        ))
}

/// The official-account authorize page: the buyer "consents" at once and is sent back to
/// `redirect_uri` with a fresh single-use `code` and the caller's `state`, as WeChat does
/// after `snsapi_base` (silently) or `snsapi_userinfo` (after the consent screen).
async fn oauth2_authorize(
    state: web::Data<SandboxState>,
    query: web::Query<AuthorizeQuery>,
) -> HttpResponse {
    if query.appid.as_deref() != Some(state.keys.keys.wechat_appid.as_str()) {
        return authorize_error(10002, "appid invalid");
    }
    if query.response_type.as_deref() != Some("code") {
        return authorize_error(10004, "response_type invalid");
    }
    let Some(scope) = query
        .scope
        .as_deref()
        .and_then(paygate_wechat::login::OAuthScope::parse)
    else {
        return authorize_error(10005, "scope invalid");
    };
    let redirect = query
        .redirect_uri
        .as_deref()
        .and_then(|uri| reqwest::Url::parse(uri).ok())
        .filter(|uri| matches!(uri.scheme(), "http" | "https") && uri.host_str().is_some());
    let Some(mut redirect) = redirect else {
        return authorize_error(10003, "redirect_uri invalid");
    };
    let code = format!("sbxoauth{}", nonce());
    {
        let mut login = state.login.lock().unwrap_or_else(|p| p.into_inner());
        if login.oauth_codes.len() >= MAX_PENDING_OAUTH_CODES {
            login.oauth_codes.clear();
        }
        login.oauth_codes.insert(code.clone(), scope.as_str());
    }
    redirect
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", query.state.as_deref().unwrap_or_default());
    HttpResponse::Found()
        .insert_header((actix_web::http::header::LOCATION, redirect.as_str()))
        .finish()
}

/// A login/token API error: WeChat answers HTTP 200 with `{"errcode","errmsg"}`.
struct LoginError {
    errcode: i64,
    errmsg: &'static str,
}

impl LoginError {
    fn response(&self) -> HttpResponse {
        HttpResponse::Ok().json(serde_json::json!({"errcode": self.errcode, "errmsg": self.errmsg}))
    }
}

fn wechat_error(errcode: i64, errmsg: &'static str) -> HttpResponse {
    LoginError { errcode, errmsg }.response()
}

fn login_error(errcode: i64, errmsg: &'static str) -> LoginError {
    LoginError { errcode, errmsg }
}

/// Checks appid + secret as the login endpoints do.
fn check_app(state: &SandboxState, query: &LoginQuery) -> Result<(), LoginError> {
    let keys = &state.keys.keys;
    match (&query.appid, &query.secret) {
        (None, _) => Err(login_error(41002, "appid missing")),
        (_, None) => Err(login_error(41004, "appsecret missing")),
        (Some(appid), _) if *appid != keys.wechat_appid => Err(login_error(40013, "invalid appid")),
        (_, Some(secret)) if *secret != keys.wechat_app_secret => {
            Err(login_error(40125, "invalid appsecret"))
        }
        _ => Ok(()),
    }
}

/// Consumes a single-use login code, as WeChat does.
fn use_code(state: &SandboxState, code: Option<&String>) -> Result<String, LoginError> {
    let Some(code) = code.filter(|c| !c.is_empty()) else {
        return Err(login_error(41008, "missing code"));
    };
    let mut login = state.login.lock().unwrap_or_else(|p| p.into_inner());
    if !login.used_codes.insert(code.clone()) {
        return Err(login_error(40163, "code been used"));
    }
    Ok(code.clone())
}

/// The sandbox's openid for a login code: `oSbx` + 24 hex of SHA-256(appid ":" code), so the
/// same code always maps to the same user.
pub(crate) fn openid_for_code(appid: &str, code: &str) -> String {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("{appid}:{code}").as_bytes(),
    );
    format!("oSbx{}", &hex::encode(digest.as_ref())[..24])
}

async fn jscode2session(
    state: web::Data<SandboxState>,
    query: web::Query<LoginQuery>,
) -> HttpResponse {
    if let Err(response) = check_app(&state, &query) {
        return response.response();
    }
    if query.grant_type.as_deref() != Some("authorization_code") {
        return wechat_error(40002, "invalid grant_type");
    }
    let code = match use_code(&state, query.js_code.as_ref()) {
        Ok(code) => code,
        Err(response) => return response.response(),
    };
    let openid = openid_for_code(&state.keys.keys.wechat_appid, &code);
    HttpResponse::Ok().json(serde_json::json!({
        "openid": openid,
        "session_key": base64_nonce(),
        "unionid": format!("oUnion{}", &openid[4..]),
    }))
}

fn base64_nonce() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .encode(nonce().as_bytes().get(..16).unwrap_or_default())
}

async fn oauth2_access_token(
    state: web::Data<SandboxState>,
    query: web::Query<LoginQuery>,
) -> HttpResponse {
    // API faults (`"api":"/sns/oauth2/access_token"`): with `processed` the code is consumed
    // before the answer goes wrong, as when WeChat did the exchange but the answer was lost.
    let fault = state
        .faults
        .take_api_fault(ProviderKind::WECHAT, "/sns/oauth2/access_token", None);
    if let Some(fault) = fault {
        if fault.processed {
            let _ = use_code(&state, query.code.as_ref());
        }
        match fault.kind {
            FaultKind::HttpStatus { status } => return crate::routes::status_only(status),
            FaultKind::Timeout { millis } => {
                tokio::time::sleep(Duration::from_millis(millis)).await
            }
            _ => {}
        }
        return wechat_error(-1, "system error");
    }
    if let Err(response) = check_app(&state, &query) {
        return response.response();
    }
    if query.grant_type.as_deref() != Some("authorization_code") {
        return wechat_error(40002, "invalid grant_type");
    }
    let code = match use_code(&state, query.code.as_ref()) {
        Ok(code) => code,
        Err(response) => return response.response(),
    };
    // A code from the authorize page carries the scope granted there; a made-up code (tests
    // that skip the page) counts as a silent snsapi_base grant.
    let scope = state
        .login
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .oauth_codes
        .remove(&code)
        .unwrap_or("snsapi_base");
    HttpResponse::Ok().json(serde_json::json!({
        "access_token": nonce(),
        "expires_in": 7200,
        "refresh_token": nonce(),
        "openid": openid_for_code(&state.keys.keys.wechat_appid, &code),
        "scope": scope,
    }))
}

async fn cgi_token(state: web::Data<SandboxState>, query: web::Query<LoginQuery>) -> HttpResponse {
    if let Err(response) = check_app(&state, &query) {
        return response.response();
    }
    if query.grant_type.as_deref() != Some("client_credential") {
        return wechat_error(40002, "invalid grant_type");
    }
    let token = format!("sbx{}", nonce());
    state
        .login
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .access_tokens
        .insert(token.clone());
    HttpResponse::Ok().json(serde_json::json!({"access_token": token, "expires_in": 7200}))
}

async fn getticket(state: web::Data<SandboxState>, query: web::Query<LoginQuery>) -> HttpResponse {
    let known = query.access_token.as_ref().is_some_and(|token| {
        state
            .login
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .access_tokens
            .contains(token)
    });
    if !known {
        return wechat_error(
            40001,
            "invalid credential, access_token is invalid or not latest",
        );
    }
    if query.ticket_type.as_deref() != Some("jsapi") {
        return wechat_error(40097, "invalid args");
    }
    HttpResponse::Ok().json(serde_json::json!({
        "errcode": 0,
        "errmsg": "ok",
        "ticket": format!("sbxticket{}", nonce()),
        "expires_in": 7200,
    }))
}

/// Mounts the WeChat routes.
pub(crate) fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/pay/unifiedorder", web::post().to(unifiedorder_route))
        .route("/pay/orderquery", web::post().to(orderquery_route))
        .route("/pay/closeorder", web::post().to(closeorder_route))
        .route("/secapi/pay/refund", web::post().to(refund_route))
        .route("/pay/refundquery", web::post().to(refundquery_route))
        .route("/sns/jscode2session", web::get().to(jscode2session))
        .route(
            "/sns/oauth2/access_token",
            web::get().to(oauth2_access_token),
        )
        .route("/cgi-bin/token", web::get().to(cgi_token))
        .route("/cgi-bin/ticket/getticket", web::get().to(getticket))
        .route("/connect/oauth2/authorize", web::get().to(oauth2_authorize));
}
