//! The WeCom protocol: callback crypto, the outer envelope, decrypted events, the server-API
//! client, and the normalised approval instance.
//!
//! Owns everything that is WeCom's format rather than ours, so that the rest of the bridge
//! deals in typed values. Callbacks are received by ingress; this module only understands
//! them. `api` calls `qyapi.weixin.qq.com`; the test server speaking the same JSON lives in
//! [`crate::standins::wecom`].

pub mod api;
pub mod approval;
pub mod crypto;
pub mod envelope;
pub mod event;
