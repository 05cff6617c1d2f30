//! Dead letters: parked messages of a queue, filterable by reason; operators replay one or
//! all matching, after a confirmation step, and see the result on the page.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use maud::html;
use serde::Deserialize;

use super::{Page, SignedIn, layout, no_broker, operator_gate, time, trouble, unavailable};
use crate::admin::AdminState;
use crate::broker::RedriveFilter;
use crate::console::{Role, audit, audit_row};

const SHOWN: usize = 200;

/// Filters of the list, and the result of a replay just done.
#[derive(Debug, Deserialize, Default)]
pub(super) struct ListQuery {
    #[serde(default)]
    queue: String,
    #[serde(default)]
    reason: String,
    replayed: Option<usize>,
}

fn queue_or_default(q: &str) -> String {
    let q = q.trim();
    if q.is_empty() {
        crate::broker::ROUTE_QUEUE.to_string()
    } else {
        q.to_string()
    }
}

/// `GET /console/dead-letters`.
pub(super) async fn list(
    State(st): State<AdminState>,
    Query(q): Query<ListQuery>,
    SignedIn(session): SignedIn,
) -> Page {
    let queue = queue_or_default(&q.queue);
    let broker = st.broker.get().ok_or_else(|| no_broker(&session))?;
    let mut list = broker
        .dead_letters(&queue, SHOWN)
        .await
        .map_err(|e| unavailable(&session, e))?;
    let reason = q.reason.trim().to_string();
    if !reason.is_empty() {
        list.retain(|d| d.reason.contains(&reason));
    }
    let operator = session.principal.may(Role::Operator);
    let body = html! {
        @if let Some(n) = q.replayed {
            p.flash id="replay-result" { "Replayed " (n) " message(s) from queue " (queue) "." }
        }
        form.filters method="get" action="/console/dead-letters" {
            label { "queue" input type="text" name="queue" value=(queue); }
            label { "reason contains" input type="text" name="reason" value=(reason); }
            button type="submit" { "Filter" }
        }
        table id="dead-letters" {
            thead { tr { th { "message" } th { "kind" } th { "business key" } th { "app" } th { "reason" } th.num { "attempts" } th { "last failure" } @if operator { th {} } } }
            tbody {
                @for d in &list {
                    tr {
                        td { code { (d.envelope.id) } }
                        td { (d.envelope.kind) }
                        td { @match super::journey::sp_no_of(&d.envelope.kind, &d.envelope.business_key) {
                            Some(sp) => { (super::journey::link(sp)) (d.envelope.business_key.strip_prefix(sp).unwrap_or("")) },
                            None => (d.envelope.business_key),
                        } }
                        td { (d.envelope.app) }
                        td { (d.reason) } td.num { (d.attempts) } td { (time(d.last_failure_ms)) }
                        @if operator {
                            td {
                                form.inline method="post" action="/console/dead-letters/replay" {
                                    input type="hidden" name="csrf" value=(session.csrf);
                                    input type="hidden" name="queue" value=(queue);
                                    input type="hidden" name="ids" value=(d.envelope.id);
                                    button.replay type="submit" { "Replay" }
                                }
                            }
                        }
                    }
                }
                @if list.is_empty() { tr { td colspan="8" .muted { "no parked messages" } } }
            }
        }
        @if operator && !list.is_empty() {
            form method="post" action="/console/dead-letters/replay" {
                input type="hidden" name="csrf" value=(session.csrf);
                input type="hidden" name="queue" value=(queue);
                @if reason.is_empty() { input type="hidden" name="all" value="1"; }
                @else { input type="hidden" name="reason" value=(reason); }
                button id="replay-all" type="submit" { "Replay all matching…" }
            }
        }
    };
    Ok(layout("Dead letters", Some(&session), "dead-letters", body).into_response())
}

/// The replay form: one of `ids`, `reason`, `all`; `confirm` once the operator confirmed.
#[derive(Debug, Deserialize)]
pub(super) struct ReplayForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    queue: String,
    ids: Option<String>,
    reason: Option<String>,
    all: Option<String>,
    confirm: Option<String>,
}

/// `POST /console/dead-letters/replay`: asks for confirmation, then replays and shows the
/// result on the list page.
pub(super) async fn replay(
    State(st): State<AdminState>,
    SignedIn(session): SignedIn,
    Form(f): Form<ReplayForm>,
) -> Page {
    let queue = queue_or_default(&f.queue);
    let why = "Replaying needs the operator role.";
    operator_gate(&st, &session, &f.csrf, ("replay", Some(&queue)), why).await?;
    let who = session.principal.name.clone();
    let (filter, what) = match (&f.ids, &f.reason, &f.all) {
        (Some(ids), None, None) if !ids.trim().is_empty() => (
            RedriveFilter::Ids(ids.split(',').map(|s| s.trim().to_string()).collect()),
            format!("message {ids}"),
        ),
        (None, Some(r), None) if !r.trim().is_empty() => (
            RedriveFilter::ReasonContains(r.trim().to_string()),
            format!("every message whose reason contains “{}”", r.trim()),
        ),
        (None, None, Some(_)) => (RedriveFilter::All, "every parked message".to_string()),
        _ => {
            return Err(trouble(
                &session,
                StatusCode::BAD_REQUEST,
                "Give exactly one of: message ids, a reason, or all.",
            ));
        }
    };
    if f.confirm.as_deref() != Some("yes") {
        let body = html! {
            p { "Replay " strong { (what) } " of queue " strong { (queue) } "? The messages go back to the queue and are processed again." }
            form method="post" action="/console/dead-letters/replay" {
                input type="hidden" name="csrf" value=(session.csrf);
                input type="hidden" name="queue" value=(queue);
                @if let Some(ids) = &f.ids { input type="hidden" name="ids" value=(ids); }
                @if let Some(r) = &f.reason { input type="hidden" name="reason" value=(r); }
                @if f.all.is_some() { input type="hidden" name="all" value="1"; }
                input type="hidden" name="confirm" value="yes";
                button.danger id="confirm-replay" type="submit" { "Replay" }
                " "
                a href={ "/console/dead-letters?queue=" (queue) } { "Cancel" }
            }
        };
        return Ok(layout("Confirm replay", Some(&session), "dead-letters", body).into_response());
    }
    let broker = st.broker.get().ok_or_else(|| no_broker(&session))?;
    let target = format!("{queue}: {what}");
    let row = |result: &str| audit_row(&who, "replay", &target, result, "console");
    match broker.redrive(&queue, &filter).await {
        Ok(n) => {
            tracing::info!(%who, queue = %queue, redriven = n, "dead letters replayed from the console");
            audit(st.journal.store(), row(&format!("ok: {n} replayed"))).await;
            Ok(
                Redirect::to(&format!("/console/dead-letters?queue={queue}&replayed={n}"))
                    .into_response(),
            )
        }
        Err(e) => {
            audit(st.journal.store(), row(&format!("failed: {e}"))).await;
            Err(unavailable(&session, format!("Replay failed: {e}")))
        }
    }
}
