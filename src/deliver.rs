//! Deliver: connectors that send documents to target systems, with auth, idempotency keys
//! and typed retry decisions. Not built yet.

pub mod vendor;
