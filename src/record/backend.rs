//! The store seam of the ledger: a closed set of back ends, one `match` per operation.
//!
//! Today the embedded store (redb, in `src/store/ledger.rs`); PostgreSQL joins as a second
//! variant so several instances can share one ledger. A back end stores [`JobRecord`]s and
//! sealed [`StoredAttempt`]s with the indexes listings need, and runs a caller's pure decision
//! atomically with its write ([`Backend::update`]); it makes no exactly-once decision itself.
//! Embedded reads block on disk I/O, so they run on the blocking pool here, never on an async
//! worker; embedded writes are queued to the store's group-commit writer thread, which the
//! calling task awaits without holding a thread.

use crate::store::Store;

use super::LedgerError;
use super::types::{
    JobRecord, LedgerQuery, LedgerWrite, Page, StateCount, StoredAttempt, WritebackKind,
    WritebackRecord,
};

/// Where the ledger lives.
#[derive(Clone, Debug)]
pub enum Backend {
    /// The embedded store of this instance.
    Embedded(Store),
}

async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, LedgerError> + Send + 'static,
) -> Result<R, LedgerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LedgerError::Task(e.to_string()))?
}

/// A decision run inside a back end's write transaction.
pub type Decision<R> =
    Box<dyn FnOnce(Option<JobRecord>) -> Result<(Option<LedgerWrite>, R), LedgerError> + Send>;

/// A decision over a job and one of its writeback records, run inside a write transaction.
pub type WritebackDecision<R> = Box<
    dyn FnOnce(
            Option<JobRecord>,
            Option<WritebackRecord>,
        ) -> Result<(Option<LedgerWrite>, Option<WritebackRecord>, R), LedgerError>
        + Send,
>;

impl Backend {
    /// Runs the read `f` on the backend's store, off the async threads.
    async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<R, LedgerError> + Send + 'static,
    ) -> Result<R, LedgerError> {
        match self {
            Backend::Embedded(store) => {
                let store = store.clone();
                blocking(move || f(&store)).await
            }
        }
    }

    /// Runs `decide` on the job `key` and its `kind` writeback record and applies both
    /// writes, atomically.
    pub async fn update_writeback<R: Send + 'static>(
        &self,
        key: String,
        kind: WritebackKind,
        decide: WritebackDecision<R>,
    ) -> Result<R, LedgerError> {
        match self {
            Backend::Embedded(store) => store.ledger_update_writeback(&key, kind, decide).await,
        }
    }

    /// The writeback records of a job.
    pub async fn writebacks(&self, key: String) -> Result<Vec<WritebackRecord>, LedgerError> {
        self.read(move |store| Ok(store.ledger_writebacks(&key)?))
            .await
    }

    /// Runs `decide` on the current record of `key` and applies its write, atomically.
    pub async fn update<R: Send + 'static>(
        &self,
        key: String,
        decide: Decision<R>,
    ) -> Result<R, LedgerError> {
        match self {
            Backend::Embedded(store) => store.ledger_update(&key, decide).await,
        }
    }

    /// One job.
    pub async fn job(&self, key: String) -> Result<Option<JobRecord>, LedgerError> {
        self.read(move |store| Ok(store.ledger_job(&key)?)).await
    }

    /// A job and its stored attempts, read together.
    pub async fn job_with_attempts(
        &self,
        key: String,
    ) -> Result<Option<(JobRecord, Vec<StoredAttempt>)>, LedgerError> {
        self.read(move |store| {
            let Some(job) = store.ledger_job(&key)? else {
                return Ok(None);
            };
            Ok(Some((job, store.ledger_attempts(&key)?)))
        })
        .await
    }

    /// One page of a listing.
    pub async fn list(&self, query: LedgerQuery) -> Result<Page, LedgerError> {
        self.read(move |store| Ok(store.ledger_list(&query)?)).await
    }

    /// Jobs of `state` created per window of `bucket_ms` from `since_ms`.
    pub async fn histogram(
        &self,
        state: super::JobState,
        since_ms: i64,
        bucket_ms: i64,
        buckets: usize,
    ) -> Result<Vec<u64>, LedgerError> {
        self.read(move |store| Ok(store.ledger_histogram(state, since_ms, bucket_ms, buckets)?))
            .await
    }

    /// Counters per (connector, state).
    pub async fn counts(&self) -> Result<Vec<StateCount>, LedgerError> {
        self.read(move |store| Ok(store.ledger_counts()?)).await
    }

    /// Removes jobs created before `cutoff_ms`.
    pub async fn prune(&self, cutoff_ms: i64) -> Result<usize, LedgerError> {
        self.read(move |store| Ok(store.ledger_prune(cutoff_ms)?))
            .await
    }

    /// Loads finished jobs in bulk.
    pub async fn import(
        &self,
        jobs: Vec<(JobRecord, Vec<StoredAttempt>)>,
    ) -> Result<(), LedgerError> {
        self.read(move |store| Ok(store.ledger_import(&jobs)?))
            .await
    }
}
