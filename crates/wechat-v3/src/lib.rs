//! WeChat Pay merchant API v3 (JSON bodies, SHA256withRSA signatures, AES-256-GCM resources).
//!
//! The crate holds the APIv3 protocol and nothing else: no database, no HTTP server, no order
//! decisions. The protocol reference is `shared/protocol/wechat-v3.md`; the cross-SDK vectors
//! are vendored unchanged in `tests/data/vectors/wechat-v3/`.
