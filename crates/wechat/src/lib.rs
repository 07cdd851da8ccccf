//! WeChat Pay merchant API v2 (XML, MD5 / HMAC-SHA256) behind paygate's [`Provider`] trait.
//!
//! The crate turns paygate's requests into v2 calls and WeChat's answers and callbacks into
//! `paygate_core` values, and nothing else: no database, no HTTP server, no order decisions.
//! It serves the channels `mini_program` and `jsapi` (both `trade_type=JSAPI`), `app`, `native`
//! and `h5` (`MWEB`).
//!
//! Design decisions, each traceable to the protocol notes and the cross-library vectors
//! (`tests/data/vectors/wechat/`, copied unchanged from `shared/`):
//! * **Signing** ([`sign`]) takes strings only and signs them raw; verification is constant
//!   time and covers every received field, so fields WeChat adds later are still protected.
//! * **XML** ([`xml`]) is a strict flat codec on quick-xml: DOCTYPE/entities (XXE, billion
//!   laughs), nesting, duplicates and oversized bodies are typed errors; values are never
//!   trimmed; `]]>` is split across CDATA sections when writing.
//! * **Responses are untrusted until verified** ([`client`]): a `return_code=SUCCESS` answer
//!   whose signature does not verify, or that names another merchant, is an error.
//! * **Notifies** ([`notify`], [`refund_notify`]) choose the algorithm from the app's
//!   configuration, falling back on the signature's length because HMAC notifies often omit
//!   `sign_type`; refund notifies authenticate by strict PKCS#7 AES-256-ECB decryption.
//! * **Money** stays `Fen` until the wire; `total_fee` is an `Int`, so orders above
//!   `i32::MAX` fen are refused before anything is sent.
//! * **Times** ([`time`]) are Beijing wall-clock on the wire, UTC instants inside, whatever the
//!   server's zone.
//! * **Secrets** (API key, AppSecret, certificate key, session key) are `SecretString`s or
//!   redacted in Debug.
//!
//! The pieces a WeChat simulator needs to play the other side (signing and verifying a map,
//! the XML codec, [`notify::build_signed_xml`], [`refund_notify::encrypt_req_info`]) are public.

pub mod bill;
pub mod client;
pub mod config;
pub mod download;
pub mod fields;
pub mod login;
pub mod notify;
pub mod pay_params;
pub mod refund_notify;
pub mod settings;
pub mod sign;
pub mod time;
pub mod xml;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use paygate_core::{
    CallbackAck, CallbackOutcome, CallbackPurpose, CallbackRoute, Capabilities, Channel,
    ChannelSupport, CreatePayment, CreatedPayment, Currency, ErrorDetail, Fen, InboundCallback,
    MerchantIdentity, Notice, NotifyError, OutTradeNoRule, PayParams, PayerField, Provider,
    ProviderError, ProviderKind, RefundFacts, RefundQuery, RefundRequest, TradeFacts, TradeRef,
};

use crate::client::{ApiClient, TradeType, UnifiedOrder};
use crate::config::{ConfigError, WechatConfig};
use crate::login::LoginClient;
use crate::notify::notify_error_from_xml;
use crate::sign::ApiKey;

/// The content type of notify replies; WeChat reads only the body.
pub const ACK_CONTENT_TYPE: &str = "text/xml; charset=utf-8";

/// The channels WeChat Pay offers through API v2.
pub const CHANNELS: [Channel; 5] = [
    Channel::MiniProgram,
    Channel::Jsapi,
    Channel::App,
    Channel::Native,
    Channel::H5,
];

/// The largest order: `total_fee` is a signed 32-bit `Int` in fen.
pub const MAX_ORDER: Fen = Fen::from_u32(i32::MAX as u32);

/// `out_trade_no`: 6–32 of letters, digits and `_-|*`.
pub const OUT_TRADE_NO: OutTradeNoRule = OutTradeNoRule {
    min_len: 6,
    max_len: 32,
    extra_chars: "_-|*",
};

/// Payment notifies on `/notify/wechat/{app}`, refund notifies on `…/refund`.
pub const CALLBACK_ROUTES: &[CallbackRoute] = &[
    CallbackRoute {
        suffix: "",
        purpose: CallbackPurpose::Payment,
    },
    REFUND_ROUTE,
];

const REFUND_ROUTE: CallbackRoute = CallbackRoute {
    suffix: "/refund",
    purpose: CallbackPurpose::Refund,
};

/// What a WeChat app configured with `config` offers: its channels, where JSAPI and mini
/// programs need the buyer's openid, and every channel the buyer's IP except NATIVE when the
/// app has a `server_ip` to send instead.
pub fn capabilities(config: &WechatConfig) -> Capabilities {
    Capabilities {
        channels: config
            .channels
            .iter()
            .map(|&channel| ChannelSupport {
                channel,
                payer: matches!(channel, Channel::Jsapi | Channel::MiniProgram)
                    .then_some(PayerField::OpenId),
                client_ip_required: channel != Channel::Native || config.server_ip.is_none(),
                signs_locally: false,
            })
            .collect(),
        max_order_amount: MAX_ORDER,
        out_trade_no: OUT_TRADE_NO,
        callback_routes: CALLBACK_ROUTES,
        refund_callback: Some(REFUND_ROUTE),
    }
}

/// One configured WeChat Pay app, usable as an `Arc<dyn Provider>`.
pub struct WechatPay {
    config: WechatConfig,
    capabilities: Capabilities,
    merchant: MerchantIdentity,
    key: ApiKey,
    client: ApiClient,
    login: Arc<LoginClient>,
}

impl fmt::Debug for WechatPay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WechatPay")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl WechatPay {
    /// Validates the configuration and builds the API and login clients.
    pub fn new(config: WechatConfig) -> Result<Self, ConfigError> {
        let client = ApiClient::new(&config)?;
        let login = Arc::new(LoginClient::new(&config)?);
        Ok(Self {
            merchant: MerchantIdentity {
                app_id: config.appid.clone(),
                merchant_id: config.mch_id.clone(),
            },
            key: ApiKey::from(config.api_key.clone()),
            capabilities: capabilities(&config),
            client,
            login,
            config,
        })
    }

    /// The v2 API client, for calls the trait does not cover.
    pub fn api(&self) -> &ApiClient {
        &self.client
    }

    /// The login client: openids for JSAPI orders and the JS-SDK signature.
    pub fn login(&self) -> &LoginClient {
        &self.login
    }

    /// The login client, shared: the gateway keeps one per WeChat app whatever its API version.
    pub fn login_client(&self) -> Arc<LoginClient> {
        self.login.clone()
    }

    /// The `unifiedorder` request for a paygate payment, or why it cannot be placed.
    pub fn unified_order_for(
        &self,
        request: &CreatePayment,
    ) -> Result<UnifiedOrder, ProviderError> {
        if !self.config.channels.contains(&request.channel) {
            return Err(ProviderError::InvalidRequest(format!(
                "channel {} is not configured for this WeChat app",
                request.channel
            )));
        }
        let trade_type = match request.channel {
            Channel::MiniProgram | Channel::Jsapi => TradeType::Jsapi,
            Channel::App => TradeType::App,
            Channel::Native => TradeType::Native,
            Channel::H5 => TradeType::Mweb,
            other => {
                return Err(ProviderError::InvalidRequest(format!(
                    "WeChat Pay has no {other} channel"
                )));
            }
        };
        if request.currency != Currency::Cny {
            return Err(ProviderError::InvalidRequest(format!(
                "currency {} is not supported",
                request.currency
            )));
        }
        if request.amount > MAX_ORDER {
            return Err(ProviderError::InvalidRequest(format!(
                "{} exceeds WeChat's total_fee limit of {MAX_ORDER} fen",
                request.amount,
            )));
        }
        let ip = request
            .client_ip
            .or(match trade_type {
                TradeType::Native => self.config.server_ip,
                _ => None,
            })
            .ok_or_else(|| {
                ProviderError::InvalidRequest("spbill_create_ip: the buyer's IP is required".into())
            })?;
        let scene_info = match (trade_type, &self.config.h5_scene) {
            (TradeType::Mweb, Some(scene)) => Some(
                serde_json::json!({"h5_info": {
                    "type": "Wap",
                    "wap_url": scene.wap_url,
                    "wap_name": scene.wap_name,
                }})
                .to_string(),
            ),
            (TradeType::Mweb, None) => {
                return Err(ProviderError::Configuration(ErrorDetail::from_error(
                    ConfigError::MissingH5Scene,
                )));
            }
            _ => None,
        };
        Ok(UnifiedOrder {
            trade_type,
            body: request.subject.clone(),
            out_trade_no: request.out_trade_no.to_string(),
            total_fee: request.amount,
            fee_type: None,
            spbill_create_ip: ip.to_string(),
            notify_url: request.notify_url.clone(),
            openid: request.payer_id.clone(),
            product_id: (trade_type == TradeType::Native).then(|| request.out_trade_no.to_string()),
            scene_info,
            attach: None,
            time_start: None,
            time_expire: Some(request.expires_at),
        })
    }
}

#[async_trait]
impl Provider for WechatPay {
    fn kind(&self) -> ProviderKind {
        ProviderKind::WECHAT
    }

    fn merchant(&self) -> &MerchantIdentity {
        &self.merchant
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn check_payment_request(&self, request: &CreatePayment) -> Result<(), ProviderError> {
        self.unified_order_for(request).map(drop)
    }

    async fn create_payment(
        &self,
        request: &CreatePayment,
    ) -> Result<CreatedPayment, ProviderError> {
        let order = self.unified_order_for(request)?;
        let prepay = self.client.unified_order(&order).await?;
        let timestamp = chrono::Utc::now().timestamp();
        let nonce = pay_params::nonce_str();
        let sign_type = self.client.sign_type();
        let pay_params = match order.trade_type {
            TradeType::Jsapi => pay_params::jsapi(
                &self.config.appid,
                &prepay.prepay_id,
                &self.key,
                sign_type,
                timestamp,
                &nonce,
            ),
            TradeType::App => pay_params::app(
                &self.config.appid,
                &self.config.mch_id,
                &prepay.prepay_id,
                &self.key,
                sign_type,
                timestamp,
                &nonce,
            ),
            TradeType::Native => PayParams::CodeUrl {
                code_url: prepay.code_url.clone().unwrap_or_default(),
            },
            TradeType::Mweb => PayParams::MwebUrl {
                mweb_url: prepay.mweb_url.clone().unwrap_or_default(),
            },
        };
        Ok(CreatedPayment {
            pay_params,
            provider_trade_no: None,
        })
    }

    fn verify_callback(&self, callback: &InboundCallback<'_>) -> Result<Notice, NotifyError> {
        let fields = xml::parse(callback.body).map_err(notify_error_from_xml)?;
        if fields.contains_key("req_info") {
            let notice = refund_notify::refund_notice_from_fields(&fields, &self.key)?;
            for (field, got, ours) in [
                ("appid", &notice.appid, &self.config.appid),
                ("mch_id", &notice.mch_id, &self.config.mch_id),
            ] {
                if got.as_ref() != Some(ours) {
                    return Err(NotifyError::BadField {
                        field,
                        reason: format!("{got:?} is not this merchant's"),
                    });
                }
            }
            Ok(Notice::Refund(notice.facts))
        } else {
            let notice =
                notify::payment_notice_from_fields(fields, &self.key, self.client.sign_type())?;
            Ok(Notice::Payment(notice.facts))
        }
    }

    /// v2 reads the body only: SUCCESS or FAIL XML, sent with 200 unless the body was too
    /// large (413) or the gateway cannot take it now (503); both FAIL answers are retried.
    fn acknowledge(&self, outcome: CallbackOutcome) -> CallbackAck {
        let (status, body) = match outcome {
            // Resending a genuine notify that does not match changes nothing: stop it.
            CallbackOutcome::Accepted | CallbackOutcome::Unmatched => {
                (200, notify::SUCCESS_ACK.to_owned())
            }
            CallbackOutcome::Rejected => (200, notify::fail_ack("not accepted")),
            CallbackOutcome::TooLarge => (413, notify::fail_ack("not accepted")),
            CallbackOutcome::RetryLater => (503, notify::fail_ack("not accepted")),
        };
        CallbackAck {
            status,
            content_type: ACK_CONTENT_TYPE,
            body,
        }
    }

    async fn query_payment(&self, trade: &TradeRef) -> Result<TradeFacts, ProviderError> {
        Ok(self
            .client
            .order_query(client::TradeRef::OutTradeNo(trade.out_trade_no.as_str()))
            .await?)
    }

    async fn close_payment(&self, trade: &TradeRef) -> Result<(), ProviderError> {
        Ok(self.client.close_order(trade.out_trade_no.as_str()).await?)
    }

    async fn refund(&self, request: &RefundRequest) -> Result<RefundFacts, ProviderError> {
        Ok(self.client.refund(request).await?)
    }

    async fn query_refund(&self, query: &RefundQuery) -> Result<RefundFacts, ProviderError> {
        Ok(self.client.refund_query(query).await?)
    }

    async fn download_bill(
        &self,
        day: chrono::NaiveDate,
    ) -> Result<paygate_core::BillDownload, ProviderError> {
        self.client.download_bill(day).await
    }
}
