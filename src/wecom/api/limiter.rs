//! The client-side rate limiter of the approval APIs.

use super::*;

/// Async rate limiter (GCRA form of a token bucket): calls are spaced
/// `60 s / n` apart with a burst of one second's worth. Callers wait their turn.
pub(super) struct RateLimiter {
    pub(super) interval: Duration,
    pub(super) tolerance: Duration,
    /// Theoretical arrival time of the next call.
    pub(super) tat: Mutex<Instant>,
}

impl RateLimiter {
    pub(super) fn per_minute(n: u32) -> Option<Self> {
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

    pub(super) async fn acquire(&self) {
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
    pub(super) fn pause(&self, d: Duration) {
        let mut tat = lock(&self.tat);
        let until = Instant::now() + d + self.tolerance;
        if *tat < until {
            *tat = until;
        }
    }
}
