//! The operator API on the admin listener: `/admin/*` (token-protected when a token is
//! configured, and behind [`guard`]: `Host` allow-list, no cross-site state changes),
//! `/metrics` (Prometheus), `/healthz`, `/readyz` (with details). The WeCom-facing listener
//! gets only [`public_health_router`], whose `/readyz` says ready or not and nothing more.
//!
//! It reads state through the journal and store; it never changes an event's content.
//! State-changing endpoints (`/admin/replay`, `/admin/reconcile`) are POST only.
//!
//! Roles (see [`crate::console::Role`]): a `viewer` token reads everything but payload
//! bodies; an `operator` token also replays, reconciles, reroutes and reads payloads; an
//! `admin` token also reads the configuration (`/admin/config`). The legacy `admin.token` is
//! an `admin` token. A refusal for lack of role answers 403 and is audited, as is every
//! action and payload view.

pub mod guard;
mod queues;

use std::sync::Arc;

use crate::broker::AnyBroker;
use crate::console::{ConsoleHandle, Principal, Role, audit, audit_row};
use crate::journal::Journal;
use crate::store::JournalFilter;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

/// The broker, once it is up (it may come up after the listeners).
pub type BrokerSlot = Arc<tokio::sync::OnceCell<AnyBroker>>;

/// Shared state of the health and admin routes.
#[derive(Clone, Debug)]
pub struct AdminState {
    /// The journal.
    pub journal: Journal,
    /// The console's state: named tokens with roles (also for `/admin/*`), sessions.
    pub console: ConsoleHandle,
    /// The configuration as shown to `admin` tokens (secrets written as `***`).
    pub config_view: Arc<String>,
    /// The broker, when connected.
    pub broker: BrokerSlot,
    /// The configured broker kind (`embedded`, `rabbitmq`).
    pub broker_kind: String,
    /// The route stage's context (catalog, WeCom API), for reconciliation.
    pub route: Arc<crate::route::RouteContext>,
    /// The delivery ledger, for `/admin/deliveries`.
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
        .route("/admin/queues", get(queues::queues))
        .route("/admin/dead-letters", get(queues::dead_letters))
        .route("/admin/replay", post(queues::replay))
        .route("/admin/reconcile", post(queues::reconcile))
        .route("/admin/reroute", post(queues::reroute))
        .route("/admin/config", get(config_view))
        .route("/admin/audit", get(audit_list))
        .route("/admin/deliveries", get(crate::record::admin::list))
        .route("/admin/deliveries/{key}", get(crate::record::admin::show))
        .route_layer(axum::middleware::from_fn_with_state(
            host_guard.clone(),
            guard::enforce,
        ));
    let console = if state.console.config.enabled {
        crate::console::router(host_guard)
    } else {
        Router::new()
    };
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(|| async { crate::telemetry::metrics_handle().render() }),
        )
        .merge(admin)
        .merge(console)
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
            metrics::gauge!(crate::telemetry::names::OUTBOX_BACKLOG).set(c.unpublished as f64);
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

/// The caller of `/admin/*`: the principal of its bearer token, or an anonymous admin when
/// no token is configured (allowed on a loopback listener only, checked at start).
fn caller(st: &AdminState, headers: &HeaderMap) -> Option<Principal> {
    if st.console.tokens.is_open() {
        return Some(Principal {
            name: "anonymous".into(),
            role: Role::Admin,
        });
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|given| st.console.tokens.authenticate(given))
}

/// The prelude of every `/admin/*` endpoint: a known token (401) holding `role` (403, and
/// an audit row naming `action`).
pub(crate) async fn require(
    st: &AdminState,
    headers: &HeaderMap,
    role: Role,
    action: &str,
) -> Result<Principal, Box<Response>> {
    let Some(p) = caller(st, headers) else {
        metrics::counter!("wecom_bridge_admin_refused_total", "reason" => "unauthorized")
            .increment(1);
        return Err(Box::new(unauthorized()));
    };
    if p.may(role) {
        return Ok(p);
    }
    metrics::counter!("wecom_bridge_admin_refused_total", "reason" => "role").increment(1);
    tracing::warn!(who = %p.name, role = %p.role, needed = %role, %action, hint = "give this user a role that allows it in [[admin.users]], or use another token", "admin request refused: role too low");
    audit(
        st.journal.store(),
        audit_row(
            &p.name,
            action,
            "",
            &format!("refused: role {}", p.role),
            "api",
        ),
    )
    .await;
    Err(Box::new(
        (
            StatusCode::FORBIDDEN,
            format!(
                "`{action}` needs the {role} role; this token is a {}\n",
                p.role
            ),
        )
            .into_response(),
    ))
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

/// Whether the request carries a known token (any role): the deliveries endpoints read
/// metadata, which every role may see.
pub(crate) fn authorized(st: &AdminState, headers: &HeaderMap) -> bool {
    caller(st, headers).is_some()
}

/// An optional RFC 3339 time, in unix milliseconds; the error names the parameter.
pub(crate) fn parse_rfc3339(s: Option<&str>, name: &str) -> Result<Option<i64>, String> {
    parse_time(&s.map(str::to_owned), name)
}

fn parse_time(s: &Option<String>, name: &str) -> Result<Option<i64>, String> {
    s.as_deref()
        .map(|v| {
            v.parse::<jiff::Timestamp>()
                .map(|t| t.as_millisecond())
                .map_err(|e| format!("{name}: not an RFC 3339 time: {e}"))
        })
        .transpose()
}

async fn events(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Response {
    let (role, action) = if q.payload {
        (Role::Operator, "view_payload")
    } else {
        (Role::Viewer, "list_events")
    };
    let who = match require(&st, &headers, role, action).await {
        Ok(p) => p,
        Err(r) => return *r,
    };
    if let Some(kind) = q.kind.as_deref()
        && !crate::ingress::JOURNAL_KINDS.contains(&kind)
    {
        return (
            StatusCode::BAD_REQUEST,
            format!(
                "unknown kind `{kind}`; valid kinds: {}\n",
                crate::ingress::JOURNAL_KINDS.join(", ")
            ),
        )
            .into_response();
    }
    let filter = match (parse_time(&q.since, "since"), parse_time(&q.until, "until")) {
        (Ok(since_ms), Ok(until_ms)) => JournalFilter {
            kind: q.kind,
            app: q.app,
            since_ms,
            until_ms,
            quarantined_only: q.quarantined,
            limit: q.limit.unwrap_or(100),
        },
        (Err(e), _) | (_, Err(e)) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let journal = st.journal.clone();
    let with_payload = q.payload;
    if with_payload {
        let target = format!("events {filter:?}");
        audit(
            journal.store(),
            audit_row(&who.name, "view_payload", &target, "ok", "api"),
        )
        .await;
    }
    match tokio::task::spawn_blocking(move || journal.list(&filter, with_payload)).await {
        Ok(Ok(views)) => ndjson(&views),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

pub(crate) fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        "admin token required (Authorization: Bearer …)\n",
    )
        .into_response()
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

/// `GET /admin/config`: the configuration in effect, secrets written as `***` or as their
/// reference (`env:NAME`, `file:PATH`). Admin tokens only.
async fn config_view(State(st): State<AdminState>, headers: HeaderMap) -> Response {
    let who = match require(&st, &headers, Role::Admin, "view_config").await {
        Ok(p) => p,
        Err(r) => return *r,
    };
    audit(
        st.journal.store(),
        audit_row(&who.name, "view_config", "", "ok", "api"),
    )
    .await;
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        st.config_view.as_str().to_string(),
    )
        .into_response()
}

/// Query of `GET /admin/audit`.
#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    /// Only rows older than this sequence number.
    pub before: Option<u64>,
    /// Most to list (default 100).
    pub limit: Option<usize>,
}

/// `GET /admin/audit?before=…&limit=…`: the audit trail, newest first, one JSON per line.
async fn audit_list(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Response {
    if let Err(r) = require(&st, &headers, Role::Viewer, "list_audit").await {
        return *r;
    }
    let store = st.journal.store().clone();
    let limit = q.limit.unwrap_or(100).min(10_000);
    match tokio::task::spawn_blocking(move || store.audit_list(q.before, limit)).await {
        Ok(Ok(rows)) => ndjson(&rows),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
