//! WeChat Pay merchant API v2 for paygate.
pub mod sign;
pub mod xml;
