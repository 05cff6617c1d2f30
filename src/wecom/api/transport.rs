//! One HTTP exchange, retries with back-off, and the single-flight access-token cache.

use super::*;

pub(super) struct Inner {
    pub(super) http: reqwest::Client,
    pub(super) base_url: String,
    pub(super) cfg: ApiConfig,
    pub(super) approval_limiter: Option<RateLimiter>,
    pub(super) tokens: Mutex<HashMap<(String, String), Arc<TokenSlot>>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Method {
    Get,
    Post,
}

impl Inner {
    pub(super) fn backoff(&self) -> ExponentialBuilder {
        crate::stage::backoff(self.cfg.retry_min_delay, MAX_BACKOFF)
            .with_max_times(self.cfg.max_retries as usize)
    }

    /// 45009 waits for WeCom's block to pass (capped by `rate_limited_backoff`)
    /// instead of the exponential step.
    pub(super) fn adjust_delay(&self, e: &ApiError, d: Option<Duration>) -> Option<Duration> {
        match e {
            ApiError::RateLimited { retry_after, .. } => {
                d.map(|_| (*retry_after).min(self.cfg.rate_limited_backoff))
            }
            _ => d,
        }
    }

    pub(super) fn log_retry(&self, e: &ApiError, d: Duration) {
        tracing::warn!(
            api = api_of(e),
            errcode = e.errcode(),
            retry_in_ms = d.as_millis() as u64,
            error = %e,
            "WeCom call failed; retrying"
        );
    }

    /// Performs one API call with token handling and retries (a 45009 only when
    /// `wait_out_rate_limits`).
    #[allow(
        clippy::too_many_arguments,
        reason = "private; one call per API method"
    )]
    pub(super) async fn call(
        self: &Arc<Self>,
        wait_out_rate_limits: bool,
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
        .when(|e| {
            e.is_retryable() && (wait_out_rate_limits || !matches!(e, ApiError::RateLimited { .. }))
        })
        .adjust(|e, d| self.adjust_delay(e, d))
        .notify(|e, d| self.log_retry(e, d))
        .await
    }

    /// One HTTP exchange; any non-zero errcode becomes an error.
    pub(super) async fn request(
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
    pub(super) fn slot(&self, c: &Credentials) -> Arc<TokenSlot> {
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
    pub(super) fn invalidate_if_current(&self, c: &Credentials, stale: &str) {
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
    pub(super) async fn access_token_once(
        self: &Arc<Self>,
        c: &Credentials,
    ) -> Result<String, ApiError> {
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
    pub(super) async fn fetch_token(&self, c: &Credentials) -> Result<CachedToken, ApiError> {
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
        let expires_in = integer_field(api, &v, "expires_in", 7200)?;
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

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Clone)]
pub(super) struct CachedToken {
    pub(super) token: String,
    /// When callers stop using it and fetch a new one (before it expires).
    pub(super) refresh_at: Instant,
}

pub(super) type SharedFetch = Option<Result<String, ApiError>>;

pub(super) enum SlotState {
    Empty,
    Ready(CachedToken),
    /// The last `gettoken` failed permanently; answer that until the instant.
    Failed(ApiError, Instant),
    /// A `gettoken` is in flight; its result is published here.
    Fetching(watch::Receiver<SharedFetch>),
}

pub(super) struct TokenSlot {
    pub(super) state: Mutex<SlotState>,
}
