//! The admin API's broker endpoints: queue depths, dead letters, replay, reroute and
//! reconcile. Each needs a token with the right role, then a connected broker; every action
//! is audited.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{AdminState, ndjson, parse_time, require};
use crate::broker::{AnyBroker, RedriveFilter};
use crate::console::{Principal, Role, audit, audit_row};

/// The prelude of every broker endpoint: a token holding `role`, then a connected broker.
async fn authorized_broker(
    st: &AdminState,
    headers: &HeaderMap,
    role: Role,
    action: &str,
) -> Result<(Principal, AnyBroker), Box<Response>> {
    let who = require(st, headers, role, action).await?;
    st.broker
        .get()
        .cloned()
        .ok_or_else(|| {
            Box::new(
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "broker not connected yet; see /readyz\n",
                )
                    .into_response(),
            )
        })
        .map(|b| (who, b))
}

fn broker_error(e: crate::broker::BrokerError) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response()
}

/// `GET /admin/queues`: depths of every stage queue plus the outbox backlog.
pub(super) async fn queues(State(st): State<AdminState>, headers: HeaderMap) -> Response {
    let broker = match authorized_broker(&st, &headers, Role::Viewer, "queues").await {
        Ok((_, b)) => b,
        Err(r) => return *r,
    };
    let store = st.journal.store().clone();
    let backlog = tokio::task::spawn_blocking(move || store.journal_counts())
        .await
        .ok()
        .and_then(Result::ok)
        .map_or(0, |c| c.unpublished);
    let names = st.route.catalog.connectors.iter().map(|c| c.name.as_str());
    match broker.depths(&crate::broker::listed_queues(names)).await {
        Ok(d) => axum::Json(
            serde_json::json!({"broker": broker.kind(), "outbox_backlog": backlog, "queues": d}),
        )
        .into_response(),
        Err(e) => broker_error(e),
    }
}

/// Query of the dead-letter endpoints.
#[derive(Debug, Deserialize)]
pub struct DeadQuery {
    /// Logical queue (default `route`).
    pub queue: Option<String>,
    /// Most to list.
    pub limit: Option<usize>,
    /// Replay: comma-separated message ids.
    pub ids: Option<String>,
    /// Replay: only messages whose reason contains this.
    pub reason: Option<String>,
    /// Listing: include the decrypted payloads (metadata only by default).
    #[serde(default)]
    pub payload: bool,
    /// Replay: every parked message of the queue.
    #[serde(default)]
    pub all: bool,
}

/// `GET /admin/dead-letters?queue=route&limit=100[&payload=true]`: parked messages, one JSON
/// per line; `envelope.payload` is empty unless `payload=true` is asked for.
pub(super) async fn dead_letters(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<DeadQuery>,
) -> Response {
    let (role, action) = if q.payload {
        (Role::Operator, "view_payload")
    } else {
        (Role::Viewer, "list_dead_letters")
    };
    let (who, broker) = match authorized_broker(&st, &headers, role, action).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let queue = q.queue.unwrap_or_else(|| crate::broker::ROUTE_QUEUE.into());
    if q.payload {
        let target = format!("dead letters of {queue}");
        audit(
            st.journal.store(),
            audit_row(&who.name, "view_payload", &target, "ok", "api"),
        )
        .await;
    }
    match broker.dead_letters(&queue, q.limit.unwrap_or(1000)).await {
        Ok(mut list) => {
            if !q.payload {
                list.iter_mut().for_each(|d| d.envelope.clear_body());
            }
            ndjson(&list)
        }
        Err(e) => broker_error(e),
    }
}

/// `POST /admin/replay?queue=route&(all=true|ids=a,b|reason=text)`: redrive parked messages.
pub(super) async fn replay(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<DeadQuery>,
) -> Response {
    let (who, broker) = match authorized_broker(&st, &headers, Role::Operator, "replay").await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let filter = match (q.all, q.ids, q.reason) {
        (true, None, None) => RedriveFilter::All,
        (false, Some(ids), None) => {
            RedriveFilter::Ids(ids.split(',').map(str::to_string).collect())
        }
        (false, None, Some(r)) => RedriveFilter::ReasonContains(r),
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "give exactly one of all=true, ids=…, reason=…\n",
            )
                .into_response();
        }
    };
    let queue = q.queue.unwrap_or_else(|| crate::broker::ROUTE_QUEUE.into());
    let target = format!("{queue}: {filter:?}");
    match broker.redrive(&queue, &filter).await {
        Ok(n) => {
            tracing::info!(who = %who.name, queue = %queue, redriven = n, "dead letters replayed by an operator");
            let result = format!("ok: {n} replayed");
            audit(
                st.journal.store(),
                audit_row(&who.name, "replay", &target, &result, "api"),
            )
            .await;
            axum::Json(serde_json::json!({"queue": queue, "redriven": n})).into_response()
        }
        Err(e) => {
            let result = format!("failed: {e}");
            audit(
                st.journal.store(),
                audit_row(&who.name, "replay", &target, &result, "api"),
            )
            .await;
            broker_error(e)
        }
    }
}

/// Query of `POST /admin/reroute`.
#[derive(Debug, Deserialize)]
pub struct RerouteQuery {
    /// RFC 3339 lower bound of the receive time.
    pub since: String,
    /// RFC 3339 upper bound (exclusive; default: now).
    pub until: Option<String>,
    /// Only forms of this template (id or name).
    pub template: Option<String>,
}

/// `POST /admin/reroute?since=…[&until=…][&template=…]`: routes again the approval events
/// that matched no mapping (lifecycle-aware: forwarded forms are not sent twice).
pub(super) async fn reroute(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<RerouteQuery>,
) -> Response {
    let (who, broker) = match authorized_broker(&st, &headers, Role::Operator, "reroute").await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let (since_ms, until_ms) = match time_range(&q.since, &q.until) {
        Ok(range) => range,
        Err(bad) => return *bad,
    };
    let request = crate::route::reroute::RerouteRequest {
        since_ms,
        until_ms,
        template: q.template,
    };
    let target = format!(
        "since {} until {:?} template {:?}",
        request.since_ms, request.until_ms, request.template
    );
    let report =
        crate::route::reroute::reroute_any(&st.route, &st.journal, &broker, &request).await;
    audit(
        st.journal.store(),
        audit_row(&who.name, "reroute", &target, "ok", "api"),
    )
    .await;
    axum::Json(report).into_response()
}

/// The required `since` and optional `until` (RFC 3339) of a time-range query, in Unix
/// milliseconds; `Err` is the 400 answer.
fn time_range(since: &str, until: &Option<String>) -> Result<(i64, Option<i64>), Box<Response>> {
    let bad = |e: String| Box::new((StatusCode::BAD_REQUEST, e).into_response());
    let since_ms = parse_time(&Some(since.to_string()), "since")
        .map_err(bad)?
        .ok_or_else(|| bad("since is required\n".into()))?;
    let until_ms = parse_time(until, "until").map_err(bad)?;
    Ok((since_ms, until_ms))
}

/// Query of `POST /admin/reconcile`.
#[derive(Debug, Deserialize)]
pub struct ReconcileQuery {
    /// RFC 3339 start of the submit-time range.
    pub since: String,
    /// RFC 3339 end (default: now).
    pub until: Option<String>,
}

/// `POST /admin/reconcile?since=…&until=…`: runs a reconciliation now; answers its report.
pub(super) async fn reconcile(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<ReconcileQuery>,
) -> Response {
    let who = match require(&st, &headers, Role::Operator, "reconcile").await {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let (since, until) = match time_range(&q.since, &q.until) {
        Ok((since_ms, until_ms)) => (
            since_ms / 1000,
            until_ms.map_or_else(|| jiff::Timestamp::now().as_second(), |ms| ms / 1000),
        ),
        Err(bad) => return *bad,
    };
    let report =
        crate::route::reconcile::reconcile(&st.route, &st.journal, since, until, &|_, _| {}).await;
    let target = format!("submit time {since}..{until}");
    audit(
        st.journal.store(),
        audit_row(&who.name, "reconcile", &target, "ok", "api"),
    )
    .await;
    axum::Json(report).into_response()
}
