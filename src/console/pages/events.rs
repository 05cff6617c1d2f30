//! Events: the journal, newest first, paged by (receive time, sequence number), with filters; and one event,
//! whose payload only operators see (each view is audited).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::{SignedIn, layout, trouble};
use crate::admin::AdminState;
use crate::console::{Role, audit, audit_row};
use crate::journal::EntryView;
use crate::store::JournalFilter;

const PAGE: usize = 50;

/// Filters of the events list.
#[derive(Debug, Deserialize, Default)]
pub(super) struct EventsQuery {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    app: String,
    /// RFC 3339; entries received before it (the pager's cursor).
    #[serde(default)]
    before: String,
    #[serde(default)]
    quarantined: Option<String>,
    /// The pager's cursor: the sequence number of the last event of the previous page.
    #[serde(default)]
    after_seq: Option<u64>,
}

fn some(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// `GET /console/events`.
pub(super) async fn list(
    State(st): State<AdminState>,
    Query(q): Query<EventsQuery>,
    SignedIn(session): SignedIn,
) -> Response {
    let until_ms = match some(&q.before).map(|b| b.parse::<jiff::Timestamp>()) {
        None => None,
        Some(Ok(t)) => Some(t.as_millisecond()),
        Some(Err(e)) => {
            return trouble(
                &session,
                StatusCode::BAD_REQUEST,
                &format!("`before` is not an RFC 3339 time: {e}"),
            );
        }
    };
    let filter = JournalFilter {
        kind: some(&q.kind),
        app: some(&q.app),
        since_ms: None,
        until_ms,
        quarantined_only: q.quarantined.is_some(),
        limit: PAGE,
    };
    let store = st.journal.store().clone();
    let cursor = q.after_seq;
    let page = tokio::task::spawn_blocking(move || -> Result<Vec<EntryView>, String> {
        // The cursor is an entry: continue below its (received time, sequence number), so
        // events received in the same millisecond are neither skipped nor repeated.
        let before = match cursor {
            None => None,
            Some(seq) => store
                .journal_entry(seq)
                .map_err(|e| e.to_string())?
                .map(|e| (e.record.received_at_ms, e.seq)),
        };
        store
            .journal_page(&filter, before)
            .map_err(|e| e.to_string())?
            .iter()
            .map(|e| EntryView::new(e, None).map_err(|e| e.to_string()))
            .collect()
    })
    .await;
    let views = match page {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return trouble(&session, StatusCode::SERVICE_UNAVAILABLE, &e),
        Err(e) => return trouble(&session, StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let next = (views.len() == PAGE)
        .then(|| views.last().map(|v| v.seq))
        .flatten();
    let body = html! {
        form.filters method="get" action="/console/events" {
            label { "kind"
                select name="kind" {
                    option value="" { "any" }
                    @for k in crate::ingress::JOURNAL_KINDS {
                        option value=(k) selected[q.kind == *k] { (k) }
                    }
                }
            }
            label { "app" input type="text" name="app" value=(q.app); }
            label { "received before (RFC 3339)" input type="text" name="before" value=(q.before); }
            label { "quarantined only" input type="checkbox" name="quarantined" value="1" checked[q.quarantined.is_some()]; }
            button type="submit" { "Filter" }
        }
        table id="events" {
            thead { tr { th { "#" } th { "received" } th { "app" } th { "kind" } th { "business key" } th { "state" } th { "source" } } }
            tbody {
                @for v in &views {
                    tr {
                        td { a href={ "/console/event?seq=" (v.seq) } { (v.seq) } }
                        td { time datetime=(v.received_at) { (v.received_at) } }
                        td { (v.app) } td { (v.kind) }
                        td { @match super::journey::sp_no_of(&v.kind, &v.business_key) {
                            Some(sp) => { (super::journey::link(sp)) (v.business_key.strip_prefix(sp).unwrap_or("")) },
                            None => (v.business_key),
                        } }
                        td { (v.state) @if let Some(r) = &v.quarantine_reason { " — " (r) } }
                        td { (v.source) }
                    }
                }
                @if views.is_empty() { tr { td colspan="7" .muted { "no events match" } } }
            }
        }
        @if let Some(after) = next {
            p.pager {
                a id="next-page" href={ "/console/events?kind=" (q.kind) "&app=" (q.app) "&before=" (q.before) "&after_seq=" (after) @if q.quarantined.is_some() { "&quarantined=1" } } { "Older →" }
            }
        }
    };
    layout("Events", Some(&session), "events", body).into_response()
}

/// Which event.
#[derive(Debug, Deserialize)]
pub(super) struct OneQuery {
    seq: u64,
}

/// `GET /console/event?seq=N`: one event; its payload for operators (audited).
pub(super) async fn one(
    State(st): State<AdminState>,
    Query(q): Query<OneQuery>,
    SignedIn(session): SignedIn,
) -> Response {
    let with_payload = session.principal.may(Role::Operator);
    let journal = st.journal.clone();
    let seq = q.seq;
    let view = tokio::task::spawn_blocking(move || -> Result<Option<EntryView>, String> {
        let Some(e) = journal
            .store()
            .journal_entry(seq)
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let cipher = with_payload.then(|| journal.cipher());
        EntryView::new(&e, cipher)
            .map(Some)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    let view = match view {
        Ok(Some(v)) => v,
        Ok(None) => return trouble(&session, StatusCode::NOT_FOUND, &format!("no event #{seq}")),
        Err(e) => return trouble(&session, StatusCode::SERVICE_UNAVAILABLE, &e),
    };
    if with_payload {
        audit(
            st.journal.store(),
            audit_row(
                &session.principal.name,
                "view_payload",
                &format!("event #{seq} ({})", view.business_key),
                "ok",
                "console",
            ),
        )
        .await;
    }
    let body = html! {
        table id="event" {
            tr { th { "id" } td { (view.id) } }
            tr { th { "received" } td { time datetime=(view.received_at) { (view.received_at) } } }
            tr { th { "app" } td { (view.app) } }
            tr { th { "kind" } td { (view.kind) } }
            tr { th { "business key" } td {
                (view.business_key)
                @if let Some(sp) = super::journey::sp_no_of(&view.kind, &view.business_key) { " · journey: " (super::journey::link(sp)) }
            } }
            tr { th { "state" } td { (view.state) } }
            tr { th { "source" } td { (view.source) } }
        }
        h2 { "Payload" }
        @match &view.payload {
            Some(p) => pre.payload id="payload" { (p) },
            None => p.muted { "Payload bodies are shown to operators only." },
        }
    };
    layout(&format!("Event #{seq}"), Some(&session), "events", body).into_response()
}
