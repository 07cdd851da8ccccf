//! The store's test suite: one binary, every test on SQLite and (when configured) PostgreSQL.

// Helpers outside `#[test]` functions are test code too; a failed fixture should panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod audit;
mod bills;
mod connect;
mod deliveries;
mod orders;
mod reconcile;
mod refunds;
mod round_trips;
mod summary;
mod transitions;
mod writer;
