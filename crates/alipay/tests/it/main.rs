//! Integration tests: the shared vectors (every case of every file), key loading, the
//! gateway client against a local server, and the `Provider` implementation.

// Helpers outside `#[test]` functions (vector loaders, the fake gateway) panic on broken
// fixtures by design: a broken fixture must fail the test run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod bill_download;
mod bill_vectors;
mod cert_sn;
mod fake_gateway;

mod keys;
mod notify;
mod order_string;
mod provider;
mod response;
