//! Sign-in with a token, and sign-out. The sign-in form is protected against login CSRF by
//! a random value held both in a `SameSite=Strict` cookie and in the form. The page also
//! offers sign-in with WeCom when it is configured (`wecom_sign_in`).

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::{csrf_ok, layout, session_of};
use crate::admin::AdminState;
use crate::console::{audit, audit_row, auth};

/// The sign-in form's fields.
#[derive(Debug, Deserialize)]
pub(super) struct SignIn {
    token: String,
    #[serde(default)]
    nonce: String,
}

/// The sign-out form's fields.
#[derive(Debug, Deserialize)]
pub(super) struct SignOut {
    #[serde(default)]
    csrf: String,
}

fn form_page(st: &AdminState, status: StatusCode, message: Option<&str>) -> Response {
    let nonce = auth::random_token();
    let secure = st.console.config.secure_cookie;
    let body = html! {
        div.signin {
            @if let Some(m) = message { p.flash.error id="sign-in-error" { (m) } }
            @if st.console.tokens.is_open() {
                p.flash.error {
                    "No admin tokens are configured. Add [[admin.users]] entries (name, token by reference, role) to the configuration to use the console."
                }
            }
            form method="post" action="/console/sign-in" {
                input type="hidden" name="nonce" value=(nonce);
                label for="token" { "Access token" }
                input type="password" id="token" name="token" autocomplete="current-password" required;
                button.primary type="submit" id="sign-in" { "Sign in" }
            }
            p.muted { "Tokens are configured by the bridge's administrator under [[admin.users]]." }
            @if st.console.wecom.is_some() {
                p.wecom {
                    a.button id="wecom-sign-in" href="/console/wecom/start" { "Sign in with WeCom" }
                    " "
                    a.muted id="wecom-qr" href="/console/wecom/start?via=qr" { "(QR code)" }
                }
            }
        }
    };
    (
        status,
        [(
            header::SET_COOKIE,
            auth::set_cookie(auth::SIGN_IN_COOKIE, Some(&nonce), secure),
        )],
        layout("Sign in", None, "", body),
    )
        .into_response()
}

/// `GET /console/sign-in`.
pub(super) async fn form(State(st): State<AdminState>, headers: HeaderMap) -> Response {
    if session_of(&st, &headers).is_some() {
        return Redirect::to("/console/overview").into_response();
    }
    form_page(&st, StatusCode::OK, None)
}

/// Refuses a sign-in: counted under `reason`, audited as `result` (by an unknown
/// principal), and the form again with `status` and `message`.
async fn refuse(
    st: &AdminState,
    reason: &'static str,
    result: &str,
    status: StatusCode,
    message: &str,
) -> Response {
    metrics::counter!("wecom_bridge_console_refused_total", "reason" => reason).increment(1);
    audit(
        st.journal.store(),
        audit_row("unknown", "sign_in", "", result, "console"),
    )
    .await;
    form_page(st, status, Some(message))
}

/// `POST /console/sign-in`: a known token starts a session; anything else is refused and
/// audited.
pub(super) async fn submit(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Form(f): Form<SignIn>,
) -> Response {
    let store = st.journal.store();
    let cookie_nonce = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| auth::cookie(c, auth::SIGN_IN_COOKIE))
        .unwrap_or("");
    if f.nonce.is_empty() || !auth::same(cookie_nonce, &f.nonce) {
        return refuse(
            &st,
            "csrf",
            "refused: sign-in form without its CSRF value",
            StatusCode::FORBIDDEN,
            "The sign-in form expired or was posted from elsewhere. Please sign in again.",
        )
        .await;
    }
    let Some(principal) = st.console.tokens.authenticate(f.token.trim()) else {
        tracing::warn!(
            hint = "someone tried to sign in to the console with a token that is not configured; repeated attempts mean someone is guessing",
            "console sign-in refused"
        );
        return refuse(
            &st,
            "unknown_token",
            "refused: unknown token",
            StatusCode::UNAUTHORIZED,
            "That token is not valid.",
        )
        .await;
    };
    let id = st.console.sessions.create(principal.clone());
    tracing::info!(who = %principal.name, role = %principal.role, "console sign-in");
    audit(
        store,
        audit_row(
            &principal.name,
            "sign_in",
            principal.role.as_str(),
            "ok",
            "console",
        ),
    )
    .await;
    let secure = st.console.config.secure_cookie;
    let mut resp = Redirect::to("/console/overview").into_response();
    for c in [
        auth::set_cookie(auth::SESSION_COOKIE, Some(&id), secure),
        auth::set_cookie(auth::SIGN_IN_COOKIE, None, secure),
    ] {
        if let Ok(v) = c.parse() {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// `POST /console/sign-out`.
pub(super) async fn sign_out(
    State(st): State<AdminState>,
    headers: HeaderMap,
    Form(f): Form<SignOut>,
) -> Response {
    let Some((id, session)) = session_of(&st, &headers) else {
        return Redirect::to("/console/sign-in").into_response();
    };
    if !csrf_ok(&st, &session, &f.csrf, "sign_out").await {
        return super::refused(
            &session,
            "This form expired. Reload the page and try again.",
        );
    }
    st.console.sessions.remove(&id);
    audit(
        st.journal.store(),
        audit_row(&session.principal.name, "sign_out", "", "ok", "console"),
    )
    .await;
    (
        [(
            header::SET_COOKIE,
            auth::set_cookie(auth::SESSION_COOKIE, None, st.console.config.secure_cookie),
        )],
        Redirect::to("/console/sign-in"),
    )
        .into_response()
}
