//! [`Alipay`]: one configured Alipay app behind [`Provider`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use paygate_core::{
    CallbackAck, CallbackOutcome, CallbackPurpose, CallbackRoute, Capabilities, Channel,
    ChannelSupport, CreatePayment, CreatedPayment, Currency, ErrorDetail, Fen, InboundCallback,
    MerchantIdentity, Notice, NotifyError, OutTradeNoRule, PayParams, PayerField, Provider,
    ProviderError, ProviderKind, RefundFacts, RefundQuery, RefundRequest, RefundState,
    ReportedYuan, TradeFacts, TradeRef, TradeState,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::AlipayError;
use crate::cert::CertMaterial;
use crate::client::{CertSns, GatewayClient};
use crate::keys::{SigningKey, VerifyingKey};
use crate::notify::{ACK_FAILURE, ACK_SUCCESS, AlipayTradeStatus, verify_trade_notify};
use crate::order_string::{APP_PAY_METHOD, APP_PAY_PRODUCT_CODE, encode_order_string};
use crate::request::{TradeBizContent, to_biz_json};
use crate::time::{format_china_time, parse_china_time};

pub use crate::client::{DEFAULT_GATEWAY_URL, SANDBOX_GATEWAY_URL};

/// The largest notify body accepted; real ones are about 1–2 KiB.
pub const MAX_NOTIFY_BYTES: usize = 64 * 1024;

/// Where a certificate comes from: a file path, or the PEM text itself.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum CertSource {
    /// A PEM file on disk, read once at start-up.
    Path {
        /// The file.
        path: PathBuf,
    },
    /// The PEM text inline.
    Pem {
        /// The PEM text.
        pem: String,
    },
}

impl std::fmt::Debug for CertSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CertSource::Path { path } => write!(f, "CertSource::Path({})", path.display()),
            CertSource::Pem { .. } => f.write_str("CertSource::Pem(..)"),
        }
    }
}

impl CertSource {
    fn read(&self, what: &'static str) -> Result<String, AlipayError> {
        match self {
            CertSource::Path { path } => {
                std::fs::read_to_string(path).map_err(|e| AlipayError::Certificate {
                    what,
                    reason: format!("reading {}: {e}", path.display()),
                })
            }
            CertSource::Pem { pem } => Ok(pem.clone()),
        }
    }
}

/// How Alipay's signatures are checked: with the downloaded Alipay public key, or in
/// certificate mode with the three certificate files.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum AlipayTrust {
    /// Public-key mode: "支付宝公钥" as SPKI PEM or the bare base64 one-liner.
    PublicKey {
        /// The Alipay public key (not the app's own public key: a classic mix-up).
        alipay_public_key: String,
    },
    /// Certificate mode ("公钥证书").
    Certificate {
        /// `appCertPublicKey_<appid>.crt`.
        app_cert: CertSource,
        /// `alipayCertPublicKey_RSA2.crt`.
        alipay_cert: CertSource,
        /// `alipayRootCert.crt`.
        alipay_root_cert: CertSource,
    },
}

fn default_gateway_url() -> String {
    DEFAULT_GATEWAY_URL.to_owned()
}

fn default_timeout_secs() -> u64 {
    10
}

/// The configuration of one Alipay app, as it appears in paygate's config file.
#[derive(Debug, Clone, Deserialize)]
pub struct AlipayConfig {
    /// The app's APPID.
    pub app_id: String,
    /// The merchant's 2088… partner id that notifies must name as `seller_id`.
    pub seller_id: String,
    /// The app private key: PKCS#1 or PKCS#8, PEM or bare base64.
    pub app_private_key: SecretString,
    /// How Alipay's signatures are verified.
    pub trust: AlipayTrust,
    /// The gateway; [`DEFAULT_GATEWAY_URL`] unless set (e.g. to [`SANDBOX_GATEWAY_URL`]).
    #[serde(default = "default_gateway_url")]
    pub gateway_url: String,
    /// Per-request timeout in seconds.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// The channels this app is set up for.
    pub channels: Vec<Channel>,
    /// Wap pay: where the cashier's "back" button goes.
    #[serde(default)]
    pub wap_quit_url: Option<String>,
}

/// The channels Alipay offers.
pub const CHANNELS: [Channel; 5] = [
    Channel::App,
    Channel::Wap,
    Channel::Page,
    Channel::Precreate,
    Channel::MiniProgram,
];

/// `out_trade_no`: up to 64 letters, digits and underscores.
pub const OUT_TRADE_NO: OutTradeNoRule = OutTradeNoRule {
    min_len: 1,
    max_len: 64,
    extra_chars: "_",
};

/// Trade notifies (payments, and refunds as trade-status changes) on `/notify/alipay/{app}`.
pub const CALLBACK_ROUTES: &[CallbackRoute] = &[CallbackRoute {
    suffix: "",
    purpose: CallbackPurpose::Payment,
}];

/// What an Alipay app set up for `channels` offers: mini programs need the buyer's id; app
/// pay's orderString and the wap/page redirect URL are signed here and handed to the buyer's
/// app or browser (Alipay first hears of the trade when the buyer pays).
pub fn capabilities(channels: &[Channel]) -> Capabilities {
    Capabilities {
        channels: channels
            .iter()
            .map(|&channel| ChannelSupport {
                channel,
                payer: (channel == Channel::MiniProgram).then_some(PayerField::BuyerId),
                client_ip_required: false,
                signs_locally: matches!(channel, Channel::App | Channel::Wap | Channel::Page),
            })
            .collect(),
        max_order_amount: Fen::MAX_ORDER,
        out_trade_no: OUT_TRADE_NO,
        callback_routes: CALLBACK_ROUTES,
        refund_callback: None,
    }
}

/// One Alipay app behind [`Provider`], its keys parsed once.
#[derive(Debug)]
pub struct Alipay {
    merchant: MerchantIdentity,
    capabilities: Capabilities,
    client: GatewayClient,
    alipay_key: Arc<VerifyingKey>,
    wap_quit_url: Option<String>,
}

impl Alipay {
    /// Parses the keys (or certificates) and builds the client; every configuration error
    /// surfaces here, at start-up, not on the first payment.
    pub fn new(config: AlipayConfig) -> Result<Alipay, AlipayError> {
        if let Some(channel) = config.channels.iter().find(|c| !CHANNELS.contains(c)) {
            return Err(AlipayError::Config(format!(
                "Alipay has no channel {channel}"
            )));
        }
        if config.channels.is_empty() {
            return Err(AlipayError::Config("no channels configured".to_owned()));
        }
        let signing_key = Arc::new(SigningKey::parse(config.app_private_key.expose_secret())?);
        let (alipay_key, cert_sns) = match &config.trust {
            AlipayTrust::PublicKey { alipay_public_key } => {
                (VerifyingKey::parse(alipay_public_key)?, None)
            }
            AlipayTrust::Certificate {
                app_cert,
                alipay_cert,
                alipay_root_cert,
            } => {
                let material = CertMaterial::from_pems(
                    &app_cert.read("app_cert")?,
                    &alipay_cert.read("alipay_cert")?,
                    &alipay_root_cert.read("alipay_root_cert")?,
                )?;
                let sns = CertSns {
                    app_cert_sn: material.app_cert_sn,
                    alipay_root_cert_sn: material.alipay_root_cert_sn,
                    alipay_cert_sn: material.alipay_cert_sn,
                };
                (material.alipay_key, Some(sns))
            }
        };
        let alipay_key = Arc::new(alipay_key);
        let client = GatewayClient::new(
            config.gateway_url,
            config.app_id.clone(),
            signing_key,
            Arc::clone(&alipay_key),
            cert_sns,
            Duration::from_secs(config.timeout_secs),
        )?;
        Ok(Alipay {
            merchant: MerchantIdentity {
                app_id: config.app_id,
                merchant_id: config.seller_id,
            },
            capabilities: capabilities(&config.channels),
            client,
            alipay_key,
            wap_quit_url: config.wap_quit_url,
        })
    }

    /// The gateway client, for calls the trait does not cover.
    pub fn client(&self) -> &GatewayClient {
        &self.client
    }

    fn trade_biz(&self, request: &CreatePayment, product_code: &str) -> TradeBizContent {
        let mut biz = TradeBizContent::new(
            request.out_trade_no.as_str(),
            request.amount,
            &request.subject,
        );
        biz.body = request.description.clone();
        biz.product_code = Some(product_code.to_owned());
        biz.time_expire = Some(format_china_time(request.expires_at));
        biz
    }

    fn check_request(&self, request: &CreatePayment) -> Result<(), ProviderError> {
        if self.capabilities.channel(request.channel).is_none() {
            return Err(ProviderError::InvalidRequest(format!(
                "channel {} is not configured for this Alipay app",
                request.channel
            )));
        }
        if request.amount == Fen::ZERO || request.amount > Fen::MAX_ORDER {
            return Err(ProviderError::InvalidRequest(format!(
                "Alipay takes 0.01 to 100000000.00 yuan, not {}",
                request.amount.to_yuan_string()
            )));
        }
        if request.channel == Channel::MiniProgram
            && request.payer_id.as_deref().is_none_or(str::is_empty)
        {
            return Err(ProviderError::InvalidRequest(
                "Alipay mini program payments need payer_id (the buyer's id)".to_owned(),
            ));
        }
        match request.currency {
            Currency::Cny => Ok(()),
        }
    }
}

fn biz_json(value: &impl serde::Serialize) -> Result<String, ProviderError> {
    to_biz_json(value).map_err(|e| ProviderError::InvalidRequest(e.to_string()))
}

fn text(fields: &Map<String, Value>, key: &str) -> Option<String> {
    fields
        .get(key)
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn required_text(
    method: &str,
    fields: &Map<String, Value>,
    key: &str,
) -> Result<String, ProviderError> {
    text(fields, key).ok_or_else(|| {
        ProviderError::UntrustedResponse(format!("{method}: signed response lacks {key}").into())
    })
}

fn response_field_error(method: &str, error: AlipayError) -> ProviderError {
    ProviderError::UntrustedResponse(ErrorDetail::caused_by(method, error))
}

fn yuan_field(
    method: &str,
    fields: &Map<String, Value>,
    key: &'static str,
) -> Result<Option<Fen>, ProviderError> {
    text(fields, key)
        .map(|t| {
            Fen::parse_reported_yuan(&t).map_err(|e| {
                response_field_error(
                    method,
                    AlipayError::BadField {
                        field: key,
                        reason: e.to_string(),
                    },
                )
            })
        })
        .transpose()
        // Compared by value: a total between two fen amounts matches no order (a mismatch).
        .map(|reported| reported.and_then(ReportedYuan::fen))
}

fn time_field(
    method: &str,
    fields: &Map<String, Value>,
    key: &'static str,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ProviderError> {
    text(fields, key)
        .map(|t| parse_china_time(key, &t).map_err(|e| response_field_error(method, e)))
        .transpose()
}

/// mini_program payer ids: a 2088… user id goes in `buyer_id`, anything else is an open id.
fn is_alipay_user_id(payer_id: &str) -> bool {
    payer_id.len() == 16
        && payer_id.starts_with("2088")
        && payer_id.bytes().all(|b| b.is_ascii_digit())
}

fn notify_error(error: AlipayError) -> NotifyError {
    match error {
        AlipayError::MissingSignature | AlipayError::BadSignature => NotifyError::BadSignature,
        AlipayError::BadField { field, reason } => NotifyError::BadField { field, reason },
        other => NotifyError::Malformed(other.to_string()),
    }
}

#[async_trait]
impl Provider for Alipay {
    fn kind(&self) -> ProviderKind {
        ProviderKind::ALIPAY
    }

    fn merchant(&self) -> &MerchantIdentity {
        &self.merchant
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn check_payment_request(&self, request: &CreatePayment) -> Result<(), ProviderError> {
        self.check_request(request)
    }

    async fn create_payment(
        &self,
        request: &CreatePayment,
    ) -> Result<CreatedPayment, ProviderError> {
        self.check_request(request)?;
        let notify_url = Some(request.notify_url.clone());
        match request.channel {
            Channel::App => {
                let biz = biz_json(&self.trade_biz(request, APP_PAY_PRODUCT_CODE))?;
                let common = self.client.common_params(APP_PAY_METHOD, notify_url, None);
                let signed = self.client.sign(common, biz).await?;
                Ok(CreatedPayment {
                    pay_params: PayParams::AlipayOrderString {
                        order_string: encode_order_string(&signed),
                    },
                    provider_trade_no: None,
                })
            }
            Channel::Wap | Channel::Page => {
                let (method, product_code) = if request.channel == Channel::Wap {
                    ("alipay.trade.wap.pay", "QUICK_WAP_WAY")
                } else {
                    ("alipay.trade.page.pay", "FAST_INSTANT_TRADE_PAY")
                };
                let mut biz = self.trade_biz(request, product_code);
                if request.channel == Channel::Wap {
                    biz.quit_url = self.wap_quit_url.clone();
                }
                let common =
                    self.client
                        .common_params(method, notify_url, request.return_url.clone());
                let url = self.client.redirect_url(common, biz_json(&biz)?).await?;
                Ok(CreatedPayment {
                    pay_params: PayParams::RedirectUrl { url },
                    provider_trade_no: None,
                })
            }
            Channel::Precreate => {
                const METHOD: &str = "alipay.trade.precreate";
                // FACE_TO_FACE_PAYMENT is also what Alipay assumes when it is left out.
                let biz = self.trade_biz(request, "FACE_TO_FACE_PAYMENT");
                let fields = self
                    .client
                    .execute(METHOD, biz_json(&biz)?, notify_url)
                    .await?;
                Ok(CreatedPayment {
                    pay_params: PayParams::QrCode {
                        qr_code: required_text(METHOD, &fields, "qr_code")?,
                    },
                    provider_trade_no: None,
                })
            }
            Channel::MiniProgram => {
                const METHOD: &str = "alipay.trade.create";
                // `check_request` has refused a mini program payment without it.
                let payer_id = request.payer_id.as_deref().unwrap_or_default();
                let mut biz = self.trade_biz(request, "JSAPI_PAY");
                if is_alipay_user_id(payer_id) {
                    biz.buyer_id = Some(payer_id.to_owned());
                } else {
                    biz.buyer_open_id = Some(payer_id.to_owned());
                }
                let fields = self
                    .client
                    .execute(METHOD, biz_json(&biz)?, notify_url)
                    .await?;
                let trade_no = required_text(METHOD, &fields, "trade_no")?;
                Ok(CreatedPayment {
                    pay_params: PayParams::TradeNo {
                        trade_no: trade_no.clone(),
                    },
                    provider_trade_no: Some(trade_no),
                })
            }
            other => Err(ProviderError::InvalidRequest(format!(
                "Alipay has no channel {other}"
            ))),
        }
    }

    fn verify_callback(&self, callback: &InboundCallback<'_>) -> Result<Notice, NotifyError> {
        if callback.body.len() > MAX_NOTIFY_BYTES {
            return Err(NotifyError::TooLarge(callback.body.len()));
        }
        let notify = verify_trade_notify(callback.body, &self.alipay_key).map_err(notify_error)?;
        Ok(Notice::Payment(notify.to_trade_facts()))
    }

    /// Alipay reads the body only: `success`, or `failure` (retried), with 200 unless the body
    /// was too large (413) or the gateway cannot take it now (503).
    fn acknowledge(&self, outcome: CallbackOutcome) -> CallbackAck {
        let (status, body) = match outcome {
            // Resending a genuine notify that does not match changes nothing: stop it.
            CallbackOutcome::Accepted | CallbackOutcome::Unmatched => (200, ACK_SUCCESS),
            CallbackOutcome::Rejected => (200, ACK_FAILURE),
            CallbackOutcome::TooLarge => (413, ACK_FAILURE),
            CallbackOutcome::RetryLater => (503, ACK_FAILURE),
        };
        CallbackAck {
            status,
            content_type: "text/plain",
            body: body.to_owned(),
        }
    }

    async fn query_payment(&self, trade: &TradeRef) -> Result<TradeFacts, ProviderError> {
        const METHOD: &str = "alipay.trade.query";
        let biz = json!({ "out_trade_no": trade.out_trade_no.as_str() }).to_string();
        let fields = self.client.execute(METHOD, biz, None).await?;
        let status_text = required_text(METHOD, &fields, "trade_status")?;
        let status =
            AlipayTradeStatus::parse(&status_text).map_err(|e| response_field_error(METHOD, e))?;
        let state: TradeState = status.into();
        Ok(TradeFacts {
            provider: ProviderKind::ALIPAY,
            out_trade_no: text(&fields, "out_trade_no")
                .unwrap_or_else(|| trade.out_trade_no.to_string()),
            provider_trade_no: text(&fields, "trade_no"),
            state,
            amount: yuan_field(METHOD, &fields, "total_amount")?,
            currency: Currency::Cny,
            // The query response names neither app nor seller, but it is signed by Alipay and
            // answers a query our app signed, so it speaks for our app and seller.
            app_id: Some(self.merchant.app_id.clone()),
            merchant_id: Some(self.merchant.merchant_id.clone()),
            payer_id: text(&fields, "buyer_user_id").or_else(|| text(&fields, "buyer_open_id")),
            paid_at: match state {
                TradeState::Paid => time_field(METHOD, &fields, "send_pay_date")?,
                _ => None,
            },
        })
    }

    async fn close_payment(&self, trade: &TradeRef) -> Result<(), ProviderError> {
        let biz = json!({ "out_trade_no": trade.out_trade_no.as_str() }).to_string();
        self.client.execute("alipay.trade.close", biz, None).await?;
        Ok(())
    }

    async fn refund(&self, request: &RefundRequest) -> Result<RefundFacts, ProviderError> {
        const METHOD: &str = "alipay.trade.refund";
        let mut biz = json!({
            "out_trade_no": request.out_trade_no.as_str(),
            "refund_amount": request.refund_amount.to_yuan_string(),
            // The idempotency key: a retry with the same out_request_no never refunds twice.
            "out_request_no": request.out_refund_no.as_str(),
        });
        if let Some(trade_no) = &request.provider_trade_no {
            biz["trade_no"] = Value::String(trade_no.clone());
        }
        if let Some(reason) = &request.reason {
            biz["refund_reason"] = Value::String(reason.clone());
        }
        let fields = self.client.execute(METHOD, biz.to_string(), None).await?;
        Ok(RefundFacts {
            out_trade_no: request.out_trade_no.to_string(),
            out_refund_no: request.out_refund_no.to_string(),
            provider_refund_id: None,
            // `refund_fee` in the response is the trade's cumulative refund, not this one's.
            amount: Some(request.refund_amount),
            state: RefundState::Succeeded,
            succeeded_at: time_field(METHOD, &fields, "gmt_refund_pay")?,
        })
    }

    async fn query_refund(&self, query: &RefundQuery) -> Result<RefundFacts, ProviderError> {
        const METHOD: &str = "alipay.trade.fastpay.refund.query";
        let biz = json!({
            "out_trade_no": query.out_trade_no.as_str(),
            "out_request_no": query.out_refund_no.as_str(),
        })
        .to_string();
        let fields = self.client.execute(METHOD, biz, None).await?;
        let amount = yuan_field(METHOD, &fields, "refund_amount")?;
        // Current docs: REFUND_SUCCESS means refunded. Older responses carry no status and
        // mean "refunded" by returning the refund at all; no refund data means none happened.
        let state = match (text(&fields, "refund_status").as_deref(), amount) {
            (Some("REFUND_SUCCESS"), _) | (None, Some(_)) => RefundState::Succeeded,
            (Some(_), _) => RefundState::Processing,
            (None, None) => RefundState::NotFound,
        };
        Ok(RefundFacts {
            out_trade_no: query.out_trade_no.to_string(),
            out_refund_no: query.out_refund_no.to_string(),
            provider_refund_id: None,
            amount,
            state,
            succeeded_at: time_field(METHOD, &fields, "gmt_refund_pay")?,
        })
    }

    async fn download_bill(
        &self,
        day: chrono::NaiveDate,
    ) -> Result<paygate_core::BillDownload, ProviderError> {
        self.client.download_bill(day).await
    }
}
