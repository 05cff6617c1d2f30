//! FxiaoKe 纷享销客 CRM stand-in (PROTOCOLS.md §4).
//!
//! The JSON token endpoint (counts every token request with its arrival time, flags more
//! than 10 in any minute; overlapping token requests show in
//! [`Server::max_concurrent`] for [`TOKEN_PATH`]), bearer + `x-fs-ea` + `x-fs-userid` on
//! `data/create`, always HTTP 200 with `errorCode`.
//!
//! Unconfirmed and chosen here: over-use of the token endpoint is recorded, not refused
//! (the real refusal code is unknown); a business refusal is injected with
//! [`FxiaokeState::reject_next`].

use std::collections::HashSet;
use std::time::Instant;

use serde_json::{Value, json};

use super::vendor_server::{Answer, Recorded, Server};
use crate::deliver::vendor::fxiaoke::{CREATE_PATH, TOKEN_PATH};

/// State of the FxiaoKe stand-in.
#[derive(Debug, Default)]
pub struct FxiaokeState {
    /// (appId, appSecret, permanentCode) accepted.
    pub app: (String, String, String),
    /// The enterprise account returned with tokens.
    pub ea: String,
    /// Next create answers to refuse with (errorCode, errorMessage).
    pub reject_next: Vec<(i64, String)>,
    /// Answers left to refuse with `30004` (per-second limit).
    pub throttle_next: u32,
    token_times: Vec<Instant>,
    tokens: HashSet<String>,
    created: Vec<Value>,
}

impl FxiaokeState {
    /// Invalidates every token (the next create gets `20016`).
    pub fn expire_tokens(&mut self) {
        self.tokens.clear();
    }

    /// How many token requests arrived.
    #[must_use]
    pub fn token_requests(&self) -> usize {
        self.token_times.len()
    }

    /// Whether more than 10 token requests arrived within any 60 s.
    #[must_use]
    pub fn token_overuse(&self) -> bool {
        self.token_times
            .windows(11)
            .any(|w| w[10].duration_since(w[0]).as_secs() < 60)
    }

    /// The `object_data` of every created record.
    #[must_use]
    pub fn created(&self) -> Vec<Value> {
        self.created.clone()
    }
}

/// A running FxiaoKe stand-in.
pub type FxiaokeStandIn = Server<FxiaokeState>;

/// Starts a FxiaoKe stand-in.
pub async fn start(state: FxiaokeState) -> FxiaokeStandIn {
    Server::start(state, handle).await
}

fn err(code: i64, message: &str) -> Answer {
    Answer::json(
        200,
        &json!({"errorCode": code, "errorMessage": message, "traceId": "E-O.standin"}),
    )
}

fn handle(s: &mut FxiaokeState, req: &Recorded) -> Answer {
    let body = req.json().unwrap_or(Value::Null);
    match req.path.as_str() {
        TOKEN_PATH => {
            s.token_times.push(Instant::now());
            let field = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default();
            if field("appSecret") != s.app.1 || field("appId") != s.app.0 {
                return err(10006, "the parameter appSecret is missing or illegal");
            }
            if field("permanentCode") != s.app.2 {
                return err(10006, "the parameter permanentCode is missing or illegal");
            }
            let token = format!("fx-token-{}", s.token_times.len());
            s.tokens.insert(token.clone());
            Answer::json(
                200,
                &json!({"accessToken": token, "expiresIn": 7084, "ea": s.ea, "errorCode": 0, "errorMessage": "success", "traceId": "E-O.standin"}),
            )
        }
        CREATE_PATH => {
            let bearer = req
                .header("authorization")
                .and_then(|h| h.strip_prefix("Bearer "))
                .unwrap_or_default();
            if !s.tokens.contains(bearer) || req.header("x-fs-ea") != Some(s.ea.as_str()) {
                return err(
                    20016,
                    "the cropId,cropAccessToken or authorization is error",
                );
            }
            if req.header("x-fs-userid").is_none_or(str::is_empty) {
                return err(10006, "the parameter x-fs-userid is missing or illegal");
            }
            if s.throttle_next > 0 {
                s.throttle_next -= 1;
                return err(30004, "超过每秒调用限制");
            }
            if !s.reject_next.is_empty() {
                let (code, message) = s.reject_next.remove(0);
                return err(code, &message);
            }
            let data = body
                .pointer("/data/object_data")
                .cloned()
                .unwrap_or(Value::Null);
            s.created.push(data);
            Answer::json(
                200,
                &json!({"traceId": "E-O.standin", "errorDescription": "success", "dataId": format!("68fa{:08}", s.created.len()), "errorMessage": "OK", "errorCode": 0}),
            )
        }
        _ => err(404, "not found"),
    }
}
