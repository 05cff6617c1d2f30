//! Connectors: each connector's settings as validated from `connectors/` (secrets shown as
//! `***` with the reference they are read from, never their value), and how it is doing:
//! circuit state, last success, last error, and jobs per state. Everything comes from the
//! catalog, the ledger's counters and indexes (one newest job per state, no scan) and the
//! circuit gauge the deliver stage keeps.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::{Page, SignedIn, layout, operator_gate, time, trouble};
use crate::admin::AdminState;
use crate::config::SecretRef;
use crate::console::auth::Session;
use crate::console::{Role, audit, audit_row};
use crate::deliver::ConnectorSpec;
use crate::deliver::auth::AuthSpec;
use crate::deliver::probe::ProbeReport;
use crate::record::{JobRecord, JobState, LedgerQuery};

/// How one connector is doing.
#[derive(Debug, Default)]
pub(super) struct Health {
    /// `closed`, `half-open`, `open`, or `idle` before the first send.
    pub circuit: &'static str,
    /// Jobs per state.
    pub counts: BTreeMap<&'static str, u64>,
    /// The newest delivered job.
    pub last_success: Option<JobRecord>,
    /// The newest failed job (retrying or dead).
    pub last_error: Option<JobRecord>,
}

/// Reads the circuit gauge's state per `connector` label from Prometheus text.
fn circuit_states(text: &str) -> BTreeMap<String, &'static str> {
    let gauge = crate::deliver::stage::DELIVER_CIRCUIT;
    crate::telemetry::samples_by_label(text, gauge, "connector")
        .into_iter()
        .map(|(name, value)| {
            let state = match value {
                "0" => "closed",
                "1" => "half-open",
                "2" => "open",
                _ => "unknown",
            };
            (name, state)
        })
        .collect()
}

/// The newest job of `connector` in `state`, from the (connector, state) index.
async fn newest(st: &AdminState, connector: &str, state: JobState) -> Option<JobRecord> {
    let q = LedgerQuery {
        connector: Some(connector.to_string()),
        state: Some(state),
        limit: 1,
        ..Default::default()
    };
    st.ledger.list(q).await.ok()?.jobs.into_iter().next()
}

/// How every connector of the catalog is doing, by name.
pub(super) async fn health(st: &AdminState) -> BTreeMap<String, Health> {
    let circuits = circuit_states(&crate::telemetry::metrics_handle().render());
    let counts = st.ledger.counts().await.unwrap_or_default();
    let mut out = BTreeMap::new();
    for c in &st.route.catalog.connectors {
        let mut h = Health {
            circuit: circuits.get(&c.name).copied().unwrap_or("idle"),
            ..Default::default()
        };
        for n in counts.iter().filter(|n| n.connector == c.name) {
            h.counts.insert(n.state.as_str(), n.count);
        }
        h.last_success = newest(st, &c.name, JobState::Delivered).await;
        let dead = newest(st, &c.name, JobState::Dead).await;
        let retrying = newest(st, &c.name, JobState::Retrying).await;
        h.last_error = [dead, retrying]
            .into_iter()
            .flatten()
            .max_by_key(|j| j.updated_at_ms);
        out.insert(c.name.clone(), h);
    }
    out
}

/// A secret as the console shows it: `***`, and where it is read from when that is a
/// reference (the reference is configuration, not the secret).
fn secret(r: &SecretRef) -> String {
    match r {
        SecretRef::Literal(_) => "***".to_string(),
        other => format!("*** (from {other:?})"),
    }
}

/// The endpoint: a literal URL holds no credential (validation refuses them), a reference is
/// shown as such.
fn endpoint(r: &SecretRef) -> String {
    match r {
        SecretRef::Literal(url) => url.clone(),
        other => format!("{other:?}"),
    }
}

fn auth_rows(a: &AuthSpec) -> Vec<(&'static str, String)> {
    match a {
        AuthSpec::None => vec![("auth", "none".into())],
        AuthSpec::Basic { username, password } => vec![
            ("auth", "basic".into()),
            ("user", username.clone()),
            ("password", secret(password)),
        ],
        AuthSpec::Bearer { token } => vec![("auth", "bearer".into()), ("token", secret(token))],
        AuthSpec::ApiKey {
            name,
            value,
            location,
        } => vec![
            ("auth", "API key".into()),
            ("key name", format!("{name} ({location:?})")),
            ("key", secret(value)),
        ],
        AuthSpec::Oauth2ClientCredentials {
            token_url,
            client_id,
            client_secret,
            scope,
            ..
        } => vec![
            ("auth", "OAuth2 client credentials".into()),
            ("token URL", endpoint(token_url)),
            ("client id", client_id.clone()),
            ("client secret", secret(client_secret)),
            ("scope", scope.clone().unwrap_or_default()),
        ],
        AuthSpec::HmacSha256 {
            secret: key,
            key_id,
            signature_header,
            ..
        } => vec![
            ("auth", "HMAC-SHA256 signature".into()),
            ("key id", key_id.clone().unwrap_or_default()),
            ("signing key", secret(key)),
            ("signature header", signature_header.clone()),
        ],
    }
}

fn settings(c: &ConnectorSpec) -> Markup {
    let schedule: Vec<String> = c
        .retry
        .schedule
        .iter()
        .map(|d| format!("{}s", d.as_secs()))
        .collect();
    let mut rows: Vec<(&str, String)> = vec![
        ("file", c.file.display().to_string()),
        ("kind", c.kind.as_str().into()),
        (
            "endpoint",
            format!("{} {}", c.method.as_str(), endpoint(&c.url)),
        ),
        ("body", format!("{:?}", c.body.encoding).to_lowercase()),
        (
            "timeouts",
            format!(
                "connect {:?}, total {:?}",
                c.timeouts.connect, c.timeouts.total
            ),
        ),
        ("concurrency", c.concurrency.to_string()),
        (
            "rate",
            c.rate_per_sec
                .map_or("unlimited".into(), |r| format!("{r}/s")),
        ),
        (
            "retry",
            format!(
                "{} attempts, delays {}",
                c.retry.max_attempts,
                schedule.join(", ")
            ),
        ),
        (
            "circuit",
            format!(
                "opens after {} failures, cools down {:?}",
                c.circuit.failures, c.circuit.cool_down
            ),
        ),
        (
            "idempotency",
            [
                c.idempotency.header.as_ref().map(|h| format!("header {h}")),
                c.idempotency.field.as_ref().map(|f| format!("field {f}")),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", "),
        ),
        (
            "captures",
            c.capture
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("redacted fields", c.redact.join(", ")),
        (
            "dry run",
            if c.dry_run {
                "yes: nothing is sent".into()
            } else {
                "no".into()
            },
        ),
    ];
    rows.extend(auth_rows(&c.auth));
    // header values may carry credentials: names only
    let headers: Vec<&str> = c.headers.iter().map(|(n, _)| n.as_str()).collect();
    rows.push(("static headers", headers.join(", ")));
    html! {
        table.settings {
            tbody { @for (k, v) in &rows { tr { th { (k) } td { (v) } } } }
        }
    }
}

/// `GET /console/connectors`.
pub(super) async fn page(State(st): State<AdminState>, SignedIn(session): SignedIn) -> Response {
    render(&st, &session, None).await
}

/// The form of the "test auth" button.
#[derive(Deserialize)]
pub(super) struct TestAuthForm {
    csrf: String,
    connector: String,
}

/// `POST /console/connectors/test-auth`: probes one connector's credentials at its target
/// (the `check --online` probe: a token request, a login or a harmless read; nothing is
/// delivered), operator role and up, audited, and shows the page with the result.
pub(super) async fn test_auth(
    State(st): State<AdminState>,
    SignedIn(session): SignedIn,
    Form(f): Form<TestAuthForm>,
) -> Page {
    let why = "Testing a connector's credentials needs the operator role.";
    let action = ("test_auth", Some(f.connector.as_str()));
    operator_gate(&st, &session, &f.csrf, action, why).await?;
    let who = session.principal.name.clone();
    let row = |result: &str| audit_row(&who, "test_auth", &f.connector, result, "console");
    let Some(spec) = st
        .route
        .catalog
        .connectors
        .iter()
        .find(|c| c.name == f.connector)
    else {
        return Err(trouble(
            &session,
            StatusCode::NOT_FOUND,
            &format!("No connector `{}` is configured.", f.connector),
        ));
    };
    let report = crate::deliver::probe::probe_spec(spec).await;
    let result = if report.passed() { "ok" } else { "failed" };
    audit(
        st.journal.store(),
        row(&format!("{result}: {}", report.line().trim())),
    )
    .await;
    Ok(render(&st, &session, Some(report)).await)
}

/// The page, with the result of a "test auth" probe on top when there is one.
async fn render(st: &AdminState, session: &Session, tested: Option<ProbeReport>) -> Response {
    let health = health(st).await;
    let body = html! {
        @if let Some(r) = &tested {
            p class={ "probe " (if r.passed() { "probe-ok" } else { "probe-failed" }) } id="probe-result" {
                "Test auth: " (r.line())
            }
        }
        @if st.route.catalog.connectors.is_empty() {
            p.muted { "No connector is configured: add one under connectors/ (see docs/connectors.md)." }
        }
        @for c in &st.route.catalog.connectors {
            @let h = health.get(&c.name);
            section.connector id={ "connector-" (c.name) } {
                h2 {
                    (c.name) " "
                    @if let Some(h) = h { span class={ "circuit circuit-" (h.circuit) } { "circuit " (h.circuit) } }
                }
                div.cards {
                    @for s in ["delivered", "duplicate", "retrying", "dead", "in_flight"] {
                        div.card { div.value { (h.and_then(|h| h.counts.get(s)).copied().unwrap_or(0)) } div.label { (s) } }
                    }
                }
                p {
                    "Last success: "
                    @match h.and_then(|h| h.last_success.as_ref()) {
                        Some(j) => { (time(j.last_attempt_at_ms.unwrap_or(j.updated_at_ms))) " (SpNo " (super::journey::link(&j.business_key)) ")" },
                        None => span.muted { "none yet" },
                    }
                    br;
                    "Last error: "
                    @match h.and_then(|h| h.last_error.as_ref()) {
                        Some(j) => {
                            (time(j.updated_at_ms)) " " span.error.last-error { (j.last_error.as_deref().unwrap_or(j.state.as_str())) }
                            " (SpNo " (super::journey::link(&j.business_key)) ", " (j.state.as_str()) ")"
                        },
                        None => span.muted { "none" },
                    }
                }
                @if session.principal.may(Role::Operator) {
                    form.test-auth method="post" action="/console/connectors/test-auth" {
                        input type="hidden" name="csrf" value=(session.csrf);
                        input type="hidden" name="connector" value=(c.name);
                        button type="submit" id={ "test-auth-" (c.name) } { "Test auth" }
                        " " span.muted { "asks the target for a token, a session or a harmless read; sends no document" }
                    }
                }
                (settings(c))
            }
        }
    };
    layout("Connectors", Some(session), "connectors", body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circuit_states_are_read_per_connector() {
        let text = "# TYPE wecom_bridge_deliver_circuit_state gauge\n\
            wecom_bridge_deliver_circuit_state{connector=\"finance\"} 2\n\
            wecom_bridge_deliver_circuit_state{connector=\"hr\"} 0\n";
        let m = circuit_states(text);
        assert_eq!(m.get("finance"), Some(&"open"));
        assert_eq!(m.get("hr"), Some(&"closed"));
    }

    #[test]
    fn secrets_never_show_their_value() {
        assert_eq!(secret(&SecretRef::Literal("hunter2".into())), "***");
        let s = secret(&SecretRef::parse("env:FINANCE_SECRET"));
        assert!(
            s.starts_with("***") && s.contains("env:FINANCE_SECRET"),
            "{s}"
        );
    }
}
