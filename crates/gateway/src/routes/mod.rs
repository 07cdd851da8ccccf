//! HTTP handlers, one module per audience.

pub mod events;
pub mod finance;
pub mod health;
pub mod notify;
pub mod orders;
pub mod statements;
pub mod wechat;
