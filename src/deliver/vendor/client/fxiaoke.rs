//! `kind = "fxiaoke"`: the `[fxiaoke]` table and the FxiaoKe 纷享销客 connector state.
//!
//! FxiaoKe allows at most 10 token requests a minute and never two at once. The token (with
//! its enterprise account `ea`) is therefore cached for its lifetime, fetched single-flight,
//! and the connector counts its own token requests: when 10 were made in the last 60 s, a
//! delivery that needs a new token is retried after the oldest one leaves the window instead
//! of asking again. `errorCode 20016` (token refused) drops the token and sends once more.
//! Every answer is HTTP 200; `errorCode == 0` is success.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

use super::token_cache::TokenCache;
use super::{Problems, Sent, auth_failed, by_reference, resolve, verdict};
use crate::config::{Secret, SecretRef};
use crate::deliver::Verdict;
use crate::deliver::http::read;
use crate::deliver::vendor::Outcome;
use crate::deliver::vendor::fxiaoke::{self as wire, CREATE_PATH, FxiaokeError, TOKEN_PATH};

/// FxiaoKe's limit on token requests per minute.
pub const TOKEN_CALLS_PER_MINUTE: usize = 10;

/// `[fxiaoke]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FxiaokeFile {
    app_id: Spanned<String>,
    app_secret: Spanned<String>,
    permanent_code: Spanned<String>,
    user_id: Spanned<String>,
    #[serde(default = "default_object")]
    object: Spanned<String>,
    #[serde(default = "default_token_calls")]
    token_calls_per_minute: Spanned<usize>,
}

fn default_object() -> Spanned<String> {
    Spanned::new(0..0, "AccountObj".to_owned())
}
fn default_token_calls() -> Spanned<usize> {
    Spanned::new(0..0, TOKEN_CALLS_PER_MINUTE)
}

/// `[fxiaoke]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FxiaokeSpec {
    /// The app id (`FSAID_…`).
    pub app_id: String,
    /// The app secret, by reference.
    pub app_secret: SecretRef,
    /// The enterprise's permanent code (永久授权码), by reference.
    pub permanent_code: SecretRef,
    /// The CRM user records are created as (`x-fs-userid`, e.g. `FSUID_…` or `1000`).
    pub user_id: String,
    /// The object created (`AccountObj`, `ContactObj`, `LeadsObj`, …).
    pub object: String,
    /// Token requests allowed a minute (≤ 10).
    pub token_calls_per_minute: usize,
}

/// Validates `[fxiaoke]`.
pub fn validate(t: Spanned<FxiaokeFile>, errs: &mut Problems) -> Option<FxiaokeSpec> {
    let f = t.into_inner();
    let before = errs.len();
    for (what, v) in [
        ("fxiaoke.app_id", &f.app_id),
        ("fxiaoke.user_id", &f.user_id),
        ("fxiaoke.object", &f.object),
    ] {
        if v.get_ref().trim().is_empty() {
            errs.push((Some(v.span()), format!("{what} is empty")));
        }
    }
    let app_secret = by_reference("fxiaoke.app_secret", &f.app_secret, errs);
    let permanent_code = by_reference("fxiaoke.permanent_code", &f.permanent_code, errs);
    let calls = *f.token_calls_per_minute.get_ref();
    if !(1..=TOKEN_CALLS_PER_MINUTE).contains(&calls) {
        errs.push((
            Some(f.token_calls_per_minute.span()),
            format!("fxiaoke.token_calls_per_minute must be 1 to {TOKEN_CALLS_PER_MINUTE} (FxiaoKe's own limit)"),
        ));
    }
    (errs.len() == before).then(|| FxiaokeSpec {
        app_id: f.app_id.into_inner(),
        app_secret,
        permanent_code,
        user_id: f.user_id.into_inner(),
        object: f.object.into_inner(),
        token_calls_per_minute: calls,
    })
}

#[derive(Clone)]
struct Token {
    access_token: Secret,
    ea: String,
}

/// A built FxiaoKe connector: secrets resolved, token cached and rationed.
pub struct FxiaokeClient {
    spec: FxiaokeSpec,
    app_secret: Secret,
    permanent_code: Secret,
    base: url::Url,
    tokens: TokenCache<Token>,
    /// When the token requests of the last minute were made (oldest first).
    token_calls: Mutex<VecDeque<Instant>>,
}

impl std::fmt::Debug for FxiaokeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FxiaokeClient")
            .field("app_id", &self.spec.app_id)
            .field("object", &self.spec.object)
            .finish_non_exhaustive()
    }
}

impl FxiaokeClient {
    /// Resolves and checks the secrets.
    ///
    /// # Errors
    /// A secret that cannot be read or is empty.
    pub fn build(spec: &FxiaokeSpec, base: &url::Url) -> Result<FxiaokeClient, String> {
        Ok(FxiaokeClient {
            app_secret: resolve("fxiaoke.app_secret", &spec.app_secret)?,
            permanent_code: resolve("fxiaoke.permanent_code", &spec.permanent_code)?,
            spec: spec.clone(),
            base: base.clone(),
            tokens: TokenCache::new(Duration::from_secs(300)),
            token_calls: Mutex::new(VecDeque::new()),
        })
    }

    /// Token requests allowed a minute.
    pub fn token_calls_per_minute(&self) -> usize {
        self.spec.token_calls_per_minute
    }

    /// Takes one of this minute's token requests, or says how long until one is free.
    /// Probes take theirs here too, so a probe never pushes the connector over the limit.
    pub fn take_token_call(&self) -> Result<(), Duration> {
        let mut calls = self
            .token_calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let minute = Duration::from_secs(60);
        while calls
            .front()
            .is_some_and(|t| now.duration_since(*t) >= minute)
        {
            calls.pop_front();
        }
        if calls.len() >= self.spec.token_calls_per_minute {
            let oldest = calls.front().copied().unwrap_or(now);
            return Err(minute.saturating_sub(now.duration_since(oldest)));
        }
        calls.push_back(now);
        Ok(())
    }

    fn url(&self, path: &str) -> url::Url {
        let mut u = crate::deliver::probe::vendor::endpoint(&self.base, path);
        u.query_pairs_mut()
            .append_pair("thirdTraceId", &hex::encode(rand::random::<[u8; 16]>()));
        u
    }

    pub(super) fn document_url(&self) -> url::Url {
        crate::deliver::probe::vendor::endpoint(&self.base, CREATE_PATH)
    }

    pub(super) fn token_fetches(&self) -> u64 {
        self.tokens.fetches()
    }

    pub(super) fn static_secrets(&self) -> Vec<String> {
        vec![
            self.app_secret.expose().to_owned(),
            self.permanent_code.expose().to_owned(),
        ]
    }

    /// The mapped document (the object's fields) in the create envelope, workflows off.
    pub(super) fn encode(&self, document: &Value) -> Result<Vec<u8>, String> {
        let Value::Object(fields) = document else {
            return Err("a FxiaoKe record must be a JSON object of the object's fields".into());
        };
        serde_json::to_vec(&wire::create_body(&self.spec.object, fields.clone()))
            .map_err(|e| e.to_string())
    }

    async fn token(&self, http: &reqwest::Client, total: Duration) -> Result<Token, Verdict> {
        self.tokens
            .get(|| async {
                if let Err(wait) = self.take_token_call() {
                    metrics::counter!("wecom_bridge_deliver_vendor_token_rationed_total", "vendor" => "fxiaoke").increment(1);
                    return Err(Verdict::Retryable {
                        after: Some(wait),
                        reason: format!(
                            "FxiaoKe allows {} token requests a minute and they are used up; a new token is asked for in {} s",
                            self.spec.token_calls_per_minute,
                            wait.as_secs().max(1)
                        ),
                    });
                }
                let body = wire::token_body(
                    &self.spec.app_id,
                    self.app_secret.expose(),
                    self.permanent_code.expose(),
                );
                let req = http.post(self.url(TOKEN_PATH)).json(&body);
                let a = read(req, total).await?;
                match wire::parse_token(a.status, &a.body) {
                    Ok(t) => Ok((
                        Token {
                            access_token: Secret::new(t.access_token),
                            ea: t.ea,
                        },
                        Some(t.expires_in),
                    )),
                    Err(e) => {
                        // FxiaoKe answers HTTP 200 to a refusal; its errorCode says what.
                        let status = match &e {
                            FxiaokeError::Refused { .. } => 400,
                            FxiaokeError::Unreadable { status, .. } => *status,
                        };
                        Err(auth_failed(
                            Some(status),
                            e.to_string(),
                            "fix fxiaoke.app_id / app_secret / permanent_code with the FxiaoKe administrator, then replay",
                        ))
                    }
                }
            })
            .await
    }

    pub(super) async fn send(&self, http: &reqwest::Client, total: Duration, body: &[u8]) -> Sent {
        let mut sent = Sent {
            method: "POST",
            url: self.document_url(),
            headers: vec![("Content-Type".to_owned(), "application/json".to_owned())],
            answer: None,
            verdict: Verdict::Permanent {
                reason: String::new(),
            },
            captured: BTreeMap::new(),
            volatile: Vec::new(),
        };
        for round in 0..2 {
            let token = match self.token(http, total).await {
                Ok(t) => t,
                Err(v) => {
                    sent.verdict = v;
                    return sent;
                }
            };
            sent.volatile.push(token.access_token.expose().to_owned());
            sent.url = self.url(CREATE_PATH);
            sent.headers = vec![
                ("Content-Type".to_owned(), "application/json".to_owned()),
                (
                    "Authorization".to_owned(),
                    format!("Bearer {}", token.access_token.expose()),
                ),
                ("x-fs-ea".to_owned(), token.ea.clone()),
                ("x-fs-userid".to_owned(), self.spec.user_id.clone()),
            ];
            let mut req = http.post(sent.url.clone()).body(body.to_vec());
            for (n, v) in &sent.headers {
                req = req.header(n.as_str(), v.as_str());
            }
            let answer = match read(req, total).await {
                Ok(a) => a,
                Err(v) => {
                    sent.verdict = v;
                    return sent;
                }
            };
            let outcome = wire::classify(answer.status, &answer.body);
            sent.answer = Some(answer);
            if let (Outcome::Reauth { reason }, 0) = (&outcome, round) {
                tracing::info!(reason = %reason, "FxiaoKe refused the token; fetching a new one and sending once more");
                metrics::counter!("wecom_bridge_deliver_vendor_reauth_total", "vendor" => "fxiaoke").increment(1);
                let used = token.access_token;
                self.tokens.forget(|t| t.access_token == used).await;
                continue;
            }
            sent.verdict = verdict(outcome, &mut sent.captured);
            return sent;
        }
        sent
    }
}
