//! Alipay (openapi `gateway.do`, RSA2) behind paygate's [`paygate_core::Provider`] trait.
//!
//! Design decisions:
//! - **RSA with aws-lc-rs only.** Signing uses the merchant's key on every order with partly
//!   client-chosen input, so it must be constant-time: the `rsa` crate is banned
//!   (RUSTSEC-2023-0071, unpatched) and is also 3–4× slower to sign. Keys are parsed once at
//!   start-up; signing runs on tokio's blocking pool, never on the reactor.
//! - **Byte-exact wire rules**, each in one module and checked against the vectors produced by
//!   the official SDKs: the string-to-sign ([`sign`]), form encoding and single decoding
//!   ([`form`]), the app-pay orderString ([`order_string`]), notify verification like
//!   `rsaCheckV1` ([`notify`]), response verification over the raw `*_response` text
//!   ([`response`]), certificate SNs ([`cert`]), China time ([`time`]).
//! - **Money is [`paygate_core::Fen`]** and becomes a yuan string only in `biz_content` and
//!   back from a verified notify or response, exactly.
//! - **Outcomes are typed**: `10000` is success, `20000` / `ACQ.SYSTEM_ERROR` / transport
//!   failures are "unknown, query first", `40004` sub-codes become typed refusals, and a
//!   response whose signature fails is untrusted, never success.
//! - The pieces the sandbox needs to play Alipay's side (signing a notify or a response,
//!   parsing an orderString, verifying a request) are public.

pub mod bill;
pub mod cert;
pub mod client;
pub mod download;
mod error;
pub mod form;
pub mod keys;
pub mod notify;
pub mod order_string;
mod provider;
pub mod request;
pub mod response;
pub mod settings;
pub mod sign;
pub mod time;

pub use error::AlipayError;
pub use provider::{
    Alipay, AlipayConfig, AlipayTrust, CALLBACK_ROUTES, CHANNELS, CertSource, DEFAULT_GATEWAY_URL,
    MAX_NOTIFY_BYTES, OUT_TRADE_NO, SANDBOX_GATEWAY_URL, capabilities,
};
