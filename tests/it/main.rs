//! The integration test binary: drives the real bridge (listeners on port 0, a real redb
//! store on disk in a temporary directory) the way WeCom and operators do.

mod support;

mod broker;
mod cli;
mod durability;
mod ingress;
mod ledger;
mod pipeline;
mod route;
mod vectors;
