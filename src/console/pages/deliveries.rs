//! Deliveries: the ledger's jobs, filterable by connector, state, time and SpNo, paged with
//! the ledger's cursor (every combination is read from an index, never scanned). Operators
//! replay one dead job, or every dead job matching the filter, after a confirmation step;
//! the replay redrives the job's parked message on `deliver.<connector>` exactly as
//! `POST /admin/replay` and `wecom-bridge replay` do, and is audited.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use maud::{Markup, html};
use serde::Deserialize;

use super::journey::{link, urlencode};
use super::{Page, SignedIn, layout, no_broker, operator_gate, time, trouble, unavailable};
use crate::admin::AdminState;
use crate::broker::RedriveFilter;
use crate::console::{Role, audit, audit_row};
use crate::record::{ALL_STATES, Cursor, JobState, LedgerQuery};

const PAGE: usize = 50;
/// Most dead jobs one "replay all matching" redrives.
const MAX_REPLAY: usize = 10_000;
/// Message ids per redrive call.
const REDRIVE_CHUNK: usize = 500;

/// The filters (shared by the list and the replay form).
#[derive(Debug, Deserialize, Default, Clone)]
pub(super) struct Filter {
    #[serde(default)]
    connector: String,
    #[serde(default)]
    state: String,
    /// RFC 3339.
    #[serde(default)]
    since: String,
    /// RFC 3339.
    #[serde(default)]
    until: String,
    #[serde(default)]
    sp_no: String,
}

impl Filter {
    /// The ledger query of this filter (in `state` if given, else the filter's own).
    fn query(&self, state: Option<JobState>) -> Result<LedgerQuery, String> {
        let t = super::journey::parse_time;
        let own = match self.state.trim() {
            "" => None,
            s => Some(s.parse::<JobState>().map_err(|e| e.to_string())?),
        };
        let some = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
        Ok(LedgerQuery {
            business_key: some(&self.sp_no),
            connector: some(&self.connector),
            state: state.or(own),
            since_ms: t(&self.since, "since")?,
            until_ms: t(&self.until, "until")?,
            cursor: None,
            limit: PAGE,
        })
    }

    /// The filter as query parameters.
    fn params(&self) -> String {
        format!(
            "connector={}&state={}&since={}&until={}&sp_no={}",
            urlencode(self.connector.trim()),
            urlencode(self.state.trim()),
            urlencode(self.since.trim()),
            urlencode(self.until.trim()),
            urlencode(self.sp_no.trim())
        )
    }

    /// The filter as hidden form fields.
    fn hidden(&self) -> Markup {
        html! {
            input type="hidden" name="connector" value=(self.connector.trim());
            input type="hidden" name="since" value=(self.since.trim());
            input type="hidden" name="until" value=(self.until.trim());
            input type="hidden" name="sp_no" value=(self.sp_no.trim());
        }
    }
}

/// The list's query: the filter, the pager's cursor, and the result of a replay just done.
#[derive(Debug, Deserialize, Default)]
pub(super) struct ListQuery {
    #[serde(flatten)]
    filter: Filter,
    #[serde(default)]
    cursor: String,
    /// Numbers as text: `serde(flatten)` hands every value over as a string.
    replayed: Option<String>,
    asked: Option<String>,
}

/// `GET /console/deliveries`.
pub(super) async fn list(
    State(st): State<AdminState>,
    Query(q): Query<ListQuery>,
    SignedIn(session): SignedIn,
) -> Page {
    let bad = |e: String| trouble(&session, StatusCode::BAD_REQUEST, &e);
    let mut query = q.filter.query(None).map_err(bad)?;
    if !q.cursor.trim().is_empty() {
        query.cursor = Some(q.cursor.trim().parse::<Cursor>().map_err(bad)?);
    }
    let page = st
        .ledger
        .list(query)
        .await
        .map_err(|e| unavailable(&session, e))?;
    let operator = session.principal.may(Role::Operator);
    let f = &q.filter;
    let connectors: Vec<&str> = st
        .route
        .catalog
        .connectors
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let body = html! {
        @if let Some(n) = q.replayed.as_deref().and_then(|n| n.parse::<usize>().ok()) {
            p.flash id="replay-result" {
                "Replayed " (n) " dead job(s)"
                @if let Some(asked) = q.asked.as_deref().and_then(|a| a.parse::<usize>().ok()).filter(|a| *a != n) {
                    " of " (asked) " asked; the others were not parked in the broker (already replayed, or being retried)"
                }
                ". They are being delivered again; reload to follow them."
            }
        }
        form.filters method="get" action="/console/deliveries" {
            label { "connector"
                select name="connector" {
                    option value="" { "any" }
                    @for c in &connectors { option value=(c) selected[f.connector == *c] { (c) } }
                }
            }
            label { "state"
                select name="state" {
                    option value="" { "any" }
                    @for s in ALL_STATES { option value=(s.as_str()) selected[f.state == s.as_str()] { (s.as_str()) } }
                }
            }
            label { "since (RFC 3339, or 2h, 7d)" input type="text" name="since" value=(f.since); }
            label { "until (RFC 3339, or 2h, 7d)" input type="text" name="until" value=(f.until); }
            label { "SpNo" input type="text" name="sp_no" value=(f.sp_no); }
            button type="submit" id="filter" { "Filter" }
        }
        table id="deliveries" {
            thead { tr {
                th { "created" } th { "SpNo" } th { "connector" } th { "mapping" } th { "action" }
                th { "state" } th.num { "attempts" } th { "captured" } th { "last error" }
                @if operator { th {} }
            } }
            tbody {
                @for j in &page.jobs {
                    tr id={ "row-" (j.key) } {
                        td { (time(j.created_at_ms)) }
                        td { (link(&j.business_key)) }
                        td { (j.connector) } td { (j.mapping) } td { (j.action) }
                        td { span class={ "state state-" (j.state.as_str()) } { (j.state.as_str()) } }
                        td.num { (j.attempts) }
                        td { @for (k, v) in &j.captured { (k) "=" (v) " " } }
                        td { (j.last_error.as_deref().unwrap_or("")) }
                        @if operator {
                            td {
                                @if j.state == JobState::Dead {
                                    form.inline method="post" action="/console/deliveries/replay" {
                                        input type="hidden" name="csrf" value=(session.csrf);
                                        input type="hidden" name="key" value=(j.key);
                                        button.replay type="submit" { "Replay" }
                                    }
                                }
                            }
                        }
                    }
                }
                @if page.jobs.is_empty() { tr { td colspan="10" .muted { "no delivery matches" } } }
            }
        }
        @if let Some(next) = &page.next {
            p.pager { a id="next-page" href={ "/console/deliveries?" (f.params()) "&cursor=" (urlencode(&next.to_string())) } { "Older →" } }
        }
        @if operator && page.jobs.iter().any(|j| j.state == JobState::Dead) {
            form method="post" action="/console/deliveries/replay" {
                input type="hidden" name="csrf" value=(session.csrf);
                input type="hidden" name="all" value="1";
                (f.hidden())
                button id="replay-all" type="submit" { "Replay every dead job matching…" }
            }
        }
    };
    Ok(layout("Deliveries", Some(&session), "deliveries", body).into_response())
}

/// The replay form: one job `key`, or `all` dead jobs matching the filter; `confirm` once
/// the operator confirmed.
#[derive(Debug, Deserialize)]
pub(super) struct ReplayForm {
    #[serde(default)]
    csrf: String,
    key: Option<String>,
    all: Option<String>,
    confirm: Option<String>,
    #[serde(flatten)]
    filter: Filter,
}

/// `POST /console/deliveries/replay`.
pub(super) async fn replay(
    State(st): State<AdminState>,
    SignedIn(session): SignedIn,
    Form(f): Form<ReplayForm>,
) -> Page {
    let why = "Replaying needs the operator role.";
    operator_gate(&st, &session, &f.csrf, ("replay", Some("deliveries")), why).await?;
    let who = session.principal.name.clone();
    // the dead jobs to replay, per connector
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let what = match (f.key.as_deref().map(str::trim), &f.all) {
        (Some(key), None) if !key.is_empty() => match st.ledger.job(key).await {
            Ok(Some(j)) if j.state == JobState::Dead => {
                keys.entry(j.connector.clone())
                    .or_default()
                    .push(j.key.clone());
                format!(
                    "job {key} ({} → {}, SpNo {})",
                    j.mapping, j.connector, j.business_key
                )
            }
            Ok(Some(j)) => {
                return Err(trouble(
                    &session,
                    StatusCode::CONFLICT,
                    &format!(
                        "Job {key} is {}, not dead: there is nothing to replay.",
                        j.state
                    ),
                ));
            }
            Ok(None) => {
                return Err(trouble(
                    &session,
                    StatusCode::NOT_FOUND,
                    &format!("No delivery job {key}."),
                ));
            }
            Err(e) => return Err(unavailable(&session, e)),
        },
        (None, Some(_)) => {
            let mut query = f
                .filter
                .query(Some(JobState::Dead))
                .map_err(|e| trouble(&session, StatusCode::BAD_REQUEST, &e))?;
            query.limit = crate::store::LEDGER_MAX_PAGE;
            let mut n = 0;
            loop {
                let page = st
                    .ledger
                    .list(query.clone())
                    .await
                    .map_err(|e| unavailable(&session, e))?;
                for j in page.jobs {
                    keys.entry(j.connector).or_default().push(j.key);
                    n += 1;
                }
                match page.next {
                    Some(c) if n < MAX_REPLAY => query.cursor = Some(c),
                    _ => break,
                }
            }
            format!(
                "every dead job matching connector “{}”, SpNo “{}”, since “{}”, until “{}” ({n} job(s){})",
                f.filter.connector.trim(),
                f.filter.sp_no.trim(),
                f.filter.since.trim(),
                f.filter.until.trim(),
                if n >= MAX_REPLAY {
                    ", the first batch"
                } else {
                    ""
                }
            )
        }
        _ => {
            return Err(trouble(
                &session,
                StatusCode::BAD_REQUEST,
                "Give exactly one of: a job key, or all.",
            ));
        }
    };
    let asked: usize = keys.values().map(Vec::len).sum();
    if f.confirm.as_deref() != Some("yes") {
        let body = html! {
            p { "Replay " strong { (what) } "? Each job goes back to its connector's queue and is sent again with the same idempotency key, so a target that already has the document answers “duplicate”." }
            form method="post" action="/console/deliveries/replay" {
                input type="hidden" name="csrf" value=(session.csrf);
                @if let Some(k) = &f.key { input type="hidden" name="key" value=(k); }
                @if f.all.is_some() { input type="hidden" name="all" value="1"; }
                (f.filter.hidden())
                input type="hidden" name="confirm" value="yes";
                button.danger id="confirm-replay" type="submit" disabled[asked == 0] { "Replay " (asked) " job(s)" }
                " "
                a href={ "/console/deliveries?" (f.filter.params()) } { "Cancel" }
            }
        };
        return Ok(layout("Confirm replay", Some(&session), "deliveries", body).into_response());
    }
    let broker = st.broker.get().ok_or_else(|| no_broker(&session))?;
    let row = |result: &str| audit_row(&who, "replay", &what, result, "console");
    let mut replayed = 0;
    for (connector, ids) in &keys {
        let queue = crate::route::deliver_queue(connector);
        for chunk in ids.chunks(REDRIVE_CHUNK) {
            match broker
                .redrive(&queue, &RedriveFilter::Ids(chunk.to_vec()))
                .await
            {
                Ok(n) => replayed += n,
                Err(e) => {
                    let failed = format!("failed after {replayed}: {e}");
                    audit(st.journal.store(), row(&failed)).await;
                    return Err(unavailable(
                        &session,
                        format!("Replay failed after {replayed} job(s): {e}"),
                    ));
                }
            }
        }
    }
    tracing::info!(%who, asked, replayed, "dead delivery jobs replayed from the console");
    let ok = format!("ok: {replayed} replayed");
    audit(st.journal.store(), row(&ok)).await;
    let mut filter = f.filter.clone();
    if let Some(k) = &f.key {
        // show the replayed job
        if let Ok(Some(j)) = st.ledger.job(k).await {
            filter.sp_no = j.business_key;
            filter.connector = j.connector;
        }
    }
    filter.state = String::new();
    Ok(Redirect::to(&format!(
        "/console/deliveries?{}&replayed={replayed}&asked={asked}",
        filter.params()
    ))
    .into_response())
}
