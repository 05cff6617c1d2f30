//! Test servers standing in for systems we cannot reach (WeCom's API, customers' ERP, HR
//! and CRM systems). They speak the real protocols byte for byte and record what they got.

pub mod beisen;
pub mod fxiaoke;
pub mod kingdee;
pub mod salesforce;
pub mod u8;
pub mod vendor_server;
pub mod yonbip;
