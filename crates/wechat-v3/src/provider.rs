//! One APIv3 app behind paygate's [`Provider`] trait.
//!
//! The provider name is `wechat`, the same as v2: the API version is a property of the app,
//! so orders, notify routes (`/notify/wechat/{app}` and `…/refund`) and the merchant API do not
//! change when an app moves from v2 to v3. Everything here delegates to [`ApiClient`] and
//! [`crate::notify`]; this module only adapts them to the trait's shapes.
//!
//! Callbacks are verified synchronously at the client's clock over the raw body and the
//! `Wechatpay-*` headers. In platform-certificate mode a notify under a serial not held yet is
//! refused (so WeChat sends it again) and one certificate download is started in the
//! background, rate-limited by the client, so the retry finds the rotated certificate.

use std::sync::Arc;

use async_trait::async_trait;
use paygate_core::{
    CallbackAck, CallbackOutcome, CallbackPurpose, CallbackRoute, Capabilities, Channel,
    ChannelSupport, CreatePayment, CreatedPayment, InboundCallback, MerchantIdentity, Notice,
    NotifyError, OutTradeNoRule, PayerField, Provider, ProviderError, ProviderKind, RefundFacts,
    RefundQuery, RefundRequest, TradeFacts, TradeRef,
};

use crate::client::{ApiClient, ApiError, CERTIFICATE_CHECK_INTERVAL};
use crate::notify::{NotifyRejection, fail_body, verify_notify};

/// `out_trade_no`: 6–32 of letters, digits and `_-|*`, as in v2.
pub const OUT_TRADE_NO: OutTradeNoRule = OutTradeNoRule {
    min_len: 6,
    max_len: 32,
    extra_chars: "_-|*",
};

const REFUND_ROUTE: CallbackRoute = CallbackRoute {
    suffix: "/refund",
    purpose: CallbackPurpose::Refund,
};

/// Payment notifies on `/notify/wechat/{app}`, refund notifies on `…/refund`, as for v2.
pub const CALLBACK_ROUTES: &[CallbackRoute] = &[
    CallbackRoute {
        suffix: "",
        purpose: CallbackPurpose::Payment,
    },
    REFUND_ROUTE,
];

/// The content type of acknowledgements (the FAIL body is JSON; an accept has no body).
pub const ACK_CONTENT_TYPE: &str = "application/json";

/// What an APIv3 app serving `channels` offers: JSAPI and mini programs need the buyer's
/// openid, every channel but NATIVE the buyer's IP (`scene_info.payer_client_ip`).
pub fn capabilities(channels: &[Channel]) -> Capabilities {
    Capabilities {
        channels: channels
            .iter()
            .map(|&channel| ChannelSupport {
                channel,
                payer: matches!(channel, Channel::Jsapi | Channel::MiniProgram)
                    .then_some(PayerField::OpenId),
                client_ip_required: channel != Channel::Native,
                signs_locally: false,
            })
            .collect(),
        max_order_amount: crate::MAX_ORDER,
        out_trade_no: OUT_TRADE_NO,
        callback_routes: CALLBACK_ROUTES,
        refund_callback: Some(REFUND_ROUTE),
    }
}

/// One configured WeChat Pay APIv3 app, usable as an `Arc<dyn Provider>`.
#[derive(Debug)]
pub struct WechatPayV3 {
    client: Arc<ApiClient>,
    merchant: MerchantIdentity,
    capabilities: Capabilities,
}

impl WechatPayV3 {
    /// The provider for the app `client` serves.
    pub fn new(client: ApiClient) -> Self {
        let app = client.app();
        Self {
            merchant: MerchantIdentity {
                app_id: app.appid.clone(),
                merchant_id: app.mchid.clone(),
            },
            capabilities: capabilities(&app.channels),
            client: Arc::new(client),
        }
    }

    /// The APIv3 client, for calls the trait does not cover (certificate refresh).
    pub fn api(&self) -> &ApiClient {
        &self.client
    }

    /// In certificate mode, starts the background task that keeps the platform certificates
    /// fresh ([`ApiClient::spawn_certificate_refresh`], checking every
    /// [`CERTIFICATE_CHECK_INTERVAL`]); it ends when this provider is dropped. `None` in
    /// public-key mode or outside a tokio runtime.
    pub fn start_certificate_refresh(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.client
            .spawn_certificate_refresh(CERTIFICATE_CHECK_INTERVAL)
    }

    /// Verifies, decrypts and parses a callback, keeping the crate's precise rejection.
    pub fn verify(&self, callback: &InboundCallback<'_>) -> Result<Notice, NotifyRejection> {
        let app = self.client.app();
        let result = verify_notify(
            callback.headers.iter().copied(),
            callback.body,
            &app.keys,
            &app.apiv3_key,
            &app.mchid,
            self.client.now(),
        );
        if let Err(NotifyRejection::Verify(error)) = &result
            && error.wants_certificate_refresh()
            && app.platform_certificates
        {
            self.refresh_in_background();
        }
        let notice = result?.notice;
        // Each notify_url is ours to choose: a payment posted to the refund route (or the
        // reverse) was not sent by WeChat for that URL.
        let expected = match notice {
            Notice::Payment(_) => CallbackPurpose::Payment,
            Notice::Refund(_) => CallbackPurpose::Refund,
        };
        if expected != callback.purpose {
            return Err(NotifyRejection::Malformed(format!(
                "a {expected:?} notify on the {:?} route",
                callback.purpose
            )));
        }
        Ok(notice)
    }

    /// Starts one rate-limited certificate download when a runtime is there to run it.
    fn refresh_in_background(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let client = self.client.clone();
        runtime.spawn(async move {
            if let Err(error) = client.refresh_after_unknown_serial().await {
                tracing::warn!(%error, "platform certificate download failed");
            }
        });
    }
}

#[async_trait]
impl Provider for WechatPayV3 {
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
        self.client
            .prepay_body(request)
            .map(drop)
            .map_err(ProviderError::from)
    }

    async fn create_payment(
        &self,
        request: &CreatePayment,
    ) -> Result<CreatedPayment, ProviderError> {
        Ok(self.client.create_payment(request).await?)
    }

    fn verify_callback(&self, callback: &InboundCallback<'_>) -> Result<Notice, NotifyError> {
        self.verify(callback).map_err(NotifyError::from)
    }

    /// APIv3 takes any 2xx as accepted, so every refusal is a 4xx/5xx with the FAIL JSON:
    /// 400 for a notify not taken, 413 for one over the limit, 500 when the gateway cannot
    /// take it now; WeChat retries all three on its schedule.
    fn acknowledge(&self, outcome: CallbackOutcome) -> CallbackAck {
        let (status, body) = match outcome {
            CallbackOutcome::Accepted => (204, String::new()),
            CallbackOutcome::Rejected => (400, fail_body("not accepted")),
            // Refused so that WeChat sends it again: APIv3 merchants are told to answer a
            // notify they could not apply with a failure, and a corrected app can take a retry.
            CallbackOutcome::Unmatched => (400, fail_body("does not match the order")),
            CallbackOutcome::TooLarge => (413, fail_body("body too large")),
            CallbackOutcome::RetryLater => (500, fail_body("try again later")),
        };
        CallbackAck {
            status,
            content_type: ACK_CONTENT_TYPE,
            body,
        }
    }

    async fn query_payment(&self, trade: &TradeRef) -> Result<TradeFacts, ProviderError> {
        let facts = match trade.provider_trade_no.as_deref().filter(|t| !t.is_empty()) {
            Some(transaction_id) => self.client.query_by_transaction_id(transaction_id).await,
            None => {
                self.client
                    .query_by_out_trade_no(trade.out_trade_no.as_str())
                    .await
            }
        }?;
        if facts.out_trade_no != trade.out_trade_no.as_str() {
            // A transaction id that names another order is an answer we cannot use.
            return Err(ApiError::Unusable(format!(
                "query for {} answered {}",
                trade.out_trade_no, facts.out_trade_no
            ))
            .into());
        }
        Ok(facts)
    }

    async fn close_payment(&self, trade: &TradeRef) -> Result<(), ProviderError> {
        Ok(self.client.close(trade.out_trade_no.as_str()).await?)
    }

    async fn refund(&self, request: &RefundRequest) -> Result<RefundFacts, ProviderError> {
        Ok(self.client.refund(request).await?)
    }

    async fn query_refund(&self, query: &RefundQuery) -> Result<RefundFacts, ProviderError> {
        Ok(self
            .client
            .query_refund(query.out_trade_no.as_str(), query.out_refund_no.as_str())
            .await?)
    }

    async fn download_bill(
        &self,
        day: chrono::NaiveDate,
    ) -> Result<paygate_core::BillDownload, ProviderError> {
        self.client.download_bill(day).await
    }
}
