//! Audit: the audit trail, newest first, paged by sequence number. Read-only: no surface
//! edits or deletes rows.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::{SignedIn, layout, time, trouble};
use crate::admin::AdminState;

const PAGE: usize = 100;

/// The pager's cursor.
#[derive(Debug, Deserialize, Default)]
pub(super) struct AuditQuery {
    before: Option<u64>,
}

/// `GET /console/audit`.
pub(super) async fn list(
    State(st): State<AdminState>,
    Query(q): Query<AuditQuery>,
    SignedIn(session): SignedIn,
) -> Response {
    let store = st.journal.store().clone();
    let rows = match tokio::task::spawn_blocking(move || store.audit_list(q.before, PAGE)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return trouble(&session, StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        Err(e) => return trouble(&session, StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let next = (rows.len() == PAGE)
        .then(|| rows.last().map(|r| r.seq))
        .flatten();
    let body = html! {
        table id="audit" {
            thead { tr { th { "#" } th { "when" } th { "who" } th { "action" } th { "target" } th { "result" } th { "via" } } }
            tbody {
                @for r in &rows {
                    tr {
                        td { (r.seq) } td { (time(r.record.at_ms)) } td { (r.record.who) }
                        td { (r.record.action) } td { (r.record.target) } td { (r.record.result) } td { (r.record.via) }
                    }
                }
                @if rows.is_empty() { tr { td colspan="7" .muted { "nothing audited yet" } } }
            }
        }
        @if let Some(before) = next {
            p.pager { a id="next-page" href={ "/console/audit?before=" (before) } { "Older →" } }
        }
    };
    layout("Audit", Some(&session), "audit", body).into_response()
}
