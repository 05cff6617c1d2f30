//! Client for WeCom's server API (`qyapi.weixin.qq.com/cgi-bin`).
//!
//! Owns every call the bridge makes to WeCom: `gettoken`, the approval APIs
//! (`oa/getapprovaldetail`, `oa/getapprovalinfo`), `message/send`, `user/get`,
//! `externalcontact/get` and `auth/getuserinfo` (who signed in to the console with WeCom). It follows PROTOCOL.md §4:
//!
//! * WeCom answers HTTP 200 even on errors; every body is checked for a non-zero
//!   `errcode`, and errors are classified by `errcode` only, never by `errmsg` text.
//! * access tokens are cached per (corp_id, secret), refreshed shortly before they
//!   expire, fetched single-flight (concurrent callers share one `gettoken`), and
//!   dropped and re-fetched once when WeCom rejects them (40014 / 42001).
//! * retryable failures (-1, 45033, 45035, 45036, 301026, 301057, 45009, HTTP 5xx,
//!   timeouts, connection errors) are retried with jittered exponential back-off;
//!   45009 waits for the minute window to pass.
//! * the approval APIs share a client-side limiter (600 calls/min by default), so
//!   reconciliation cannot trip WeCom's per-corp limit; callers wait, they are not
//!   rejected.
//!
//! Secrets and tokens are never logged; URLs (which carry them in the query string)
//! are stripped from transport errors. Every HTTP exchange is counted in the
//! `wecom_bridge_wecom_api_calls_total{api, outcome}` counter.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::config::Secret;

mod error;
mod limiter;
mod login;
#[cfg(test)]
mod tests;
mod transport;

pub use error::ApiError;
use error::*;
use limiter::*;
pub use login::LoginIdentity;
use transport::*;

/// WeCom's production API base URL.
pub const DEFAULT_BASE_URL: &str = "https://qyapi.weixin.qq.com/cgi-bin";

/// Longest `starttime`..`endtime` span `oa/getapprovalinfo` accepts (31 days).
pub const MAX_APPROVAL_WINDOW_SECS: i64 = 31 * 86_400;

/// Most `sp_no`s `oa/getapprovalinfo` returns per page.
pub const MAX_APPROVAL_PAGE_SIZE: u32 = 100;

/// How long WeCom blocks a caller after a per-minute limit was hit (45009).
const RATE_LIMIT_WINDOW: Duration = Duration::from_secs(60);
/// Upper bound of one exponential back-off step.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Refresh a token at most this long before it expires.
const TOKEN_REFRESH_LEAD: Duration = Duration::from_secs(300);
/// Safety stop for cursor paging of one window.
const MAX_PAGES_PER_WINDOW: usize = 10_000;
/// A permanent `gettoken` failure (wrong secret, IP not allowed, …) is answered from
/// the cache for this long: repeated wrong secrets get the server's IP blocked.
const TOKEN_FAILURE_HOLD: Duration = Duration::from_secs(10);
/// Windows are not split below this span when WeCom answers 301112.
const MIN_SPLIT_WINDOW_SECS: i64 = 3_600;

/// Metric counting every HTTP exchange with WeCom.
const CALLS_METRIC: &str = "wecom_bridge_wecom_api_calls_total";

/// API names used in logs, metrics and errors.
mod names {
    pub const GETTOKEN: &str = "gettoken";
    pub const APPROVAL_DETAIL: &str = "getapprovaldetail";
    pub const APPROVAL_INFO: &str = "getapprovalinfo";
    pub const MESSAGE_SEND: &str = "message/send";
    pub const USER_GET: &str = "user/get";
    pub const EXTERNAL_CONTACT_GET: &str = "externalcontact/get";
    pub const AUTH_GETUSERINFO: &str = "auth/getuserinfo";
    pub const CLIENT: &str = "client";
}

/// Settings of the WeCom API client.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Base URL including `/cgi-bin`, without a trailing slash; default
    /// [`DEFAULT_BASE_URL`]. Tests point it at the fake server.
    pub base_url: String,
    /// Timeout of one HTTP exchange (connect + response). WeCom suggests 5–10 s.
    pub timeout: Duration,
    /// Client-side budget shared by `getapprovaldetail` and `getapprovalinfo`
    /// (WeCom allows 600/min per corp). 0 disables the limiter.
    pub approval_calls_per_minute: u32,
    /// Retries after the first attempt for retryable errors (the doc suggests ≤ 3).
    pub max_retries: u32,
    /// Cap on the wait after a 45009 (rate limited) answer. WeCom blocks for 60 s,
    /// so production keeps the default of 60 s; tests shorten it.
    pub rate_limited_backoff: Duration,
    /// First delay of the jittered exponential back-off (doubles per retry, up to 30 s).
    pub retry_min_delay: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            timeout: Duration::from_secs(10),
            approval_calls_per_minute: 600,
            max_retries: 3,
            rate_limited_backoff: RATE_LIMIT_WINDOW,
            retry_min_delay: Duration::from_secs(1),
        }
    }
}

/// One self-built app's credentials: the corp ID and the app secret.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// The corp ID (`ww…`).
    pub corp_id: String,
    /// The app secret (`corpsecret`); never logged.
    pub secret: Secret,
}

impl Credentials {
    /// Bundles a corp ID and an app secret.
    pub fn new(corp_id: impl Into<String>, secret: Secret) -> Self {
        Self {
            corp_id: corp_id.into(),
            secret,
        }
    }
}

/// Filter of `oa/getapprovalinfo` (keys: `template_id`, `creator`, `department`,
/// `sp_status`, `record_type`; same keys OR, different keys AND).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalFilter {
    /// Filter key.
    pub key: String,
    /// Filter value (always a string on the wire).
    pub value: String,
}

impl ApprovalFilter {
    /// A filter on any key.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }
    /// Only forms in this `sp_status` (2 = approved).
    pub fn sp_status(status: u8) -> Self {
        Self::new("sp_status", status.to_string())
    }
    /// Only forms of this template.
    pub fn template_id(id: impl Into<String>) -> Self {
        Self::new("template_id", id)
    }
}

/// Query of `oa/getapprovalinfo`: forms *submitted* between `start` and `end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalInfoQuery {
    /// Start of the submit-time window, unix seconds.
    pub start: i64,
    /// End of the submit-time window, unix seconds; `end > start`, span ≤ 31 days.
    pub end: i64,
    /// Page size; clamped to 1..=100.
    pub size: u32,
    /// Filters; empty for none.
    pub filters: Vec<ApprovalFilter>,
}

impl ApprovalInfoQuery {
    /// A query for `start..end` with page size 100 and no filters.
    pub fn new(start: i64, end: i64) -> Self {
        Self {
            start,
            end,
            size: MAX_APPROVAL_PAGE_SIZE,
            filters: Vec::new(),
        }
    }

    /// Adds a filter.
    pub fn with_filter(mut self, filter: ApprovalFilter) -> Self {
        self.filters.push(filter);
        self
    }
}

/// One page of `oa/getapprovalinfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApprovalInfoPage {
    /// Approval numbers on this page (may be fewer than the page size even when more follow).
    pub sp_no_list: Vec<String>,
    /// Cursor of the next page; `None` when this was the last page.
    pub next_cursor: Option<String>,
}

/// Result of `message/send`; partial failures still succeed (errcode 0).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendResult {
    /// Recipients WeCom rejected (lower-cased by WeCom).
    pub invalid_user: Vec<String>,
    /// Departments WeCom rejected.
    pub invalid_party: Vec<String>,
    /// Tags WeCom rejected.
    pub invalid_tag: Vec<String>,
    /// Message ID, usable to recall the message.
    pub msg_id: Option<String>,
}

/// Client for WeCom's server API; cheap to clone (shares one connection pool,
/// token cache and rate limiter).
#[derive(Clone)]
pub struct WeComApi {
    inner: Arc<Inner>,
    /// Whether a 45009 is waited out here or handed to the caller (see
    /// [`WeComApi::returning_rate_limits`]).
    wait_out_rate_limits: bool,
}

impl std::fmt::Debug for WeComApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeComApi")
            .field("base_url", &self.inner.base_url)
            .finish_non_exhaustive()
    }
}

impl WeComApi {
    /// Builds a client. Fails only on an unusable configuration.
    pub fn new(cfg: ApiConfig) -> Result<Self, ApiError> {
        let base_url = cfg.base_url.trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&base_url).map_err(|e| ApiError::Config {
            detail: format!("base_url is not a URL: {e}"),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ApiError::Config {
                detail: "base_url must be http or https".to_owned(),
            });
        }
        if cfg.timeout.is_zero() {
            return Err(ApiError::Config {
                detail: "timeout must be positive".to_owned(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .user_agent(concat!("wecom-bridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError::Config {
                detail: format!("HTTP client: {}", e.without_url()),
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base_url,
                approval_limiter: RateLimiter::per_minute(cfg.approval_calls_per_minute),
                cfg,
                tokens: Mutex::new(HashMap::new()),
            }),
            wait_out_rate_limits: true,
        })
    }

    /// The same client (shared pool, token cache and limiter), except that a rate-limit
    /// answer (45009) is not waited out in process: it is returned at once as
    /// [`ApiError::RateLimited`], whose `retry_after` is the wait for the caller to schedule.
    /// Queue stages use this so a worker is not held for WeCom's minute and the broker delays
    /// the message instead; other retryable errors are still retried here.
    pub fn returning_rate_limits(&self) -> WeComApi {
        WeComApi {
            inner: self.inner.clone(),
            wait_out_rate_limits: false,
        }
    }

    /// Whether a failure is retried inside this client.
    fn retries(&self, e: &ApiError) -> bool {
        e.is_retryable()
            && (self.wait_out_rate_limits || !matches!(e, ApiError::RateLimited { .. }))
    }

    /// [`ApiError::RateLimited`]'s wait, as a hint for the caller's retry.
    pub fn retry_hint(e: &ApiError) -> Option<Duration> {
        match e {
            ApiError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// A valid access token for `c`, from the cache when possible.
    ///
    /// Tokens are refreshed shortly before they expire (5 minutes, or 10 % of
    /// `expires_in` if that is shorter). Concurrent callers share one `gettoken`
    /// request (single-flight), including its error; a permanent failure (wrong
    /// secret, IP not allowed) is remembered for 10 s so callers cannot hammer
    /// `gettoken`. Retryable failures are retried.
    pub async fn access_token(&self, c: &Credentials) -> Result<String, ApiError> {
        let inner = &self.inner;
        (|| async move { inner.access_token_once(c).await })
            .retry(inner.backoff())
            .when(|e| self.retries(e))
            .adjust(|e, d| inner.adjust_delay(e, d))
            .notify(|e, d| inner.log_retry(e, d))
            .await
    }

    /// Drops the cached token of `c` (or a remembered `gettoken` failure); the next
    /// call fetches a new one.
    pub fn invalidate(&self, c: &Credentials) {
        let slot = self.inner.slot(c);
        let mut st = lock(&slot.state);
        if matches!(*st, SlotState::Ready(_) | SlotState::Failed(..)) {
            *st = SlotState::Empty;
        }
    }

    /// `oa/getapprovaldetail`: the `info` object of one approval form.
    pub async fn approval_detail(&self, c: &Credentials, sp_no: &str) -> Result<Value, ApiError> {
        let api = names::APPROVAL_DETAIL;
        let body = json!({ "sp_no": sp_no });
        let mut v = self.post(api, c, "oa/getapprovaldetail", &body).await?;
        match v.get_mut("info").map(Value::take) {
            Some(info @ Value::Object(_)) => Ok(info),
            _ => Err(ApiError::BadResponse {
                api,
                detail: "no `info` object".to_owned(),
            }),
        }
    }

    /// `oa/getapprovalinfo`: one page of approval numbers. Pass `""` as the first
    /// cursor, then each returned `next_cursor` until it is `None`. A page may be
    /// short (applicants outside the app's visible range) even when more follow.
    pub async fn approval_info_page(
        &self,
        c: &Credentials,
        q: &ApprovalInfoQuery,
        cursor: &str,
    ) -> Result<ApprovalInfoPage, ApiError> {
        let api = names::APPROVAL_INFO;
        let mut body = json!({
            "starttime": q.start.to_string(),
            "endtime": q.end.to_string(),
            "new_cursor": cursor,
            "size": q.size.clamp(1, MAX_APPROVAL_PAGE_SIZE),
        });
        if !q.filters.is_empty() {
            body["filters"] = json!(q.filters);
        }
        let v = self.post(api, c, "oa/getapprovalinfo", &body).await?;
        let sp_no_list = match v.get("sp_no_list") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    _ => Err(ApiError::BadResponse {
                        api,
                        detail: "`sp_no_list` holds a non-string".to_owned(),
                    }),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(ApiError::BadResponse {
                    api,
                    detail: "`sp_no_list` is not an array".to_owned(),
                });
            }
        };
        let next_cursor = match v.get("new_next_cursor") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(ApiError::BadResponse {
                    api,
                    detail: "`new_next_cursor` is not a string".to_owned(),
                });
            }
        };
        Ok(ApprovalInfoPage {
            sp_no_list,
            next_cursor,
        })
    }

    /// Approval numbers of approved forms (`sp_status` 2, optionally of one template)
    /// submitted between `start` and `end` (unix seconds).
    ///
    /// The range is split into windows of at most 31 days (WeCom's limit); each
    /// window is paged to its end. Adjacent windows share their boundary second so
    /// nothing is missed whether WeCom treats `endtime` as inclusive or not; the
    /// result holds every number once, in the order WeCom returned them. If WeCom
    /// still answers 301112 (range too large), that window is halved and retried.
    pub async fn approved_sp_nos(
        &self,
        c: &Credentials,
        start: i64,
        end: i64,
        template_id: Option<&str>,
    ) -> Result<Vec<String>, ApiError> {
        let mut windows = split_windows(start, end);
        windows.reverse(); // used as a stack, earliest window on top
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        'windows: while let Some((ws, we)) = windows.pop() {
            let mut q = ApprovalInfoQuery::new(ws, we).with_filter(ApprovalFilter::sp_status(2));
            if let Some(t) = template_id {
                q = q.with_filter(ApprovalFilter::template_id(t));
            }
            let mut cursor = String::new();
            for _ in 0..MAX_PAGES_PER_WINDOW {
                let page = match self.approval_info_page(c, &q, &cursor).await {
                    Ok(page) => page,
                    Err(e) if e.errcode() == Some(301112) && we - ws > MIN_SPLIT_WINDOW_SECS => {
                        let mid = ws + (we - ws) / 2;
                        tracing::warn!(
                            api = names::APPROVAL_INFO,
                            errcode = 301112,
                            window_secs = we - ws,
                            "time range too large; splitting the window"
                        );
                        windows.push((mid, we));
                        windows.push((ws, mid));
                        continue 'windows;
                    }
                    Err(e) => return Err(e),
                };
                for sp_no in page.sp_no_list {
                    if seen.insert(sp_no.clone()) {
                        out.push(sp_no);
                    }
                }
                match page.next_cursor {
                    None => continue 'windows,
                    Some(next) if next == cursor => {
                        return Err(ApiError::BadResponse {
                            api: names::APPROVAL_INFO,
                            detail: "`new_next_cursor` did not advance".to_owned(),
                        });
                    }
                    Some(next) => cursor = next,
                }
            }
            return Err(ApiError::BadResponse {
                api: names::APPROVAL_INFO,
                detail: format!("more than {MAX_PAGES_PER_WINDOW} pages in one window"),
            });
        }
        Ok(out)
    }

    /// `message/send`: sends an app message; `msg` is WeCom's request body
    /// (`touser`/`toparty`/`totag`, `msgtype`, `agentid`, …). Set
    /// `enable_duplicate_check` so that a retried send cannot notify twice.
    pub async fn send_message(&self, c: &Credentials, msg: &Value) -> Result<SendResult, ApiError> {
        let api = names::MESSAGE_SEND;
        let v = self.post(api, c, "message/send", msg).await?;
        let ids = |key: &str| -> Result<Vec<String>, ApiError> {
            match v.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::String(s)) => Ok(s
                    .split('|')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect()),
                Some(_) => Err(ApiError::BadResponse {
                    api,
                    detail: format!("`{key}` is not a string"),
                }),
            }
        };
        Ok(SendResult {
            invalid_user: ids("invaliduser")?,
            invalid_party: ids("invalidparty")?,
            invalid_tag: ids("invalidtag")?,
            msg_id: match v.get("msgid") {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                _ => None,
            },
        })
    }

    /// `user/get`: a member's record (the whole response body, fields at top level).
    pub async fn user(&self, c: &Credentials, user_id: &str) -> Result<Value, ApiError> {
        self.get(names::USER_GET, c, "user/get", &[("userid", user_id)])
            .await
    }

    /// `externalcontact/get`: a customer (the whole response body with
    /// `external_contact` and `follow_user`).
    pub async fn external_contact(
        &self,
        c: &Credentials,
        external_user_id: &str,
    ) -> Result<Value, ApiError> {
        self.get(
            names::EXTERNAL_CONTACT_GET,
            c,
            "externalcontact/get",
            &[("external_userid", external_user_id)],
        )
        .await
    }

    /// One GET call of `api` at `path` with `query`.
    async fn get(
        &self,
        api: &'static str,
        c: &Credentials,
        path: &'static str,
        query: &[(&str, &str)],
    ) -> Result<Value, ApiError> {
        let wait = self.wait_out_rate_limits;
        (self.inner)
            .call(wait, api, c, Method::Get, path, query, None)
            .await
    }

    /// One POST call of `api` at `path` with the JSON `body`.
    async fn post(
        &self,
        api: &'static str,
        c: &Credentials,
        path: &'static str,
        body: &Value,
    ) -> Result<Value, ApiError> {
        let wait = self.wait_out_rate_limits;
        (self.inner)
            .call(wait, api, c, Method::Post, path, &[], Some(body))
            .await
    }
}

/// Splits `start..end` into consecutive windows of at most 31 days.
fn split_windows(start: i64, end: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut s = start;
    while s < end {
        let e = s.saturating_add(MAX_APPROVAL_WINDOW_SECS).min(end);
        out.push((s, e));
        s = e;
    }
    out
}
