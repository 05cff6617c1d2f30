//! The circuit breaker of a connector: a pure state machine over explicit times.
//!
//! Closed → (N consecutive retryable failures) → Open → (cool-down passed) → HalfOpen, where
//! exactly one probe is let through: success closes it, failure opens it again for another
//! cool-down. Any answer that shows the target is up and judging documents (delivered,
//! duplicate, permanent) counts as success. Owns the decision "may we send now"; the deliver
//! stage acts on it (pauses the consumer, leaving jobs in the broker) and must not keep its
//! own counters.

use std::time::{Duration, Instant};

use super::Verdict;

/// When a circuit opens and how long it stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitConfig {
    /// Consecutive retryable failures that open the circuit.
    pub failures: u32,
    /// How long it stays open before one probe is let through.
    pub cool_down: Duration,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        CircuitConfig {
            failures: 5,
            cool_down: Duration::from_secs(30),
        }
    }
}

/// The circuit's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Sending normally; `failures` consecutive retryable failures so far.
    Closed {
        /// Consecutive retryable failures.
        failures: u32,
    },
    /// Not sending until `until`.
    Open {
        /// End of the cool-down.
        until: Instant,
    },
    /// One probe is (or may be) in flight.
    HalfOpen {
        /// Whether the probe has been let through.
        probing: bool,
    },
}

/// What the caller may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Send.
    Send,
    /// Send this one request as the probe; hold the others.
    Probe,
    /// Do not send before this instant (the consumer pauses).
    WaitUntil(Instant),
}

/// A circuit breaker.
#[derive(Debug, Clone)]
pub struct Circuit {
    config: CircuitConfig,
    state: CircuitState,
}

impl Circuit {
    /// A closed circuit.
    pub fn new(config: CircuitConfig) -> Self {
        Circuit {
            config,
            state: CircuitState::Closed { failures: 0 },
        }
    }

    /// The current state.
    pub fn state(&self) -> CircuitState {
        self.state
    }

    /// A number for the circuit-state gauge: 0 closed, 1 half-open, 2 open.
    pub fn gauge(&self) -> f64 {
        match self.state {
            CircuitState::Closed { .. } => 0.0,
            CircuitState::HalfOpen { .. } => 1.0,
            CircuitState::Open { .. } => 2.0,
        }
    }

    /// Asks to send at `now`.
    pub fn permit(&mut self, now: Instant) -> Permission {
        match self.state {
            CircuitState::Closed { .. } => Permission::Send,
            CircuitState::Open { until } if now < until => Permission::WaitUntil(until),
            CircuitState::Open { .. } | CircuitState::HalfOpen { probing: false } => {
                self.state = CircuitState::HalfOpen { probing: true };
                Permission::Probe
            }
            // The probe is out; check again after a cool-down at the latest.
            CircuitState::HalfOpen { probing: true } => {
                Permission::WaitUntil(now + self.config.cool_down)
            }
        }
    }

    /// Records the outcome of a request sent at `now`.
    pub fn record(&mut self, verdict: &Verdict, now: Instant) {
        let failed = matches!(verdict, Verdict::Retryable { .. });
        if matches!(verdict, Verdict::DryRun) {
            return;
        }
        self.state = match (self.state, failed) {
            (_, false) => CircuitState::Closed { failures: 0 },
            (CircuitState::Closed { failures }, true) if failures + 1 < self.config.failures => {
                CircuitState::Closed {
                    failures: failures + 1,
                }
            }
            (_, true) => CircuitState::Open {
                until: now + self.config.cool_down,
            },
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retryable() -> Verdict {
        Verdict::Retryable {
            after: None,
            reason: "HTTP 503".into(),
        }
    }

    /// A closed circuit that opens after `failures` and cools down for `cool`.
    fn circuit(failures: u32, cool: Duration) -> Circuit {
        Circuit::new(CircuitConfig {
            failures,
            cool_down: cool,
        })
    }

    #[test]
    fn opens_after_n_consecutive_failures_probes_after_cool_down_and_closes_on_success() {
        let t0 = Instant::now();
        let cool = Duration::from_secs(30);
        let mut c = circuit(3, cool);
        c.record(&retryable(), t0);
        c.record(&retryable(), t0);
        assert_eq!(c.state(), CircuitState::Closed { failures: 2 });
        assert_eq!(c.permit(t0), Permission::Send);
        c.record(&retryable(), t0);
        assert_eq!(c.state(), CircuitState::Open { until: t0 + cool });
        assert_eq!(c.gauge(), 2.0);
        assert_eq!(
            c.permit(t0 + Duration::from_secs(29)),
            Permission::WaitUntil(t0 + cool)
        );
        assert_eq!(c.permit(t0 + cool), Permission::Probe);
        // Only one probe at a time.
        assert!(matches!(c.permit(t0 + cool), Permission::WaitUntil(_)));
        c.record(&Verdict::Delivered, t0 + cool);
        assert_eq!(c.state(), CircuitState::Closed { failures: 0 });
        assert_eq!(c.permit(t0 + cool), Permission::Send);
    }

    #[test]
    fn a_failed_probe_opens_it_again_for_a_full_cool_down() {
        let t0 = Instant::now();
        let cool = Duration::from_secs(10);
        let mut c = circuit(1, cool);
        c.record(&retryable(), t0);
        let t1 = t0 + cool;
        assert_eq!(c.permit(t1), Permission::Probe);
        c.record(&retryable(), t1);
        assert_eq!(c.state(), CircuitState::Open { until: t1 + cool });
    }

    #[test]
    fn answers_that_show_the_target_is_up_reset_the_count() {
        let t0 = Instant::now();
        let mut c = circuit(2, Duration::from_secs(1));
        c.record(&retryable(), t0);
        c.record(
            &Verdict::Permanent {
                reason: "HTTP 422".into(),
            },
            t0,
        );
        c.record(&retryable(), t0);
        assert_eq!(c.state(), CircuitState::Closed { failures: 1 });
        c.record(&Verdict::Duplicate, t0);
        assert_eq!(c.state(), CircuitState::Closed { failures: 0 });
        c.record(&Verdict::DryRun, t0);
        assert_eq!(c.state(), CircuitState::Closed { failures: 0 });
    }
}
