//! Test servers that speak the real protocols of systems the bridge cannot reach in a test:
//! WeCom's server API now ([`wecom`]), the delivery targets (ERP, finance, HR, CRM) next.
//!
//! Each stand-in answers byte for byte as the real system does on the paths the bridge calls,
//! including its error codes and limits, so tests drive the real client code against it.
//! They are compiled into the binary (not `#[cfg(test)]`) because the `demo` command runs the
//! bridge against them. A stand-in must NOT be used on a production path, and must NOT
//! simplify the protocol it imitates: where the real system is awkward, so is the stand-in.

pub mod wecom;
