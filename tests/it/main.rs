//! The integration test binary: drives the real bridge (listeners on port 0, a real redb
//! store on disk in a temporary directory) the way WeCom and operators do.

mod support;

mod at_rest;
mod broker;
mod cli;
mod conditions;
mod console;
mod console_pager;
mod deliver;
mod demo;
mod durability;
mod e2e;
mod edge;
mod expense;
mod fault_matrix;
mod ingress;
mod ledger;
mod mappings;
mod operator;
mod paths;
mod pipeline;
mod redelivery;
mod reroute;
mod roles;
mod route;
mod stage;
mod store_faults;
mod vectors;
mod vendors;
mod wecom_login;
