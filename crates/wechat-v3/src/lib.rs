//! WeChat Pay merchant API v3 (JSON bodies, SHA256withRSA signatures, AES-256-GCM resources).
//!
//! The crate holds the APIv3 protocol and nothing else: no database, no HTTP server, no order
//! decisions. The protocol reference is `shared/protocol/wechat-v3.md`; the cross-SDK vectors
//! are vendored unchanged in `tests/data/vectors/wechat-v3/`.
//!
//! Design decisions:
//! * **Verify before parsing.** Responses and notifies are checked over the raw body bytes
//!   ([`verify`]) before any JSON is read: probe signatures (`WECHATPAY/SIGNTEST/`), unknown
//!   serials and timestamps more than 300 s off are refused, and the key is chosen by
//!   `Wechatpay-Serial` alone, from the WeChat Pay public key, platform certificates, or both
//!   during a migration. The clock is a parameter so tests pin it.
//! * **Sign what is sent** ([`sign`]): the URL line is the request-target exactly as it goes on
//!   the wire and the body line its exact bytes, serialised once.
//! * **RSA and AES-GCM are aws-lc-rs** ([`keys`], [`aead`]); the `rsa` crate is not used
//!   (RUSTSEC-2023-0071). Certificates are parsed with `x509-parser`, already used by
//!   `paygate-alipay`.
//! * **Every answer is verified** ([`client`]): a 2xx without a valid signature, or one that
//!   cannot be read, is an unknown outcome, never a refusal; error codes follow the retry
//!   table of the protocol notes.
//! * **Configuration is checked at start** ([`config`]): a wrong-length APIv3 key, a private
//!   key that is not the merchant certificate's, a malformed `PUB_KEY_ID_` are refused naming
//!   the setting.
//! * **Money** is integer fen on the wire and `Fen` inside ([`wire`]).
//! * **Secrets** (merchant key, APIv3 key) are redacted from `Debug` and never in errors.
//!
//! The pieces a WeChat simulator needs to play the other side (checking a request's
//! `Authorization`, signing as WeChat, sealing notifies and certificate lists) are in [`peer`].
//!
//! [`provider::WechatPayV3`] implements `paygate_core::Provider` for one app, under the provider
//! name `wechat` like v2: the API version is chosen per app.

pub mod aead;
pub mod certificates;
pub mod client;
pub mod config;
pub mod keys;
pub mod notify;
pub mod peer;
pub mod provider;
pub mod sign;
pub mod verify;
pub mod wire;

pub use provider::WechatPayV3;

use paygate_core::{Channel, Fen};

/// The channels WeChat Pay offers through APIv3 (`mini_program` and `jsapi` are both its
/// `jsapi` product).
pub const CHANNELS: [Channel; 5] = [
    Channel::MiniProgram,
    Channel::Jsapi,
    Channel::App,
    Channel::Native,
    Channel::H5,
];

/// The largest order: `amount.total` is an `int` in fen.
pub const MAX_ORDER: Fen = Fen::from_u32(i32::MAX as u32);
