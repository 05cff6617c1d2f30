//! Stand-ins: test servers in the project that speak the real protocols of systems we cannot
//! reach from tests (WeCom's API, customers' finance systems, their token endpoints). Tests
//! and the `demo` drive the bridge against them and count what arrived at the target.

pub mod finance;
pub mod oauth;
