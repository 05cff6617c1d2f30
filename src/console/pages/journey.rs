//! Journey: one approval's whole story, found by its SpNo — each callback received, the
//! lifecycle decision on it, each delivery job with every attempt, the captured voucher or
//! order number, and the writeback notifications. Without an SpNo, a search by applicant,
//! template and time range lists the forms that match.
//!
//! The callbacks come from the journal's business-key index, the jobs from the ledger's
//! SpNo index: nothing is scanned. The search reads the callbacks of the time range (found by
//! bisection) newest first and stops after [`SCAN_LIMIT`]. Attempt headers and bodies and
//! writeback messages are shown to operators only, and each such view is audited.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::{SignedIn, layout, time, trouble};
use crate::admin::AdminState;
use crate::catalog::{Action, RouteInput};
use crate::console::{Role, audit, audit_row};
use crate::record::{AttemptRecord, Delivery};
use crate::store::{FormState, StoredEntry};
use crate::wecom::event::{InboundEvent, parse_event};

/// Most callbacks a search reads (newest first) before it asks for a narrower time range.
pub(super) const SCAN_LIMIT: usize = 1_000;
/// Most forms a search lists.
const FOUND_LIMIT: usize = 100;

/// The SpNo of a journaled event or queued message, when it belongs to an approval form:
/// approval events are keyed `SpNo:SpStatus`, delivery jobs of approvals by the SpNo.
pub(super) fn sp_no_of<'a>(kind: &str, business_key: &'a str) -> Option<&'a str> {
    match kind {
        "approval_change" => business_key.split(':').next().filter(|s| !s.is_empty()),
        _ if !business_key.is_empty() && business_key.bytes().all(|b| b.is_ascii_digit()) => {
            Some(business_key)
        }
        _ => None,
    }
}

/// A link to the journey of `sp_no`.
pub(super) fn link(sp_no: &str) -> Markup {
    html! { a.journey href={ "/console/journey?sp_no=" (urlencode(sp_no)) } { (sp_no) } }
}

/// Percent-encodes a query value.
pub(super) fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The page's query: an SpNo, or search terms.
#[derive(Debug, Deserialize, Default)]
pub(super) struct JourneyQuery {
    #[serde(default)]
    sp_no: String,
    #[serde(default)]
    applicant: String,
    #[serde(default)]
    template: String,
    /// RFC 3339.
    #[serde(default)]
    since: String,
    /// RFC 3339.
    #[serde(default)]
    until: String,
}

/// One approval callback as the journey shows it.
#[derive(Debug, Clone)]
struct Callback {
    seq: u64,
    received_ms: i64,
    app: String,
    source: String,
    state: &'static str,
    /// Parsed from the decrypted callback, when it parses.
    event: Option<crate::wecom::event::ApprovalChange>,
    problem: Option<String>,
}

fn callbacks(st: &AdminState, entries: Vec<StoredEntry>) -> Vec<Callback> {
    let cipher = st.journal.cipher();
    entries
        .into_iter()
        .map(|e| {
            let state = if e.record.quarantine.is_some() {
                "quarantined"
            } else if e.published {
                "published"
            } else {
                "in outbox"
            };
            let parsed = cipher
                .open(&e.record)
                .map_err(|e| e.to_string())
                .and_then(|xml| parse_event(&xml).map_err(|e| e.to_string()));
            let (event, problem) = match parsed {
                Ok(InboundEvent::ApprovalChange(a)) => (Some(a), None),
                Ok(_) => (None, Some("not an approval event".to_string())),
                Err(e) => (None, Some(e)),
            };
            Callback {
                seq: e.seq,
                received_ms: e.record.received_at_ms,
                app: e.record.app,
                source: e.record.source,
                state,
                event,
                problem: problem.or(e.record.quarantine),
            }
        })
        .collect()
}

/// What a status number means.
fn status_name(status: u32) -> &'static str {
    match status {
        1 => "in approval",
        2 => "approved",
        3 => "rejected",
        4 => "withdrawn",
        6 => "revoked after approval",
        7 => "deleted",
        10 => "paid",
        _ => "other",
    }
}

/// The lifecycle decision on each callback, replayed in receive order the way the route
/// stage decides (`route::decide`), with the mappings the catalog routes the action to.
fn decisions(st: &AdminState, calls: &[Callback]) -> Vec<String> {
    let mut form = FormState::default();
    let catalog = &st.route.catalog;
    calls
        .iter()
        .map(|c| {
            let Some(a) = &c.event else {
                return "not routed (unreadable)".to_string();
            };
            form.last_status = a.sp_status;
            let Some(action) = crate::route::decide(&form, a.sp_status) else {
                return match a.sp_status {
                    2 => "already forwarded when first approved: not sent again".to_string(),
                    6 if form.approved_forwarded_at_ms.is_none() => {
                        "revoked, but never forwarded: nothing to reverse".to_string()
                    }
                    6 => "revocation already forwarded: not sent again".to_string(),
                    s => format!("recorded: status {s} ({}) is not forwarded", status_name(s)),
                };
            };
            let routes = catalog.routes(&RouteInput::Approval {
                app: &c.app,
                template_id: &a.template_id,
                template_name: &a.sp_name,
                action,
            });
            if routes.is_empty() {
                return format!(
                    "ignored: no mapping matches template “{}” for {}",
                    a.sp_name,
                    action.as_str()
                );
            }
            match action {
                Action::Revoked => form.revoked_forwarded_at_ms = Some(c.received_ms),
                _ => form.approved_forwarded_at_ms = Some(c.received_ms),
            }
            let to: Vec<String> = routes
                .iter()
                .map(|m| format!("{} → {}", m.name, m.connector))
                .collect();
            match action {
                Action::Revoked => {
                    format!("compensation (revoked after approval): {}", to.join(", "))
                }
                _ => format!("{}: routed to {}", action.as_str(), to.join(", ")),
            }
        })
        .collect()
}

/// A time filter: empty, RFC 3339, or an age like `90m`, `2h`, `7d` (as the CLI takes it).
pub(super) fn parse_time(s: &str, name: &str) -> Result<Option<i64>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    crate::cli::events::parse_when(s)
        .map(|t| Some(t.as_millisecond()))
        .map_err(|e| format!("`{name}`: {e}"))
}

/// `GET /console/journey`.
pub(super) async fn page(
    State(st): State<AdminState>,
    Query(q): Query<JourneyQuery>,
    SignedIn(session): SignedIn,
) -> Response {
    let sp_no = q.sp_no.trim().to_string();
    let searching = [&q.applicant, &q.template, &q.since, &q.until]
        .iter()
        .any(|s| !s.trim().is_empty());
    let form = search_form(&q);
    if !sp_no.is_empty() {
        return journey(&st, &session, &sp_no, form).await;
    }
    if !searching {
        let body = html! {
            (form)
            p.muted { "Give an SpNo (审批单号) to see its journey, or search by applicant, template and time." }
        };
        return layout("Journey", Some(&session), "journey", body).into_response();
    }
    let (since, until) = match (parse_time(&q.since, "since"), parse_time(&q.until, "until")) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(e), _) | (_, Err(e)) => return trouble(&session, StatusCode::BAD_REQUEST, &e),
    };
    let store = st.journal.store().clone();
    let entries = match tokio::task::spawn_blocking(move || {
        store.journal_entries_between(since, until, SCAN_LIMIT)
    })
    .await
    {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => return trouble(&session, StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        Err(e) => return trouble(&session, StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let scanned = entries.len();
    let approvals: Vec<StoredEntry> = entries
        .into_iter()
        .filter(|e| e.record.kind == "approval_change")
        .collect();
    let (applicant, template) = (q.applicant.trim(), q.template.trim());
    // newest callback first: the first one seen of each form is its latest state
    let mut found: Vec<Callback> = Vec::new();
    for c in callbacks(&st, approvals) {
        let Some(a) = &c.event else { continue };
        let who = a.applicant_user_id.as_deref().unwrap_or("");
        if (!applicant.is_empty() && !who.eq_ignore_ascii_case(applicant))
            || (!template.is_empty() && !a.sp_name.contains(template) && a.template_id != template)
            || found
                .iter()
                .any(|f| f.event.as_ref().is_some_and(|e| e.sp_no == a.sp_no))
        {
            continue;
        }
        found.push(c);
        if found.len() >= FOUND_LIMIT {
            break;
        }
    }
    let body = html! {
        (form)
        @if scanned >= SCAN_LIMIT {
            p.flash id="search-limited" { "Read the newest " (SCAN_LIMIT) " callbacks of this time range; narrow the range to search further back." }
        }
        table id="found" {
            thead { tr { th { "SpNo" } th { "template" } th { "applicant" } th { "latest status" } th { "last callback" } } }
            tbody {
                @for c in &found {
                    @if let Some(a) = &c.event {
                        tr {
                            td { (link(&a.sp_no)) } td { (a.sp_name) }
                            td { (a.applicant_user_id.as_deref().unwrap_or("")) }
                            td { (a.sp_status) " " span.muted { (status_name(a.sp_status)) } }
                            td { (time(c.received_ms)) }
                        }
                    }
                }
                @if found.is_empty() { tr { td colspan="5" .muted { "no approval matches" } } }
            }
        }
    };
    layout("Journey search", Some(&session), "journey", body).into_response()
}

fn search_form(q: &JourneyQuery) -> Markup {
    html! {
        form.filters id="journey-search" method="get" action="/console/journey" {
            label { "SpNo" input type="text" id="sp-no" name="sp_no" value=(q.sp_no.trim()); }
            label { "applicant (user id)" input type="text" name="applicant" value=(q.applicant); }
            label { "template (name or id)" input type="text" name="template" value=(q.template); }
            label { "since (RFC 3339, or 2h, 7d)" input type="text" name="since" value=(q.since); }
            label { "until (RFC 3339, or 2h, 7d)" input type="text" name="until" value=(q.until); }
            button.primary type="submit" id="find" { "Find" }
        }
    }
}

async fn journey(st: &AdminState, session: &super::Session, sp_no: &str, form: Markup) -> Response {
    let operator = session.principal.may(Role::Operator);
    let store = st.journal.store().clone();
    let sp = sp_no.to_string();
    let entries = match tokio::task::spawn_blocking(move || {
        store.journal_entries_of_form(&sp, crate::store::MAX_FORM_ENTRIES)
    })
    .await
    {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => {
            return trouble(session, StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
        }
        Err(e) => return trouble(session, StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let calls = callbacks(st, entries);
    let decided = decisions(st, &calls);
    let deliveries = match st.ledger.find(sp_no, operator).await {
        Ok(d) => d,
        Err(e) => return trouble(session, StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let form_state = match calls.first() {
        Some(c) => {
            let (store, app, sp) = (st.journal.store().clone(), c.app.clone(), sp_no.to_string());
            tokio::task::spawn_blocking(move || store.form_state(&app, &sp))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten()
        }
        None => None,
    };
    if operator && !deliveries.is_empty() {
        audit(
            st.journal.store(),
            audit_row(
                &session.principal.name,
                "view_payload",
                &format!("journey {sp_no}"),
                "ok",
                "console",
            ),
        )
        .await;
    }
    let latest = calls.iter().rev().find_map(|c| c.event.as_ref());
    let captured: BTreeMap<&str, &str> = deliveries
        .iter()
        .flat_map(|d| d.job.captured.iter())
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let body = html! {
        (form)
        @if calls.is_empty() && deliveries.is_empty() {
            p.flash.error id="not-found" { "Nothing is known of SpNo " (sp_no) ": no callback was journaled and no delivery recorded. Check the number, or run a reconciliation for its submit time." }
        }
        div.cards {
            div.card { div.value { (sp_no) } div.label { "SpNo" } }
            @if let Some(a) = latest {
                div.card { div.value { (a.sp_name) } div.label { "template" } }
                div.card { div.value { (a.applicant_user_id.as_deref().unwrap_or("?")) } div.label { "applicant" } }
                div.card { div.value { (a.sp_status) } div.label { "latest status: " (status_name(a.sp_status)) } }
            }
            @for (name, value) in &captured {
                div.card.captured id={ "captured-" (name) } { div.value { (value) } div.label { "captured " (name) } }
            }
        }
        @if let Some(f) = &form_state {
            p.muted id="form-state" {
                (f.events_seen) " event(s) seen. "
                @if let Some(t) = f.approved_forwarded_at_ms { "Approved forwarded at " (time(t)) ". " }
                @if let Some(t) = f.revoked_forwarded_at_ms { "Revocation forwarded at " (time(t)) "." }
            }
        }
        h2 { "Callbacks received" }
        table id="callbacks" {
            thead { tr { th { "#" } th { "received" } th { "status" } th { "change" } th { "source" } th { "journal" } th { "lifecycle decision" } } }
            tbody {
                @for (c, d) in calls.iter().zip(&decided) {
                    tr {
                        td { a href={ "/console/event?seq=" (c.seq) } { (c.seq) } }
                        td { (time(c.received_ms)) }
                        @match &c.event {
                            Some(a) => {
                                td { (a.sp_status) " " span.muted { (status_name(a.sp_status)) } }
                                td { (a.status_change_event.map(|n| n.to_string()).unwrap_or_default()) }
                            }
                            None => { td colspan="2" .muted { (c.problem.as_deref().unwrap_or("")) } }
                        }
                        td { (c.source) } td { (c.state) } td.decision { (d) }
                    }
                }
                @if calls.is_empty() { tr { td colspan="7" .muted { "no callback journaled for this SpNo" } } }
            }
        }
        h2 { "Delivery jobs" }
        @if deliveries.is_empty() { p.muted { "No delivery job: the form was not forwarded (see the decisions above)." } }
        @for d in &deliveries { (job(d, operator)) }
    };
    layout(
        &format!("Journey of {sp_no}"),
        Some(session),
        "journey",
        body,
    )
    .into_response()
}

fn job(d: &Delivery, operator: bool) -> Markup {
    let j = &d.job;
    html! {
        section.job id={ "job-" (j.key) } {
            h3 {
                (j.mapping) " → " (j.connector) " "
                span class={ "state state-" (j.state.as_str()) } { (j.state.as_str()) }
            }
            p.muted {
                "job " code { (j.key) } " · " (j.action) " · created " (time(j.created_at_ms))
                " · " (j.attempts) " attempt(s)"
                @if let Some(e) = &j.last_error { " · last error: " span.error { (e) } }
                " · " a href={ "/console/deliveries?connector=" (urlencode(&j.connector)) "&sp_no=" (urlencode(&j.business_key)) } { "in deliveries" }
            }
            @if !j.captured.is_empty() {
                p { @for (k, v) in &j.captured { strong { (k) } ": " span.captured-value { (v) } " " } }
            }
            table.attempts {
                thead { tr { th { "#" } th { "started" } th.num { "ms" } th { "request" } th { "status" } th { "classified" } th { "reason / captured" } } }
                tbody {
                    @for a in &d.attempts { (attempt(a)) }
                    @if d.attempts.is_empty() { tr { td colspan="7" .muted { "no attempt yet" } } }
                }
            }
            @if !d.writebacks.is_empty() {
                h4 { "Writeback (WeCom notifications)" }
                table.writebacks {
                    thead { tr { th { "for" } th { "state" } th.num { "sends" } th { "message id" } th { "last error" } } }
                    tbody {
                        @for w in &d.writebacks {
                            tr {
                                td { (w.kind.as_str()) } td { (w.state.as_str()) } td.num { (w.attempts) }
                                td { (w.msg_id.as_deref().unwrap_or("")) }
                                td { (w.last_error.as_deref().unwrap_or("")) @if !w.invalid.is_empty() { " invalid: " (w.invalid.join(", ")) } }
                            }
                            @if operator {
                                tr { td colspan="5" { details { summary { "message" } pre.payload { (w.message) } } } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One attempt; its headers and bodies when they were read (operators only).
fn attempt(a: &AttemptRecord) -> Markup {
    html! {
        tr {
            td { (a.number) } td { (time(a.started_at_ms)) } td.num { (a.duration_ms) }
            td { (a.method) " " code { (a.url) } }
            td { (a.status.map(|s| s.to_string()).unwrap_or_else(|| "—".into())) }
            td { (a.classification.as_str()) }
            td {
                (a.reason.as_deref().unwrap_or(""))
                @for (k, v) in &a.captured { " " strong { (k) } "=" (v) }
            }
        }
        @if let Some(p) = &a.payload {
            tr.payload-row {
                td colspan="7" {
                    details {
                        summary { "request and response (redacted)" }
                        pre.payload {
                            @for (k, v) in &p.request_headers { (k) ": " (v) "\n" }
                            "\n" (p.request_body.as_deref().unwrap_or(""))
                        }
                        pre.payload {
                            @for (k, v) in &p.response_headers { (k) ": " (v) "\n" }
                            "\n" (p.response_body.as_deref().unwrap_or(""))
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
    fn sp_numbers_come_from_approval_keys_and_numeric_job_keys_only() {
        assert_eq!(
            sp_no_of("approval_change", "202506050012:2"),
            Some("202506050012")
        );
        assert_eq!(
            sp_no_of("delivery_job", "202506050012"),
            Some("202506050012")
        );
        assert_eq!(sp_no_of("delivery_job", "create_user:zhangsan"), None);
        assert_eq!(sp_no_of("contact_change", "update_user:1"), None);
        assert_eq!(urlencode("a b&c"), "a%20b%26c");
    }

    #[test]
    fn time_filters_take_rfc3339_or_an_age() {
        assert_eq!(parse_time("", "since"), Ok(None));
        assert_eq!(
            parse_time("2025-06-05T00:00:00Z", "since"),
            Ok(Some(1_749_081_600_000))
        );
        let now = jiff::Timestamp::now().as_millisecond();
        let two_hours_ago = parse_time("2h", "since").unwrap().unwrap();
        assert!((now - 7_200_000 - two_hours_ago).abs() < 60_000);
        let e = parse_time("yesterday", "until").unwrap_err();
        assert!(e.starts_with("`until`:"), "{e}");
    }
}
