//! Beisen 北森 iTalent stand-in (PROTOCOLS.md §3).
//!
//! Form-encoded `/OAuth/Token` (bad tenant → 400 `invalid_tenantid`), bearer calls
//! (no header → 400 `Authorization header is empty`, bad token → 401 `un-authorized`),
//! the asynchronous leave push (`{"Code":200,"Message":null}` + `X-PAAS-Request-ID`) and
//! its result (`Running` on the first poll, then `AllSuccess`, or `Fail` with a message
//! when a `StaffId` is unknown), 429 on demand.
//!
//! Unconfirmed and chosen here: a wrong secret answers 400 `invalid_client`; the failure
//! text for an unknown employee.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use super::vendor_server::{Answer, Recorded, Server};
use crate::deliver::vendor::beisen::{
    ASYNC_RESULT_PATH, REQUEST_ID_HEADER, TOKEN_PATH, VACATION_PATH,
};

/// State of the Beisen stand-in.
#[derive(Debug, Default)]
pub struct BeisenState {
    /// (app_id, tenant_id, secret) accepted.
    pub app: (String, String, String),
    /// Known `StaffId`s.
    pub staff: HashSet<i64>,
    /// Answers left to refuse with 429.
    pub throttle_next: u32,
    tokens: HashSet<String>,
    next: u64,
    jobs: HashMap<String, (u32, Value)>,
    /// Every accepted vacation record.
    pub records: Vec<Value>,
}

impl BeisenState {
    /// Invalidates every token (the next call gets 401).
    pub fn expire_tokens(&mut self) {
        self.tokens.clear();
    }
}

/// A running Beisen stand-in.
pub type BeisenStandIn = Server<BeisenState>;

/// Starts a Beisen stand-in.
pub async fn start(state: BeisenState) -> BeisenStandIn {
    Server::start(state, handle).await
}

fn handle(s: &mut BeisenState, req: &Recorded) -> Answer {
    if req.path == TOKEN_PATH {
        let form: HashMap<String, String> =
            form_urlencoded::parse(&req.body).into_owned().collect();
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
        if get("tenant_id") != s.app.1 {
            return Answer::json(400, &json!({"error": "invalid_tenantid"}));
        }
        if get("app_id") != s.app.0
            || get("secret") != s.app.2
            || get("grant_type") != "client_credentials"
        {
            return Answer::json(400, &json!({"error": "invalid_client"}));
        }
        s.next += 1;
        let token = format!("beisen-token-{}", s.next);
        s.tokens.insert(token.clone());
        return Answer::json(200, &json!({"access_token": token, "expires_in": "7200", "tenant_id": s.app.1, "user_id": "0"}))
            .with_header("X-RateLimit-Limit-second", "400");
    }
    let Some(auth) = req.header("authorization") else {
        return Answer::json(400, &json!({"message": "Authorization header is empty"}));
    };
    if !auth
        .strip_prefix("Bearer ")
        .is_some_and(|t| s.tokens.contains(t))
    {
        return Answer::json(401, &json!({"message": "un-authorized"}));
    }
    if s.throttle_next > 0 {
        s.throttle_next -= 1;
        return Answer::json(429, &json!({"message": "API calls quota exceeded"}))
            .with_header("Retry-After", "1");
    }
    match req.path.as_str() {
        VACATION_PATH => {
            let records = req.json().and_then(|v| v.get("VacationRecords").cloned());
            let Some(Value::Array(records)) = records.filter(|r| {
                r.as_array()
                    .is_some_and(|a| !a.is_empty() && a.len() <= 1000)
            }) else {
                return Answer::json(
                    200,
                    &json!({"Code": 417, "Message": "VacationRecords 必须为1到1000条"}),
                );
            };
            let unknown: Vec<String> = records
                .iter()
                .filter_map(|r| r.get("StaffId").and_then(Value::as_i64))
                .filter(|id| !s.staff.contains(id))
                .map(|id| id.to_string())
                .collect();
            s.next += 1;
            let request_id = format!("req-{}", s.next);
            let result = if unknown.is_empty() {
                s.records.extend(records);
                json!({"state": "AllSuccess", "message": null})
            } else {
                json!({"state": "Fail", "message": format!("员工不存在：{}", unknown.join(","))})
            };
            s.jobs.insert(request_id.clone(), (0, result));
            Answer::json(200, &json!({"Code": 200, "Message": null}))
                .with_header(REQUEST_ID_HEADER, request_id)
        }
        ASYNC_RESULT_PATH => {
            let id = req.query_param("requestId").unwrap_or_default();
            match s.jobs.get_mut(&id) {
                None => Answer::json(
                    200,
                    &json!({"code": "417", "message": "requestId不存在", "data": null}),
                ),
                Some((polls, result)) => {
                    *polls += 1;
                    let data = if *polls == 1 {
                        json!({"state": "Running", "message": null})
                    } else {
                        result.clone()
                    };
                    Answer::json(200, &json!({"code": "200", "message": null, "data": data}))
                }
            }
        }
        _ => Answer::json(401, &json!({"message": "un-authorized"})),
    }
}
