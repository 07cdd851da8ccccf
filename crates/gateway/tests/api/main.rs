//! Black-box tests: each spawns the real `paygate` server on port 0 with the embedded sandbox
//! and a fresh database (SQLite by default; PostgreSQL when `PAYGATE_TEST_DATABASE_URL` is set),
//! and talks HTTP to both. One test binary, one link.

// Test set-up fails loudly: a helper that cannot start the server should panic.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod auth;
mod config;
mod crash;
mod fake_provider;
mod finance;
mod hardening;
mod helpers;
mod latency;
mod logs;
mod metrics;
mod notify;
mod openapi;
mod operations;
mod orders;
mod reconciler;
mod refunds;
mod reliability;
mod slow_clients;
mod statements;
mod validation;
mod wechat;
mod wechat_v3;
mod wechat_v3_login;
