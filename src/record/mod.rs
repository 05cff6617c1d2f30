//! Record: the delivery ledger. Per job its state, connector, mapping, business key (SpNo)
//! and attempts; per attempt the time, duration, request and response (redacted by the
//! deliver stage, capped and sealed at rest here), status, classification and captured values.
//!
//! It owns the exactly-once protocol on the ledger side: [`Ledger::begin`] records a job as
//! in flight before anything is sent and tells the caller whether to send
//! ([`Begin`]); [`Ledger::record_attempt`] appends an attempt; [`Ledger::finish`] settles the
//! job, and never turns a delivered job back into a failed one; [`Ledger::settle`] does both
//! (and records a notification) for the attempt that decided the outcome. Each call is one
//! atomic write.
//! It also answers the operator's queries (paged, indexed listings; one job with every
//! attempt; counts per connector and state) and prunes old jobs.
//!
//! It must not send anything, touch the broker, or know redb: storage goes through the
//! [`Backend`] seam (embedded store today, PostgreSQL next). It is not a queue stage: the
//! deliver stage calls it inline, ledger first, then settles the broker delivery.

pub mod admin;
mod backend;
mod seal;
mod types;
mod writeback;

#[cfg(test)]
pub(crate) mod tests;

use std::sync::Arc;
use std::time::Duration;

pub use backend::{Backend, Decision, WritebackDecision};
pub use seal::{MAX_BODY_BYTES, cap_body};
pub use types::*;
pub use writeback::WritebackResult;

use crate::store::{Sealer, Store, StoreError};

/// Errors of the ledger.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The store failed; nothing was recorded.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An attempt or outcome for a job that was never begun.
    #[error("no delivery job `{key}` in the ledger (begin it first)")]
    UnknownJob {
        /// The key asked for.
        key: String,
    },
    /// Sealing or opening a payload failed (wrong or missing key, corrupt record).
    #[error("attempt payload: {0}")]
    Seal(String),
    /// The blocking task running a store call failed.
    #[error("ledger task failed: {0}")]
    Task(String),
}

impl LedgerError {
    fn op(&self) -> &'static str {
        match self {
            LedgerError::Store(_) => "store",
            LedgerError::UnknownJob { .. } => "unknown_job",
            LedgerError::Seal(_) => "seal",
            LedgerError::Task(_) => "task",
        }
    }
}

/// What [`Ledger::begin`] found, and so what the deliver stage does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// First time seen; now recorded in flight: send.
    Fresh(JobRecord),
    /// The target has it already (delivered, duplicate, skipped): ack, send nothing.
    AlreadyDelivered(JobRecord),
    /// Found in flight (a crash or a broker redelivery after the send began): re-send with the
    /// same idempotency key and business key; the target's duplicate answer settles it. The
    /// record's `updated_at_ms` says when it went in flight: a caller that sees it younger
    /// than a send timeout may be racing a live worker and can retry later instead.
    InFlight(JobRecord),
    /// It was retrying, or dead and replayed by an operator; now in flight again: send.
    Resume {
        /// The job, now in flight.
        job: JobRecord,
        /// The state it was in.
        previous: JobState,
    },
    /// Settled without a delivery (a pilot's dry run, a revocation of nothing): send nothing
    /// unless the operator replays it deliberately.
    Settled(JobRecord),
}

/// How a job ends (or pauses), given to [`Ledger::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The target accepted it.
    Delivered,
    /// The target already had it.
    Duplicate,
    /// A retry is scheduled on the broker.
    Retrying {
        /// Why the last attempt failed.
        reason: String,
    },
    /// Parked for an operator.
    Dead {
        /// Why, readable by an operator.
        reason: String,
    },
    /// Pilot mode: recorded, not sent.
    DryRun,
    /// Not sent: the same document was delivered before.
    SkippedAlreadyDelivered,
    /// A revocation whose approved job was never delivered.
    RevokedWithoutApproval,
}

impl Outcome {
    /// The state the job ends in.
    pub fn state(&self) -> JobState {
        match self {
            Outcome::Delivered => JobState::Delivered,
            Outcome::Duplicate => JobState::Duplicate,
            Outcome::Retrying { .. } => JobState::Retrying,
            Outcome::Dead { .. } => JobState::Dead,
            Outcome::DryRun => JobState::DryRun,
            Outcome::SkippedAlreadyDelivered => JobState::SkippedAlreadyDelivered,
            Outcome::RevokedWithoutApproval => JobState::RevokedWithoutApproval,
        }
    }

    fn error(&self) -> Option<String> {
        match self {
            Outcome::Retrying { reason } | Outcome::Dead { reason } => Some(reason.clone()),
            Outcome::RevokedWithoutApproval => Some(
                "revoked after approval, but the approved document was never delivered: nothing to reverse"
                    .into(),
            ),
            _ => None,
        }
    }
}

/// Renders a job's WeCom notification from the settled job (see [`Ledger::finish_and_notify`]).
pub type Render = Box<dyn FnOnce(&JobRecord) -> Option<serde_json::Value> + Send>;

/// The delivery ledger; cheap to clone.
#[derive(Clone, Debug)]
pub struct Ledger {
    backend: Backend,
    cipher: Arc<Sealer>,
}

fn count_failure<T>(r: Result<T, LedgerError>) -> Result<T, LedgerError> {
    if let Err(e) = &r {
        metrics::counter!("wecom_bridge_ledger_failures_total", "kind" => e.op()).increment(1);
    }
    r
}

impl Ledger {
    /// The ledger in this instance's embedded store; payloads are sealed with the store's
    /// sealer (the journal keys).
    pub fn embedded(store: Store) -> Ledger {
        Ledger {
            cipher: store.sealer().clone(),
            backend: Backend::Embedded(store),
        }
    }

    /// Records the job as in flight unless it is known, atomically; says what to do.
    pub async fn begin(&self, start: JobStart) -> Result<Begin, LedgerError> {
        let key = start.key.clone();
        let decide: Decision<Begin> = Box::new(move |old| Ok(decide_begin(old, &start)));
        count_failure(self.backend.update(key, decide).await)
    }

    /// Appends an attempt to a begun job (numbered by the ledger; returned) and updates the
    /// job's attempt count, times, captured values and last error, atomically.
    pub async fn record_attempt(
        &self,
        key: &str,
        attempt: AttemptRecord,
    ) -> Result<u32, LedgerError> {
        let cipher = self.cipher.clone();
        let k = key.to_string();
        let decide: Decision<u32> = Box::new(move |old| {
            let (job, stored) = apply_attempt(&cipher, &k, old, attempt)?;
            let number = job.attempts;
            let write = LedgerWrite {
                job,
                attempt: Some(stored),
            };
            Ok((Some(write), number))
        });
        count_failure(self.backend.update(key.to_string(), decide).await)
    }

    /// Settles a job. A job that counts as delivered stays delivered whatever a late or
    /// racing caller reports (returned unchanged, with a warning and a metric).
    pub async fn finish(
        &self,
        key: &str,
        outcome: Outcome,
        at_ms: i64,
    ) -> Result<JobRecord, LedgerError> {
        self.settle(key, None, outcome, at_ms, None)
            .await
            .map(|(job, _)| job)
    }

    /// One job with every attempt; payloads (headers, bodies) only with `with_payload`.
    pub async fn get(
        &self,
        key: &str,
        with_payload: bool,
    ) -> Result<Option<Delivery>, LedgerError> {
        let Some((job, stored)) = count_failure(self.backend.job_with_attempts(key.into()).await)?
        else {
            return Ok(None);
        };
        let mut attempts = Vec::with_capacity(stored.len());
        for s in stored {
            let mut a = s.meta;
            a.payload = match (&s.sealed, with_payload) {
                (Some(sealed), true) => Some(count_failure(seal::open(
                    &self.cipher,
                    key,
                    a.number,
                    sealed,
                ))?),
                _ => None,
            };
            attempts.push(a);
        }
        let writebacks = self.writebacks(key).await?;
        Ok(Some(Delivery {
            job,
            attempts,
            writebacks,
        }))
    }

    /// The job with this key, or else every job of this business key (SpNo), newest first.
    pub async fn find(
        &self,
        key_or_business_key: &str,
        with_payload: bool,
    ) -> Result<Vec<Delivery>, LedgerError> {
        if let Some(d) = self.get(key_or_business_key, with_payload).await? {
            return Ok(vec![d]);
        }
        let page = self
            .list(LedgerQuery {
                business_key: Some(key_or_business_key.into()),
                limit: crate::store::LEDGER_MAX_PAGE,
                ..Default::default()
            })
            .await?;
        let mut out = Vec::with_capacity(page.jobs.len());
        for j in page.jobs {
            if let Some(d) = self.get(&j.key, with_payload).await? {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// The state of a job, if known.
    pub async fn job(&self, key: &str) -> Result<Option<JobRecord>, LedgerError> {
        count_failure(self.backend.job(key.into()).await)
    }

    /// One page of jobs matching `query`, newest first (page size clamped to 1..=1000).
    pub async fn list(&self, query: LedgerQuery) -> Result<Page, LedgerError> {
        count_failure(self.backend.list(query).await)
    }

    /// Jobs per (connector, state), from counters (no scan).
    pub async fn counts(&self) -> Result<Vec<StateCount>, LedgerError> {
        count_failure(self.backend.counts().await)
    }

    /// Jobs of `state` created in each of `buckets` windows of `bucket_ms` from `since_ms`,
    /// counted from an index (for the console's chart).
    pub async fn histogram(
        &self,
        state: JobState,
        since_ms: i64,
        bucket_ms: i64,
        buckets: usize,
    ) -> Result<Vec<u64>, LedgerError> {
        count_failure(
            self.backend
                .histogram(state, since_ms, bucket_ms, buckets)
                .await,
        )
    }

    /// Removes jobs created before `cutoff_ms` with their attempts; returns how many.
    pub async fn prune(&self, cutoff_ms: i64) -> Result<usize, LedgerError> {
        let n = count_failure(self.backend.prune(cutoff_ms).await)?;
        metrics::counter!("wecom_bridge_ledger_pruned_total").increment(n as u64);
        Ok(n)
    }

    /// An attempt as a back end stores it: bodies capped, payload sealed (for [`Ledger::import`]).
    pub fn seal_attempt(
        &self,
        key: &str,
        attempt: AttemptRecord,
    ) -> Result<StoredAttempt, LedgerError> {
        to_stored(&self.cipher, key, attempt)
    }

    /// Loads jobs with their already-sealed attempts in bulk (moving a ledger between back
    /// ends, restores, benchmarks). Replaces jobs with the same key.
    pub async fn import(
        &self,
        jobs: Vec<(JobRecord, Vec<StoredAttempt>)>,
    ) -> Result<(), LedgerError> {
        count_failure(self.backend.import(jobs).await)
    }

    /// Prunes jobs older than `retention` now and then every `every`, in the background.
    pub fn spawn_pruner(
        &self,
        retention: Duration,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let ledger = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let cutoff = jiff::Timestamp::now().as_millisecond() - retention.as_millis() as i64;
                match ledger.prune(cutoff).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "pruned delivery records past retention"),
                    Err(e) => tracing::warn!(
                        error = %e,
                        "pruning delivery records failed; will retry at the next interval (check the store's disk)"
                    ),
                }
            }
        })
    }
}

/// Caps the bodies of `attempt` and seals its payload: the one way attempts reach a back end.
fn to_stored(
    cipher: &Sealer,
    key: &str,
    mut attempt: AttemptRecord,
) -> Result<StoredAttempt, LedgerError> {
    let sealed = match attempt.payload.take() {
        Some(mut p) => {
            cap_body(&mut p.request_body);
            cap_body(&mut p.response_body);
            Some(seal::seal(cipher, key, attempt.number, &p)?)
        }
        None => None,
    };
    Ok(StoredAttempt {
        meta: attempt,
        sealed,
    })
}

/// `attempt` appended to the job `old` (numbered by the ledger): the job after it (attempt
/// count, times, captured values, last error) and the attempt sealed for storage.
fn apply_attempt(
    cipher: &Sealer,
    key: &str,
    old: Option<JobRecord>,
    mut attempt: AttemptRecord,
) -> Result<(JobRecord, StoredAttempt), LedgerError> {
    let Some(mut job) = old else {
        return Err(LedgerError::UnknownJob {
            key: key.to_string(),
        });
    };
    let number = job.attempts + 1;
    attempt.number = number;
    let stored = to_stored(cipher, key, attempt)?;
    let attempt = &stored.meta;
    job.attempts = number;
    job.first_attempt_at_ms.get_or_insert(attempt.started_at_ms);
    job.last_attempt_at_ms = Some(attempt.started_at_ms);
    job.updated_at_ms = job
        .updated_at_ms
        .max(attempt.started_at_ms + attempt.duration_ms as i64);
    job.captured
        .extend(attempt.captured.iter().map(|(k, v)| (k.clone(), v.clone())));
    if matches!(
        attempt.classification,
        Classification::Retryable | Classification::Permanent
    ) {
        job.last_error = attempt.reason.clone();
    }
    Ok((job, stored))
}

/// The pure decision of [`Ledger::finish`] with the attempt that led to it, if any: the
/// attempt appended ([`apply_attempt`]), then the job settled ([`decide_finish`]); one write.
fn decide_settle(
    cipher: &Sealer,
    key: String,
    old: Option<JobRecord>,
    attempt: Option<AttemptRecord>,
    outcome: &Outcome,
    at_ms: i64,
) -> Result<(Option<LedgerWrite>, JobRecord), LedgerError> {
    let (old, stored) = match attempt {
        Some(a) => {
            let (job, stored) = apply_attempt(cipher, &key, old, a)?;
            (Some(job), Some(stored))
        }
        None => (old, None),
    };
    let (write, job) = decide_finish(old, key, outcome, at_ms)?;
    let write = match (write, stored) {
        (Some(w), stored) => Some(LedgerWrite {
            attempt: stored,
            ..w
        }),
        // a delivered job stays delivered, but the attempt is still recorded
        (None, Some(stored)) => Some(LedgerWrite {
            job: job.clone(),
            attempt: Some(stored),
        }),
        (None, None) => None,
    };
    Ok((write, job))
}

/// The pure decision of [`Ledger::finish`]: the job settled with `outcome`, except that a job
/// that counts as delivered stays delivered (then nothing is written).
fn decide_finish(
    old: Option<JobRecord>,
    key: String,
    outcome: &Outcome,
    at_ms: i64,
) -> Result<(Option<LedgerWrite>, JobRecord), LedgerError> {
    let Some(mut job) = old else {
        return Err(LedgerError::UnknownJob { key });
    };
    let next = outcome.state();
    if job.state.counts_as_delivered() && !next.counts_as_delivered() {
        tracing::warn!(
            job = %job.key, sp_no = %job.business_key, state = %job.state, reported = %next,
            "a delivered job was reported as {next}; it stays {}; nothing to do unless the target lacks the document",
            job.state
        );
        metrics::counter!("wecom_bridge_ledger_kept_delivered_total").increment(1);
        return Ok((None, job));
    }
    job.state = next;
    job.last_error = outcome.error();
    job.updated_at_ms = job.updated_at_ms.max(at_ms);
    Ok((
        Some(LedgerWrite {
            job: job.clone(),
            attempt: None,
        }),
        job,
    ))
}

/// The pure decision of [`Ledger::begin`], run inside the back end's write transaction.
pub fn decide_begin(old: Option<JobRecord>, start: &JobStart) -> (Option<LedgerWrite>, Begin) {
    let Some(mut job) = old else {
        let job = JobRecord {
            key: start.key.clone(),
            state: JobState::InFlight,
            connector: start.connector.clone(),
            mapping: start.mapping.clone(),
            action: start.action.clone(),
            business_key: start.business_key.clone(),
            app: start.app.clone(),
            event_id: start.event_id.clone(),
            attempts: 0,
            created_at_ms: start.at_ms,
            updated_at_ms: start.at_ms,
            first_attempt_at_ms: None,
            last_attempt_at_ms: None,
            captured: Default::default(),
            last_error: None,
        };
        let write = LedgerWrite {
            job: job.clone(),
            attempt: None,
        };
        return (Some(write), Begin::Fresh(job));
    };
    match job.state {
        JobState::Delivered | JobState::Duplicate | JobState::SkippedAlreadyDelivered => {
            (None, Begin::AlreadyDelivered(job))
        }
        JobState::InFlight => (None, Begin::InFlight(job)),
        JobState::Retrying | JobState::Dead => {
            let previous = job.state;
            job.state = JobState::InFlight;
            job.updated_at_ms = job.updated_at_ms.max(start.at_ms);
            let write = LedgerWrite {
                job: job.clone(),
                attempt: None,
            };
            (Some(write), Begin::Resume { job, previous })
        }
        JobState::DryRun | JobState::RevokedWithoutApproval => (None, Begin::Settled(job)),
    }
}
