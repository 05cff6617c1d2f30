//! The operator console: server-rendered pages under `/console` on the admin listener
//! (never on the WeCom-facing port), for IT staff who run the bridge.
//!
//! It owns sign-in and sessions (`auth`), the pages (`pages`), the embedded assets, the
//! security headers (a strict Content-Security-Policy: no inline script or style), and the
//! audit trail helper [`audit`] that the console and the admin API both write through.
//! It reads state through the journal, the store and the broker; it changes state only
//! through the same broker calls as the admin API (replay), and every such action, every
//! payload view and every sign-in attempt is written to the audit table.
//!
//! It must NOT: keep tokens anywhere but in memory, render a payload body for a `viewer`,
//! accept a POST without the session's CSRF token, or offer any way to edit the audit log.

pub mod auth;
pub mod pages;
pub mod settings;
pub mod wecom_login;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

pub use auth::{Principal, Sessions, TokenBook};
pub use settings::{
    AdminUser, ConsoleConfig, MIN_AUDIT_RETENTION_DAYS, Role, WeComLoginConfig, WeComUser,
};
pub use wecom_login::WeComSignIn;

use crate::admin::AdminState;
use crate::config::AdminConfig;
use crate::store::{AuditRecord, Store};

/// The Content-Security-Policy of every console response: our own script and style files
/// only, no inline code, no framing, forms post only to ourselves.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// Console state shared by the admin listener's handlers.
#[derive(Debug)]
pub struct ConsoleShared {
    /// The console settings.
    pub config: ConsoleConfig,
    /// Named tokens with roles (also used by the admin API).
    pub tokens: TokenBook,
    /// Live sessions.
    pub sessions: Sessions,
    /// Sign-in with WeCom, when configured.
    pub wecom: Option<WeComSignIn>,
}

impl ConsoleShared {
    /// State for a console with these settings and tokens.
    pub fn new(config: ConsoleConfig, tokens: TokenBook) -> Self {
        let idle = Duration::from_secs(config.session_idle_minutes.max(1) * 60);
        ConsoleShared {
            config,
            tokens,
            sessions: Sessions::new(idle),
            wecom: None,
        }
    }

    /// The same, with sign-in with WeCom (see [`WeComSignIn::from_config`]).
    pub fn with_wecom(mut self, wecom: Option<WeComSignIn>) -> Self {
        self.wecom = wecom;
        self
    }
}

/// Configuration errors of `[console]` and `[[admin.users]]` (reported with the others at
/// start and by `check`); `apps` are the configured WeCom apps (for sign-in with WeCom).
pub fn settings_errors(
    admin: &AdminConfig,
    console: &ConsoleConfig,
    apps: &std::collections::BTreeMap<String, crate::config::AppConfig>,
) -> Vec<String> {
    let mut errors = wecom_login::settings_errors(console, apps);
    if console.audit_retention_days < MIN_AUDIT_RETENTION_DAYS {
        errors.push(format!(
            "console.audit_retention_days = {} is below the minimum of {MIN_AUDIT_RETENTION_DAYS} days",
            console.audit_retention_days
        ));
    }
    for (i, u) in admin.users.iter().enumerate() {
        if u.name.trim().is_empty() || u.name.len() > 64 {
            errors.push(format!(
                "admin.users[{i}].name must be 1 to 64 characters (it is shown in the audit log)"
            ));
        }
        if admin.users[..i].iter().any(|o| o.name == u.name) {
            errors.push(format!(
                "admin.users: the name `{}` is used twice; names must be unique",
                u.name
            ));
        }
        if matches!(&u.token, crate::config::SecretRef::Literal(t) if t.trim().is_empty()) {
            errors.push(format!("admin.users `{}`: the token is empty", u.name));
        }
    }
    errors
}

/// Appends an audit row. A failure to write it is logged and counted; the action itself has
/// already happened and is not undone.
pub async fn audit(store: &Store, record: AuditRecord) {
    let store = store.clone();
    let action = record.action.clone();
    let result = tokio::task::spawn_blocking(move || store.audit_append(&record)).await;
    let error = match result {
        Ok(Ok(_)) => return,
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    metrics::counter!("wecom_bridge_audit_write_failures_total").increment(1);
    tracing::error!(%action, %error, hint = "the store refused the audit row; check the disk (see /readyz) — the action was done but is not in the audit log", "audit row not written");
}

/// An audit row stamped now.
pub fn audit_row(who: &str, action: &str, target: &str, result: &str, via: &str) -> AuditRecord {
    AuditRecord {
        at_ms: jiff::Timestamp::now().as_millisecond(),
        who: who.to_string(),
        action: action.to_string(),
        target: target.to_string(),
        result: result.to_string(),
        via: via.to_string(),
    }
}

/// Prunes audit rows older than the retention once a day until shutdown.
pub async fn run_audit_pruner(
    store: Store,
    retention_days: u64,
    mut shutdown: crate::stage::Shutdown,
) {
    let retention_ms = i64::try_from(retention_days.saturating_mul(86_400_000)).unwrap_or(i64::MAX);
    loop {
        let cutoff = jiff::Timestamp::now()
            .as_millisecond()
            .saturating_sub(retention_ms);
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.audit_prune(cutoff)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(removed = n, retention_days, "old audit rows pruned"),
            Ok(Err(e)) => {
                metrics::counter!("wecom_bridge_audit_prune_failures_total").increment(1);
                tracing::warn!(error = %e, hint = "retried tomorrow; check the disk", "audit pruning failed");
            }
            Err(e) => tracing::warn!(error = %e, "audit pruning task failed"),
        }
        if !shutdown.sleep(Duration::from_secs(86_400)).await {
            return;
        }
    }
}

/// Security headers on every console response.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

async fn asset(State(_): State<AdminState>, req: Request) -> Response {
    let (body, kind) = if req.uri().path().ends_with(".css") {
        (CSS, "text/css; charset=utf-8")
    } else {
        (JS, "text/javascript; charset=utf-8")
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// The console's routes (all under `/console`), behind the admin listener's `Host` and
/// cross-site guard.
pub fn router(guard: crate::admin::guard::AdminGuard) -> Router<AdminState> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::to("/console/overview") }),
        )
        .route("/console/assets/console.css", get(asset))
        .route("/console/assets/console.js", get(asset))
        .merge(pages::routes())
        .route_layer(axum::middleware::from_fn(security_headers))
        .route_layer(axum::middleware::from_fn_with_state(
            guard,
            crate::admin::guard::enforce,
        ))
}

/// Shared handle type stored in [`AdminState`].
pub type ConsoleHandle = Arc<ConsoleShared>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_is_kept_180_days_by_default_and_never_less() {
        let admin = AdminConfig::default();
        let apps = std::collections::BTreeMap::new();
        let console = ConsoleConfig::default();
        assert_eq!(console.audit_retention_days, MIN_AUDIT_RETENTION_DAYS);
        assert_eq!(MIN_AUDIT_RETENTION_DAYS, 180);
        assert!(settings_errors(&admin, &console, &apps).is_empty());
        let short = ConsoleConfig {
            audit_retention_days: 179,
            ..ConsoleConfig::default()
        };
        let e = settings_errors(&admin, &short, &apps).join("\n");
        assert!(e.contains("below the minimum of 180 days"), "{e}");
    }
}
