//! An OAuth2 token endpoint (client credentials, RFC 6749 §4.4) for tests and the demo.
//!
//! `POST /oauth/token` with a form body: `grant_type=client_credentials`, the client
//! authenticated by HTTP basic or by `client_id`/`client_secret` in the body, optional
//! `scope`. Answers like real servers do: `{"access_token", "token_type": "Bearer",
//! "expires_in", "scope"}` with `Cache-Control: no-store`; `invalid_client` (401) and
//! `unsupported_grant_type` (400) otherwise. Counts token requests, lets tests set the
//! lifetime of new tokens and expire every issued one. Other stand-ins check bearer tokens
//! through a [`TokenAuthority`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use serde_json::json;

#[derive(Debug, Default)]
struct OAuthState {
    clients: HashMap<String, String>,
    ttl_secs: u64,
    issued: HashMap<String, Instant>,
    token_requests: u64,
    refused: u64,
    counter: u64,
}

type Shared = Arc<Mutex<OAuthState>>;

fn lock(s: &Shared) -> MutexGuard<'_, OAuthState> {
    s.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Checks bearer tokens issued by an [`OAuthStandIn`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TokenAuthority(Shared);

/// Why a bearer token is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    /// No `Authorization: Bearer` header.
    Missing,
    /// Not a token this server issued.
    Unknown,
    /// Issued, but expired.
    Expired,
}

impl TokenAuthority {
    /// Checks an `Authorization` header value.
    pub fn check(&self, authorization: Option<&str>) -> Result<(), TokenProblem> {
        let token = authorization
            .and_then(|a| a.strip_prefix("Bearer "))
            .ok_or(TokenProblem::Missing)?;
        match lock(&self.0).issued.get(token) {
            None => Err(TokenProblem::Unknown),
            Some(until) if *until <= Instant::now() => Err(TokenProblem::Expired),
            Some(_) => Ok(()),
        }
    }
}

/// A running token endpoint on 127.0.0.1.
#[derive(Debug)]
pub struct OAuthStandIn {
    state: Shared,
    server: super::Running,
}

impl OAuthStandIn {
    /// Starts on an ephemeral loopback port; tokens live 3600 s unless set otherwise.
    ///
    /// # Panics
    /// If no loopback port can be bound (a broken test environment).
    pub async fn start() -> OAuthStandIn {
        let state: Shared = Arc::new(Mutex::new(OAuthState {
            ttl_secs: 3600,
            ..OAuthState::default()
        }));
        let router = Router::new()
            .route("/oauth/token", post(token))
            .with_state(Arc::clone(&state));
        let server = super::serve_loopback(router, "OAuth stand-in").await;
        OAuthStandIn { state, server }
    }

    /// The token endpoint's URL.
    pub fn token_url(&self) -> String {
        format!("http://{}/oauth/token", self.server.addr)
    }

    /// Accepts this client.
    pub fn add_client(&self, client_id: &str, secret: &str) {
        lock(&self.state)
            .clients
            .insert(client_id.to_owned(), secret.to_owned());
    }

    /// Lifetime of tokens issued from now on (`expires_in`).
    pub fn set_ttl_secs(&self, secs: u64) {
        lock(&self.state).ttl_secs = secs;
    }

    /// Expires every issued token now (the "token expired mid-run" fault).
    pub fn expire_all_tokens(&self) {
        let now = Instant::now();
        for until in lock(&self.state).issued.values_mut() {
            *until = now;
        }
    }

    /// Token requests received (issued or refused).
    pub fn token_requests(&self) -> u64 {
        lock(&self.state).token_requests
    }

    /// Token requests refused.
    pub fn refused(&self) -> u64 {
        lock(&self.state).refused
    }

    /// A checker for the tokens this server issues.
    pub fn authority(&self) -> TokenAuthority {
        TokenAuthority(Arc::clone(&self.state))
    }

    /// Stops the server (at most 5 s, then it is aborted).
    pub async fn stop(self) {
        self.server.stop_within(Duration::from_secs(5)).await;
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut r = (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"token\""),
        );
    }
    r
}

async fn token(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let mut st = lock(&state);
    st.token_requests += 1;
    let from_basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|s| s.split_once(':').map(|(a, b)| (a.to_owned(), b.to_owned())));
    let creds = from_basic.or_else(|| {
        Some((
            form.get("client_id")?.clone(),
            form.get("client_secret")?.clone(),
        ))
    });
    let known = creds
        .as_ref()
        .is_some_and(|(id, secret)| st.clients.get(id) == Some(secret));
    if !known {
        st.refused += 1;
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
    }
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        st.refused += 1;
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only client_credentials is supported",
        );
    }
    st.counter += 1;
    let access_token = format!(
        "at-{}-{}",
        st.counter,
        hex::encode(rand::random::<[u8; 12]>())
    );
    let ttl = st.ttl_secs;
    st.issued.insert(
        access_token.clone(),
        Instant::now() + Duration::from_secs(ttl),
    );
    let mut answer =
        json!({"access_token": access_token, "token_type": "Bearer", "expires_in": ttl});
    if let Some(scope) = form.get("scope") {
        answer["scope"] = json!(scope);
    }
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(answer),
    )
        .into_response()
}
