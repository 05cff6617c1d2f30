//! Test servers that speak the real protocols of systems the bridge cannot reach in a test:
//! WeCom's server API ([`wecom`]), a finance system's voucher API ([`finance`]) and its OAuth2
//! token endpoint ([`oauth`]).
//!
//! Each stand-in answers byte for byte as the real system does on the paths the bridge calls,
//! including its error codes and limits, and records what it received, so tests drive the real
//! client code against it and count deliveries at the target. They are compiled into the binary
//! (not `#[cfg(test)]`) because the `demo` command runs the bridge against them. A stand-in must
//! NOT be used on a production path, and must NOT simplify the protocol it imitates: where the
//! real system is awkward, so is the stand-in.

pub mod finance;
pub mod oauth;
pub mod wecom;
