//! Per-connector limits: a concurrency cap (a semaphore) and a rate limit (evenly spaced
//! slots, a pure schedule plus an async wait).
//!
//! Owns pacing requests to one target; must not retry or classify.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// Evenly spaced request slots: at most one per `interval`, no bursts.
#[derive(Debug, Clone)]
pub struct RateSchedule {
    interval: Duration,
    next_free: Option<Instant>,
}

impl RateSchedule {
    /// `per_sec` requests per second (above 0).
    pub fn per_second(per_sec: f64) -> Self {
        RateSchedule {
            interval: Duration::from_secs_f64(1.0 / per_sec),
            next_free: None,
        }
    }

    /// Reserves the next slot at or after `now` and returns when it starts.
    pub fn reserve(&mut self, now: Instant) -> Instant {
        let at = self.next_free.map_or(now, |n| n.max(now));
        self.next_free = Some(at + self.interval);
        at
    }
}

/// The limits of one connector.
#[derive(Debug)]
pub struct Limits {
    concurrency: Semaphore,
    rate: Option<Mutex<RateSchedule>>,
}

/// Held while a request is in flight.
#[derive(Debug)]
pub struct Slot<'a> {
    _permit: SemaphorePermit<'a>,
}

impl Limits {
    /// `concurrency` requests in flight at most, `rate_per_sec` per second if set.
    pub fn new(concurrency: u32, rate_per_sec: Option<f64>) -> Self {
        Limits {
            concurrency: Semaphore::new(concurrency.max(1) as usize),
            rate: rate_per_sec.map(|r| Mutex::new(RateSchedule::per_second(r))),
        }
    }

    /// Waits for a free slot: first a concurrency permit, then the rate-limit slot.
    pub async fn acquire(&self) -> Slot<'_> {
        // The semaphore is never closed, so acquiring cannot fail.
        let permit = self
            .concurrency
            .acquire()
            .await
            .expect("the connector's semaphore is never closed");
        if let Some(rate) = &self.rate {
            let at = rate
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .reserve(Instant::now());
            tokio::time::sleep_until(at).await;
        }
        Slot { _permit: permit }
    }

    /// Requests that could start now.
    pub fn available(&self) -> usize {
        self.concurrency.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt as _;

    #[test]
    fn slots_are_spaced_evenly_and_idle_time_is_not_saved_up() {
        let t0 = Instant::now();
        let mut r = RateSchedule::per_second(4.0);
        let step = Duration::from_millis(250);
        assert_eq!(r.reserve(t0), t0);
        assert_eq!(r.reserve(t0), t0 + step);
        assert_eq!(r.reserve(t0 + Duration::from_millis(10)), t0 + step * 2);
        // After a quiet second the next request goes at once, and only one does.
        let later = t0 + Duration::from_secs(5);
        assert_eq!(r.reserve(later), later);
        assert_eq!(r.reserve(later), later + step);
    }

    #[tokio::test]
    async fn the_concurrency_cap_holds() {
        let limits = Limits::new(2, None);
        let a = limits.acquire().await;
        let _b = limits.acquire().await;
        assert_eq!(limits.available(), 0);
        assert!(
            limits.acquire().now_or_never().is_none(),
            "a third request waits"
        );
        drop(a);
        assert_eq!(limits.available(), 1);
    }
}
