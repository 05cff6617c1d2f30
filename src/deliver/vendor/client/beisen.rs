//! `kind = "beisen"`: the `[beisen]` table and the Beisen 北森 iTalent connector state.
//!
//! The bearer token comes from the form-encoded `POST /OAuth/Token`, is cached single-flight
//! and fetched anew once when a call is refused (401, or 400 "Authorization header is
//! empty"). A leave push is asynchronous: `{"Code":200}` only means "accepted for
//! processing", so the connector polls `GetByRequestId` with the `X-PAAS-Request-ID` every
//! `poll_interval_ms` until the batch state is final (`AllSuccess` → delivered; `Fail`,
//! `PartialSuccess` → permanent with Beisen's message). A batch still running after
//! `poll_timeout_secs` is parked, not retried: a retry would push the leave again and Beisen
//! documents no duplicate check.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use toml::Spanned;

use super::token_cache::TokenCache;
use super::{Problems, Sent, auth_failed, by_reference, resolve, verdict};
use crate::config::{Secret, SecretRef};
use crate::deliver::Verdict;
use crate::deliver::http::read;
use crate::deliver::vendor::beisen::{
    self as wire, ASYNC_RESULT_PATH, BatchState, REQUEST_ID_HEADER, TOKEN_PATH, VACATION_PATH,
};
use crate::deliver::vendor::{Outcome, retry_after};

/// `[beisen]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeisenFile {
    app_id: Spanned<String>,
    tenant_id: Spanned<String>,
    secret: Spanned<String>,
    #[serde(default = "default_path")]
    path: Spanned<String>,
    #[serde(default = "default_poll_interval")]
    poll_interval_ms: u64,
    #[serde(default = "default_poll_timeout")]
    poll_timeout_secs: u64,
}

fn default_path() -> Spanned<String> {
    Spanned::new(0..0, VACATION_PATH.to_owned())
}
fn default_poll_interval() -> u64 {
    1000
}
fn default_poll_timeout() -> u64 {
    120
}

/// `[beisen]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeisenSpec {
    /// The app id (应用 app_id).
    pub app_id: String,
    /// The tenant id (租户 ID).
    pub tenant_id: String,
    /// The app secret, by reference.
    pub secret: SecretRef,
    /// The push path (default: the leave push).
    pub path: String,
    /// Wait between polls of the batch state.
    pub poll_interval: Duration,
    /// Give up polling after this long (the job is parked).
    pub poll_timeout: Duration,
}

/// Validates `[beisen]`.
pub fn validate(t: Spanned<BeisenFile>, errs: &mut Problems) -> Option<BeisenSpec> {
    let f = t.into_inner();
    let before = errs.len();
    for (what, v) in [
        ("beisen.app_id", &f.app_id),
        ("beisen.tenant_id", &f.tenant_id),
    ] {
        if v.get_ref().trim().is_empty() {
            errs.push((
                Some(v.span()),
                format!("{what} is empty; ask the Beisen administrator"),
            ));
        }
    }
    let secret = by_reference("beisen.secret", &f.secret, errs);
    if !f.path.get_ref().starts_with('/') {
        errs.push((
            Some(f.path.span()),
            format!("beisen.path must start with / (e.g. `{VACATION_PATH}`)"),
        ));
    }
    if f.poll_interval_ms == 0 || f.poll_timeout_secs == 0 {
        errs.push((
            None,
            "beisen.poll_interval_ms and beisen.poll_timeout_secs must be above 0".into(),
        ));
    }
    (errs.len() == before).then(|| BeisenSpec {
        app_id: f.app_id.into_inner(),
        tenant_id: f.tenant_id.into_inner(),
        secret,
        path: f.path.into_inner(),
        poll_interval: Duration::from_millis(f.poll_interval_ms),
        poll_timeout: Duration::from_secs(f.poll_timeout_secs),
    })
}

/// A built Beisen connector: secret resolved, token cached.
pub struct BeisenClient {
    spec: BeisenSpec,
    secret: Secret,
    base: url::Url,
    tokens: TokenCache<Secret>,
}

impl std::fmt::Debug for BeisenClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BeisenClient")
            .field("app_id", &self.spec.app_id)
            .field("tenant_id", &self.spec.tenant_id)
            .finish_non_exhaustive()
    }
}

impl BeisenClient {
    /// Resolves and checks the secret.
    ///
    /// # Errors
    /// A secret that cannot be read or is empty.
    pub fn build(spec: &BeisenSpec, base: &url::Url) -> Result<BeisenClient, String> {
        Ok(BeisenClient {
            secret: resolve("beisen.secret", &spec.secret)?,
            spec: spec.clone(),
            base: base.clone(),
            tokens: TokenCache::new(Duration::from_secs(300)),
        })
    }

    fn url(&self, path: &str) -> url::Url {
        crate::deliver::probe::vendor::endpoint(&self.base, path)
    }

    pub(super) fn document_url(&self) -> url::Url {
        self.url(&self.spec.path)
    }

    pub(super) fn token_fetches(&self) -> u64 {
        self.tokens.fetches()
    }

    pub(super) fn static_secrets(&self) -> Vec<String> {
        vec![self.secret.expose().to_owned()]
    }

    /// One record (the mapped document) in the push envelope `{"VacationRecords": [...]}`;
    /// a document that already is the envelope is sent as it is.
    pub(super) fn encode(&self, document: &Value) -> Result<Vec<u8>, String> {
        let body = match document {
            Value::Object(m) if m.contains_key("VacationRecords") => document.clone(),
            Value::Object(_) => json!({ "VacationRecords": [document] }),
            _ => return Err("a Beisen record must be a JSON object".into()),
        };
        serde_json::to_vec(&body).map_err(|e| e.to_string())
    }

    async fn token(&self, http: &reqwest::Client, total: Duration) -> Result<Secret, Verdict> {
        self.tokens
            .get(|| async {
                let url = self.url(TOKEN_PATH);
                let form = wire::token_form(
                    &self.spec.app_id,
                    &self.spec.tenant_id,
                    self.secret.expose(),
                );
                let body = url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
                    .finish();
                let req = http
                    .post(url)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(body);
                let a = read(req, total).await?;
                // Beisen's `expires_in` is not reliably a lifetime (it may be a moment in
                // time): keep the token until a call is refused.
                wire::parse_token(a.status, &a.body)
                    .map(|t| (Secret::new(t), None))
                    .map_err(|e| {
                        let status = match &e {
                            wire::BeisenError::Refused { status, .. }
                            | wire::BeisenError::Unreadable { status, .. } => *status,
                        };
                        auth_failed(
                            Some(status),
                            e.to_string(),
                            "check beisen.app_id, beisen.tenant_id and beisen.secret with the Beisen administrator",
                        )
                    })
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
            sent.volatile.push(token.expose().to_owned());
            sent.headers = vec![
                ("Content-Type".to_owned(), "application/json".to_owned()),
                (
                    "Authorization".to_owned(),
                    format!("Bearer {}", token.expose()),
                ),
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
            let header = |name: &str| {
                answer
                    .headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            };
            let request_id = header(REQUEST_ID_HEADER);
            let after = retry_after(header("retry-after").as_deref());
            let outcome =
                wire::classify_push(answer.status, request_id.as_deref(), &answer.body, after);
            sent.answer = Some(answer);
            match (outcome, round) {
                (Outcome::Reauth { reason }, 0) => {
                    tracing::info!(reason = %reason, "Beisen refused the token; fetching a new one and sending once more");
                    metrics::counter!("wecom_bridge_deliver_vendor_reauth_total", "vendor" => "beisen").increment(1);
                    self.tokens.forget(|t| t == &token).await;
                }
                (Outcome::Success { captured }, _) => {
                    let id = captured.id.unwrap_or_default();
                    sent.captured.insert("id".into(), Value::String(id.clone()));
                    self.poll(http, total, &id, token, &mut sent).await;
                    return sent;
                }
                (outcome, _) => {
                    sent.verdict = verdict(outcome, &mut sent.captured);
                    return sent;
                }
            }
        }
        sent
    }

    /// Polls the batch `request_id` until its state is final; the final answer and verdict go
    /// into `sent`.
    async fn poll(
        &self,
        http: &reqwest::Client,
        total: Duration,
        request_id: &str,
        mut token: Secret,
        sent: &mut Sent,
    ) {
        let started = tokio::time::Instant::now();
        let mut url = self.url(ASYNC_RESULT_PATH);
        url.query_pairs_mut().append_pair("requestId", request_id);
        let mut refreshed = false;
        let mut last_state = String::new();
        while started.elapsed() < self.spec.poll_timeout {
            tokio::time::sleep(self.spec.poll_interval).await;
            let req = http.get(url.clone()).bearer_auth(token.expose());
            let answer = match read(req, total).await {
                Ok(a) => a,
                // The push was accepted: a failing poll is not a reason to push again.
                Err(_) => continue,
            };
            if matches!(answer.status, 400 | 401) && !refreshed {
                // The token expired between the push and the poll.
                refreshed = true;
                self.tokens.forget(|t| t == &token).await;
                match self.token(http, total).await {
                    Ok(t) => {
                        sent.volatile.push(t.expose().to_owned());
                        token = t;
                    }
                    Err(v) => {
                        sent.verdict = v;
                        return;
                    }
                }
                continue;
            }
            let state = wire::classify_state(answer.status, &answer.body);
            sent.answer = Some(answer);
            match state {
                BatchState::Pending(s) => last_state = s,
                BatchState::Done(outcome) => {
                    sent.verdict = verdict(outcome, &mut sent.captured);
                    return;
                }
            }
        }
        metrics::counter!("wecom_bridge_deliver_vendor_poll_timeouts_total", "vendor" => "beisen")
            .increment(1);
        sent.verdict = Verdict::Permanent {
            reason: format!(
                "Beisen accepted batch {request_id} but it was still {} after {} s; look it up in Beisen (GetByRequestId) before replaying: a replay pushes the leave again",
                if last_state.is_empty() {
                    "unanswered"
                } else {
                    &last_state
                },
                self.spec.poll_timeout.as_secs()
            ),
        };
    }
}
