//! Black-box tests: the sandbox runs on port 0, merchants talk to it over HTTP (the
//! paygate-alipay client; signed raw XML for WeChat), and a tiny notify receiver stands in for
//! the gateway. Time is scaled so every retry schedule runs in well under a second.

// Test code: a failed unwrap is a failed test (clippy's allow-unwrap-in-tests covers only
// `#[test]` functions, not the helpers they share).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod alipay;
mod conformance;
mod faults;
mod helpers;
mod wechat;
mod wechat_v3;
