//! Black-box tests of paygate-wechat-v3, one binary: every case of every vendored vector file.

// Helpers outside `#[test]` functions (vector loaders) panic on broken fixtures by design: a
// broken fixture must fail the run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod certificate_rotation;
mod certificates_vectors;
mod client;
mod config;
mod fake_wechat;
mod notify_vectors;
mod pay_sign;
mod peer;
mod provider;
mod request_sign;
mod vectors;
mod verify_vectors;
