//! A log-line rate limiter: at most one line per key and interval, carrying the number of
//! occurrences that were suppressed since the previous line.
//!
//! It decides only whether to log; counting every occurrence is the metric's job, so the
//! caller increments its counter unconditionally. It never drops or delays the request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Rate limit for log lines, keyed by (subject, reason), e.g. (app, `bad_signature`).
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    windows: Mutex<HashMap<(String, &'static str), Window>>,
}

#[derive(Debug)]
struct Window {
    last_logged: Instant,
    suppressed: u64,
}

impl LogLimiter {
    /// At most one line per key every `interval` (zero logs every occurrence).
    pub fn new(interval: Duration) -> Self {
        LogLimiter {
            interval,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Whether to log this occurrence now; `Some(n)` means "log, and say that `n` earlier
    /// occurrences were not logged". `None` means "suppressed" (and counted for the next line).
    pub fn admit(&self, subject: &str, reason: &'static str) -> Option<u64> {
        self.admit_at(subject, reason, Instant::now())
    }

    /// [`LogLimiter::admit`] at a given instant (tests control time through this).
    pub fn admit_at(&self, subject: &str, reason: &'static str, now: Instant) -> Option<u64> {
        // A poisoned lock only means another thread panicked mid-update of a counter: the
        // map is still usable, and logging must not panic.
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match windows.get_mut(&(subject.to_string(), reason)) {
            Some(w) if now.saturating_duration_since(w.last_logged) < self.interval => {
                w.suppressed += 1;
                None
            }
            Some(w) => {
                let suppressed = std::mem::take(&mut w.suppressed);
                w.last_logged = now;
                Some(suppressed)
            }
            None => {
                windows.insert(
                    (subject.to_string(), reason),
                    Window {
                        last_logged: now,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_key_and_interval_with_the_suppressed_count() {
        let l = LogLimiter::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(l.admit_at("a", "bad_signature", t0), Some(0));
        for i in 1..1000 {
            assert_eq!(
                l.admit_at("a", "bad_signature", t0 + Duration::from_millis(i)),
                None
            );
        }
        // other keys are independent
        assert_eq!(l.admit_at("b", "bad_signature", t0), Some(0));
        assert_eq!(l.admit_at("a", "stale_timestamp", t0), Some(0));
        // after the interval: one line that reports the 999 suppressed
        assert_eq!(
            l.admit_at("a", "bad_signature", t0 + Duration::from_secs(61)),
            Some(999)
        );
        assert_eq!(
            l.admit_at("a", "bad_signature", t0 + Duration::from_secs(62)),
            None
        );
    }

    #[test]
    fn zero_interval_logs_everything() {
        let l = LogLimiter::new(Duration::ZERO);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.admit_at("a", "x", t0), Some(0));
        }
    }
}
