//! The integration test binary: drives the real bridge (listeners on port 0, a real redb
//! store on disk in a temporary directory) the way WeCom and operators do.

mod support;

mod at_rest;
mod broker;
mod cli;
mod conditions;
mod console;
mod console_pager;
mod crm_e2e;
mod deliver;
mod demo;
mod demo_kingdee;
mod durability;
mod e2e;
mod edge;
mod expense;
mod fault_matrix;
mod ingress;
mod ledger;
mod ledger_operator;
mod mappings;
mod operator;
mod paths;
mod pipeline;
mod probe;
mod redelivery;
mod reroute;
mod roles;
mod route;
mod stage;
mod store_faults;
mod templates;
mod vectors;
mod vendor_connectors;
mod vendor_e2e;
mod vendors;
mod vendors_crm;
mod wecom_login;
