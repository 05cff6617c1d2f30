//! The one exponential back-off of the crate, through backon.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// Jittered exponential back-off from `min` doubling up to `max` (jitter adds up to one more
/// step on top), never giving up. Callers that must give up add `.with_max_times(n)`;
/// [`backoff_plain`] is the same schedule without jitter.
pub fn backoff(min: Duration, max: Duration) -> ExponentialBuilder {
    backoff_plain(min, max).with_jitter()
}

/// The same schedule without jitter (for schedules handed to a library that jitters itself or
/// whose bounds are asserted on).
pub fn backoff_plain(min: Duration, max: Duration) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max.max(min))
        .without_max_times()
}

/// A back-off for loops that retry until something works (the outbox relay, start-up,
/// re-subscribing): [`Backoff::next`] after each failure, [`Backoff::reset`] after a success.
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
    inner: ExponentialBackoff,
}

impl Backoff {
    /// Jittered, from `min` doubling up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            failures: 0,
            inner: backoff(min, max).build(),
        }
    }

    /// The delay before the next try; counts a failure.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        // without_max_times: the iterator never ends; `max` is the honest fallback anyway
        self.inner.next().unwrap_or(self.max)
    }

    /// Failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Starts again from `min` after a success.
    pub fn reset(&mut self) {
        *self = Backoff::new(self.min, self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_within_bounds_and_resets() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(2));
        let mut b = Backoff::new(min, max);
        let delays: Vec<Duration> = (0..12).map(|_| b.next_delay()).collect();
        assert_eq!(b.failures(), 12);
        // jitter adds up to one more delay on top of the exponential step
        assert!(
            delays.iter().all(|d| *d >= min && *d <= max * 2),
            "{delays:?}"
        );
        assert!(delays[11] >= max, "reaches the cap: {delays:?}");
        b.reset();
        assert_eq!(b.failures(), 0);
        assert!(b.next_delay() <= min * 2);
    }
}
