//! The small HTTP server under every vendor stand-in (Kingdee, YonBIP, U8 EAI, Beisen,
//! FxiaoKe, Salesforce): binds 127.0.0.1 port 0, records every request it receives, tracks
//! how many requests per path run at once, and hands each request to the stand-in's
//! synchronous handler with its state locked.
//!
//! Must NOT: know any vendor protocol; the stand-in modules do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// One request as the stand-in received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// URL path.
    pub path: String,
    /// Raw query string (empty when none).
    pub query: String,
    /// Headers, names lower-case, in arrival order.
    pub headers: Vec<(String, String)>,
    /// Raw body.
    pub body: Vec<u8>,
}

impl Recorded {
    /// First value of a header (name case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A decoded query parameter.
    #[must_use]
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The value of a cookie from the `Cookie` header.
    #[must_use]
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "cookie")
            .flat_map(|(_, v)| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    }

    /// The body as JSON, when it is.
    #[must_use]
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// The stand-in's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status (non-standard ones such as Kingdee's 519 are allowed).
    pub status: u16,
    /// Extra headers (`Set-Cookie`, `Retry-After`, …).
    pub headers: Vec<(String, String)>,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Answer {
    /// A JSON answer.
    #[must_use]
    pub fn json(status: u16, value: &serde_json::Value) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            content_type: "application/json; charset=utf-8",
            body: value.to_string().into_bytes(),
        }
    }

    /// A raw answer.
    #[must_use]
    pub fn raw(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            content_type,
            body: body.into(),
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Answer {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

/// A stand-in's request handler: runs with the state locked.
pub type Handler<S> = fn(&mut S, &Recorded) -> Answer;

struct Inner<S> {
    state: Mutex<S>,
    handler: Handler<S>,
    recorded: Mutex<Vec<Recorded>>,
    flight: Mutex<Flight>,
}

#[derive(Default)]
struct Flight {
    now: HashMap<String, usize>,
    max: HashMap<String, usize>,
    latency: HashMap<String, Duration>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running stand-in server.
pub struct Server<S> {
    inner: Arc<Inner<S>>,
    server: super::Running,
}

impl<S> std::fmt::Debug for Server<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl<S: Send + 'static> Server<S> {
    /// Starts on an ephemeral loopback port.
    ///
    /// # Panics
    /// If no loopback port can be bound (a broken test environment).
    pub async fn start(state: S, handler: Handler<S>) -> Server<S> {
        let inner = Arc::new(Inner {
            state: Mutex::new(state),
            handler,
            recorded: Mutex::new(Vec::new()),
            flight: Mutex::new(Flight::default()),
        });
        let router = Router::new()
            .fallback(serve::<S>)
            .with_state(Arc::clone(&inner));
        let server = super::serve_loopback(router, "vendor stand-in").await;
        Server { inner, server }
    }

    /// [`Server::start`], then `tell` gives the state the server's [`base_url`](Self::base_url),
    /// for stand-ins whose answers name their own address (an instance or gateway URL).
    pub async fn start_telling_base_url(
        state: S,
        handler: Handler<S>,
        tell: fn(&mut S, String),
    ) -> Server<S> {
        let server = Self::start(state, handler).await;
        let base = server.base_url();
        server.with(|s| tell(s, base));
        server
    }

    /// `http://127.0.0.1:<port>`.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// Runs `f` with the state locked (to configure or inspect it).
    pub fn with<R>(&self, f: impl FnOnce(&mut S) -> R) -> R {
        f(&mut lock(&self.inner.state))
    }

    /// Every request received so far.
    #[must_use]
    pub fn recorded(&self) -> Vec<Recorded> {
        lock(&self.inner.recorded).clone()
    }

    /// How many requests were received on `path`.
    #[must_use]
    pub fn count(&self, path: &str) -> usize {
        lock(&self.inner.recorded)
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    /// The most requests on `path` that were in flight at the same time.
    #[must_use]
    pub fn max_concurrent(&self, path: &str) -> usize {
        lock(&self.inner.flight).max.get(path).copied().unwrap_or(0)
    }

    /// Holds every answer on `path` for `latency` (models a slow endpoint so overlapping
    /// requests can be detected).
    pub fn set_latency(&self, path: &str, latency: Duration) {
        lock(&self.inner.flight)
            .latency
            .insert(path.to_owned(), latency);
    }

    /// Stops the server.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

async fn serve<S: Send + 'static>(
    State(inner): State<Arc<Inner<S>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = Recorded {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    };
    lock(&inner.recorded).push(req.clone());
    let latency = {
        let mut flight = lock(&inner.flight);
        let now = flight.now.entry(req.path.clone()).or_default();
        *now += 1;
        let current = *now;
        let max = flight.max.entry(req.path.clone()).or_default();
        *max = (*max).max(current);
        flight.latency.get(&req.path).copied()
    };
    if let Some(latency) = latency {
        tokio::time::sleep(latency).await;
    }
    let answer = (inner.handler)(&mut lock(&inner.state), &req);
    if let Some(now) = lock(&inner.flight).now.get_mut(&req.path) {
        *now = now.saturating_sub(1);
    }
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, answer.body).into_response();
    let h = response.headers_mut();
    if let Ok(v) = answer.content_type.parse() {
        h.insert(axum::http::header::CONTENT_TYPE, v);
    }
    for (name, value) in answer.headers {
        if let (Ok(n), Ok(v)) = (axum::http::HeaderName::try_from(name), value.parse()) {
            h.append(n, v);
        }
    }
    response
}
