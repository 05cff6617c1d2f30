//! The operator API on the admin listener: `/admin/*` (token-protected when a token is
//! configured), `/metrics` (Prometheus), `/healthz`, `/readyz`.
//!
//! It reads state through the journal and store; it never changes an event's content.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::journal::Journal;
use crate::store::JournalFilter;

/// Shared state of the health and admin routes.
#[derive(Clone, Debug)]
pub struct AdminState {
    /// The journal.
    pub journal: Journal,
    /// Bearer token for `/admin/*`, if configured.
    pub token: Option<Arc<Secret>>,
}

/// Routes of the public listener besides the callbacks: liveness and readiness.
pub fn health_router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Routes of the admin listener.
pub fn admin_router(state: AdminState) -> Router {
    Router::new()
        .route("/admin/events", get(events))
        .route(
            "/metrics",
            get(|| async { crate::telemetry::metrics_handle().render() }),
        )
        .with_state(state.clone())
        .merge(health_router(state))
}

async fn readyz(State(st): State<AdminState>) -> Response {
    let store = st.journal.store().clone();
    let counts = tokio::task::spawn_blocking(move || {
        store.ping()?;
        store.journal_counts()
    })
    .await;
    match counts {
        Ok(Ok(c)) => {
            metrics::gauge!("wecom_bridge_outbox_backlog").set(c.unpublished as f64);
            let body = serde_json::json!({"status": "ready", "store": "ok", "journal": c});
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        Ok(Err(e)) => {
            let body = serde_json::json!({"status": "not ready", "store": e.to_string()});
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
        }
        Err(e) => {
            let body = serde_json::json!({"status": "not ready", "store": e.to_string()});
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
        }
    }
}

fn authorized(st: &AdminState, headers: &HeaderMap) -> bool {
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
    if !authorized(&st, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            "admin token required (Authorization: Bearer …)\n",
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
    match tokio::task::spawn_blocking(move || journal.list(&filter, with_payload)).await {
        Ok(Ok(views)) => {
            let mut out = String::new();
            for v in views {
                out.push_str(&serde_json::to_string(&v).unwrap_or_default());
                out.push('\n');
            }
            ([(header::CONTENT_TYPE, "application/x-ndjson")], out).into_response()
        }
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
