//! wecom-bridge: a self-hosted bridge from WeCom (企业微信) approval callbacks to the finance,
//! ERP, CRM and HR systems that act on them.
//!
//! The modules follow the data flow:
//! [`ingress`] → [`journal`] → [`broker`] → [`route`] → [`map`] → [`deliver`] → [`record`]
//! → [`writeback`],
//! with [`wecom`] (the protocol), [`config`], [`catalog`] (connectors/ and mappings/),
//! [`store`] (the only user of the embedded database), [`admin`] and [`telemetry`] beside them,
//! [`stage`] (the contract every queue stage runs on)
//! and [`app`] assembling the whole.

pub mod admin;
pub mod app;
pub mod broker;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod console;
pub mod deliver;
pub mod ingress;
pub mod journal;
pub mod map;
pub mod record;
pub mod route;
pub mod stage;
pub mod standins;
pub mod store;
pub mod telemetry;
pub mod wecom;
pub mod writeback;
