//! The WeCom protocol: callback crypto, the outer envelope, and decrypted events.
//!
//! Owns everything that is WeCom's format rather than ours, so that the rest of the bridge
//! deals in typed values. It does no network I/O for callbacks (ingress does); the API
//! client for `qyapi.weixin.qq.com` will live here too.

pub mod approval;
pub mod crypto;
pub mod envelope;
pub mod event;
