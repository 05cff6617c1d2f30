//! Deliver: connectors that send a mapped document to a target system and say, as one typed
//! [`Verdict`], what became of it.
//!
//! A connector file in `connectors/` is parsed and validated purely ([`spec`], every problem
//! with `file:line:col`), then built into a [`Connector`] with its secrets resolved
//! ([`Connector::build`]). [`Connector::send`] encodes the document ([`encode`]), applies auth
//! ([`auth`]), the idempotency carriers, the concurrency cap and rate limit ([`limits`]), sends
//! it ([`http`]) and classifies the answer ([`classify`], pure). The returned [`Attempt`]
//! carries the request and response as they may be recorded: secrets always redacted,
//! configured fields redacted, bodies capped. A connector of a vendor kind (`kingdee`,
//! `yonbip`, `u8_eai`, …) hands encoding, auth, sending and reading the answer to its
//! [`vendor::client::VendorClient`], which holds the token or session state; the rest
//! (idempotency field, dry run, limits, redaction, record) is the same for every kind.
//!
//! This module owns talking to targets. Apart from [`stage`], it must NOT touch the broker,
//! the ledger or the mapping engine: the deliver stage ([`stage`]: consume → ledger → map →
//! send → record → settle) calls it, and owns the [`circuit::Circuit`]; the stage loop owns
//! retries and settling.

pub mod auth;
pub mod circuit;
pub mod classify;
pub mod encode;
pub mod http;
pub mod limits;
pub mod predicate;
pub mod probe;
mod redact;
pub mod spec;
pub mod stage;
pub mod vendor;
pub mod xml_path;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use http::{BuildError, Connector};
pub use spec::ConnectorSpec;

/// What became of one attempt to deliver a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    /// The target accepted the document.
    Delivered,
    /// The target already had it (refused by key or business key): counts as delivered.
    Duplicate,
    /// A later attempt may succeed.
    Retryable {
        /// How long the target asked us to wait (`Retry-After`), if it said.
        after: Option<Duration>,
        /// What happened, for the record and the operator.
        reason: String,
    },
    /// Retrying will not help until someone fixes the document, mapping or connector.
    Permanent {
        /// What happened, with the target's own message when it gave one.
        reason: String,
    },
    /// The connector runs in pilot mode (`dry_run = true`): the request was prepared and
    /// recorded, nothing was sent.
    DryRun,
}

impl Verdict {
    /// Whether the document is now at the target (delivered or duplicate).
    pub fn is_delivered(&self) -> bool {
        matches!(self, Verdict::Delivered | Verdict::Duplicate)
    }

    /// A short lower-case name for metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Delivered => "delivered",
            Verdict::Duplicate => "duplicate",
            Verdict::Retryable { .. } => "retryable",
            Verdict::Permanent { .. } => "permanent",
            Verdict::DryRun => "dry_run",
        }
    }
}

/// A document to send, with its keys.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// The mapped document.
    pub document: &'a Value,
    /// The job's idempotency key (sent in the connector's idempotency header, if any).
    pub idempotency_key: &'a str,
    /// The business key (e.g. the SpNo-derived bill number the mapping put in the document).
    pub business_key: &'a str,
}

/// One attempt, as it may be recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// The outcome.
    pub verdict: Verdict,
    /// When the attempt started, Unix milliseconds.
    pub started_at_ms: i64,
    /// How long it took, including auth and waiting for a rate-limit slot.
    pub duration: Duration,
    /// The request (redacted).
    pub request: RecordedRequest,
    /// The answer (redacted), if one arrived.
    pub response: Option<RecordedResponse>,
    /// Values captured from the answer (e.g. the voucher number), by capture name.
    pub captured: BTreeMap<String, Value>,
}

/// A request as recorded: no secrets, configured fields redacted, body capped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// URL with secret query values replaced by `***`.
    pub url: String,
    /// Headers sent, secret values replaced by `***`.
    pub headers: Vec<(String, String)>,
    /// Body (capped), secrets and configured fields replaced by `***`.
    pub body: String,
    /// Whether the body was cut at the cap.
    pub body_truncated: bool,
}

/// An answer as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers received, secret values replaced by `***`.
    pub headers: Vec<(String, String)>,
    /// Body (capped), secrets and configured fields replaced by `***`.
    pub body: String,
    /// Whether the body was cut at the cap.
    pub body_truncated: bool,
}

/// Builds every connector of the catalog (resolving their secrets), keyed by name. Returns
/// every failure at once, so an operator fixes all missing secrets in one pass.
pub fn build_all(
    specs: &[ConnectorSpec],
) -> Result<BTreeMap<String, std::sync::Arc<Connector>>, Vec<BuildError>> {
    let mut built = BTreeMap::new();
    let mut errors = Vec::new();
    for spec in specs {
        match Connector::build(spec.clone()) {
            Ok(c) => {
                built.insert(spec.name.clone(), std::sync::Arc::new(c));
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(built)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn building_reports_every_missing_secret_by_name_and_never_a_value() {
        let dir = tempfile::tempdir().unwrap();
        let present = dir.path().join("present");
        std::fs::write(&present, "pw-value-1234\n").unwrap();
        let missing = dir.path().join("missing");
        let specs: Vec<ConnectorSpec> = [
            ("ok", format!("kind = \"http\"\nurl = \"http://t.example/a\"\n[auth]\nkind = \"basic\"\nusername = \"u\"\npassword = \"file:{}\"\n", present.display())),
            ("nosecret", format!("kind = \"http\"\nurl = \"http://t.example/b\"\n[auth]\nkind = \"bearer\"\ntoken = \"file:{}\"\n", missing.display())),
            ("nourl", format!("kind = \"http\"\nurl = \"file:{}\"\n", missing.display())),
        ]
        .iter()
        .map(|(name, text)| spec::parse(Path::new(name), text, name).unwrap())
        .collect();
        let errors = build_all(&specs).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(
            text[0].starts_with(
                "connector `nosecret`: auth.token: secret could not be read: cannot read"
            ),
            "{text:?}"
        );
        assert!(
            text[1].starts_with("connector `nourl`: url cannot be read:"),
            "{text:?}"
        );
        let ok = build_all(&specs[..1]).unwrap();
        assert!(!format!("{:?}", ok["ok"]).contains("pw-value-1234"));
    }
}
