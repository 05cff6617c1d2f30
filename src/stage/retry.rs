//! When to try a message again, and when to give up.

use std::time::Duration;

/// What to do with a message whose handler asked for a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Deliver it again after this delay (always one of the broker's tiers).
    After(Duration),
    /// Attempts are used up: park it.
    Park,
}

/// Why a retry policy is unusable. Each names the configuration key it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryPolicyError {
    /// The broker has no delay tiers.
    #[error("broker.retry_tiers_secs must list at least one delay above 0")]
    NoTiers,
    /// The schedule is empty.
    #[error("{key}.retry_secs must list at least one delay")]
    EmptySchedule {
        /// The configuration section, e.g. `stages.route`.
        key: String,
    },
    /// A scheduled delay is not one of the broker's tiers (it would be rounded silently).
    #[error(
        "{key}.retry_secs: {delay_secs} s is not one of broker.retry_tiers_secs {tiers:?}; \
         use one of those delays or add {delay_secs} to the tiers"
    )]
    NotATier {
        /// The configuration section.
        key: String,
        /// The offending delay.
        delay_secs: u64,
        /// The broker's tiers in seconds.
        tiers: Vec<u64>,
    },
    /// `max_hint_secs` is not one of the broker's tiers.
    #[error(
        "{key}.max_hint_secs: {max_hint_secs} s is not one of broker.retry_tiers_secs {tiers:?}"
    )]
    HintNotATier {
        /// The configuration section.
        key: String,
        /// The offending value.
        max_hint_secs: u64,
        /// The broker's tiers in seconds.
        tiers: Vec<u64>,
    },
    /// `max_attempts` is 0.
    #[error("{key}.max_attempts must be at least 1")]
    NoAttempts {
        /// The configuration section.
        key: String,
    },
}

/// The retry policy of one stage: a schedule of delays indexed by attempt, a hint honoured
/// up to `max_hint`, and the attempt after which a message is parked. Built only through
/// [`RetryPolicy::new`], which checks every delay against the broker's tiers, so a delay it
/// returns is always a tier and no back end rounds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    schedule: Vec<Duration>,
    tiers: Vec<Duration>,
    max_attempts: u32,
    max_hint: Duration,
}

impl RetryPolicy {
    /// Checks and builds a policy. `key` names the configuration section in errors
    /// (`stages.route`); delays are in seconds; `max_hint_secs` `None` means the longest tier.
    pub fn new(
        key: &str,
        schedule_secs: &[u64],
        tiers_secs: &[u64],
        max_attempts: u32,
        max_hint_secs: Option<u64>,
    ) -> Result<RetryPolicy, Vec<RetryPolicyError>> {
        let mut errors = Vec::new();
        if tiers_secs.is_empty() || tiers_secs.contains(&0) {
            return Err(vec![RetryPolicyError::NoTiers]);
        }
        let mut tiers = tiers_secs.to_vec();
        tiers.sort_unstable();
        tiers.dedup();
        if schedule_secs.is_empty() {
            errors.push(RetryPolicyError::EmptySchedule { key: key.into() });
        }
        for d in schedule_secs {
            if !tiers.contains(d) {
                errors.push(RetryPolicyError::NotATier {
                    key: key.into(),
                    delay_secs: *d,
                    tiers: tiers.clone(),
                });
            }
        }
        let longest = *tiers.last().unwrap_or(&0);
        let max_hint = max_hint_secs.unwrap_or(longest);
        if !tiers.contains(&max_hint) {
            errors.push(RetryPolicyError::HintNotATier {
                key: key.into(),
                max_hint_secs: max_hint,
                tiers: tiers.clone(),
            });
        }
        if max_attempts == 0 {
            errors.push(RetryPolicyError::NoAttempts { key: key.into() });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(RetryPolicy {
            schedule: schedule_secs
                .iter()
                .map(|s| Duration::from_secs(*s))
                .collect(),
            tiers: tiers.into_iter().map(Duration::from_secs).collect(),
            max_attempts,
            max_hint: Duration::from_secs(max_hint),
        })
    }

    /// The default schedule for a stage over these tiers: every tier up to ten minutes (or
    /// the shortest tier if none is that short), so the default always validates.
    pub fn default_schedule(tiers_secs: &[u64]) -> Vec<u64> {
        let mut tiers: Vec<u64> = tiers_secs.iter().copied().filter(|t| *t > 0).collect();
        tiers.sort_unstable();
        tiers.dedup();
        let short: Vec<u64> = tiers.iter().copied().filter(|t| *t <= 600).collect();
        if short.is_empty() {
            tiers.into_iter().take(1).collect()
        } else {
            short
        }
    }

    /// What to do after delivery `attempt` (1-based) asked for a retry, with an optional
    /// `hint` (the least wait the other side asked for).
    ///
    /// Parks once `attempt` reaches `max_attempts`. Otherwise the delay is the schedule's
    /// entry for this attempt (the last entry repeats); a hint raises it to the smallest tier
    /// not shorter than the hint, the hint first clamped to `max_hint`.
    pub fn decide(&self, attempt: u32, hint: Option<Duration>) -> Retry {
        if attempt >= self.max_attempts {
            return Retry::Park;
        }
        let index = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
        let scheduled = self
            .schedule
            .get(index)
            .or(self.schedule.last())
            .copied()
            .unwrap_or(self.max_hint);
        let hinted = hint.map(|h| {
            let h = h.min(self.max_hint);
            // max_hint is a tier (checked in `new`), so a tier >= h always exists
            self.tiers
                .iter()
                .copied()
                .find(|t| *t >= h)
                .unwrap_or(self.max_hint)
        });
        Retry::After(hinted.map_or(scheduled, |h| h.max(scheduled)))
    }

    /// Deliveries after which a message is parked.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The delays by attempt.
    pub fn schedule(&self) -> &[Duration] {
        &self.schedule
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIERS: [u64; 5] = [5, 30, 120, 600, 3600];

    fn policy() -> RetryPolicy {
        RetryPolicy::new("stages.route", &[5, 30, 120, 600], &TIERS, 12, Some(600)).unwrap()
    }

    fn secs(s: u64) -> Retry {
        Retry::After(Duration::from_secs(s))
    }

    #[test]
    fn the_schedule_is_indexed_by_attempt_and_its_last_entry_repeats() {
        let p = policy();
        let got: Vec<Retry> = (1..=6).map(|a| p.decide(a, None)).collect();
        assert_eq!(got, [5, 30, 120, 600, 600, 600].map(secs));
    }

    #[test]
    fn a_hint_picks_the_smallest_tier_not_shorter_than_it() {
        let p = policy();
        // WeCom 45009: wait 60 s → the 120 s tier, not the scheduled 5 s
        assert_eq!(p.decide(1, Some(Duration::from_secs(60))), secs(120));
        assert_eq!(p.decide(1, Some(Duration::from_secs(30))), secs(30));
        assert_eq!(p.decide(1, Some(Duration::from_millis(1))), secs(5));
        // the schedule wins when it is longer than the hint
        assert_eq!(p.decide(4, Some(Duration::from_secs(1))), secs(600));
    }

    #[test]
    fn a_hint_is_clamped_to_max_hint() {
        let p = policy();
        assert_eq!(p.decide(1, Some(Duration::from_secs(86_400))), secs(600));
        let wide = RetryPolicy::new("stages.route", &[5], &TIERS, 12, None).unwrap();
        assert_eq!(
            wide.decide(1, Some(Duration::from_secs(86_400))),
            secs(3600)
        );
    }

    #[test]
    fn parks_when_attempts_are_used_up() {
        let p = policy();
        assert_eq!(p.decide(11, None), secs(600));
        assert_eq!(p.decide(12, None), Retry::Park);
        assert_eq!(p.decide(40, Some(Duration::from_secs(5))), Retry::Park);
        let once = RetryPolicy::new("stages.deliver", &[5], &TIERS, 1, None).unwrap();
        assert_eq!(once.decide(1, None), Retry::Park);
    }

    #[test]
    fn delays_that_are_not_tiers_are_refused_naming_the_key() {
        let errors =
            RetryPolicy::new("stages.route", &[5, 45, 7], &TIERS, 0, Some(100)).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 4, "{text:?}");
        assert!(
            text[0].starts_with("stages.route.retry_secs: 45 s is not one of"),
            "{text:?}"
        );
        assert!(text[1].contains("7 s"), "{text:?}");
        assert!(
            text[2].starts_with("stages.route.max_hint_secs: 100 s"),
            "{text:?}"
        );
        assert_eq!(text[3], "stages.route.max_attempts must be at least 1");
        assert_eq!(
            RetryPolicy::new("stages.route", &[], &TIERS, 3, None).unwrap_err(),
            vec![RetryPolicyError::EmptySchedule {
                key: "stages.route".into()
            }]
        );
        assert_eq!(
            RetryPolicy::new("stages.route", &[5], &[], 3, None).unwrap_err(),
            vec![RetryPolicyError::NoTiers]
        );
    }

    #[test]
    fn the_default_schedule_always_validates() {
        for tiers in [&TIERS[..], &[1, 2], &[3600, 7200], &[600, 5]] {
            let s = RetryPolicy::default_schedule(tiers);
            assert!(!s.is_empty());
            RetryPolicy::new("stages.route", &s, tiers, 12, None).unwrap();
        }
        assert_eq!(RetryPolicy::default_schedule(&TIERS), vec![5, 30, 120, 600]);
        assert_eq!(RetryPolicy::default_schedule(&[3600, 7200]), vec![3600]);
    }
}
