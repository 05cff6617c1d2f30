//! The two steps of sign-in with WeCom (see `console::wecom_login`): `start` binds a random
//! `state` to the browser (cookie) and sends it to WeCom's login page; `callback` is where
//! WeCom sends it back with a code.
//!
//! The state cookie is `SameSite=Lax`, unlike the console's other cookies: the browser
//! arrives at the callback from WeCom's site, and a `Strict` cookie would not come along.
//! For the same reason the callback answers a small page that moves on to the console
//! itself (a redirect at the end of a chain that began on another site would leave the new
//! `Strict` session cookie behind).

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::{layout, session_of};
use crate::admin::AdminState;
use crate::console::auth::{self, Principal};
use crate::console::wecom_login::{
    CALLBACK_PATH, LoginKind, STATE_COOKIE, STATE_MAX_AGE_SECS, principal_name,
};
use crate::console::{audit, audit_row};

/// Query of `GET /console/wecom/start`.
#[derive(Debug, Deserialize, Default)]
pub(super) struct StartQuery {
    /// `oauth2` (inside the WeCom client) or `qr` (a browser); by user agent when absent.
    via: Option<LoginKind>,
}

/// Query WeCom sends back.
#[derive(Debug, Deserialize, Default)]
pub(super) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
}

/// The state cookie: `HttpOnly`, `SameSite=Lax` (sent on the top-level navigation back from
/// WeCom), scoped to the callback, short-lived; `None` clears it.
fn state_cookie(value: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    let (value, age) = match value {
        Some(v) => (v, STATE_MAX_AGE_SECS),
        None => ("", 0),
    };
    format!(
        "{STATE_COOKIE}={value}; Path={CALLBACK_PATH}; HttpOnly; SameSite=Lax; Max-Age={age}{secure}"
    )
}

fn not_configured() -> Response {
    let body = html! {
        p.flash.error { "Sign-in with WeCom is not configured. Set [console.wecom_login] app and list the members under [[console.wecom_users]], or sign in with a token." }
        p { a href="/console/sign-in" { "Sign in with a token" } }
    };
    (StatusCode::NOT_FOUND, layout("Sign in", None, "", body)).into_response()
}

/// `GET /console/wecom/start[?via=oauth2|qr]`: to WeCom's login page.
pub(super) async fn start(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<StartQuery>,
) -> Response {
    let Some(wecom) = st.console.wecom.as_ref() else {
        return not_configured();
    };
    if session_of(&st, &headers).is_some() {
        return Redirect::to("/console/overview").into_response();
    }
    let text = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let kind = q
        .via
        .unwrap_or_else(|| LoginKind::for_user_agent(text(header::USER_AGENT)));
    let secure = st.console.config.secure_cookie;
    let state = auth::random_token();
    let to = wecom.login_url(
        kind,
        &wecom.redirect_uri(text(header::HOST), secure),
        &state,
    );
    (
        [(header::SET_COOKIE, state_cookie(Some(&state), secure))],
        Redirect::to(&to),
    )
        .into_response()
}

/// `GET /console/wecom/callback?code=…&state=…`: WeCom sent the browser back.
pub(super) async fn callback(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let Some(wecom) = st.console.wecom.as_ref() else {
        return not_configured();
    };
    let secure = st.console.config.secure_cookie;
    let cookie_state = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| auth::cookie(c, STATE_COOKIE));
    let result = wecom
        .sign_in(
            &st.route.api,
            cookie_state,
            q.state.as_deref(),
            q.code.as_deref(),
        )
        .await;
    // A state is good for one callback, whatever its outcome.
    let clear_state = state_cookie(None, secure);
    let store = st.journal.store();
    let (user_id, role) = match result {
        Ok(found) => found,
        Err(refusal) => {
            metrics::counter!("wecom_bridge_console_refused_total", "reason" => refusal.reason())
                .increment(1);
            tracing::warn!(reason = refusal.reason(), error = %refusal, hint = "a WeCom sign-in was refused; unknown members need an entry under [[console.wecom_users]]", "console sign-in with WeCom refused");
            audit(
                store,
                audit_row(
                    &refusal.who(),
                    "sign_in",
                    "wecom",
                    &format!("refused: {refusal}"),
                    "console",
                ),
            )
            .await;
            let body = html! {
                div.signin {
                    p.flash.error id="sign-in-error" { (refusal.message()) }
                    p { a href="/console/sign-in" { "Back to sign-in" } }
                }
            };
            return (
                refusal.status(),
                [(header::SET_COOKIE, clear_state)],
                layout("Sign in", None, "", body),
            )
                .into_response();
        }
    };
    let principal = Principal {
        name: principal_name(&user_id),
        role,
    };
    let id = st.console.sessions.create(principal.clone());
    tracing::info!(who = %principal.name, role = %role, "console sign-in with WeCom");
    audit(
        store,
        audit_row(&principal.name, "sign_in", "wecom", "ok", "console"),
    )
    .await;
    // A page, not a redirect: its refresh is a navigation from our own site, so the
    // browser sends the Strict session cookie with it.
    let body = html! {
        meta http-equiv="refresh" content="0; url=/console/overview";
        p id="signed-in" { "Signed in as " (principal.name) ". " a href="/console/overview" { "Continue to the console" } }
    };
    let mut resp = layout("Signed in", None, "", body).into_response();
    for c in [
        auth::set_cookie(auth::SESSION_COOKIE, Some(&id), secure),
        clear_state,
    ] {
        if let Ok(v) = c.parse() {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}
