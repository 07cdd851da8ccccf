//! Async notifies: building each provider's signed body, delivering it on the provider's retry
//! schedule (divided by the time scale) until the exact acknowledgement comes back, bending
//! deliveries as the fault rules say, and recording every attempt.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use paygate_core::{Fen, ProviderKind};
use serde::{Deserialize, Serialize};

use crate::credentials::ServerKeys;
use crate::faults::{FaultBook, FaultKind};
use paygate_alipay::form::encode_form;
use paygate_alipay::sign::{Params as AlipayParams, SignScope, sign_params as alipay_sign};
use paygate_wechat::refund_notify::encrypt_req_info;
use paygate_wechat::sign::{ApiKey, Params as WechatParams, SignType, sign as wechat_sign};
use paygate_wechat::xml;

/// WeChat's retry intervals after a failed delivery (15 retries, about 24 h); APIv3 documents
/// the same schedule (15s/15s/30s/3m/10m/20m/30m/30m/30m/60m/3h/3h/3h/6h/6h).
pub const WECHAT_RETRY_SECONDS: [u64; 15] = [
    15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600,
];
/// Alipay's retry intervals after a failed delivery (7 retries, about 25 h).
pub const ALIPAY_RETRY_SECONDS: [u64; 7] = [240, 600, 600, 3600, 7200, 21600, 54000];

/// The only body WeChat accepts as an acknowledgement.
pub const WECHAT_ACK: &str = "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>";
/// The only body Alipay accepts as an acknowledgement.
pub const ALIPAY_ACK: &str = "success";

/// Which event a notify reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyKind {
    /// The buyer paid.
    Payment,
    /// A refund succeeded.
    Refund,
}

/// One delivery attempt (or one copy of it), as recorded for tests and `GET /sandbox/notifies`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyDelivery {
    /// Which provider sent it.
    pub provider: ProviderKind,
    /// What it reports.
    pub kind: NotifyKind,
    /// The trade.
    pub out_trade_no: String,
    /// The refund, for refund notifies.
    pub out_refund_no: Option<String>,
    /// 1 for the first delivery, 2 for the first retry, …
    pub attempt: u32,
    /// 1 normally; 2… for duplicate or concurrent copies of the same attempt.
    pub copy: u32,
    /// Where it was posted.
    pub url: String,
    /// The exact body posted.
    pub body: String,
    /// The faults applied to this attempt.
    pub faults: Vec<FaultKind>,
    /// True when a fault dropped it: nothing was sent.
    pub dropped: bool,
    /// The HTTP status of the reply, when one came.
    pub response_status: Option<u16>,
    /// The reply body, when one came.
    pub response_body: Option<String>,
    /// The transport error, when no reply came.
    pub error: Option<String>,
    /// True when the reply was exactly the provider's acknowledgement (APIv3: any 2xx).
    pub acknowledged: bool,
    /// The `Wechatpay-*` headers of an APIv3 notify, as sent (empty for the others).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    /// When it was sent.
    pub sent_at: DateTime<Utc>,
}

/// Every delivery so far, plus a counter waiters can watch.
pub(crate) struct NotifyLog {
    deliveries: Mutex<Vec<NotifyDelivery>>,
    changed: tokio::sync::watch::Sender<usize>,
}

impl NotifyLog {
    pub(crate) fn new() -> NotifyLog {
        NotifyLog {
            deliveries: Mutex::new(Vec::new()),
            changed: tokio::sync::watch::Sender::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<NotifyDelivery>> {
        self.deliveries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn record(&self, delivery: NotifyDelivery) {
        let count = {
            let mut deliveries = self.lock();
            deliveries.push(delivery);
            deliveries.len()
        };
        self.changed.send_replace(count);
    }

    pub(crate) fn list(&self) -> Vec<NotifyDelivery> {
        self.lock().clone()
    }

    /// Waits until `done` holds over the deliveries, or `limit` passes.
    pub(crate) async fn wait_until(
        &self,
        limit: Duration,
        done: impl Fn(&[NotifyDelivery]) -> bool,
    ) -> Result<Vec<NotifyDelivery>, crate::SandboxError> {
        let mut changes = self.changed.subscribe();
        let waiting = async {
            loop {
                changes.borrow_and_update();
                let snapshot = self.list();
                if done(&snapshot) {
                    return snapshot;
                }
                if changes.changed().await.is_err() {
                    return snapshot;
                }
            }
        };
        tokio::time::timeout(limit, waiting)
            .await
            .map_err(|_| crate::SandboxError::WaitTimedOut(limit))
    }
}

/// The unsigned content of a notify; signing happens per attempt so faults can bend fields
/// and still sign genuinely.
#[derive(Debug, Clone)]
pub(crate) enum NotifyPayload {
    /// A WeChat payment notify (XML, signed with the order's algorithm).
    WechatPayment {
        params: WechatParams,
        sign_type: SignType,
    },
    /// A WeChat refund notify: unsigned outer XML around the encrypted `<root>` fields.
    WechatRefund {
        outer: WechatParams,
        inner: WechatParams,
    },
    /// An Alipay notify (form, RSA2 over all fields but `sign` and `sign_type`).
    Alipay { params: AlipayParams },
    /// An APIv3 notify: `resource` (a transaction or a refund) is sealed with the APIv3 key
    /// and the envelope signed with WeChat Pay's key per attempt; `id` stays the same across
    /// retries, as WeChat's does.
    WechatV3 {
        id: String,
        event_type: &'static str,
        original_type: &'static str,
        resource: serde_json::Value,
    },
}

/// One attempt's body and the headers that go with it.
struct Rendered {
    body: String,
    headers: Vec<(String, String)>,
}

impl From<String> for Rendered {
    fn from(body: String) -> Rendered {
        Rendered {
            body,
            headers: Vec::new(),
        }
    }
}

/// Why a notify body could not be built (never expected: our own fields and keys).
#[derive(Debug, thiserror::Error)]
enum RenderError {
    /// RSA signing failed.
    #[error(transparent)]
    Alipay(#[from] paygate_alipay::AlipayError),
    /// A field name is not writable as XML.
    #[error(transparent)]
    Xml(#[from] paygate_wechat::xml::XmlError),
    /// APIv3 sealing or signing failed.
    #[error("APIv3: {0}")]
    V3(String),
}

/// One notify to deliver.
#[derive(Debug, Clone)]
pub(crate) struct NotifyJob {
    pub(crate) provider: ProviderKind,
    pub(crate) kind: NotifyKind,
    pub(crate) out_trade_no: String,
    pub(crate) out_refund_no: Option<String>,
    pub(crate) url: String,
    pub(crate) payload: NotifyPayload,
}

const WRONG_WECHAT_APPID: &str = "wx0000000000000000";
const WRONG_MCH_ID: &str = "1999999999";
const WRONG_ALIPAY_APP_ID: &str = "2021000000000000";
const WRONG_SELLER_ID: &str = "2088000000000000";

fn bump_fen_field(params: &mut WechatParams, name: &str) {
    if let Some(value) = params.get_mut(name)
        && let Ok(fen) = value.parse::<i64>()
    {
        *value = (fen + 1).to_string();
    }
}

fn bump_yuan_field(params: &mut AlipayParams, name: &str) {
    if let Some(value) = params.get_mut(name)
        && let Ok(fen) = Fen::parse_yuan(value)
        && let Ok(bigger) = fen.checked_add(Fen::new(1).unwrap_or(Fen::ZERO))
    {
        *value = bigger.to_yuan_string();
    }
}

fn set_field(params: &mut AlipayParams, name: &str, new_value: &str) {
    if let Some(value) = params.get_mut(name) {
        *value = new_value.to_owned();
    }
}

/// Changes one character of a base64/hex signature so it no longer verifies.
fn corrupt(sign: &str) -> String {
    let mut chars: Vec<char> = sign.chars().collect();
    if let Some(c) = chars.get_mut(sign.len() / 2) {
        *c = if *c == 'A' { 'B' } else { 'A' };
    }
    chars.into_iter().collect()
}

/// Adds one fen to a JSON money field, when present.
fn bump_json_fen(value: &mut serde_json::Value, field: &str) {
    if let Some(fen) = value.get(field).and_then(serde_json::Value::as_i64) {
        value[field] = serde_json::json!(fen + 1);
    }
}

/// Flips one byte in the middle of a base64 `ciphertext`, keeping it valid base64.
fn flip_ciphertext(envelope: &mut serde_json::Value) {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    let Some(text) = envelope["resource"]["ciphertext"].as_str() else {
        return;
    };
    if let Ok(mut bytes) = STANDARD.decode(text) {
        let middle = bytes.len() / 2;
        if let Some(byte) = bytes.get_mut(middle) {
            *byte ^= 0x01;
        }
        envelope["resource"]["ciphertext"] = serde_json::json!(STANDARD.encode(bytes));
    }
}

/// A random 40-hex-digit serial no key was ever issued under.
fn unknown_serial() -> String {
    format!(
        "7{}",
        hex::encode_upper(rand::Rng::random::<[u8; 20]>(&mut rand::rng()))
            .get(..39)
            .unwrap_or_default()
    )
}

/// An APIv3 notify for one attempt: the (bent) resource sealed, the envelope signed, then the
/// faults that break signing or transport applied.
fn render_v3(
    id: &str,
    event_type: &str,
    original_type: &str,
    resource: &serde_json::Value,
    faults: &[FaultKind],
    keys: &ServerKeys,
) -> Result<Rendered, RenderError> {
    use paygate_wechat_v3::verify::{PROBE_PREFIX, header};
    let has = |kind: &FaultKind| faults.contains(kind);
    let v3 = &keys.v3;
    let mut resource = resource.clone();
    if has(&FaultKind::WrongAmount) {
        for field in ["total", "payer_total", "refund", "payer_refund"] {
            bump_json_fen(&mut resource["amount"], field);
        }
    }
    if has(&FaultKind::WrongAppId) && resource.get("appid").is_some() {
        resource["appid"] = serde_json::json!(WRONG_WECHAT_APPID);
    }
    if has(&FaultKind::WrongMerchantId) {
        resource["mchid"] = serde_json::json!(WRONG_MCH_ID);
    }
    if has(&FaultKind::WrongOutTradeNo)
        && let Some(no) = resource["out_trade_no"].as_str()
    {
        resource["out_trade_no"] = serde_json::json!(format!("{no}_X"));
    }
    let now = Utc::now();
    let plaintext = if has(&FaultKind::NonJsonPlaintext) {
        "SUCCESS".to_owned()
    } else {
        resource.to_string()
    };
    let mut body = paygate_wechat_v3::peer::seal_notify(
        &v3.apiv3_key,
        id,
        &paygate_wechat_v3::wire::format_time(now),
        event_type,
        original_type,
        &plaintext,
        &crate::v3_keys::nonce12(),
    )
    .map_err(|e| RenderError::V3(e.to_string()))?;
    if has(&FaultKind::TamperedCiphertext) || has(&FaultKind::WrongAssociatedData) {
        let mut envelope: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| RenderError::V3(e.to_string()))?;
        if has(&FaultKind::TamperedCiphertext) {
            flip_ciphertext(&mut envelope);
        }
        if has(&FaultKind::WrongAssociatedData) {
            envelope["resource"]["associated_data"] = serde_json::json!("certificate");
        }
        body = envelope.to_string();
    }
    let signer = v3.notify_signer();
    let serial = if has(&FaultKind::UnknownSerial) {
        unknown_serial()
    } else {
        signer.serial
    };
    let mut timestamp = now.timestamp();
    if has(&FaultKind::StaleTimestamp) {
        timestamp -= 360;
    }
    if has(&FaultKind::FutureTimestamp) {
        timestamp += 360;
    }
    let mut headers: Vec<(String, String)> = paygate_wechat_v3::peer::signature_headers(
        &signer.key,
        &serial,
        body.as_bytes(),
        timestamp,
        &crate::v3_keys::signature_nonce(),
    )
    .map_err(|e| RenderError::V3(e.to_string()))?
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect();
    for (name, value) in &mut headers {
        if name.as_str() != header::SIGNATURE {
            continue;
        }
        if has(&FaultKind::BadSignature) {
            *value = corrupt(value);
        }
        if has(&FaultKind::ProbeSignature) {
            *value = format!("{PROBE_PREFIX}{value}");
        }
    }
    if has(&FaultKind::MissingSignatureHeader) {
        headers.retain(|(name, _)| name.as_str() != header::SIGNATURE);
    }
    if has(&FaultKind::TamperedBody) {
        body = body.replacen("\"EV-", "\"EX-", 1);
    }
    Ok(Rendered { body, headers })
}

impl NotifyPayload {
    /// The body (and headers) to post for one attempt, with `faults` applied; `Err` only if
    /// signing fails.
    fn render(&self, faults: &[FaultKind], keys: &ServerKeys) -> Result<Rendered, RenderError> {
        let has = |kind: &FaultKind| faults.contains(kind);
        let api_key = &keys.wechat_api_key;
        match self {
            NotifyPayload::WechatV3 {
                id,
                event_type,
                original_type,
                resource,
            } => render_v3(id, event_type, original_type, resource, faults, keys),
            NotifyPayload::WechatPayment { params, sign_type } => {
                let mut params = params.clone();
                if has(&FaultKind::WrongAmount) {
                    bump_fen_field(&mut params, "total_fee");
                    bump_fen_field(&mut params, "cash_fee");
                }
                if has(&FaultKind::WrongAppId) {
                    params.insert("appid".into(), WRONG_WECHAT_APPID.into());
                }
                if has(&FaultKind::WrongMerchantId) {
                    params.insert("mch_id".into(), WRONG_MCH_ID.into());
                }
                if has(&FaultKind::OmitSignType) {
                    params.remove("sign_type");
                }
                let mut sign = wechat_sign(&params, api_key, *sign_type);
                if has(&FaultKind::BadSignature) {
                    sign = corrupt(&sign);
                }
                params.insert("sign".into(), sign);
                Ok(xml::write(&params)?.into())
            }
            NotifyPayload::WechatRefund { outer, inner } => {
                let mut outer = outer.clone();
                let mut inner = inner.clone();
                if has(&FaultKind::WrongAmount) {
                    bump_fen_field(&mut inner, "refund_fee");
                    bump_fen_field(&mut inner, "settlement_refund_fee");
                }
                if has(&FaultKind::WrongAppId) {
                    outer.insert("appid".into(), WRONG_WECHAT_APPID.into());
                }
                if has(&FaultKind::WrongMerchantId) {
                    outer.insert("mch_id".into(), WRONG_MCH_ID.into());
                }
                // The refund notify is authenticated only by the encryption key, so a "bad
                // signature" is a req_info the merchant's key cannot decrypt.
                let wrong_key;
                let key = if has(&FaultKind::BadSignature) {
                    wrong_key = ApiKey::new("0".repeat(32));
                    &wrong_key
                } else {
                    api_key
                };
                let plaintext =
                    xml::write_pairs("root", inner.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
                outer.insert("req_info".into(), encrypt_req_info(&plaintext, key));
                Ok(xml::write(&outer)?.into())
            }
            NotifyPayload::Alipay { params } => {
                let mut params = params.clone();
                if has(&FaultKind::WrongAmount) {
                    for field in [
                        "total_amount",
                        "receipt_amount",
                        "buyer_pay_amount",
                        "invoice_amount",
                    ] {
                        bump_yuan_field(&mut params, field);
                    }
                }
                if has(&FaultKind::WrongAppId) {
                    set_field(&mut params, "app_id", WRONG_ALIPAY_APP_ID);
                    set_field(&mut params, "auth_app_id", WRONG_ALIPAY_APP_ID);
                }
                if has(&FaultKind::WrongMerchantId) {
                    set_field(&mut params, "seller_id", WRONG_SELLER_ID);
                }
                alipay_sign(&mut params, SignScope::NotifyV1, &keys.platform_signer)?;
                if has(&FaultKind::BadSignature)
                    && let Some(sign) = params.get_mut("sign")
                {
                    *sign = corrupt(sign);
                }
                Ok(encode_form(params.iter().map(|(k, v)| (k.as_str(), v.as_str()))).into())
            }
        }
    }

    fn content_type(&self) -> &'static str {
        match self {
            NotifyPayload::Alipay { .. } => "application/x-www-form-urlencoded; charset=utf-8",
            NotifyPayload::WechatV3 { .. } => "application/json",
            _ => "text/xml; charset=utf-8",
        }
    }

    /// Whether a reply acknowledges the notify: APIv3 takes any 2xx (200 or 204, any body);
    /// v2 and Alipay want HTTP 200 with their exact acknowledgement body.
    fn acknowledged(&self, provider: ProviderKind, status: u16, body: &str) -> bool {
        match self {
            NotifyPayload::WechatV3 { .. } => (200..300).contains(&status),
            _ if provider == ProviderKind::WECHAT => status == 200 && body == WECHAT_ACK,
            _ => status == 200 && body == ALIPAY_ACK,
        }
    }
}

/// Sends notify jobs on the caller's tokio runtime.
pub(crate) struct Dispatcher {
    pub(crate) client: reqwest::Client,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) time_scale: f64,
}

/// What a job needs from the sandbox while it runs.
pub(crate) struct DispatchContext {
    pub(crate) keys: Arc<ServerKeys>,
    pub(crate) faults: Arc<FaultBook>,
    pub(crate) log: Arc<NotifyLog>,
}

impl Dispatcher {
    fn retry_delay(&self, provider: ProviderKind, retry_index: usize) -> Option<Duration> {
        // The sandbox plays WeChat and Alipay only.
        let seconds = if provider == ProviderKind::WECHAT {
            WECHAT_RETRY_SECONDS.get(retry_index)
        } else {
            ALIPAY_RETRY_SECONDS.get(retry_index)
        }?;
        let scale = if self.time_scale > 0.0 {
            self.time_scale
        } else {
            1.0
        };
        Some(Duration::from_secs_f64(*seconds as f64 / scale))
    }

    /// Starts delivering `job` in the background.
    pub(crate) fn spawn(self: &Arc<Self>, job: NotifyJob, context: Arc<DispatchContext>) {
        let dispatcher = Arc::clone(self);
        self.runtime
            .spawn(async move { dispatcher.deliver(job, context).await });
    }

    async fn deliver(&self, job: NotifyJob, context: Arc<DispatchContext>) {
        let mut attempt: u32 = 1;
        loop {
            let faults = context
                .faults
                .take_notify_faults(job.provider, &job.out_trade_no);
            let acknowledged = self.attempt(&job, &context, attempt, faults).await;
            if acknowledged {
                return;
            }
            let Some(delay) = self.retry_delay(job.provider, attempt as usize - 1) else {
                tracing::info!(out_trade_no = %job.out_trade_no, "notify retries exhausted");
                return;
            };
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// One attempt: returns true if any copy was acknowledged.
    async fn attempt(
        &self,
        job: &NotifyJob,
        context: &DispatchContext,
        attempt: u32,
        faults: Vec<FaultKind>,
    ) -> bool {
        for fault in &faults {
            if let FaultKind::DelayNotify { millis } = fault {
                tokio::time::sleep(Duration::from_millis(*millis)).await;
            }
        }
        let Rendered { body, headers } = match job.payload.render(&faults, &context.keys) {
            Ok(rendered) => rendered,
            Err(e) => {
                tracing::error!(error = %e, "cannot sign notify");
                return false;
            }
        };
        let template = NotifyDelivery {
            provider: job.provider,
            kind: job.kind,
            out_trade_no: job.out_trade_no.clone(),
            out_refund_no: job.out_refund_no.clone(),
            attempt,
            copy: 1,
            url: job.url.clone(),
            body: body.clone(),
            faults: faults.clone(),
            dropped: false,
            response_status: None,
            response_body: None,
            error: None,
            acknowledged: false,
            headers: headers.clone(),
            sent_at: Utc::now(),
        };
        if faults.contains(&FaultKind::DropNotify) {
            context.log.record(NotifyDelivery {
                dropped: true,
                ..template
            });
            return false;
        }
        let concurrent = faults.iter().find_map(|f| match f {
            FaultKind::ConcurrentNotify { copies } => Some((*copies).max(1)),
            _ => None,
        });
        if let Some(copies) = concurrent {
            let mut set = tokio::task::JoinSet::new();
            for copy in 1..=copies {
                let request = self.post(job, &body, &headers);
                let mut record = template.clone();
                record.copy = copy;
                let payload = job.payload.clone();
                set.spawn(async move { finish(record, &payload, request.await) });
            }
            let mut any = false;
            while let Some(done) = set.join_next().await {
                if let Ok(record) = done {
                    any |= record.acknowledged;
                    context.log.record(record);
                }
            }
            return any;
        }
        let copies = if faults.contains(&FaultKind::DuplicateNotify) {
            2
        } else {
            1
        };
        let mut any = false;
        for copy in 1..=copies {
            let mut record = template.clone();
            record.copy = copy;
            record.sent_at = Utc::now();
            let record = finish(record, &job.payload, self.post(job, &body, &headers).await);
            any |= record.acknowledged;
            context.log.record(record);
        }
        any
    }

    fn post(
        &self,
        job: &NotifyJob,
        body: &str,
        headers: &[(String, String)],
    ) -> impl std::future::Future<Output = Result<(u16, String), reqwest::Error>> + Send + 'static
    {
        let mut request = self
            .client
            .post(&job.url)
            .header("content-type", job.payload.content_type());
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request.body(body.to_owned());
        async move {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let text = response.text().await?;
            Ok((status, text))
        }
    }
}

fn finish(
    mut record: NotifyDelivery,
    payload: &NotifyPayload,
    outcome: Result<(u16, String), reqwest::Error>,
) -> NotifyDelivery {
    match outcome {
        Ok((status, body)) => {
            record.acknowledged = payload.acknowledged(record.provider, status, &body);
            record.response_status = Some(status);
            record.response_body = Some(body);
        }
        Err(e) => record.error = Some(e.to_string()),
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_schedules_add_up_to_the_documented_totals() {
        // WeChat: "about 24h4m"; Alipay: 4m+10m+10m+1h+2h+6h+15h = 24h24m.
        assert_eq!(WECHAT_RETRY_SECONDS.iter().sum::<u64>(), 24 * 3600 + 4 * 60);
        assert_eq!(
            ALIPAY_RETRY_SECONDS.iter().sum::<u64>(),
            24 * 3600 + 24 * 60
        );
    }
}
