//! Mapping playground: pick a mapping, paste or upload a sample (a raw `getapprovaldetail`
//! response, a normalised instance, or a contact/customer record) or fetch a recent real
//! instance by its SpNo, and see the document or the refusal (its code, the field it points
//! at and the mapping's `file:line:col`), with the mapping's test cases and whether they
//! pass. It runs the mapping engine exactly as `wecom-bridge mapping test` does
//! (`map::cases::prepare_input`, `map::run`, `map::cases::run_cases`): nothing is sent to
//! any target. Operators and admins only, since samples are real payloads; fetching a real
//! instance from WeCom is audited as a payload view.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::journey::urlencode;
use super::{Page, Session, SignedIn, layout, operator_gate, refused, time, trouble};
use crate::admin::AdminState;
use crate::catalog::Mapping;
use crate::console::{Role, audit, audit_row};
use crate::map::{Refusal, cases};
use crate::wecom::event::{InboundEvent, parse_event};

/// Largest sample accepted, in bytes.
const MAX_SAMPLE: usize = 1024 * 1024;
/// Recent approvals offered as samples.
const RECENT: usize = 15;

/// `GET` query: the mapping, and optionally a real instance to fetch.
#[derive(Debug, Deserialize, Default)]
pub(super) struct PlaygroundQuery {
    #[serde(default)]
    mapping: String,
    #[serde(default)]
    sp_no: String,
    #[serde(default)]
    app: String,
}

/// `POST` form: the mapping and the sample.
#[derive(Debug, Deserialize)]
pub(super) struct TryForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    mapping: String,
    #[serde(default)]
    sample: String,
}

/// What trying the sample gave.
enum Outcome {
    Document(Value),
    Refused(Refusal),
    BadSample(String),
}

/// The `file:line:col` a refusal's message names (`(mapping …)` or `(assert at …)`).
fn refusal_at(message: &str) -> Option<&str> {
    ["(mapping ", "(assert at "].iter().find_map(|open| {
        let start = message.rfind(open)? + open.len();
        let rest = &message[start..];
        rest.find(')').map(|end| &rest[..end])
    })
}

fn find<'a>(st: &'a AdminState, name: &str) -> Option<&'a Mapping> {
    st.route.catalog.mappings.iter().find(|m| m.name == name)
}

/// Recent approval forms in the journal: (app, SpNo, template, received ms), newest first.
async fn recent(st: &AdminState) -> Vec<(String, String, String, i64)> {
    let store = st.journal.store().clone();
    let Ok(Ok(entries)) =
        tokio::task::spawn_blocking(move || store.journal_entries_between(None, None, 200)).await
    else {
        return Vec::new();
    };
    let cipher = st.journal.cipher();
    let mut out: Vec<(String, String, String, i64)> = Vec::new();
    for e in entries
        .iter()
        .filter(|e| e.record.kind == "approval_change")
    {
        let Ok(xml) = cipher.open(&e.record) else {
            continue;
        };
        let Ok(InboundEvent::ApprovalChange(a)) = parse_event(&xml) else {
            continue;
        };
        if out.iter().any(|(_, sp, _, _)| *sp == a.sp_no) {
            continue;
        }
        out.push((
            e.record.app.clone(),
            a.sp_no,
            a.sp_name,
            e.record.received_at_ms,
        ));
        if out.len() >= RECENT {
            break;
        }
    }
    out
}

/// `GET /console/playground`.
pub(super) async fn page(
    State(st): State<AdminState>,
    Query(q): Query<PlaygroundQuery>,
    SignedIn(session): SignedIn,
) -> Response {
    if !session.principal.may(Role::Operator) {
        return refused(
            &session,
            "The playground shows payloads: it needs the operator role.",
        );
    }
    let mut sample = String::new();
    let mut note = None;
    if !q.sp_no.trim().is_empty() {
        let (app, sp_no) = (q.app.trim(), q.sp_no.trim());
        let creds = st.route.apps.get(app).and_then(|a| a.credentials.clone());
        let Some(creds) = creds else {
            return trouble(
                &session,
                StatusCode::BAD_REQUEST,
                &format!(
                    "App `{app}` has no API secret (apps.{app}.secret), so its approvals cannot be fetched."
                ),
            );
        };
        match st.route.api.approval_detail(&creds, sp_no).await {
            Ok(info) => {
                let raw = serde_json::json!({ "errcode": 0, "errmsg": "ok", "info": info });
                sample = serde_json::to_string_pretty(&raw).unwrap_or_default();
                note = Some(format!(
                    "The approval detail of {sp_no}, fetched from WeCom just now."
                ));
                audit(
                    st.journal.store(),
                    audit_row(
                        &session.principal.name,
                        "view_payload",
                        &format!("playground: approval detail of {sp_no}"),
                        "ok",
                        "console",
                    ),
                )
                .await;
            }
            Err(e) => {
                return trouble(
                    &session,
                    StatusCode::BAD_GATEWAY,
                    &format!("Fetching the approval detail of {sp_no} from WeCom failed: {e}"),
                );
            }
        }
    }
    let recent = recent(&st).await;
    render(
        &st,
        &session,
        q.mapping.trim(),
        &sample,
        note,
        None,
        &recent,
    )
    .await
}

/// `POST /console/playground`: runs the mapping on the sample.
pub(super) async fn try_it(
    State(st): State<AdminState>,
    SignedIn(session): SignedIn,
    Form(f): Form<TryForm>,
) -> Page {
    // a viewer's attempt is refused without an audit row: it changes nothing
    let why = "The playground shows payloads: it needs the operator role.";
    operator_gate(&st, &session, &f.csrf, ("try_mapping", None), why).await?;
    let Some(m) = find(&st, f.mapping.trim()) else {
        return Err(trouble(
            &session,
            StatusCode::BAD_REQUEST,
            &format!("No mapping `{}`; pick one from the list.", f.mapping.trim()),
        ));
    };
    let outcome = if f.sample.len() > MAX_SAMPLE {
        Outcome::BadSample(format!(
            "the sample is {} bytes; at most {MAX_SAMPLE} are accepted",
            f.sample.len()
        ))
    } else {
        match serde_json::from_str::<Value>(&f.sample) {
            Err(e) => Outcome::BadSample(format!("the sample is not JSON: {e}")),
            Ok(raw) => match cases::prepare_input(&raw, &st.route.tz) {
                Err(e) => Outcome::BadSample(e),
                Ok(input) => match crate::map::run(&m.compiled, &input) {
                    Ok(doc) => Outcome::Document(doc),
                    Err(r) => Outcome::Refused(r),
                },
            },
        }
    };
    metrics::counter!("wecom_bridge_console_mapping_tries_total", "outcome" => match &outcome {
        Outcome::Document(_) => "document",
        Outcome::Refused(_) => "refused",
        Outcome::BadSample(_) => "bad_sample",
    })
    .increment(1);
    let recent = recent(&st).await;
    let name = m.name.clone();
    Ok(render(
        &st,
        &session,
        &name,
        &f.sample,
        None,
        Some(outcome),
        &recent,
    )
    .await)
}

async fn render(
    st: &AdminState,
    session: &Session,
    chosen: &str,
    sample: &str,
    note: Option<String>,
    outcome: Option<Outcome>,
    recent: &[(String, String, String, i64)],
) -> Response {
    let mappings = &st.route.catalog.mappings;
    let chosen = find(st, chosen).or(mappings.first());
    let cases = match chosen {
        Some(m) => {
            let (compiled, file, tz) = (m.compiled.clone(), m.file.clone(), st.route.tz.clone());
            tokio::task::spawn_blocking(move || {
                let dir = cases::cases_dir(&file);
                if !dir.is_dir() {
                    return Ok(None);
                }
                cases::run_cases(&compiled, &dir, &tz).map(Some)
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        }
        None => Ok(None),
    };
    let chosen_name = chosen.map(|m| m.name.as_str()).unwrap_or("");
    let body = html! {
        @if mappings.is_empty() {
            p.flash.error { "No mapping is loaded: add one under mappings/ (see docs/mappings.md)." }
        }
        form id="playground" method="post" action="/console/playground" {
            input type="hidden" name="csrf" value=(session.csrf);
            div.filters {
                label { "mapping"
                    select name="mapping" id="mapping" {
                        @for m in mappings {
                            option value=(m.name) selected[m.name == chosen_name] { (m.name) " → " (m.connector) }
                        }
                    }
                }
                label { "load a sample file" input type="file" id="sample-file" accept=".json,application/json"; }
                button.primary type="submit" id="try" { "Try" }
            }
            @if let Some(n) = &note { p.flash id="sample-note" { (n) } }
            label.block { "sample: a raw getapprovaldetail response, a normalised instance, or a contact/customer record (JSON)"
                textarea name="sample" id="sample" rows="16" spellcheck="false" { (sample) }
            }
        }
        p.muted { "Nothing is sent anywhere: the mapping runs here, as " code { "wecom-bridge mapping test" } " does." }
        (result(outcome.as_ref(), chosen))
        h2 { "Test cases" }
        (cases_table(chosen, &cases))
        h2 { "Recent approvals" }
        table id="recent" {
            thead { tr { th { "SpNo" } th { "template" } th { "received" } th {} } }
            tbody {
                @for (app, sp, template, at) in recent {
                    tr {
                        td { (super::journey::link(sp)) } td { (template) } td { (time(*at)) }
                        td { a.use-instance href={ "/console/playground?mapping=" (urlencode(chosen_name)) "&app=" (urlencode(app)) "&sp_no=" (urlencode(sp)) } { "use as sample" } }
                    }
                }
                @if recent.is_empty() { tr { td colspan="4" .muted { "no approval journaled yet" } } }
            }
        }
    };
    layout("Mapping playground", Some(session), "playground", body).into_response()
}

fn result(outcome: Option<&Outcome>, m: Option<&Mapping>) -> Markup {
    let file = m.map(|m| m.file.display().to_string()).unwrap_or_default();
    html! {
        @match outcome {
            None => {},
            Some(Outcome::Document(doc)) => {
                h2 { "Document" }
                p.flash id="mapped" { "The mapping built this document; nothing was sent." }
                pre.payload id="document" { (serde_json::to_string_pretty(doc).unwrap_or_default()) }
            }
            Some(Outcome::Refused(r)) => {
                h2 { "Refused" }
                div.flash.error id="refusal" {
                    p { strong id="refusal-code" { (r.code) } }
                    p id="refusal-message" { (r.message) }
                    @if let Some(f) = &r.field { p { "field: " code id="refusal-field" { (f) } } }
                    p { "at: " code id="refusal-at" { (refusal_at(&r.message).map_or(file, str::to_string)) } }
                }
            }
            Some(Outcome::BadSample(e)) => {
                h2 { "The sample cannot be used" }
                p.flash.error id="sample-error" { (e) }
            }
        }
    }
}

fn cases_table(
    m: Option<&Mapping>,
    cases: &Result<Option<Vec<cases::CaseResult>>, String>,
) -> Markup {
    html! {
        @match cases {
            Err(e) => p.flash.error { "The cases cannot be read: " (e) },
            Ok(None) => p.muted {
                "This mapping has no test cases. Add inputs with their expected documents under "
                code { (m.map(|m| cases::cases_dir(&m.file).display().to_string()).unwrap_or_default()) }
                " (see docs/mappings.md)."
            },
            Ok(Some(list)) => {
                p.muted id="cases-summary" {
                    (list.iter().filter(|c| c.failure.is_none()).count()) " passed, "
                    (list.iter().filter(|c| c.failure.is_some()).count()) " failed"
                }
                table id="cases" {
                    thead { tr { th { "case" } th { "result" } } }
                    tbody {
                        @for c in list {
                            tr {
                                td { (c.input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()) }
                                @match &c.failure {
                                    None => td.pass { "pass" },
                                    Some(why) => td.fail { "FAIL" pre.payload { (why) } },
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_position_is_taken_from_the_refusal_message() {
        assert_eq!(
            refusal_at("total: no field `x` (mapping mappings/a.toml:12:9)"),
            Some("mappings/a.toml:12:9")
        );
        assert_eq!(
            refusal_at("sums differ (assert at mappings/a.toml:40:9)"),
            Some("mappings/a.toml:40:9")
        );
        assert_eq!(refusal_at("no position"), None);
    }
}
