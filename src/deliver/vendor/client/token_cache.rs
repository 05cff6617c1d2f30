//! A single-flight token cache for the HR and CRM vendor clients (Beisen, FxiaoKe,
//! Salesforce): one fetch at a time (callers that wait meanwhile get the fetched token), kept
//! until shortly before it expires, forgotten when the target refuses it.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::deliver::Verdict;

struct Held<T> {
    token: T,
    fresh_until: Option<Instant>,
}

/// Caches one token of type `T`.
pub(crate) struct TokenCache<T> {
    slot: tokio::sync::Mutex<Option<Held<T>>>,
    refresh_early: Duration,
    fetches: AtomicU64,
}

impl<T: Clone> TokenCache<T> {
    /// An empty cache that refreshes `refresh_early` before a token's announced expiry.
    pub(crate) fn new(refresh_early: Duration) -> TokenCache<T> {
        TokenCache {
            slot: tokio::sync::Mutex::new(None),
            refresh_early,
            fetches: AtomicU64::new(0),
        }
    }

    /// The cached token, or one from `fetch` (which answers the token and its lifetime, when
    /// the target announces one; without, the token is kept until it is refused). Only one
    /// `fetch` runs at a time.
    pub(crate) async fn get<F, Fut>(&self, fetch: F) -> Result<T, Verdict>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(T, Option<Duration>), Verdict>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some(h) = slot.as_ref()
            && h.fresh_until.is_none_or(|until| until > Instant::now())
        {
            return Ok(h.token.clone());
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let (token, life) = fetch().await?;
        *slot = Some(Held {
            token: token.clone(),
            fresh_until: life.map(|l| Instant::now() + l.saturating_sub(self.refresh_early)),
        });
        Ok(token)
    }

    /// Drops the cached token if `is_used` says it is the one the target refused (another
    /// caller may have replaced it already).
    pub(crate) async fn forget(&self, is_used: impl Fn(&T) -> bool) {
        let mut slot = self.slot.lock().await;
        if slot.as_ref().is_some_and(|h| is_used(&h.token)) {
            *slot = None;
        }
    }

    /// Token requests made so far.
    pub(crate) fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }
}
