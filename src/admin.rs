//! The operator API on the admin listener: `/admin/*` (token-protected when a token is
//! configured, and behind [`guard`]: `Host` allow-list, no cross-site state changes),
//! `/metrics` (Prometheus), `/healthz`, `/readyz` (with details). The WeCom-facing listener
//! gets only [`public_health_router`], whose `/readyz` says ready or not and nothing more.
//!
//! It reads state through the journal and store; it never changes an event's content.
//! State-changing endpoints (`/admin/replay`, `/admin/reconcile`) are POST only.

pub mod guard;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::broker::{AnyBroker, RedriveFilter};
use crate::config::Secret;
use crate::journal::Journal;
use crate::store::JournalFilter;
use crate::telemetry::names;

/// The broker, once it is up (it may come up after the listeners).
pub type BrokerSlot = Arc<tokio::sync::OnceCell<AnyBroker>>;

/// Shared state of the health and admin routes.
#[derive(Clone, Debug)]
pub struct AdminState {
    /// The journal.
    pub journal: Journal,
    /// Bearer token for `/admin/*`, if configured.
    pub token: Option<Arc<Secret>>,
    /// The broker, when connected.
    pub broker: BrokerSlot,
    /// The configured broker kind (`embedded`, `rabbitmq`).
    pub broker_kind: String,
    /// The route stage's context (catalog, WeCom API), for reconciliation.
    pub route: Arc<crate::route::RouteContext>,
    /// The delivery ledger.
    pub ledger: crate::record::Ledger,
}

/// Routes of the public (WeCom-facing) listener besides the callbacks: liveness, and a
/// readiness that says only `ready` or `not ready` (details are on the admin listener).
pub fn public_health_router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(public_readyz))
        .with_state(state)
}

/// Routes of the admin listener. `/admin/*` goes through `guard`.
pub fn admin_router(state: AdminState, host_guard: guard::AdminGuard) -> Router {
    let admin = Router::new()
        .route("/admin/events", get(events))
        .route("/admin/queues", get(queues))
        .route("/admin/dead-letters", get(dead_letters))
        .route("/admin/replay", post(replay))
        .route("/admin/reconcile", post(reconcile))
        .route("/admin/reroute", post(reroute))
        .route("/admin/deliveries", get(crate::record::admin::list))
        .route("/admin/deliveries/{key}", get(crate::record::admin::show))
        .route_layer(axum::middleware::from_fn_with_state(
            host_guard,
            guard::enforce,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(|| async { crate::telemetry::metrics_handle().render() }),
        )
        .merge(admin)
        .with_state(state)
}

/// `/readyz` on the public listener: the status only, no counts, no broker details.
async fn public_readyz(State(st): State<AdminState>) -> Response {
    let store = st.journal.store().clone();
    let ok = tokio::task::spawn_blocking(move || store.ping())
        .await
        .is_ok_and(|r| r.is_ok());
    if ok {
        (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ready"})),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "not ready"})),
        )
            .into_response()
    }
}

/// `/readyz` on the admin listener: store, journal counts, outbox backlog, broker state.
async fn readyz(State(st): State<AdminState>) -> Response {
    let store = st.journal.store().clone();
    let counts = tokio::task::spawn_blocking(move || {
        store.ping()?;
        store.journal_counts()
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r.map_err(|e| e.to_string()));
    let broker = match st.broker.get() {
        None => "connecting".to_string(),
        Some(b) => match b.ready().await {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("unavailable: {e}"),
        },
    };
    match counts {
        Ok(c) => {
            metrics::gauge!(names::OUTBOX_BACKLOG).set(c.unpublished as f64);
            // Ready means "can accept callbacks": that needs the store, not the broker. A
            // broker outage shows here and as a growing backlog, and is relayed when it ends.
            let body = serde_json::json!({
                "status": "ready",
                "store": "ok",
                "journal": c,
                "outbox_backlog": c.unpublished,
                "broker": {"kind": st.broker_kind, "state": broker},
            });
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        Err(e) => {
            let body = serde_json::json!({"status": "not ready", "store": e, "broker": {"kind": st.broker_kind, "state": broker}});
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
        }
    }
}

pub(crate) fn authorized(st: &AdminState, headers: &HeaderMap) -> bool {
    let Some(token) = &st.token else {
        return true; // validated at start: no token only on a loopback listener
    };
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.expose().as_bytes())))
}

/// Query of `GET /admin/events`.
#[derive(Debug, Deserialize, Default)]
pub struct EventsQuery {
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this app.
    pub app: Option<String>,
    /// RFC 3339 lower bound of the receive time.
    pub since: Option<String>,
    /// RFC 3339 upper bound (exclusive).
    pub until: Option<String>,
    /// Newest first, at most this many.
    pub limit: Option<usize>,
    /// Only quarantined entries.
    #[serde(default)]
    pub quarantined: bool,
    /// Include decrypted payloads.
    #[serde(default)]
    pub payload: bool,
}

/// Why an admin request is answered with an error status; the body says what to fix.
#[derive(Debug)]
enum AdminRefusal {
    /// 401: no or a wrong bearer token.
    Unauthorized,
    /// 400: a query parameter is missing or malformed.
    BadRequest(String),
    /// 503: the broker is not connected yet (it may come up after the listeners).
    BrokerNotConnected,
    /// 503: the broker answered with an error.
    Broker(crate::broker::BrokerError),
    /// 500: reading the journal failed.
    Internal(String),
}

impl IntoResponse for AdminRefusal {
    fn into_response(self) -> Response {
        match self {
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "admin token required (Authorization: Bearer …)\n".to_string(),
            ),
            Self::BadRequest(why) => (StatusCode::BAD_REQUEST, why),
            Self::BrokerNotConnected => (
                StatusCode::SERVICE_UNAVAILABLE,
                "broker not connected yet; see /readyz\n".to_string(),
            ),
            Self::Broker(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
            Self::Internal(why) => (StatusCode::INTERNAL_SERVER_ERROR, why),
        }
        .into_response()
    }
}

impl From<crate::broker::BrokerError> for AdminRefusal {
    fn from(e: crate::broker::BrokerError) -> Self {
        Self::Broker(e)
    }
}

/// The prelude of every admin endpoint: the admin token.
fn check_token(st: &AdminState, headers: &HeaderMap) -> Result<(), AdminRefusal> {
    if authorized(st, headers) {
        Ok(())
    } else {
        Err(AdminRefusal::Unauthorized)
    }
}

/// The prelude of every broker endpoint: the admin token, then a connected broker.
fn authorized_broker(st: &AdminState, headers: &HeaderMap) -> Result<AnyBroker, AdminRefusal> {
    check_token(st, headers)?;
    st.broker
        .get()
        .cloned()
        .ok_or(AdminRefusal::BrokerNotConnected)
}

/// An optional RFC 3339 query parameter, in unix milliseconds.
fn parse_time(s: Option<&str>, name: &str) -> Result<Option<i64>, AdminRefusal> {
    parse_rfc3339(s, name).map_err(AdminRefusal::BadRequest)
}

/// An optional RFC 3339 time, in unix milliseconds; the error names the parameter.
pub(crate) fn parse_rfc3339(s: Option<&str>, name: &str) -> Result<Option<i64>, String> {
    s.map(|v| {
        v.parse::<jiff::Timestamp>()
            .map(|t| t.as_millisecond())
            .map_err(|e| format!("{name}: not an RFC 3339 time: {e}"))
    })
    .transpose()
}

/// The 401 answer of every admin endpoint.
pub(crate) fn unauthorized() -> Response {
    AdminRefusal::Unauthorized.into_response()
}

/// The `since` (required) and `until` (optional) parameters of a time range, in unix
/// milliseconds.
fn time_range(since: &str, until: Option<&str>) -> Result<(i64, Option<i64>), AdminRefusal> {
    let since_ms = parse_time(Some(since), "since")?
        .ok_or_else(|| AdminRefusal::BadRequest("since is required\n".into()))?;
    Ok((since_ms, parse_time(until, "until")?))
}

/// `GET /admin/events?[kind=…][&app=…][&since=…][&until=…][&limit=…][&quarantined=true]
/// [&payload=true]`: journal entries, newest first, one JSON per line.
async fn events(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Result<Response, AdminRefusal> {
    check_token(&st, &headers)?;
    if let Some(kind) = q.kind.as_deref()
        && !crate::ingress::JOURNAL_KINDS.contains(&kind)
    {
        return Err(AdminRefusal::BadRequest(format!(
            "unknown kind `{kind}`; valid kinds: {}\n",
            crate::ingress::JOURNAL_KINDS.join(", ")
        )));
    }
    let filter = JournalFilter {
        since_ms: parse_time(q.since.as_deref(), "since")?,
        until_ms: parse_time(q.until.as_deref(), "until")?,
        kind: q.kind,
        app: q.app,
        quarantined_only: q.quarantined,
        limit: q.limit.unwrap_or(100),
    };
    let journal = st.journal.clone();
    let with_payload = q.payload;
    let views = tokio::task::spawn_blocking(move || journal.list(&filter, with_payload))
        .await
        .map_err(|e| AdminRefusal::Internal(e.to_string()))?
        .map_err(|e| AdminRefusal::Internal(e.to_string()))?;
    Ok(ndjson(&views))
}

/// One JSON object per line.
fn ndjson<T: serde::Serialize>(items: &[T]) -> Response {
    let mut out = String::new();
    for item in items {
        out.push_str(&serde_json::to_string(item).unwrap_or_default());
        out.push('\n');
    }
    ([(header::CONTENT_TYPE, "application/x-ndjson")], out).into_response()
}

/// `GET /admin/queues`: depths of every stage queue plus the outbox backlog.
async fn queues(
    State(st): State<AdminState>,
    headers: HeaderMap,
) -> Result<Response, AdminRefusal> {
    let broker = authorized_broker(&st, &headers)?;
    let store = st.journal.store().clone();
    let backlog = tokio::task::spawn_blocking(move || store.journal_counts())
        .await
        .ok()
        .and_then(Result::ok)
        .map_or(0, |c| c.unpublished);
    let names = st.route.catalog.connectors.iter().map(|c| c.name.as_str());
    let d = broker.depths(&crate::broker::listed_queues(names)).await?;
    let body = serde_json::json!({"broker": broker.kind(), "outbox_backlog": backlog, "queues": d});
    Ok(axum::Json(body).into_response())
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
async fn dead_letters(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<DeadQuery>,
) -> Result<Response, AdminRefusal> {
    let broker = authorized_broker(&st, &headers)?;
    let queue = q.queue.unwrap_or_else(|| crate::broker::ROUTE_QUEUE.into());
    let mut list = broker.dead_letters(&queue, q.limit.unwrap_or(1000)).await?;
    if !q.payload {
        list.iter_mut().for_each(|d| d.envelope.clear_body());
    }
    Ok(ndjson(&list))
}

/// `POST /admin/replay?queue=route&(all=true|ids=a,b|reason=text)`: redrive parked messages.
async fn replay(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<DeadQuery>,
) -> Result<Response, AdminRefusal> {
    let broker = authorized_broker(&st, &headers)?;
    let filter = match (q.all, q.ids, q.reason) {
        (true, None, None) => RedriveFilter::All,
        (false, Some(ids), None) => {
            RedriveFilter::Ids(ids.split(',').map(str::to_string).collect())
        }
        (false, None, Some(r)) => RedriveFilter::ReasonContains(r),
        _ => {
            return Err(AdminRefusal::BadRequest(
                "give exactly one of all=true, ids=…, reason=…\n".into(),
            ));
        }
    };
    let queue = q.queue.unwrap_or_else(|| crate::broker::ROUTE_QUEUE.into());
    let n = broker.redrive(&queue, &filter).await?;
    tracing::info!(queue = %queue, redriven = n, "dead letters replayed by an operator");
    Ok(axum::Json(serde_json::json!({"queue": queue, "redriven": n})).into_response())
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
async fn reroute(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<RerouteQuery>,
) -> Result<Response, AdminRefusal> {
    let broker = authorized_broker(&st, &headers)?;
    let (since_ms, until_ms) = time_range(&q.since, q.until.as_deref())?;
    let request = crate::route::reroute::RerouteRequest {
        since_ms,
        until_ms,
        template: q.template,
    };
    let report =
        crate::route::reroute::reroute_any(&st.route, &st.journal, &broker, &request).await;
    Ok(axum::Json(report).into_response())
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
async fn reconcile(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<ReconcileQuery>,
) -> Result<Response, AdminRefusal> {
    check_token(&st, &headers)?;
    let (since_ms, until_ms) = time_range(&q.since, q.until.as_deref())?;
    let since = since_ms / 1000;
    let until = until_ms.map_or_else(|| jiff::Timestamp::now().as_second(), |ms| ms / 1000);
    let report =
        crate::route::reconcile::reconcile(&st.route, &st.journal, since, until, &|_, _| {}).await;
    Ok(axum::Json(report).into_response())
}
