//! A connector file as it is written: the tables serde reads, with the spans that
//! [`super::parse`] points its diagnostics at. Nothing here is checked; `parse` checks it.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::{ConnectorKind, Method};
use crate::deliver::auth::AuthSpec;
use crate::deliver::encode::{Encoding, Envelope};
use crate::deliver::predicate::PredicateFile;
use crate::deliver::vendor::client;

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConnectorFile {
    pub(super) name: Option<String>,
    pub(super) kind: Spanned<ConnectorKind>,
    pub(super) url: Spanned<String>,
    #[serde(default)]
    pub(super) method: Option<Spanned<Method>>,
    #[serde(default)]
    pub(super) dry_run: bool,
    pub(super) concurrency: Option<Spanned<u32>>,
    pub(super) rate_per_sec: Option<Spanned<f64>>,
    #[serde(default)]
    pub(super) redact: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) message: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, Spanned<String>>,
    pub(super) body: Option<Spanned<BodyFile>>,
    pub(super) timeouts: Option<Spanned<TimeoutsFile>>,
    pub(super) auth: Option<Spanned<AuthSpec>>,
    pub(super) idempotency: Option<Spanned<IdempotencyFile>>,
    pub(super) success: Option<Spanned<PredicateFile>>,
    pub(super) duplicate: Option<Spanned<PredicateFile>>,
    pub(super) retryable: Option<Spanned<PredicateFile>>,
    #[serde(default)]
    pub(super) capture: BTreeMap<String, Spanned<String>>,
    pub(super) retry: Option<Spanned<RetryFile>>,
    pub(super) circuit: Option<Spanned<CircuitFile>>,
    pub(super) record: Option<RecordFile>,
    pub(super) kingdee: Option<Spanned<client::kingdee::KingdeeFile>>,
    pub(super) yonbip: Option<Spanned<client::yonbip::YonbipFile>>,
    pub(super) u8_eai: Option<Spanned<client::u8::U8File>>,
    pub(super) beisen: Option<Spanned<client::beisen::BeisenFile>>,
    pub(super) fxiaoke: Option<Spanned<client::fxiaoke::FxiaokeFile>>,
    pub(super) salesforce: Option<Spanned<client::salesforce::SalesforceFile>>,
}

/// `[body]`: how the document is encoded.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BodyFile {
    pub(super) encoding: Encoding,
    pub(super) root: Option<String>,
    pub(super) namespace: Option<String>,
    #[serde(default)]
    pub(super) namespaces: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) attributes: BTreeMap<String, String>,
    pub(super) envelope: Option<Envelope>,
    #[serde(default = "yes")]
    pub(super) declaration: bool,
}

/// `declaration` is on unless the file turns it off.
fn yes() -> bool {
    true
}

/// `[timeouts]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TimeoutsFile {
    pub(super) connect_ms: Option<u64>,
    pub(super) total_ms: Option<u64>,
}

/// `[idempotency]`: where the idempotency key travels.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IdempotencyFile {
    pub(super) header: Option<String>,
    pub(super) field: Option<String>,
}

/// `[retry]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RetryFile {
    pub(super) schedule_secs: Vec<u64>,
    pub(super) max_attempts: Option<u32>,
}

/// `[circuit]`: the circuit breaker.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CircuitFile {
    pub(super) failures: u32,
    pub(super) cool_down_secs: u64,
}

/// `[record]`: the largest body kept in the record.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RecordFile {
    pub(super) body_limit_bytes: usize,
}
