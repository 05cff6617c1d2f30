//! Salesforce REST stand-in (PROTOCOLS.md §5).
//!
//! Client-credentials token (form), bearer calls, upsert by external id
//! (`PATCH /services/data/<v>/sobjects/<Object>/<Field>/<value>`: 201 created, 200 updated),
//! plain create (`POST …/sobjects/<Object>/`, 201; `DUPLICATE_VALUE` when the configured
//! unique field repeats), errors as a top-level JSON array (400 `REQUIRED_FIELD_MISSING`,
//! 401 `INVALID_SESSION_ID`, 403 `REQUEST_LIMIT_EXCEEDED`).

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use super::vendor_server::{Answer, Recorded, Server};
use crate::deliver::vendor::salesforce::TOKEN_PATH;

/// State of the Salesforce stand-in.
#[derive(Debug, Default)]
pub struct SalesforceState {
    /// (client_id, client_secret) accepted.
    pub client: (String, String),
    /// This server's base URL (filled by [`start`]); returned as `instance_url`.
    pub base_url: String,
    /// Field that must be unique on plain create (e.g. `ExtId__c`).
    pub unique_field: String,
    /// Answers left to refuse with 403 `REQUEST_LIMIT_EXCEEDED`.
    pub throttle_next: u32,
    tokens: HashSet<String>,
    records: HashMap<String, Value>,
    next: u64,
}

impl SalesforceState {
    /// Invalidates every token.
    pub fn expire_tokens(&mut self) {
        self.tokens.clear();
    }

    /// How many records exist.
    #[must_use]
    pub fn record_count(&self) -> usize {
        self.records.len()
    }
}

/// A running Salesforce stand-in.
pub type SalesforceStandIn = Server<SalesforceState>;

/// Starts a Salesforce stand-in.
pub async fn start(state: SalesforceState) -> SalesforceStandIn {
    Server::start_telling_base_url(state, handle, |s, base| s.base_url = base).await
}

fn error(status: u16, code: &str, message: &str, fields: &[&str]) -> Answer {
    Answer::json(
        status,
        &json!([{"message": message, "errorCode": code, "fields": fields}]),
    )
}

fn handle(s: &mut SalesforceState, req: &Recorded) -> Answer {
    if req.path == TOKEN_PATH {
        let form: HashMap<String, String> =
            form_urlencoded::parse(&req.body).into_owned().collect();
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
        if get("grant_type") != "client_credentials"
            || get("client_id") != s.client.0
            || get("client_secret") != s.client.1
        {
            return Answer::json(
                400,
                &json!({"error": "invalid_client", "error_description": "Invalid client credentials"}),
            );
        }
        s.next += 1;
        let token = format!("00Dstandin!AR8.{}", s.next);
        s.tokens.insert(token.clone());
        return Answer::json(
            200,
            &json!({"access_token": token, "signature": "x", "token_format": "opaque", "instance_url": s.base_url, "id": "https://login.salesforce.com/id/00D/005", "token_type": "Bearer", "issued_at": "1700000000000"}),
        );
    }
    let bearer = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !s.tokens.contains(bearer) {
        return error(401, "INVALID_SESSION_ID", "Session expired or invalid", &[]);
    }
    if s.throttle_next > 0 {
        s.throttle_next -= 1;
        return error(
            403,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
            &[],
        );
    }
    let parts: Vec<&str> = req.path.trim_end_matches('/').split('/').collect();
    // ["", "services", "data", v, "sobjects", Object, (Field, value)?]
    if parts.len() < 6 || parts[1] != "services" || parts[4] != "sobjects" {
        return error(
            404,
            "NOT_FOUND",
            "The requested resource does not exist",
            &[],
        );
    }
    let object = parts[5];
    let body = req.json().unwrap_or(Value::Null);
    match (req.method.as_str(), parts.len()) {
        ("PATCH", 8) => {
            let value = form_urlencoded::parse(format!("v={}", parts[7]).as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            let key = format!("{object}/{}/{value}", parts[6]);
            if let Some(existing) = s.records.get_mut(&key) {
                let id = existing["Id"].clone();
                if let (Some(e), Some(b)) = (existing.as_object_mut(), body.as_object()) {
                    e.extend(b.clone());
                }
                return Answer::json(
                    200,
                    &json!({"id": id, "success": true, "errors": [], "created": false}),
                );
            }
            create(s, object, key, body)
        }
        ("POST", 6) => {
            let unique = body.get(&s.unique_field).cloned().unwrap_or(Value::Null);
            let key = format!(
                "{object}/{}/{}",
                s.unique_field,
                unique.as_str().unwrap_or_default()
            );
            if let Some(existing) = s.records.get(&key).filter(|_| !unique.is_null()) {
                let msg = format!(
                    "duplicate value found: {} duplicates value on record with id: {}",
                    s.unique_field,
                    existing["Id"].as_str().unwrap_or_default()
                );
                return error(400, "DUPLICATE_VALUE", &msg, &[]);
            }
            let key = if unique.is_null() {
                format!("{object}/#{}", s.next + 1)
            } else {
                key
            };
            create(s, object, key, body)
        }
        _ => error(405, "METHOD_NOT_ALLOWED", "HTTP Method not allowed", &[]),
    }
}

fn create(s: &mut SalesforceState, object: &str, key: String, mut body: Value) -> Answer {
    if object == "Account" && body.get("Name").is_none_or(Value::is_null) {
        return error(
            400,
            "REQUIRED_FIELD_MISSING",
            "Required fields are missing: [Name]",
            &["Name"],
        );
    }
    s.next += 1;
    let id = format!("001D0000{:010}", s.next);
    if let Some(b) = body.as_object_mut() {
        b.insert("Id".into(), Value::String(id.clone()));
    }
    s.records.insert(key, body);
    Answer::json(
        201,
        &json!({"id": id, "success": true, "errors": [], "created": true}),
    )
}
