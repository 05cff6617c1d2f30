//! Test support: connectors built in this process from a connector file's text (secrets in
//! files), and one document sent through one.

use std::path::Path;

use serde_json::Value;
use wecom_bridge::deliver::spec::{self, ConnectorSpec};
use wecom_bridge::deliver::{Attempt, Connector, Outgoing, Verdict};

/// The connector file `text` parsed as `connectors/v.toml`, `{dir}` in it standing for `dir`,
/// after each `(name, value)` of `secrets` is written as the secret file `dir/<name>`.
pub fn spec_with_secrets(dir: &Path, text: &str, secrets: &[(&str, &str)]) -> ConnectorSpec {
    for (name, value) in secrets {
        std::fs::write(dir.join(name), format!("{value}\n")).unwrap();
    }
    let text = text.replace("{dir}", &dir.display().to_string());
    spec::parse(Path::new("connectors/v.toml"), &text, "v").unwrap_or_else(|e| panic!("{e:?}"))
}

/// [`spec_with_secrets`], built into a running connector.
pub fn connector_with_secrets(dir: &Path, text: &str, secrets: &[(&str, &str)]) -> Connector {
    Connector::build(spec_with_secrets(dir, text, secrets)).unwrap_or_else(|e| panic!("{e}"))
}

/// Sends `doc` through `c` with `key` as its idempotency and business key.
pub async fn send(c: &Connector, doc: &Value, key: &str) -> Attempt {
    c.send(&Outgoing {
        document: doc,
        idempotency_key: key,
        business_key: key,
    })
    .await
}

/// Asserts that none of `secrets` shows in the attempt's record.
pub fn no_secret_in(a: &Attempt, secrets: &[&str]) {
    let text = serde_json::to_string(a).unwrap();
    for s in secrets {
        assert!(!text.contains(s), "secret {s} in the record: {text}");
    }
}

/// Asserts that the attempt's record holds header `name`, its value masked as `***`.
pub fn header_masked(a: &Attempt, name: &str) {
    let recorded = a.request.headers.iter().find(|(n, _)| n == name);
    assert_eq!(
        recorded.map(|(_, v)| v.as_str()),
        Some("***"),
        "header {name} in the record: {:?}",
        a.request.headers
    );
}

/// The reason of the attempt's permanent verdict; panics on any other verdict.
pub fn permanent_reason(a: &Attempt) -> &str {
    match &a.verdict {
        Verdict::Permanent { reason } => reason,
        v => panic!("expected permanent, got {v:?}"),
    }
}
