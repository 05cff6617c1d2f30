//! A generic JSON target: the ERP, HR, CRM and legal systems of the demo, which have no
//! protocol of their own in the shipped connectors (`kind = "http"`, default success on 2xx).
//!
//! `POST /<system>` stores the JSON body and answers `201 {"id": N}`; a request whose
//! `Idempotency-Key` was seen before answers `200` with the first id and stores nothing, as a
//! well-behaved target does. A body that is not JSON is answered `400` with a reason. Every
//! request is recorded so the demo and tests count documents at the target.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// One document the inbox accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// The path segment it was posted to (the system's name).
    pub system: String,
    /// The id the inbox gave it.
    pub id: u64,
    /// The `Idempotency-Key` header, if sent.
    pub idempotency_key: Option<String>,
    /// The JSON body.
    pub body: Value,
}

#[derive(Debug, Default)]
struct InboxState {
    documents: Vec<Received>,
    by_key: HashMap<String, u64>,
    duplicates: usize,
}

type Shared = Arc<Mutex<InboxState>>;

fn lock(s: &Shared) -> MutexGuard<'_, InboxState> {
    s.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running inbox on 127.0.0.1.
#[derive(Debug)]
pub struct InboxStandIn {
    state: Shared,
    server: super::Running,
}

impl InboxStandIn {
    /// Starts on an ephemeral loopback port.
    ///
    /// # Panics
    /// If no loopback port can be bound (a broken test environment).
    pub async fn start() -> InboxStandIn {
        let state: Shared = Arc::default();
        let router = Router::new()
            .route("/{system}", post(receive))
            .with_state(Arc::clone(&state));
        let server = super::serve_loopback(router, "inbox stand-in").await;
        InboxStandIn { state, server }
    }

    /// The URL documents for `system` are posted to.
    pub fn url(&self, system: &str) -> String {
        format!("http://{}/{system}", self.server.addr)
    }

    /// Every document accepted (duplicates not included), in arrival order.
    pub fn documents(&self) -> Vec<Received> {
        lock(&self.state).documents.clone()
    }

    /// How many requests were answered as duplicates of an earlier key.
    pub fn duplicates(&self) -> usize {
        lock(&self.state).duplicates
    }

    /// Stops the server.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

async fn receive(
    State(state): State<Shared>,
    Path(system): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "the body is not JSON"})),
        )
            .into_response();
    };
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut s = lock(&state);
    if let Some(id) = key.as_ref().and_then(|k| s.by_key.get(k)).copied() {
        s.duplicates += 1;
        return (
            StatusCode::OK,
            axum::Json(json!({"id": id, "duplicate": true})),
        )
            .into_response();
    }
    let id = s.documents.len() as u64 + 1;
    if let Some(k) = &key {
        s.by_key.insert(k.clone(), id);
    }
    s.documents.push(Received {
        system,
        id,
        idempotency_key: key,
        body,
    });
    (StatusCode::CREATED, axum::Json(json!({"id": id}))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stores_once_per_key_and_refuses_what_is_not_json() {
        let inbox = InboxStandIn::start().await;
        let c = reqwest::Client::new();
        let send = |body: &'static str, key: &'static str| {
            c.post(inbox.url("hr"))
                .header("idempotency-key", key)
                .body(body)
                .send()
        };
        let first = send(r#"{"days":"2.5"}"#, "k1").await.unwrap();
        assert_eq!(first.status(), 201);
        let again = send(r#"{"days":"2.5"}"#, "k1").await.unwrap();
        assert_eq!(again.status(), 200);
        assert_eq!(again.json::<Value>().await.unwrap()["id"], 1);
        assert_eq!(send("not json", "k2").await.unwrap().status(), 400);
        let docs = inbox.documents();
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].system, "hr");
        assert_eq!(docs[0].body["days"], "2.5");
        assert_eq!(inbox.duplicates(), 1);
        inbox.stop().await;
    }
}
