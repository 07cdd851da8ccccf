//! WeChat Pay merchant API v2 for paygate.
pub mod client;
pub mod config;
pub mod fields;
pub mod login;
pub mod notify;
pub mod pay_params;
pub mod refund_notify;
pub mod sign;
pub mod time;
pub mod xml;
