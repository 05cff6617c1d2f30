//! Client for WeCom's server API (`qyapi.weixin.qq.com/cgi-bin`).
//!
//! Owns every call the bridge makes to WeCom: `gettoken`, the approval APIs
//! (`oa/getapprovaldetail`, `oa/getapprovalinfo`), `message/send`, `user/get` and
//! `externalcontact/get`. It follows PROTOCOL.md §4:
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

/// What went wrong calling WeCom, classified by `errcode` (never by `errmsg`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// WeCom reported a temporary failure (-1, 45033, 45035, 45036, 301026, 301057);
    /// retried with back-off.
    #[error("WeCom {api} failed with transient errcode {errcode}: {errmsg}")]
    Transient {
        /// The API that failed.
        api: &'static str,
        /// WeCom's errcode.
        errcode: i64,
        /// WeCom's errmsg, for people only.
        errmsg: String,
    },
    /// WeCom's frequency limit was hit (45009); wait at least `retry_after`.
    #[error("WeCom {api} is rate limited (errcode {errcode}); retry after {retry_after:?}")]
    RateLimited {
        /// The API that failed.
        api: &'static str,
        /// WeCom's errcode.
        errcode: i64,
        /// How long WeCom blocks the caller.
        retry_after: Duration,
    },
    /// A configuration, permission or data error that retrying cannot fix.
    #[error("WeCom {api} failed with errcode {errcode}: {errmsg} ({hint})")]
    Permanent {
        /// The API that failed.
        api: &'static str,
        /// WeCom's errcode.
        errcode: i64,
        /// WeCom's errmsg, for people only.
        errmsg: String,
        /// What an operator should check.
        hint: &'static str,
    },
    /// A non-2xx HTTP status (WeCom itself answers 200); 5xx is retryable.
    #[error("WeCom {api} answered HTTP {status}")]
    Http {
        /// The API that failed.
        api: &'static str,
        /// The HTTP status code.
        status: u16,
    },
    /// Timeout or connection failure; retryable. Never contains the URL.
    #[error("WeCom {api} request failed: {detail}")]
    Network {
        /// The API that failed.
        api: &'static str,
        /// Transport error description without the URL.
        detail: String,
    },
    /// The body was not the JSON WeCom documents.
    #[error("WeCom {api} returned an unexpected response: {detail}")]
    BadResponse {
        /// The API that failed.
        api: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The client itself is misconfigured (for example an unusable base URL).
    #[error("WeCom client configuration is invalid: {detail}")]
    Config {
        /// What was wrong.
        detail: String,
    },
}

impl ApiError {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::Transient { .. } | ApiError::RateLimited { .. } => true,
            ApiError::Network { .. } => true,
            ApiError::Http { status, .. } => (500..600).contains(status),
            ApiError::Permanent { .. } | ApiError::BadResponse { .. } | ApiError::Config { .. } => {
                false
            }
        }
    }

    /// WeCom's errcode, when WeCom answered with one.
    pub fn errcode(&self) -> Option<i64> {
        match self {
            ApiError::Transient { errcode, .. }
            | ApiError::RateLimited { errcode, .. }
            | ApiError::Permanent { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }

    /// Label for the `outcome` of the calls metric.
    fn outcome(&self) -> &'static str {
        match self {
            ApiError::Transient { .. } => "transient",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Permanent { errcode, .. } if is_token_errcode(*errcode) => "token_invalid",
            ApiError::Permanent { .. } => "permanent",
            ApiError::Http { .. } => "http_error",
            ApiError::Network { .. } => "network_error",
            ApiError::BadResponse { .. } => "bad_response",
            ApiError::Config { .. } => "config",
        }
    }
}

/// 40014 invalid access_token, 42001 expired access_token.
fn is_token_errcode(errcode: i64) -> bool {
    matches!(errcode, 40014 | 42001)
}

fn is_token_error(e: &ApiError) -> bool {
    e.errcode().is_some_and(is_token_errcode)
}

/// Maps a non-zero errcode to an error (PROTOCOL.md §4.7).
fn classify(api: &'static str, errcode: i64, errmsg: String) -> ApiError {
    match errcode {
        45009 => ApiError::RateLimited {
            api,
            errcode,
            retry_after: RATE_LIMIT_WINDOW,
        },
        -1 | 45033 | 45035 | 45036 | 301026 | 301057 => ApiError::Transient {
            api,
            errcode,
            errmsg,
        },
        _ => ApiError::Permanent {
            api,
            errcode,
            errmsg,
            hint: hint(errcode),
        },
    }
}

/// Operator hint for a permanent errcode.
fn hint(errcode: i64) -> &'static str {
    match errcode {
        40001 => "the app secret (corpsecret) is wrong or belongs to another app",
        40013 => "the corp ID (corpid) is wrong",
        40014 | 42001 => "WeCom rejected the access_token again right after a refresh",
        41001 => "the request carried no access_token",
        48002 => {
            "the app lacks permission for this API; for approvals list it under 审批 → API → \
             可调用接口的应用, for customers under 客户联系 → 可调用应用"
        }
        48006 => "this API has been disabled for the app",
        60020 => {
            "this server's IP is not in the app's allow-list: add it under 企业可信IP in the app \
             settings (takes about a minute to apply)"
        }
        301055 => {
            "no approval or data-pull permission: the app must be listed in 审批 → API → \
             可调用接口的应用 and the applicant must be in its visible range"
        }
        301056 => "the approval app is disabled",
        301025 => "approval API parameter error (empty value, unknown sp_no or template_id)",
        40058 => "a request parameter is invalid",
        44004 => "the message content is empty",
        45002 => "the message content is too long",
        81013 => "all recipients (users, parties, tags) are invalid or outside the app's range",
        60111 => "the userid does not exist",
        40003 => "the userid is invalid",
        301112 => "the time range is too large; split it into windows of at most 31 days",
        _ => "unexpected WeCom errcode; look it up in WeCom's global error codes (doc 90313)",
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
}

impl std::fmt::Debug for WeComApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeComApi")
            .field("base_url", &self.inner.base_url)
            .finish_non_exhaustive()
    }
}

struct Inner {
    http: reqwest::Client,
    base_url: String,
    cfg: ApiConfig,
    approval_limiter: Option<RateLimiter>,
    tokens: Mutex<HashMap<(String, String), Arc<TokenSlot>>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Get,
    Post,
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
        })
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
            .when(ApiError::is_retryable)
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
        let mut v = self
            .inner
            .call(
                api,
                c,
                Method::Post,
                "oa/getapprovaldetail",
                &[],
                Some(&body),
            )
            .await?;
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
        let v = self
            .inner
            .call(api, c, Method::Post, "oa/getapprovalinfo", &[], Some(&body))
            .await?;
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
        let v = self
            .inner
            .call(api, c, Method::Post, "message/send", &[], Some(msg))
            .await?;
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
        self.inner
            .call(
                names::USER_GET,
                c,
                Method::Get,
                "user/get",
                &[("userid", user_id)],
                None,
            )
            .await
    }

    /// `externalcontact/get`: a customer (the whole response body with
    /// `external_contact` and `follow_user`).
    pub async fn external_contact(
        &self,
        c: &Credentials,
        external_user_id: &str,
    ) -> Result<Value, ApiError> {
        self.inner
            .call(
                names::EXTERNAL_CONTACT_GET,
                c,
                Method::Get,
                "externalcontact/get",
                &[("external_userid", external_user_id)],
                None,
            )
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

impl Inner {
    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(self.cfg.retry_min_delay)
            .with_max_delay(MAX_BACKOFF.max(self.cfg.retry_min_delay))
            .with_max_times(self.cfg.max_retries as usize)
    }

    /// 45009 waits for WeCom's block to pass (capped by `rate_limited_backoff`)
    /// instead of the exponential step.
    fn adjust_delay(&self, e: &ApiError, d: Option<Duration>) -> Option<Duration> {
        match e {
            ApiError::RateLimited { retry_after, .. } => {
                d.map(|_| (*retry_after).min(self.cfg.rate_limited_backoff))
            }
            _ => d,
        }
    }

    fn log_retry(&self, e: &ApiError, d: Duration) {
        tracing::warn!(
            api = api_of(e),
            errcode = e.errcode(),
            retry_in_ms = d.as_millis() as u64,
            error = %e,
            "WeCom call failed; retrying"
        );
    }

    /// Performs one API call with token handling and retries.
    async fn call(
        self: &Arc<Self>,
        api: &'static str,
        c: &Credentials,
        method: Method,
        path: &'static str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        (|| async move {
            let token = self.access_token_once(c).await?;
            match self
                .request(api, method, path, Some(&token), query, body)
                .await
            {
                Err(e) if is_token_error(&e) => {
                    tracing::info!(
                        api,
                        errcode = e.errcode(),
                        "access_token rejected; refreshing it and retrying once"
                    );
                    self.invalidate_if_current(c, &token);
                    let token = self.access_token_once(c).await?;
                    self.request(api, method, path, Some(&token), query, body)
                        .await
                }
                other => other,
            }
        })
        .retry(self.backoff())
        .when(ApiError::is_retryable)
        .adjust(|e, d| self.adjust_delay(e, d))
        .notify(|e, d| self.log_retry(e, d))
        .await
    }

    /// One HTTP exchange; any non-zero errcode becomes an error.
    async fn request(
        &self,
        api: &'static str,
        method: Method,
        path: &str,
        token: Option<&str>,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        if matches!(api, names::APPROVAL_DETAIL | names::APPROVAL_INFO)
            && let Some(limiter) = &self.approval_limiter
        {
            limiter.acquire().await;
        }
        let url = format!("{}/{}", self.base_url, path);
        let mut rb = match method {
            Method::Get => self.http.get(&url),
            Method::Post => self.http.post(&url),
        };
        if let Some(token) = token {
            rb = rb.query(&[("access_token", token)]);
        }
        if !query.is_empty() {
            rb = rb.query(query);
        }
        if let Some(body) = body {
            rb = rb.json(body);
        }
        let started = Instant::now();
        let result = async {
            let resp = rb.send().await.map_err(|e| network_error(api, e))?;
            let status = resp.status();
            if !status.is_success() {
                return Err(ApiError::Http {
                    api,
                    status: status.as_u16(),
                });
            }
            let bytes = resp.bytes().await.map_err(|e| network_error(api, e))?;
            let v: Value = serde_json::from_slice(&bytes).map_err(|e| ApiError::BadResponse {
                api,
                detail: format!("body is not JSON: {e}"),
            })?;
            check_errcode(api, v)
        }
        .await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        metrics::counter!(CALLS_METRIC, "api" => api, "outcome" => outcome).increment(1);
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(_) => tracing::debug!(api, elapsed_ms, "WeCom call ok"),
            Err(e) => tracing::warn!(
                api,
                errcode = e.errcode(),
                outcome,
                elapsed_ms,
                error = %e,
                "WeCom call failed"
            ),
        }
        if let (Err(ApiError::RateLimited { retry_after, .. }), Some(limiter)) =
            (&result, &self.approval_limiter)
            && matches!(api, names::APPROVAL_DETAIL | names::APPROVAL_INFO)
        {
            // Hold back every approval caller, not only this one.
            limiter.pause((*retry_after).min(self.cfg.rate_limited_backoff));
        }
        result
    }

    /// The token slot of `c`, created on first use.
    fn slot(&self, c: &Credentials) -> Arc<TokenSlot> {
        let key = (c.corp_id.clone(), c.secret.expose().to_owned());
        lock(&self.tokens)
            .entry(key)
            .or_insert_with(|| {
                Arc::new(TokenSlot {
                    state: Mutex::new(SlotState::Empty),
                })
            })
            .clone()
    }

    /// Drops the cached token only if it is still `stale`, so a token another caller
    /// just refreshed is kept.
    fn invalidate_if_current(&self, c: &Credentials, stale: &str) {
        let slot = self.slot(c);
        let mut st = lock(&slot.state);
        if let SlotState::Ready(t) = &*st
            && t.token == stale
        {
            *st = SlotState::Empty;
        }
    }

    /// A token from the cache, or one `gettoken` shared by all concurrent callers.
    /// No retries here; callers retry.
    async fn access_token_once(self: &Arc<Self>, c: &Credentials) -> Result<String, ApiError> {
        let slot = self.slot(c);
        let mut rx = {
            let mut st = lock(&slot.state);
            match &*st {
                SlotState::Ready(t) if Instant::now() < t.refresh_at => return Ok(t.token.clone()),
                SlotState::Failed(e, until) if Instant::now() < *until => return Err(e.clone()),
                SlotState::Fetching(rx) => rx.clone(),
                SlotState::Empty | SlotState::Ready(_) | SlotState::Failed(..) => {
                    let (tx, rx) = watch::channel(None);
                    *st = SlotState::Fetching(rx.clone());
                    // The fetch runs in its own task so that a cancelled caller
                    // cannot strand the others waiting on it.
                    let inner = Arc::clone(self);
                    let c = c.clone();
                    let slot = Arc::clone(&slot);
                    tokio::spawn(async move {
                        let res = inner.fetch_token(&c).await;
                        *lock(&slot.state) = match &res {
                            Ok(t) => SlotState::Ready(t.clone()),
                            Err(e) if !e.is_retryable() => {
                                SlotState::Failed(e.clone(), Instant::now() + TOKEN_FAILURE_HOLD)
                            }
                            Err(_) => SlotState::Empty,
                        };
                        // Nobody waiting is fine.
                        let _ = tx.send(Some(res.map(|t| t.token)));
                    });
                    rx
                }
            }
        };
        let shared = match rx.wait_for(Option::is_some).await {
            Ok(v) => (*v).clone(),
            Err(_) => None,
        };
        match shared {
            Some(res) => res,
            None => {
                // The fetch task died without an answer; unblock later callers.
                let mut st = lock(&slot.state);
                if let SlotState::Fetching(cur) = &*st
                    && cur.same_channel(&rx)
                {
                    *st = SlotState::Empty;
                }
                Err(ApiError::BadResponse {
                    api: names::GETTOKEN,
                    detail: "token fetch was aborted".to_owned(),
                })
            }
        }
    }

    /// `gettoken`, once.
    async fn fetch_token(&self, c: &Credentials) -> Result<CachedToken, ApiError> {
        let api = names::GETTOKEN;
        let v = self
            .request(
                api,
                Method::Get,
                "gettoken",
                None,
                &[
                    ("corpid", c.corp_id.as_str()),
                    ("corpsecret", c.secret.expose()),
                ],
                None,
            )
            .await?;
        let token = match v.get("access_token") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(ApiError::BadResponse {
                    api,
                    detail: "no `access_token`".to_owned(),
                });
            }
        };
        let expires_in = match v.get("expires_in") {
            None => 7200,
            Some(n) => n.as_i64().ok_or_else(|| ApiError::BadResponse {
                api,
                detail: "`expires_in` is not an integer".to_owned(),
            })?,
        };
        let now = Instant::now();
        let ttl = Duration::from_secs(expires_in.max(0).unsigned_abs());
        let lead = TOKEN_REFRESH_LEAD.min(ttl / 10);
        tracing::info!(api, expires_in, "fetched a new access_token");
        Ok(CachedToken {
            token,
            refresh_at: now + (ttl - lead),
        })
    }
}

/// The API name carried by an error, for logs.
fn api_of(e: &ApiError) -> &'static str {
    match e {
        ApiError::Transient { api, .. }
        | ApiError::RateLimited { api, .. }
        | ApiError::Permanent { api, .. }
        | ApiError::Http { api, .. }
        | ApiError::Network { api, .. }
        | ApiError::BadResponse { api, .. } => api,
        ApiError::Config { .. } => names::CLIENT,
    }
}

/// Turns a body with a non-zero `errcode` into an error.
fn check_errcode(api: &'static str, v: Value) -> Result<Value, ApiError> {
    let errcode = match v.get("errcode") {
        None => 0,
        Some(n) => n.as_i64().ok_or_else(|| ApiError::BadResponse {
            api,
            detail: "`errcode` is not an integer".to_owned(),
        })?,
    };
    if errcode == 0 {
        return Ok(v);
    }
    let errmsg = v
        .get("errmsg")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Err(classify(api, errcode, errmsg))
}

/// A transport error, without the URL (its query carries the token or secret).
fn network_error(api: &'static str, e: reqwest::Error) -> ApiError {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    };
    let e = e.without_url();
    let mut detail = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    ApiError::Network { api, detail }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Clone)]
struct CachedToken {
    token: String,
    /// When callers stop using it and fetch a new one (before it expires).
    refresh_at: Instant,
}

type SharedFetch = Option<Result<String, ApiError>>;

enum SlotState {
    Empty,
    Ready(CachedToken),
    /// The last `gettoken` failed permanently; answer that until the instant.
    Failed(ApiError, Instant),
    /// A `gettoken` is in flight; its result is published here.
    Fetching(watch::Receiver<SharedFetch>),
}

struct TokenSlot {
    state: Mutex<SlotState>,
}

/// Async rate limiter (GCRA form of a token bucket): calls are spaced
/// `60 s / n` apart with a burst of one second's worth. Callers wait their turn.
struct RateLimiter {
    interval: Duration,
    tolerance: Duration,
    /// Theoretical arrival time of the next call.
    tat: Mutex<Instant>,
}

impl RateLimiter {
    fn per_minute(n: u32) -> Option<Self> {
        if n == 0 {
            return None;
        }
        let interval = Duration::from_secs(60) / n;
        let burst = n.div_ceil(60).max(1);
        Some(Self {
            interval,
            tolerance: interval * (burst - 1),
            tat: Mutex::new(Instant::now()),
        })
    }

    async fn acquire(&self) {
        let wait = {
            let mut tat = lock(&self.tat);
            let now = Instant::now();
            let t = (*tat).max(now);
            let allowed_at = t.checked_sub(self.tolerance).unwrap_or(now);
            *tat = t + self.interval;
            allowed_at.saturating_duration_since(now)
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Holds every caller back for `d` (after WeCom said 45009).
    fn pause(&self, d: Duration) {
        let mut tat = lock(&self.tat);
        let until = Instant::now() + d + self.tolerance;
        if *tat < until {
            *tat = until;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::standins::wecom::FakeWeCom;

    const CORP: &str = "ww-test-corp";
    const SECRET: &str = "app-secret-123";

    fn creds() -> Credentials {
        Credentials::new(CORP, Secret::new(SECRET))
    }

    fn cfg(fake: &FakeWeCom) -> ApiConfig {
        ApiConfig {
            base_url: fake.base_url(),
            timeout: Duration::from_secs(5),
            approval_calls_per_minute: 0,
            max_retries: 3,
            rate_limited_backoff: Duration::from_millis(200),
            retry_min_delay: Duration::from_millis(10),
        }
    }

    async fn setup() -> (FakeWeCom, WeComApi) {
        let fake = FakeWeCom::start().await;
        fake.add_credentials(CORP, SECRET);
        fake.add_user(json!({"userid": "zhangsan", "name": "张三"}));
        let api = WeComApi::new(cfg(&fake)).expect("client");
        (fake, api)
    }

    fn approval(sp_no: &str, apply_time: i64, sp_status: u8, template_id: &str) -> Value {
        json!({
            "sp_no": sp_no,
            "sp_name": "报销",
            "sp_status": sp_status,
            "template_id": template_id,
            "apply_time": apply_time,
            "applyer": {"userid": "zhangsan", "partyid": "2"},
            "apply_data": {"contents": []}
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_gettoken() {
        let (fake, api) = setup().await;
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let api = api.clone();
            tasks.push(tokio::spawn(
                async move { api.access_token(&creds()).await },
            ));
        }
        let mut tokens = HashSet::new();
        for t in tasks {
            tokens.insert(t.await.expect("join").expect("token"));
        }
        assert_eq!(tokens.len(), 1);
        assert_eq!(fake.calls("gettoken"), 1);
        // Cached afterwards: no per-request gettoken.
        api.user(&creds(), "zhangsan").await.expect("user");
        api.user(&creds(), "zhangsan").await.expect("user");
        assert_eq!(fake.calls("gettoken"), 1);
        api.invalidate(&creds());
        api.access_token(&creds()).await.expect("token");
        assert_eq!(fake.calls("gettoken"), 2);
        fake.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_failed_gettoken() {
        let (fake, api) = setup().await;
        let bad = Credentials::new(CORP, Secret::new("wrong"));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let api = api.clone();
            let bad = bad.clone();
            tasks.push(tokio::spawn(async move { api.access_token(&bad).await }));
        }
        for t in tasks {
            let e = t.await.expect("join").expect_err("bad secret");
            assert_eq!(e.errcode(), Some(40001));
            assert!(!e.is_retryable());
        }
        assert_eq!(fake.calls("gettoken"), 1);
        let e = api
            .access_token(&Credentials::new("ww-other", Secret::new(SECRET)))
            .await
            .expect_err("bad corp");
        assert_eq!(e.errcode(), Some(40013));
        fake.stop().await;
    }

    #[tokio::test]
    async fn expired_token_is_refreshed() {
        let (fake, api) = setup().await;
        fake.set_token_ttl(1);
        let t1 = api.access_token(&creds()).await.expect("token");
        api.user(&creds(), "zhangsan").await.expect("user");
        tokio::time::sleep(Duration::from_millis(1_300)).await;
        api.user(&creds(), "zhangsan")
            .await
            .expect("user after expiry");
        let t2 = api.access_token(&creds()).await.expect("token");
        assert_ne!(t1, t2);
        assert_eq!(fake.calls("gettoken"), 2);
        // Refreshed ahead of expiry: the fake never had to answer 42001.
        assert_eq!(fake.calls("user/get"), 2);
        fake.stop().await;
    }

    #[tokio::test]
    async fn token_expired_mid_flight_is_retried_once() {
        let (fake, api) = setup().await;
        api.user(&creds(), "zhangsan").await.expect("user");
        fake.expire_all_tokens();
        let u = api
            .user(&creds(), "zhangsan")
            .await
            .expect("transparent retry");
        assert_eq!(u["name"], "张三");
        assert_eq!(fake.calls("gettoken"), 2);
        assert_eq!(fake.calls("user/get"), 3);
        fake.stop().await;
    }

    #[tokio::test]
    async fn second_consecutive_token_error_surfaces() {
        let (fake, api) = setup().await;
        api.access_token(&creds()).await.expect("token");
        fake.fail_next("user/get", 42001, 2);
        let e = api
            .user(&creds(), "zhangsan")
            .await
            .expect_err("second 42001");
        assert_eq!(e.errcode(), Some(42001));
        assert!(!e.is_retryable());
        assert_eq!(fake.calls("user/get"), 2);
        assert_eq!(fake.calls("gettoken"), 2);
        fake.stop().await;
    }

    #[tokio::test]
    async fn transient_errors_are_retried() {
        let (fake, api) = setup().await;
        fake.fail_next("user/get", -1, 2);
        let u = api.user(&creds(), "zhangsan").await.expect("third try");
        assert_eq!(u["userid"], "zhangsan");
        assert_eq!(fake.calls("user/get"), 3);
        fake.stop().await;
    }

    #[tokio::test]
    async fn retries_stop_at_max_retries() {
        let (fake, api) = setup().await;
        fake.fail_next("user/get", 45033, 10);
        let e = api.user(&creds(), "zhangsan").await.expect_err("exhausted");
        assert!(
            matches!(e, ApiError::Transient { errcode: 45033, .. }),
            "{e:?}"
        );
        assert_eq!(fake.calls("user/get"), 4); // 1 + max_retries
        fake.stop().await;
    }

    #[tokio::test]
    async fn ip_not_allowed_is_permanent_with_hint() {
        let (fake, api) = setup().await;
        fake.fail_next("user/get", 60020, 5);
        let e = api.user(&creds(), "zhangsan").await.expect_err("60020");
        match &e {
            ApiError::Permanent {
                api, errcode, hint, ..
            } => {
                assert_eq!(*api, "user/get");
                assert_eq!(*errcode, 60020);
                assert!(hint.contains("企业可信IP"), "{hint}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(!e.is_retryable());
        assert_eq!(fake.calls("user/get"), 1);
        fake.stop().await;
    }

    #[tokio::test]
    async fn rate_limited_waits_then_succeeds() {
        let (fake, api) = setup().await;
        api.access_token(&creds()).await.expect("token");
        fake.fail_next("user/get", 45009, 1);
        let started = Instant::now();
        api.user(&creds(), "zhangsan").await.expect("after backoff");
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(fake.calls("user/get"), 2);
        fake.stop().await;
    }

    #[tokio::test]
    async fn rate_limit_of_the_fake_is_respected() {
        let (fake, api) = setup().await;
        fake.set_rate_limit_per_minute("user/get", 2);
        api.user(&creds(), "zhangsan").await.expect("1");
        api.user(&creds(), "zhangsan").await.expect("2");
        let api = WeComApi::new(ApiConfig {
            max_retries: 1,
            ..cfg(&fake)
        })
        .expect("client");
        let e = api.user(&creds(), "zhangsan").await.expect_err("limited");
        assert!(
            matches!(e, ApiError::RateLimited { errcode: 45009, retry_after, .. } if retry_after >= Duration::from_secs(60))
        );
        fake.stop().await;
    }

    #[tokio::test]
    async fn paging_returns_every_form_once() {
        let (fake, api) = setup().await;
        let base = 1_750_000_000;
        for i in 0..250 {
            fake.add_approval(approval(&format!("2025{i:06}"), base + i * 600, 2, "TPL-A"));
        }
        for i in 0..30 {
            fake.add_approval(approval(&format!("2026{i:06}"), base + i * 600, 1, "TPL-A"));
        }
        let got = api
            .approved_sp_nos(&creds(), base, base + 7 * 86_400, None)
            .await
            .expect("list");
        assert_eq!(fake.calls("getapprovalinfo"), 3);
        assert_eq!(got.len(), 250);
        let unique: HashSet<_> = got.iter().collect();
        assert_eq!(unique.len(), 250);
        assert!(got.iter().all(|s| s.starts_with("2025")));
        fake.stop().await;
    }

    #[tokio::test]
    async fn short_pages_do_not_stop_paging() {
        let (fake, api) = setup().await;
        let base = 1_750_000_000;
        for i in 0..150 {
            let mut a = approval(&format!("2025{i:06}"), base + i, 2, "TPL-A");
            if i % 3 == 0 {
                a["applyer"]["userid"] = json!("outsider");
            }
            fake.add_approval(a);
        }
        fake.hide_applicant("outsider");
        let q =
            ApprovalInfoQuery::new(base, base + 86_400).with_filter(ApprovalFilter::sp_status(2));
        let first = api
            .approval_info_page(&creds(), &q, "")
            .await
            .expect("page");
        assert!(first.sp_no_list.len() < 100);
        assert!(first.next_cursor.is_some());
        let got = api
            .approved_sp_nos(&creds(), base, base + 86_400, None)
            .await
            .expect("list");
        assert_eq!(got.len(), 100);
        fake.stop().await;
    }

    #[tokio::test]
    async fn forty_days_are_split_into_two_windows() {
        let (fake, api) = setup().await;
        let base = 1_750_000_000;
        for d in 0..40 {
            fake.add_approval(approval(
                &format!("2025{d:06}"),
                base + d * 86_400 + 7,
                2,
                "TPL-A",
            ));
        }
        fake.add_approval(approval("OTHER-TPL", base + 100, 2, "TPL-B"));
        let got = api
            .approved_sp_nos(&creds(), base, base + 40 * 86_400, Some("TPL-A"))
            .await
            .expect("no 301112");
        assert_eq!(fake.calls("getapprovalinfo"), 2);
        assert_eq!(got.len(), 40);
        assert!(!got.contains(&"OTHER-TPL".to_owned()));
        fake.stop().await;
    }

    #[tokio::test]
    async fn range_too_large_halves_the_window() {
        let (fake, api) = setup().await;
        let base = 1_750_000_000;
        for d in 0..10 {
            fake.add_approval(approval(
                &format!("2025{d:06}"),
                base + d * 86_400,
                2,
                "TPL-A",
            ));
        }
        fake.fail_next("getapprovalinfo", 301112, 1);
        let got = api
            .approved_sp_nos(&creds(), base, base + 10 * 86_400, None)
            .await
            .expect("split");
        assert_eq!(got.len(), 10);
        assert_eq!(fake.calls("getapprovalinfo"), 3);
        fake.stop().await;
    }

    #[tokio::test]
    async fn approval_detail_returns_info() {
        let (fake, api) = setup().await;
        fake.add_approval(approval("202506050012", 1_750_000_000, 2, "TPL-A"));
        let info = api
            .approval_detail(&creds(), "202506050012")
            .await
            .expect("detail");
        assert_eq!(info["sp_no"], "202506050012");
        assert_eq!(info["sp_status"], 2);
        fake.stop().await;
    }

    #[tokio::test]
    async fn errcode_in_200_body_is_an_error() {
        let (fake, api) = setup().await;
        let e = api
            .approval_detail(&creds(), "does-not-exist")
            .await
            .expect_err("unknown sp_no");
        assert!(
            matches!(
                e,
                ApiError::Permanent {
                    errcode: 301025,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = api
            .user(&creds(), "nobody")
            .await
            .expect_err("unknown user");
        assert_eq!(e.errcode(), Some(60111));
        fake.stop().await;
    }

    #[tokio::test]
    async fn client_side_limiter_spaces_approval_calls() {
        let (fake, _) = setup().await;
        fake.add_approval(approval("202506050012", 1_750_000_000, 2, "TPL-A"));
        let api = WeComApi::new(ApiConfig {
            approval_calls_per_minute: 120,
            ..cfg(&fake)
        })
        .expect("client");
        let started = Instant::now();
        for _ in 0..3 {
            api.approval_detail(&creds(), "202506050012")
                .await
                .expect("detail");
        }
        // getapprovalinfo shares the budget.
        let q = ApprovalInfoQuery::new(1_749_999_000, 1_750_001_000);
        for _ in 0..3 {
            api.approval_info_page(&creds(), &q, "")
                .await
                .expect("page");
        }
        assert!(
            started.elapsed() >= Duration::from_millis(1_800),
            "{:?}",
            started.elapsed()
        );
        // Other APIs are not held back.
        let started = Instant::now();
        for _ in 0..6 {
            api.user(&creds(), "zhangsan").await.expect("user");
        }
        assert!(started.elapsed() < Duration::from_millis(1_000));
        fake.stop().await;
    }

    #[tokio::test]
    async fn send_message_is_recorded() {
        let (fake, api) = setup().await;
        let msg = json!({
            "touser": "zhangsan|ghost", "msgtype": "text", "agentid": 1000005,
            "text": {"content": "报销单 202506050012 已推送至财务系统"},
            "enable_duplicate_check": 1
        });
        let r = api.send_message(&creds(), &msg).await.expect("send");
        assert_eq!(r.invalid_user, vec!["ghost".to_owned()]);
        assert!(r.invalid_party.is_empty());
        assert!(r.msg_id.is_some());
        assert_eq!(fake.sent_messages(), vec![msg]);
        let e = api
            .send_message(
                &creds(),
                &json!({"touser": "ghost", "msgtype": "text", "agentid": 1, "text": {"content": "x"}}),
            )
            .await
            .expect_err("all invalid");
        assert_eq!(e.errcode(), Some(81013));
        fake.stop().await;
    }

    #[tokio::test]
    async fn external_contact_is_fetched() {
        let (fake, api) = setup().await;
        fake.add_external_contact(json!({
            "external_contact": {"external_userid": "wmABC", "name": "李四", "type": 1},
            "follow_user": [{"userid": "zhangsan", "createtime": 1_750_000_000}]
        }));
        let v = api
            .external_contact(&creds(), "wmABC")
            .await
            .expect("contact");
        assert_eq!(v["external_contact"]["name"], "李四");
        let e = api
            .external_contact(&creds(), "wmNONE")
            .await
            .expect_err("unknown");
        assert!(matches!(e, ApiError::Permanent { .. }));
        fake.stop().await;
    }

    #[tokio::test]
    async fn network_errors_are_retryable_and_hide_the_url() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let api = WeComApi::new(ApiConfig {
            base_url: format!("http://{addr}/cgi-bin"),
            timeout: Duration::from_secs(2),
            max_retries: 1,
            retry_min_delay: Duration::from_millis(5),
            ..ApiConfig::default()
        })
        .expect("client");
        let e = api.access_token(&creds()).await.expect_err("refused");
        assert!(
            matches!(
                e,
                ApiError::Network {
                    api: "gettoken",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.is_retryable());
        let text = format!("{e} {e:?}");
        assert!(!text.contains(SECRET), "{text}");
        assert!(!text.contains("corpsecret"), "{text}");
    }

    #[test]
    fn classification_follows_errcode() {
        for code in [-1, 45033, 45035, 45036, 301026, 301057] {
            let e = classify("x", code, "busy".into());
            assert!(
                matches!(e, ApiError::Transient { .. }) && e.is_retryable(),
                "{code}"
            );
        }
        assert!(matches!(
            classify("x", 45009, String::new()),
            ApiError::RateLimited { .. }
        ));
        for code in [
            40001, 40013, 41001, 48002, 48006, 60020, 301055, 301056, 301025, 40058, 44004, 45002,
            81013, 60111, 40003, 301112, 99999,
        ] {
            let e = classify("x", code, "ok".into()); // errmsg text never matters
            assert!(
                matches!(e, ApiError::Permanent { .. }) && !e.is_retryable(),
                "{code}"
            );
            assert_eq!(e.errcode(), Some(code));
        }
        assert!(
            ApiError::Http {
                api: "x",
                status: 502
            }
            .is_retryable()
        );
        assert!(
            !ApiError::Http {
                api: "x",
                status: 404
            }
            .is_retryable()
        );
        assert!(check_errcode("x", json!({"errcode": 0, "errmsg": "ok"})).is_ok());
        assert!(matches!(
            check_errcode("x", json!({"errcode": "0"})),
            Err(ApiError::BadResponse { .. })
        ));
    }

    #[test]
    fn windows_are_at_most_31_days() {
        let w = split_windows(0, 40 * 86_400);
        assert_eq!(w, vec![(0, 31 * 86_400), (31 * 86_400, 40 * 86_400)]);
        assert!(split_windows(10, 10).is_empty());
        assert_eq!(split_windows(0, 31 * 86_400).len(), 1);
    }

    #[test]
    fn credentials_debug_hides_the_secret() {
        let text = format!("{:?}", creds());
        assert!(!text.contains(SECRET));
        assert!(text.contains("***"));
    }
}
