//! The console's pages: the shared layout, the session prelude every page runs, and the
//! CSRF check every POST runs. Each page lives in its own file.

mod audit;
mod dead_letters;
mod events;
mod overview;
mod sign_in;
mod wecom_sign_in;
// console-pages: journey, deliveries, playground, connectors
mod connectors;
mod deliveries;
mod journey;
mod playground;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};

use super::auth::{self, Session};
use super::settings::Role;
use crate::admin::AdminState;

/// The page routes.
pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/console/sign-in", get(sign_in::form).post(sign_in::submit))
        .route("/console/sign-out", post(sign_in::sign_out))
        .route("/console/wecom/start", get(wecom_sign_in::start))
        .route("/console/wecom/callback", get(wecom_sign_in::callback))
        .route("/console/overview", get(overview::page))
        .route("/console/events", get(events::list))
        .route("/console/event", get(events::one))
        .route("/console/dead-letters", get(dead_letters::list))
        .route("/console/dead-letters/replay", post(dead_letters::replay))
        .route("/console/audit", get(audit::list))
        // console-pages: journey, deliveries, playground, connectors
        .route("/console/journey", get(journey::page))
        .route("/console/deliveries", get(deliveries::list))
        .route("/console/deliveries/replay", post(deliveries::replay))
        .route(
            "/console/playground",
            get(playground::page).post(playground::try_it),
        )
        .route("/console/connectors", get(connectors::page))
        .route("/console/connectors/test-auth", post(connectors::test_auth))
}

/// The session cookie's id and the live session it names.
fn session_of(st: &AdminState, headers: &HeaderMap) -> Option<(String, Session)> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    let id = auth::cookie(cookies, auth::SESSION_COOKIE)?;
    let session = st.console.sessions.get(id)?;
    Some((id.to_string(), session))
}

/// The prelude of every page, as an extractor: the live session, or a redirect to the
/// sign-in page.
struct SignedIn(Session);

impl FromRequestParts<AdminState> for SignedIn {
    type Rejection = Redirect;

    async fn from_request_parts(parts: &mut Parts, st: &AdminState) -> Result<Self, Redirect> {
        session_of(st, &parts.headers)
            .map(|(_, s)| SignedIn(s))
            .ok_or_else(|| Redirect::to("/console/sign-in"))
    }
}

/// The prelude of every POST: the form's CSRF token must be the session's.
async fn csrf_ok(st: &AdminState, session: &Session, given: &str, action: &str) -> bool {
    if auth::same(&session.csrf, given) && !given.is_empty() {
        return true;
    }
    metrics::counter!("wecom_bridge_console_refused_total", "reason" => "csrf").increment(1);
    tracing::warn!(who = %session.principal.name, %action, hint = "a form was posted without this session's CSRF token: a stale tab, or another site trying to act as the operator", "console action refused");
    super::audit(
        st.journal.store(),
        super::audit_row(
            &session.principal.name,
            action,
            "",
            "refused: missing or wrong CSRF token",
            "console",
        ),
    )
    .await;
    false
}

/// The gate of every operator action (a POST): the form's CSRF token `csrf`, then the
/// operator role. A viewer's attempt at `action` is audited on its target when one is given
/// (`(action, Some(target))`) and refused saying `why`. `Err` holds the refusal page.
async fn operator_gate(
    st: &AdminState,
    session: &Session,
    csrf: &str,
    (action, target): (&str, Option<&str>),
    why: &str,
) -> Result<(), Response> {
    if !csrf_ok(st, session, csrf, action).await {
        return Err(refused(
            session,
            "This form expired or came from another page. Reload the page and try again.",
        ));
    }
    if !session.principal.may(Role::Operator) {
        if let Some(target) = target {
            let row = super::audit_row(
                &session.principal.name,
                action,
                target,
                "refused: role viewer",
                "console",
            );
            super::audit(st.journal.store(), row).await;
        }
        return Err(refused(session, why));
    }
    Ok(())
}

/// A page refusing an action (403) inside the layout.
fn refused(session: &Session, text: &str) -> Response {
    let body = html! { p.flash.error { (text) } };
    (
        StatusCode::FORBIDDEN,
        layout("Refused", Some(session), "", body),
    )
        .into_response()
}

/// An error page (e.g. the broker is not connected).
fn trouble(session: &Session, status: StatusCode, text: &str) -> Response {
    let body = html! { p.flash.error { (text) } };
    (status, layout("Error", Some(session), "", body)).into_response()
}

/// What a page handler that can fail answers: the page, or (`Err`) the error or refusal page
/// shown instead, so that the handler ends early with `?`.
type Page = Result<Response, Response>;

/// The error page (503) of a store, ledger or broker `e` that cannot answer now.
fn unavailable(session: &Session, e: impl std::fmt::Display) -> Response {
    trouble(session, StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
}

/// The error page (503) of an action that needs the broker before it is connected.
fn no_broker(session: &Session) -> Response {
    unavailable(
        session,
        "The broker is not connected yet; see the overview.",
    )
}

/// Shows Unix milliseconds as RFC 3339 (UTC); the script shows it in local time.
fn time(ms: i64) -> Markup {
    let text = jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.round(jiff::Unit::Second).unwrap_or(t).to_string())
        .unwrap_or_default();
    html! { time datetime=(text) { (text) } }
}

/// The page frame: navigation (by role), who is signed in, the sign-out button.
fn layout(title: &str, session: Option<&Session>, active: &str, body: Markup) -> Html<String> {
    let nav: &[(&str, &str, Role)] = &[
        ("overview", "Overview", Role::Viewer),
        ("journey", "Journey", Role::Viewer),
        ("events", "Events", Role::Viewer),
        ("deliveries", "Deliveries", Role::Viewer),
        ("dead-letters", "Dead letters", Role::Viewer),
        ("playground", "Playground", Role::Operator),
        ("connectors", "Connectors", Role::Viewer),
        ("audit", "Audit", Role::Viewer),
    ];
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · wecom-bridge" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                header {
                    span.brand { "wecom-bridge" }
                    @if let Some(s) = session {
                        nav {
                            @for (path, label, role) in nav {
                                @if s.principal.may(*role) {
                                    a href={ "/console/" (path) } class=[(active == *path).then_some("active")] { (label) }
                                }
                            }
                        }
                        span.who {
                            (s.principal.name) " "
                            span.role { (s.principal.role.as_str()) }
                        }
                        form.inline method="post" action="/console/sign-out" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            button type="submit" id="sign-out" { "Sign out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    Html(page.into_string())
}
