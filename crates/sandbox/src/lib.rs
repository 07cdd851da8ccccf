//! paygate's sandbox: local simulators of WeChat Pay (v2 and APIv3) and Alipay that speak the real
//! protocols from the providers' side, so paygate (and any merchant) can run every flow with no
//! network access to the real providers.
//!
//! Design decisions:
//! - **Real paths, real shapes.** WeChat routes sit at `/pay/unifiedorder`, `/sns/jscode2session`
//!   …, Alipay at `/gateway.do`, so a client only swaps its base URL. Responses are the
//!   providers' XML / JSON envelopes, signed the way the providers sign them.
//! - **Conformance, not mirror-image.** Requests are verified by the providers' rules (WeChat:
//!   every field but `sign`; Alipay requests: every field but `sign`, `sign_type` included),
//!   and the tests check those rules against the vendored vectors made by the official SDKs.
//! - **One process, in memory.** Trades live behind a mutex (optionally snapshotted to a JSON
//!   file); notifies are tokio tasks on the caller's runtime that follow each provider's retry
//!   schedule divided by `time_scale`, and every delivery attempt is recorded.
//! - **Faults are data.** Rules posted to `/sandbox/faults` (or [`RunningSandbox::add_fault`])
//!   bend notifies or API answers for a provider / API / trade, a counted number of times.
//!
//! Routes: WeChat `/pay/unifiedorder`, `/pay/orderquery`, `/pay/closeorder`,
//! `/secapi/pay/refund` (plain HTTP, `mch_id` and signature still checked), `/pay/refundquery`,
//! `/sns/jscode2session`, `/sns/oauth2/access_token`, `/connect/oauth2/authorize`, `/cgi-bin/token`,
//! `/cgi-bin/ticket/getticket`, `/pay/downloadbill`; WeChat APIv3 `POST /v3/pay/transactions/{jsapi|app|h5|native}`,
//! `GET /v3/pay/transactions/out-trade-no/{no}` and `/id/{transaction_id}`, `POST …/{no}/close`,
//! `POST /v3/refund/domestic/refunds`, `GET /v3/refund/domestic/refunds/{no}`, `GET /v3/certificates`
//! (with `POST /sandbox/wechat-v3/rotate-certificate` and `/sandbox/wechat-v3/notify-signer`); Alipay `GET|POST /gateway.do` (bill download
//! URLs too, served at `GET /downloadBillFile.resource`) and `POST /sandbox/alipay/app-pay`
//! (an orderString, as the Alipay app receives it); the buyer and tests: `GET /sandbox` (HTML),
//! `POST /sandbox/pay`, `GET /sandbox/trades`, `GET /sandbox/notifies`,
//! `POST|GET|DELETE /sandbox/faults`.
//!
//! Embedding (what the gateway does for its default run):
//!
//! ```no_run
//! # async fn embed() -> Result<(), paygate_sandbox::SandboxError> {
//! use paygate_sandbox::{Sandbox, SandboxConfig};
//!
//! let mut config = SandboxConfig::new("127.0.0.1:0".parse().expect("address"));
//! config.keys_file = Some("sandbox-keys.json".into()); // beside the database
//! config.state_file = Some("sandbox-trades.json".into());
//! let sandbox = Sandbox::start(config).await?;
//! let toml = sandbox.credentials().export_toml("sandbox"); // [wechat.sandbox], [alipay.sandbox]
//! # drop(toml);
//! sandbox.stop().await;
//! # Ok(())
//! # }
//! ```

mod alipay_keys;
mod bills;
mod config;
mod credentials;
mod error;
mod faults;
mod notify;
mod routes;
mod server;
mod state;
mod trades;
mod v3_keys;

pub use alipay_keys::KeyError;
pub use config::SandboxConfig;
pub use credentials::{
    AlipayCredentials, SandboxCredentials, WechatCredentials, WechatV3Credentials,
};
pub use error::SandboxError;
pub use faults::{Fault, FaultKind, FaultTimes, NamedTimes};
pub use notify::{
    ALIPAY_ACK, ALIPAY_RETRY_SECONDS, NotifyDelivery, NotifyKind, WECHAT_ACK, WECHAT_RETRY_SECONDS,
};
pub use server::{RunningSandbox, Sandbox};
pub use trades::{AlipayTrade, Refund, Trade, TradeDetail, TradeStatus, WechatTrade};
pub use v3_keys::V3NotifySigner;
