//! The ledger's admin endpoints (routes added in `crate::admin`):
//! `GET /admin/deliveries?sp_no=&connector=&state=&since=&until=&cursor=&limit=` answers one
//! page `{"jobs": [...], "next": "<cursor>"|null}`; `GET /admin/deliveries/{key or SpNo}`
//! answers every matching job with all its attempts. Headers and bodies of attempts only with
//! `?payload=true`.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{Cursor, JobState, LedgerError, LedgerQuery};
use crate::admin::{AdminState, authorized, parse_rfc3339, require, unauthorized};
use crate::console::{Role, audit, audit_row};

/// Query of `GET /admin/deliveries`.
#[derive(Debug, Deserialize, Default)]
pub struct DeliveriesQuery {
    /// Only this business key (SpNo).
    pub sp_no: Option<String>,
    /// Only this connector.
    pub connector: Option<String>,
    /// Only this state (`delivered`, `dead`, …).
    pub state: Option<String>,
    /// RFC 3339 lower bound of the creation time.
    pub since: Option<String>,
    /// RFC 3339 upper bound (exclusive).
    pub until: Option<String>,
    /// Continue after this cursor (the `next` of the previous page).
    pub cursor: Option<String>,
    /// Page size (default 50, at most 1000).
    pub limit: Option<usize>,
}

/// Query of `GET /admin/deliveries/{key}`.
#[derive(Debug, Deserialize, Default)]
pub struct ShowQuery {
    /// Include attempt headers and bodies.
    #[serde(default)]
    pub payload: bool,
}

fn bad_request(msg: impl std::fmt::Display) -> Response {
    (StatusCode::BAD_REQUEST, format!("{msg}\n")).into_response()
}

fn ledger_error(e: &LedgerError) -> Response {
    tracing::error!(error = %e, "delivery ledger query failed; check the store (see /readyz)");
    (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response()
}

/// Builds a ledger query from the admin API's parameters.
pub fn query_from(q: DeliveriesQuery) -> Result<LedgerQuery, String> {
    let state = q
        .state
        .as_deref()
        .map(str::parse::<JobState>)
        .transpose()
        .map_err(|e| e.to_string())?;
    let cursor = q.cursor.as_deref().map(str::parse::<Cursor>).transpose()?;
    Ok(LedgerQuery {
        business_key: q.sp_no,
        connector: q.connector,
        state,
        since_ms: parse_rfc3339(q.since.as_deref(), "since")?,
        until_ms: parse_rfc3339(q.until.as_deref(), "until")?,
        cursor,
        limit: q.limit.unwrap_or(50),
    })
}

/// `GET /admin/deliveries`: one page of jobs, newest first.
pub async fn list(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<DeliveriesQuery>,
) -> Response {
    if !authorized(&st, &headers) {
        return unauthorized();
    }
    let query = match query_from(q) {
        Ok(q) => q,
        Err(e) => return bad_request(e),
    };
    match st.ledger.list(query).await {
        Ok(page) => axum::Json(serde_json::json!({
            "jobs": page.jobs,
            "next": page.next.map(|c| c.to_string()),
        }))
        .into_response(),
        Err(e) => ledger_error(&e),
    }
}

/// `GET /admin/deliveries/{key or SpNo}`: the job(s) with every attempt.
pub async fn show(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Response {
    // Bodies of attempts are the documents sent (amounts, names): an operator's to read, and
    // every such read is audited; a viewer sees the metadata.
    let (role, action) = if q.payload {
        (Role::Operator, "view_payload")
    } else {
        (Role::Viewer, "show_delivery")
    };
    let who = match require(&st, &headers, role, action).await {
        Ok(p) => p,
        Err(r) => return *r,
    };
    if q.payload {
        audit(
            st.journal.store(),
            audit_row(
                &who.name,
                "view_payload",
                &format!("delivery {key}"),
                "ok",
                "api",
            ),
        )
        .await;
    }
    match st.ledger.find(&key, q.payload).await {
        Ok(found) if found.is_empty() => (
            StatusCode::NOT_FOUND,
            format!("no delivery job with key or SpNo `{key}`\n"),
        )
            .into_response(),
        Ok(found) => {
            if q.payload {
                tracing::info!(key = %key, jobs = found.len(), "delivery payloads shown through the admin API");
            }
            axum::Json(found).into_response()
        }
        Err(e) => ledger_error(&e),
    }
}
