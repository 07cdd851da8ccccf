//! Black-box tests of paygate-wechat, one binary: every case of every vendored vector file,
//! then the API client against a local fake WeChat server.

// Helpers outside `#[test]` functions (vector loaders, the fake WeChat server) panic on broken
// fixtures by design: a broken fixture must fail the run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bill_download;
mod bill_vectors;
mod client;
mod fake_wechat;
mod login;
mod mtls;
mod notify_vectors;
mod paysign_vectors;
mod provider;
mod refund_notify_vectors;
mod sign_vectors;
mod unifiedorder_vectors;
mod vectors;
mod xml_vectors;
