//! paygate's HTTP gateway: the merchant API, the provider notify endpoints, finance queries,
//! and the `paygate` binary's commands.
//!
//! Handlers parse and authorise; [`payments`] and [`refunds`] decide; the store persists with
//! compare-and-set; provider crates speak the wire. Status codes are chosen in one place,
//! [`error::ApiError`].

pub mod auth;
pub mod cli;
pub mod config;
pub mod config_reference;
pub mod console;
pub mod error;
pub mod events;
#[cfg(test)]
mod generated_docs;
pub mod metrics;
mod middleware;
pub mod observed;
pub mod openapi;
pub mod payments;
pub mod providers;
pub mod reconciler;
pub mod refunds;
pub mod registry;
pub mod routes;
pub mod startup;
pub mod state;
pub mod statements;
pub mod telemetry;
pub mod throttle;
pub mod webhooks;

pub use startup::Application;
