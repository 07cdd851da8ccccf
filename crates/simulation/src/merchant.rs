//! The simulation's HTTP side: a merchant backend calling paygate's API (retrying the way the
//! docs tell a merchant to), a finance reader, and the buyer at the sandbox.

use std::time::Duration;

use paygate_core::{Channel, Fen, OrderStatus, ProviderKind, RefundStatus};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::SimError;
use crate::ops::{OrderSpec, TradeNo};
use crate::topology::Keys;

/// What one HTTP call came to, as the operation log shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// An HTTP status and paygate's error code when there was one.
    Status(u16, Option<String>),
    /// No HTTP answer (connection refused while the gateway restarts, a client timeout).
    Transport(String),
}

impl Answer {
    fn retryable(&self) -> bool {
        match self {
            Answer::Status(status, _) => matches!(status, 500 | 502 | 503 | 504),
            Answer::Transport(_) => true,
        }
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Status(status, Some(code)) => write!(f, "{status} {code}"),
            Answer::Status(status, None) => write!(f, "{status}"),
            Answer::Transport(error) => write!(f, "no answer ({error})"),
        }
    }
}

/// An order as paygate's API shows it (the fields the invariants read).
#[derive(Debug, Clone, Deserialize)]
pub struct OrderView {
    /// `ord_…`.
    pub id: String,
    /// The provider.
    pub provider: ProviderKind,
    /// The channel.
    pub channel: Channel,
    /// The merchant order number.
    pub out_trade_no: String,
    /// Where it is.
    pub status: OrderStatus,
    /// The amount.
    pub amount: Fen,
    /// The sum of succeeded refunds, as paygate counts it.
    pub refunded_amount: Fen,
    /// What the buyer's client needs to pay.
    #[serde(default)]
    pub pay_params: Option<Value>,
}

/// A refund as paygate's API shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct RefundView {
    /// `rfd_…`.
    pub id: String,
    /// The merchant refund number.
    pub out_refund_no: String,
    /// Its amount.
    pub amount: Fen,
    /// Where it is.
    pub status: RefundStatus,
}

/// A webhook event as `GET /v1/events` shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct EventView {
    /// `evt_…`.
    pub id: String,
    /// `order.paid`, `refund.succeeded`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The refund, for refund events.
    #[serde(default)]
    pub refund_id: Option<String>,
}

/// A statement run as the finance API shows it (the fields the statement checks read).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RunView {
    /// `rcn_…`.
    pub id: String,
    /// `matched`, `differences` or `failed`.
    pub status: String,
    /// The provider's bill file, when one was kept.
    #[serde(default)]
    pub bill_file_id: Option<String>,
    /// How many differences it lists.
    pub differences_count: i64,
    /// Our side's totals.
    pub local: RunTotalsView,
    /// The bill's totals.
    pub bill: RunTotalsView,
    /// When it finished (tells a replaced run from its replacement).
    pub finished_at: String,
}

/// One side's counts of a [`RunView`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RunTotalsView {
    /// Payments.
    pub payments_count: i64,
    /// Refunds.
    pub refunds_count: i64,
}

/// A difference of a statement run.
#[derive(Debug, Clone, Deserialize)]
pub struct DifferenceView {
    /// `payment` or `refund`.
    pub kind: String,
    /// `missing_local`, `missing_in_bill`, `amount_mismatch`, `status_mismatch`, …
    pub category: String,
    /// The trade.
    pub out_trade_no: String,
    /// The bill's amount.
    #[serde(default)]
    pub bill_amount: Option<i64>,
    /// Ours.
    #[serde(default)]
    pub local_amount: Option<i64>,
    /// Our status (`pending`, `paid`, …).
    #[serde(default)]
    pub local_status: Option<String>,
    /// What was done about it (the act step writes one when it queried the provider).
    #[serde(default)]
    pub resolution: Option<ResolutionView>,
}

/// A difference's resolution.
#[derive(Debug, Clone, Deserialize)]
pub struct ResolutionView {
    /// What was done and why.
    pub note: String,
}

/// What `POST /v1/reconciliation/runs` answered.
#[derive(Debug, Clone)]
pub struct StatementAnswer {
    /// The HTTP answer.
    pub answer: Answer,
    /// The stored run, on a 200.
    pub run: Option<RunView>,
    /// The orders the act step marked paid, on a 200.
    pub paid: Vec<String>,
}

/// An anomaly as `GET /v1/anomalies` shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct AnomalyView {
    /// The order, when the callback named a known one.
    #[serde(default)]
    pub order_id: Option<String>,
    /// `payment_mismatch`, `late_payment`, …
    pub kind: String,
}

#[derive(Deserialize)]
struct Page<T> {
    data: Vec<T>,
    #[serde(default)]
    next_cursor: Option<String>,
}

/// How often and how long a merchant retries an answer that says "try again".
const RETRIES: u32 = 3;
const RETRY_PAUSE: Duration = Duration::from_millis(300);

/// paygate's API and the sandbox, over HTTP.
#[derive(Clone)]
pub struct Merchant {
    http: reqwest::Client,
    base: String,
    sandbox: String,
    keys: Keys,
}

impl Merchant {
    /// A client of the gateway at `base` and the sandbox at `sandbox`.
    pub fn new(base: &str, sandbox: &str, keys: Keys) -> Result<Merchant, SimError> {
        Ok(Merchant {
            // Longer than the gateway's 10 s provider timeout, so its 504 arrives.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(25))
                .build()?,
            base: base.to_owned(),
            sandbox: sandbox.to_owned(),
            keys,
        })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (Answer, Option<Value>) {
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body: Option<Value> = response.json().await.ok();
                let code = body
                    .as_ref()
                    .and_then(|b| b["error"]["code"].as_str())
                    .map(str::to_owned);
                (Answer::Status(status, code), body)
            }
            Err(error) => (Answer::Transport(transport_error(&error)), None),
        }
    }

    /// POSTs `body` as the merchant, retrying answers that say "try again" with the same
    /// body (the idempotency the API promises); returns every answer and the last body.
    async fn post_retrying(&self, path: &str, body: &Value) -> (Vec<Answer>, Option<Value>) {
        let mut answers = Vec::new();
        for attempt in 0..=RETRIES {
            if attempt > 0 {
                tokio::time::sleep(RETRY_PAUSE * attempt).await;
            }
            let request = self
                .http
                .post(format!("{}{path}", self.base))
                .bearer_auth(&self.keys.merchant)
                .json(body);
            let (answer, json) = self.send(request).await;
            let retry = answer.retryable();
            answers.push(answer);
            if !retry {
                return (answers, json);
            }
        }
        (answers, None)
    }

    /// Creates an order; returns the answers and the order when one was returned.
    pub async fn create(
        &self,
        trade: TradeNo,
        order: &OrderSpec,
    ) -> (Vec<Answer>, Option<OrderView>) {
        let mut body = json!({
            "provider": order.provider,
            "channel": order.channel,
            "out_trade_no": trade.out_trade_no(),
            "amount": order.amount,
            "subject": "Simulated tea",
            "expires_in_seconds": order.expires_in_seconds,
        });
        if order.provider == ProviderKind::WECHAT {
            // Two WeChat apps are configured, so an order names its own.
            body["app"] = json!(if order.api_v3 {
                crate::topology::V3_APP
            } else {
                crate::topology::APP
            });
            body["client_ip"] = json!("203.0.113.7");
            if matches!(order.channel, Channel::Jsapi | Channel::MiniProgram) {
                body["openid"] = json!("o_sim_buyer");
            }
        } else if order.channel == Channel::MiniProgram {
            body["buyer_id"] = json!("2088000000000099");
        }
        let (answers, json) = self.post_retrying("/v1/orders", &body).await;
        let order = json.and_then(|j| serde_json::from_value(j).ok());
        (answers, order)
    }

    /// Looks an order up by its number (finance), when the create's answer was lost.
    pub async fn find_order(&self, trade: TradeNo) -> Option<OrderView> {
        let number = trade.out_trade_no();
        let query = [("out_trade_no", number.as_str())];
        let page: Page<OrderView> = self
            .get(&self.keys.finance, "/v1/orders", &query)
            .await
            .ok()?;
        page.data.into_iter().next()
    }

    /// Asks for a refund, retried with the same `out_refund_no` on "try again".
    pub async fn refund(&self, order_id: &str, out_refund_no: &str, amount: i64) -> Vec<Answer> {
        let body = json!({"amount": amount, "out_refund_no": out_refund_no, "reason": "simulated"});
        self.post_retrying(&format!("/v1/orders/{order_id}/refunds"), &body)
            .await
            .0
    }

    /// Asks paygate to query the provider about an order now, retried on "try again".
    pub async fn sync(&self, order_id: &str) -> Vec<Answer> {
        self.post_retrying(&format!("/v1/orders/{order_id}/sync"), &json!({}))
            .await
            .0
    }

    /// Closes an order, retried on "try again".
    pub async fn close(&self, order_id: &str) -> Vec<Answer> {
        self.post_retrying(&format!("/v1/orders/{order_id}/close"), &json!({}))
            .await
            .0
    }

    /// Plays the buyer paying `order` the way its channel's client would.
    pub async fn pay(&self, trade: TradeNo, order: Option<&OrderView>) -> Answer {
        let pay_params = order.and_then(|o| o.pay_params.as_ref());
        let provider = order.map(|o| o.provider);
        let by_number = json!({
            "provider": provider.unwrap_or(ProviderKind::WECHAT),
            "out_trade_no": trade.out_trade_no(),
        });
        let body = match pay_params.and_then(|p| p["type"].as_str()) {
            Some("alipay_order_string") => {
                json!({"order_string": pay_params.map(|p| p["order_string"].clone())})
            }
            Some("redirect_url") => {
                // The buyer's browser opens the signed gateway URL first (creating the trade).
                let url = pay_params
                    .and_then(|p| p["url"].as_str())
                    .unwrap_or_default();
                if let Err(error) = self.http.get(url).send().await {
                    return Answer::Transport(transport_error(&error));
                }
                by_number
            }
            _ if provider.is_none() => {
                return Answer::Transport("no order to pay".to_owned());
            }
            _ => by_number,
        };
        let request = self
            .http
            .post(format!("{}/sandbox/pay", self.sandbox))
            .json(&body);
        self.send(request).await.0
    }

    /// Polls the order until paygate has it paid (or later), for at most `limit`.
    pub async fn wait_until_paid(&self, order_id: &str, limit: Duration) {
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            let order: Result<OrderView, SimError> = self
                .get(&self.keys.merchant, &format!("/v1/orders/{order_id}"), &[])
                .await;
            if order.is_ok_and(|o| {
                matches!(
                    o.status,
                    OrderStatus::Paid | OrderStatus::PartiallyRefunded | OrderStatus::Refunded
                )
            }) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Arms a sandbox fault rule.
    pub async fn add_fault(&self, fault: &paygate_sandbox::Fault) -> Result<(), SimError> {
        let response = self
            .http
            .post(format!("{}/sandbox/faults", self.sandbox))
            .json(fault)
            .send()
            .await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(SimError::Sandbox(format!(
                "fault refused: {}",
                response.status()
            )))
        }
    }

    async fn get<T: DeserializeOwned>(
        &self,
        key: &str,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, SimError> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .query(query)
            .bearer_auth(key)
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            return Err(SimError::Gateway(format!("GET {path}: {status}")));
        }
        Ok(response.json().await?)
    }

    /// Every item of a finance list, following `next_cursor`.
    async fn all_pages<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>, SimError> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("limit", "500")];
            if let Some(c) = &cursor {
                query.push(("cursor", c.as_str()));
            }
            let page: Page<T> = self.get(&self.keys.finance, path, &query).await?;
            items.extend(page.data);
            match page.next_cursor {
                Some(next) if !next.is_empty() => cursor = Some(next),
                _ => return Ok(items),
            }
        }
    }

    /// Every order (finance).
    pub async fn orders(&self) -> Result<Vec<OrderView>, SimError> {
        self.all_pages("/v1/orders").await
    }

    /// An order's refunds.
    pub async fn refunds(&self, order_id: &str) -> Result<Vec<RefundView>, SimError> {
        let page: Page<RefundView> = self
            .get(
                &self.keys.merchant,
                &format!("/v1/orders/{order_id}/refunds"),
                &[],
            )
            .await?;
        Ok(page.data)
    }

    /// An order's events (finance).
    pub async fn events(&self, order_id: &str) -> Result<Vec<EventView>, SimError> {
        let page: Page<EventView> = self
            .get(
                &self.keys.finance,
                "/v1/events",
                &[("order_id", order_id), ("limit", "500")],
            )
            .await?;
        Ok(page.data)
    }

    /// Reconciles the `sim` app of `provider` for Beijing day `day` now (finance), once: a
    /// statement run is not retried, its answer is what is checked.
    pub async fn reconcile(&self, provider: ProviderKind, day: &str) -> StatementAnswer {
        let request = self
            .http
            .post(format!("{}/v1/reconciliation/runs", self.base))
            .bearer_auth(&self.keys.finance)
            .json(&json!({"app": crate::topology::APP, "provider": provider, "day": day}));
        let (answer, body) = self.send(request).await;
        let run = body
            .as_ref()
            .and_then(|b| serde_json::from_value(b["run"].clone()).ok());
        let paid = body
            .as_ref()
            .and_then(|b| serde_json::from_value(b["paid"].clone()).ok())
            .unwrap_or_default();
        StatementAnswer { answer, run, paid }
    }

    /// The runs of `provider`'s `sim` app stored for `day` (finance).
    pub async fn reconciliation_runs(
        &self,
        provider: ProviderKind,
        day: &str,
    ) -> Result<Vec<RunView>, SimError> {
        #[derive(Deserialize)]
        struct Listed {
            provider: ProviderKind,
            #[serde(flatten)]
            run: RunView,
        }
        let query = [("from", day), ("to", day), ("app", crate::topology::APP)];
        let page: Page<Listed> = self
            .get(&self.keys.finance, "/v1/reconciliation/runs", &query)
            .await?;
        Ok(page
            .data
            .into_iter()
            .filter(|l| l.provider == provider)
            .map(|l| l.run)
            .collect())
    }

    /// The differences of the stored run of `provider`'s `sim` app for `day` (finance).
    pub async fn differences(
        &self,
        provider: ProviderKind,
        day: &str,
    ) -> Result<Vec<DifferenceView>, SimError> {
        let provider = provider.to_string();
        let query = [
            ("app", crate::topology::APP),
            ("provider", provider.as_str()),
            ("day", day),
        ];
        let page: Page<DifferenceView> = self
            .get(&self.keys.finance, "/v1/reconciliation/differences", &query)
            .await?;
        Ok(page.data)
    }

    /// The anomalies finance sees.
    pub async fn anomalies(&self) -> Result<Vec<AnomalyView>, SimError> {
        self.all_pages("/v1/anomalies").await
    }
}

/// A transport error without its URL (which carries nothing useful and is long).
fn transport_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timeout".to_owned()
    } else if error.is_connect() {
        "connection refused".to_owned()
    } else {
        "broken connection".to_owned()
    }
}
