//! Tables of the delivery ledger (embedded back end).
//!
//! - `ledger_jobs`: idempotency key → [`JobRecord`] (postcard).
//! - `ledger_attempts`: (key, attempt number) → [`StoredAttempt`] (postcard; headers and bodies
//!   arrive sealed from `crate::record`, this module never sees them in the clear).
//! - Indexes, all ending in (created ms, key) so that every listing is a range read, newest
//!   first, with a cursor: `ledger_by_time` (also the retention index: pruning reads the oldest
//!   range, never scans), `ledger_by_business_key`, `ledger_by_connector`, `ledger_by_state`,
//!   `ledger_by_connector_state`.
//! - `ledger_counts`: (connector, state) → number of jobs, kept up to date on every write so
//!   metrics and the console never count by scanning.
//! - `ledger_writebacks`: (key, kind) → [`WritebackRecord`] (postcard): the job's WeCom
//!   notifications, written in the same transaction as the outcome that causes them (so a
//!   crash cannot lose one) and removed with the job.
//!
//! The exactly-once decisions (what `begin` answers, which transitions are allowed) are not
//! made here: [`Store::ledger_update`] runs the caller's pure decision inside one write
//! transaction, so the decision and its effect are atomic.

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};

use super::{Store, StoreError};
use crate::record::{
    Cursor, JobRecord, JobState, LedgerQuery, LedgerWrite, Page, StateCount, StoredAttempt,
    WritebackKind, WritebackRecord,
};

/// What a ledger decision returns: the job write and the writeback record to store (`None`:
/// unchanged), and the caller's own result.
type Decision<R, E> = Result<(Option<LedgerWrite>, Option<WritebackRecord>, R), E>;

const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("ledger_jobs");
const ATTEMPTS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("ledger_attempts");
const BY_TIME: TableDefinition<(i64, &str), ()> = TableDefinition::new("ledger_by_time");
const BY_BUSINESS_KEY: TableDefinition<(&str, i64, &str), ()> =
    TableDefinition::new("ledger_by_business_key");
const BY_CONNECTOR: TableDefinition<(&str, i64, &str), ()> =
    TableDefinition::new("ledger_by_connector");
const BY_STATE: TableDefinition<(&str, i64, &str), ()> = TableDefinition::new("ledger_by_state");
const BY_CONNECTOR_STATE: TableDefinition<(&str, &str, i64, &str), ()> =
    TableDefinition::new("ledger_by_connector_state");
const COUNTS: TableDefinition<(&str, &str), u64> = TableDefinition::new("ledger_counts");
const WRITEBACKS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("ledger_writebacks");

/// Largest page a listing returns.
pub const MAX_PAGE: usize = 1000;
/// Jobs removed per transaction while pruning (keeps each commit small).
const PRUNE_BATCH: usize = 1000;

/// Creates the ledger tables: every table a write opens (called from `Store::init_tables`).
pub(super) fn init_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    Writer::open(tx).map(drop)
}

fn encode<T: serde::Serialize>(what: &str, v: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_allocvec(v).map_err(|e| StoreError::Db(format!("encode {what}: {e}")))
}

fn decode_job(key: &str, bytes: &[u8]) -> Result<JobRecord, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Decode {
        key: format!("ledger_jobs/{key}"),
        reason: e.to_string(),
    })
}

fn decode_writeback(key: &str, bytes: &[u8]) -> Result<WritebackRecord, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Decode {
        key: format!("ledger_writebacks/{key}"),
        reason: e.to_string(),
    })
}

/// The ledger tables opened in one write transaction.
struct Writer<'t> {
    jobs: Table<'t, &'static str, &'static [u8]>,
    attempts: Table<'t, (&'static str, u32), &'static [u8]>,
    by_time: Table<'t, (i64, &'static str), ()>,
    by_business_key: Table<'t, (&'static str, i64, &'static str), ()>,
    by_connector: Table<'t, (&'static str, i64, &'static str), ()>,
    by_state: Table<'t, (&'static str, i64, &'static str), ()>,
    by_connector_state: Table<'t, (&'static str, &'static str, i64, &'static str), ()>,
    counts: Table<'t, (&'static str, &'static str), u64>,
    writebacks: Table<'t, (&'static str, &'static str), &'static [u8]>,
}

impl<'t> Writer<'t> {
    fn open(tx: &'t WriteTransaction) -> Result<Self, StoreError> {
        Ok(Writer {
            jobs: tx.open_table(JOBS)?,
            attempts: tx.open_table(ATTEMPTS)?,
            by_time: tx.open_table(BY_TIME)?,
            by_business_key: tx.open_table(BY_BUSINESS_KEY)?,
            by_connector: tx.open_table(BY_CONNECTOR)?,
            by_state: tx.open_table(BY_STATE)?,
            by_connector_state: tx.open_table(BY_CONNECTOR_STATE)?,
            counts: tx.open_table(COUNTS)?,
            writebacks: tx.open_table(WRITEBACKS)?,
        })
    }

    fn job(&self, key: &str) -> Result<Option<JobRecord>, StoreError> {
        self.jobs
            .get(key)?
            .map(|v| decode_job(key, v.value()))
            .transpose()
    }

    fn add_count(
        &mut self,
        connector: &str,
        state: JobState,
        delta: i64,
    ) -> Result<(), StoreError> {
        let k = (connector, state.as_str());
        let now = self.counts.get(k)?.map_or(0, |v| v.value());
        let next = now.saturating_add_signed(delta);
        if next == 0 {
            self.counts.remove(k)?;
        } else {
            self.counts.insert(k, next)?;
        }
        Ok(())
    }

    fn index(&mut self, j: &JobRecord) -> Result<(), StoreError> {
        let (t, key, st) = (j.created_at_ms, j.key.as_str(), j.state.as_str());
        self.by_time.insert((t, key), ())?;
        self.by_business_key
            .insert((j.business_key.as_str(), t, key), ())?;
        self.by_connector
            .insert((j.connector.as_str(), t, key), ())?;
        self.by_state.insert((st, t, key), ())?;
        self.by_connector_state
            .insert((j.connector.as_str(), st, t, key), ())?;
        self.add_count(&j.connector, j.state, 1)
    }

    fn unindex(&mut self, j: &JobRecord) -> Result<(), StoreError> {
        let (t, key, st) = (j.created_at_ms, j.key.as_str(), j.state.as_str());
        self.by_time.remove((t, key))?;
        self.by_business_key
            .remove((j.business_key.as_str(), t, key))?;
        self.by_connector.remove((j.connector.as_str(), t, key))?;
        self.by_state.remove((st, t, key))?;
        self.by_connector_state
            .remove((j.connector.as_str(), st, t, key))?;
        self.add_count(&j.connector, j.state, -1)
    }

    fn put(&mut self, old: Option<&JobRecord>, w: &LedgerWrite) -> Result<(), StoreError> {
        let new = &w.job;
        let indexed_same = old.is_some_and(|o| {
            o.state == new.state
                && o.created_at_ms == new.created_at_ms
                && o.connector == new.connector
                && o.business_key == new.business_key
        });
        if !indexed_same {
            if let Some(o) = old {
                self.unindex(o)?;
            }
            self.index(new)?;
        }
        self.jobs
            .insert(new.key.as_str(), encode("ledger job", new)?.as_slice())?;
        if let Some(a) = &w.attempt {
            self.attempts.insert(
                (new.key.as_str(), a.meta.number),
                encode("ledger attempt", a)?.as_slice(),
            )?;
        }
        Ok(())
    }

    fn remove(&mut self, job: &JobRecord) -> Result<(), StoreError> {
        self.unindex(job)?;
        self.jobs.remove(job.key.as_str())?;
        let numbers: Vec<u32> = self
            .attempts
            .range((job.key.as_str(), 0)..=(job.key.as_str(), u32::MAX))?
            .map(|r| r.map(|(k, _)| k.value().1))
            .collect::<Result<_, _>>()?;
        for n in numbers {
            self.attempts.remove((job.key.as_str(), n))?;
        }
        for kind in WritebackKind::ALL {
            self.writebacks.remove((job.key.as_str(), kind.as_str()))?;
        }
        Ok(())
    }
}

impl Store {
    /// Reads the job `key` and hands it to `decide` inside one write transaction; applies the
    /// write `decide` returns (job, indexes, counters, attempt) and commits, or changes
    /// nothing when it returns `None`. The decision and its effect are therefore atomic.
    pub async fn ledger_update<R: Send + 'static, E: From<StoreError> + Send + 'static>(
        &self,
        key: &str,
        decide: impl FnOnce(Option<JobRecord>) -> Result<(Option<LedgerWrite>, R), E> + Send + 'static,
    ) -> Result<R, E> {
        self.ledger_update_in(key, None, |old, _| {
            decide(old).map(|(write, result)| (write, None, result))
        })
        .await
    }

    /// Like [`Store::ledger_update`], with the job's `kind` writeback record read and written
    /// in the same transaction: `decide` gets both and returns the job write and the
    /// writeback record to store (either may be `None`: unchanged).
    pub async fn ledger_update_writeback<
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    >(
        &self,
        key: &str,
        kind: WritebackKind,
        decide: impl FnOnce(Option<JobRecord>, Option<WritebackRecord>) -> Decision<R, E>
        + Send
        + 'static,
    ) -> Result<R, E> {
        self.ledger_update_in(key, Some(kind), decide).await
    }

    /// The one write of the ledger: the job `key` (and its `kind` writeback record, if any)
    /// handed to `decide` and its writes applied, in a transaction grouped with the other
    /// ledger and form writes queued meanwhile (one fsync for all; see `group`). The caller's
    /// task waits for that commit without a blocking thread: the writer thread does the work.
    async fn ledger_update_in<R: Send + 'static, E: From<StoreError> + Send + 'static>(
        &self,
        key: &str,
        kind: Option<WritebackKind>,
        decide: impl FnOnce(Option<JobRecord>, Option<WritebackRecord>) -> Decision<R, E>
        + Send
        + 'static,
    ) -> Result<R, E> {
        let key = key.to_string();
        // The decision's own error travels inside the store's Ok, so the store's fault
        // handling sees only store errors; a decision error writes nothing.
        self.write_grouped_async("ledger", move |tx| {
            let key = key.as_str();
            let mut w = Writer::open(tx)?;
            let old = w.job(key)?;
            let old_wb = match kind {
                Some(kind) => w
                    .writebacks
                    .get((key, kind.as_str()))?
                    .map(|v| decode_writeback(key, v.value()))
                    .transpose()?,
                None => None,
            };
            let (write, wb, result) = match decide(old.clone(), old_wb) {
                Ok(decided) => decided,
                Err(e) => return Ok((Err(e), false)),
            };
            let changed = write.is_some() || wb.is_some();
            if let Some(write) = &write
                && write.job.key != key
            {
                return Err(StoreError::Db(format!(
                    "ledger write for `{}` inside the transaction of `{key}`",
                    write.job.key
                )));
            }
            let wb = match (wb, kind) {
                (Some(wb), Some(kind)) => Some((encode("ledger writeback", &wb)?, kind)),
                _ => None,
            };
            if let Some(write) = write {
                w.put(old.as_ref(), &write)?;
            }
            if let Some((bytes, kind)) = wb {
                w.writebacks
                    .insert((key, kind.as_str()), bytes.as_slice())?;
            }
            Ok((Ok(result), changed))
        })
        .await?
    }

    /// The writeback records of a job (applicant first).
    pub fn ledger_writebacks(&self, key: &str) -> Result<Vec<WritebackRecord>, StoreError> {
        self.read(|tx| {
            let table = tx.open_table(WRITEBACKS)?;
            let mut out = Vec::new();
            for kind in WritebackKind::ALL {
                if let Some(v) = table.get((key, kind.as_str()))? {
                    out.push(decode_writeback(key, v.value())?);
                }
            }
            Ok(out)
        })
    }

    /// Loads jobs with their attempts in one transaction, replacing jobs with the same key
    /// (moving a ledger between back ends, restoring, benchmarks).
    pub fn ledger_import(
        &self,
        jobs: &[(JobRecord, Vec<StoredAttempt>)],
    ) -> Result<(), StoreError> {
        self.with_db(|db| {
            let tx = db.begin_write()?;
            {
                let mut w = Writer::open(&tx)?;
                for (job, attempts) in jobs {
                    if let Some(old) = w.job(&job.key)? {
                        w.remove(&old)?;
                    }
                    w.put(
                        None,
                        &LedgerWrite {
                            job: job.clone(),
                            attempt: None,
                        },
                    )?;
                    for a in attempts {
                        w.attempts.insert(
                            (job.key.as_str(), a.meta.number),
                            encode("ledger attempt", a)?.as_slice(),
                        )?;
                    }
                }
            }
            super::commit(tx, "ledger", true)?;
            Ok(())
        })
    }

    /// One job.
    pub fn ledger_job(&self, key: &str) -> Result<Option<JobRecord>, StoreError> {
        self.read(|tx| {
            let jobs = tx.open_table(JOBS)?;
            jobs.get(key)?
                .map(|v| decode_job(key, v.value()))
                .transpose()
        })
    }

    /// Every attempt of a job, oldest first.
    pub fn ledger_attempts(&self, key: &str) -> Result<Vec<StoredAttempt>, StoreError> {
        self.read(|tx| {
            let attempts = tx.open_table(ATTEMPTS)?;
            attempts
                .range((key, 0)..=(key, u32::MAX))?
                .map(|r| {
                    let (k, v) = r?;
                    postcard::from_bytes(v.value()).map_err(|e| StoreError::Decode {
                        key: format!("ledger_attempts/{key}/{}", k.value().1),
                        reason: e.to_string(),
                    })
                })
                .collect()
        })
    }

    /// One page of jobs matching `q`, newest first, read from the most selective index:
    /// business key, then (connector, state), connector, state, and time.
    pub fn ledger_list(&self, q: &LedgerQuery) -> Result<Page, StoreError> {
        self.read(|tx| self.ledger_list_in(tx, q))
    }

    fn ledger_list_in(
        &self,
        tx: &redb::ReadTransaction,
        q: &LedgerQuery,
    ) -> Result<Page, StoreError> {
        let limit = q.limit.clamp(1, MAX_PAGE);
        let since = q.since_ms.unwrap_or(i64::MIN);
        // Exclusive upper bound: the cursor, or the end of the time range.
        let mut upper: (i64, String) = (q.until_ms.unwrap_or(i64::MAX), String::new());
        if let Some(c) = &q.cursor
            && (c.created_at_ms, c.key.as_str()) < (upper.0, upper.1.as_str())
        {
            upper = (c.created_at_ms, c.key.clone());
        }
        let mut page = Page {
            jobs: Vec::new(),
            next: None,
        };
        if (since, "") >= (upper.0, upper.1.as_str()) {
            return Ok(page);
        }
        let (hi_t, hi_k) = (upper.0, upper.1.as_str());
        let jobs = tx.open_table(JOBS)?;
        // Takes a candidate from an index; false once the page is full.
        let mut take = |t: i64, key: &str| -> Result<bool, StoreError> {
            let Some(v) = jobs.get(key)? else {
                return Ok(true); // an index entry always has its job; tolerate a torn one
            };
            let job = decode_job(key, v.value())?;
            let matches = q
                .business_key
                .as_ref()
                .is_none_or(|b| *b == job.business_key)
                && q.connector.as_ref().is_none_or(|c| *c == job.connector)
                && q.state.is_none_or(|s| s == job.state);
            if !matches {
                return Ok(true);
            }
            if page.jobs.len() == limit {
                page.next = page.jobs.last().map(|j| Cursor {
                    created_at_ms: j.created_at_ms,
                    key: j.key.clone(),
                });
                return Ok(false);
            }
            debug_assert_eq!(t, job.created_at_ms);
            page.jobs.push(job);
            Ok(true)
        };
        macro_rules! scan3 {
            ($table:expr, $prefix:expr) => {{
                let table = tx.open_table($table)?;
                for item in table
                    .range(($prefix, since, "")..($prefix, hi_t, hi_k))?
                    .rev()
                {
                    let (k, _) = item?;
                    let (_, t, key) = k.value();
                    if !take(t, key)? {
                        break;
                    }
                }
            }};
        }
        match (&q.business_key, &q.connector, q.state) {
            (Some(b), _, _) => scan3!(BY_BUSINESS_KEY, b.as_str()),
            (None, Some(c), Some(s)) => {
                let table = tx.open_table(BY_CONNECTOR_STATE)?;
                let (c, s) = (c.as_str(), s.as_str());
                for item in table.range((c, s, since, "")..(c, s, hi_t, hi_k))?.rev() {
                    let (k, _) = item?;
                    let (_, _, t, key) = k.value();
                    if !take(t, key)? {
                        break;
                    }
                }
            }
            (None, Some(c), None) => scan3!(BY_CONNECTOR, c.as_str()),
            (None, None, Some(s)) => scan3!(BY_STATE, s.as_str()),
            (None, None, None) => {
                let table = tx.open_table(BY_TIME)?;
                for item in table.range((since, "")..(hi_t, hi_k))?.rev() {
                    let (k, _) = item?;
                    let (t, key) = k.value();
                    if !take(t, key)? {
                        break;
                    }
                }
            }
        }
        Ok(page)
    }

    /// Jobs in `state` created in each of `buckets` consecutive windows of `bucket_ms` from
    /// `since_ms`, counted from the keys of `ledger_by_state` in that time range (no job is
    /// read, nothing outside the range is touched). For the console's chart.
    pub fn ledger_histogram(
        &self,
        state: JobState,
        since_ms: i64,
        bucket_ms: i64,
        buckets: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let mut out = vec![0u64; buckets];
        if bucket_ms <= 0 || buckets == 0 {
            return Ok(out);
        }
        let until = since_ms.saturating_add(bucket_ms.saturating_mul(buckets as i64));
        self.read(|tx| {
            let table = tx.open_table(BY_STATE)?;
            let st = state.as_str();
            for item in table.range((st, since_ms, "")..(st, until, ""))? {
                let (k, _) = item?;
                let i = ((k.value().1 - since_ms) / bucket_ms) as usize;
                if let Some(n) = out.get_mut(i) {
                    *n += 1;
                }
            }
            Ok(out)
        })
    }

    /// Jobs per (connector, state), from the counters.
    pub fn ledger_counts(&self) -> Result<Vec<StateCount>, StoreError> {
        self.read(|tx| self.ledger_counts_in(tx))
    }

    fn ledger_counts_in(&self, tx: &redb::ReadTransaction) -> Result<Vec<StateCount>, StoreError> {
        let counts = tx.open_table(COUNTS)?;
        let mut out = Vec::new();
        for item in counts.iter()? {
            let (k, v) = item?;
            let (connector, state) = k.value();
            let state: JobState = state.parse().map_err(|e| StoreError::Decode {
                key: format!("ledger_counts/{connector}/{state}"),
                reason: format!("{e}"),
            })?;
            out.push(StateCount {
                connector: connector.to_string(),
                state,
                count: v.value(),
            });
        }
        Ok(out)
    }

    /// Removes jobs created before `cutoff_ms` with all their attempts, oldest first, reading
    /// the time index (no scan), in transactions of at most 1,000 jobs; returns how many.
    pub fn ledger_prune(&self, cutoff_ms: i64) -> Result<usize, StoreError> {
        let mut removed = 0;
        loop {
            let batch = self.with_db(|db| {
                let tx = db.begin_write()?;
                let batch = {
                    let mut w = Writer::open(&tx)?;
                    let keys: Vec<String> = w
                        .by_time
                        .range(..(cutoff_ms, ""))?
                        .take(PRUNE_BATCH)
                        .map(|r| r.map(|(k, _)| k.value().1.to_string()))
                        .collect::<Result<_, _>>()?;
                    for key in &keys {
                        if let Some(job) = w.job(key)? {
                            w.remove(&job)?;
                        }
                    }
                    keys.len()
                };
                super::commit(tx, "ledger", true)?;
                Ok(batch)
            })?;
            removed += batch;
            if batch < PRUNE_BATCH {
                return Ok(removed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(key: &str, sp: &str, connector: &str, state: JobState, t: i64) -> JobRecord {
        JobRecord {
            key: key.into(),
            state,
            connector: connector.into(),
            mapping: "m".into(),
            action: "approved".into(),
            business_key: sp.into(),
            app: "demo".into(),
            event_id: "evt".into(),
            attempts: 0,
            created_at_ms: t,
            updated_at_ms: t,
            first_attempt_at_ms: None,
            last_attempt_at_ms: None,
            captured: Default::default(),
            last_error: None,
        }
    }

    /// A fresh store holding `jobs` (key, business key, connector, state, creation ms), each
    /// without attempts.
    fn store_with(jobs: &[(&str, &str, &str, JobState, i64)]) -> (tempfile::TempDir, Store) {
        let (dir, s) = crate::store::test_store();
        let jobs: Vec<_> = jobs
            .iter()
            .map(|&(key, sp, connector, state, t)| (job(key, sp, connector, state, t), vec![]))
            .collect();
        s.ledger_import(&jobs).unwrap();
        (dir, s)
    }

    /// A filtered listing must read only the index entries of matching jobs: with the record
    /// of a non-matching job made undecodable, filtered listings still answer, while a
    /// listing that has to read that job fails.
    #[test]
    fn filtered_listings_read_only_matching_jobs() {
        let (_dir, s) = store_with(&[
            ("job_a", "sp1", "finance", JobState::Dead, 1),
            ("job_b", "sp2", "hr", JobState::Delivered, 2),
            ("job_c", "sp3", "finance", JobState::Delivered, 3),
        ]);
        s.with_db(|db| {
            let tx = db.begin_write()?;
            tx.open_table(JOBS)?
                .insert("job_b", [0xffu8; 3].as_slice())?;
            tx.commit()?;
            Ok(())
        })
        .unwrap();

        let keys = |q: LedgerQuery| -> Vec<String> {
            s.ledger_list(&LedgerQuery { limit: 10, ..q })
                .unwrap()
                .jobs
                .into_iter()
                .map(|j| j.key)
                .collect()
        };
        let finance = LedgerQuery {
            connector: Some("finance".into()),
            ..Default::default()
        };
        assert_eq!(keys(finance.clone()), ["job_c", "job_a"]);
        let dead = LedgerQuery {
            state: Some(JobState::Dead),
            ..Default::default()
        };
        assert_eq!(keys(dead), ["job_a"]);
        let finance_delivered = LedgerQuery {
            state: Some(JobState::Delivered),
            ..finance
        };
        assert_eq!(keys(finance_delivered), ["job_c"]);
        let sp3 = LedgerQuery {
            business_key: Some("sp3".into()),
            ..Default::default()
        };
        assert_eq!(keys(sp3), ["job_c"]);
        let newest_only = LedgerQuery {
            since_ms: Some(3),
            ..Default::default()
        };
        assert_eq!(keys(newest_only), ["job_c"]);

        let all = s.ledger_list(&LedgerQuery {
            limit: 10,
            ..Default::default()
        });
        assert!(
            matches!(all, Err(StoreError::Decode { ref key, .. }) if key == "ledger_jobs/job_b"),
            "{all:?}"
        );
    }

    #[test]
    fn the_histogram_counts_jobs_of_a_state_per_window() {
        let (_dir, s) = store_with(&[
            ("job_a", "sp1", "finance", JobState::Delivered, 5),
            ("job_b", "sp2", "finance", JobState::Delivered, 15),
            ("job_c", "sp3", "hr", JobState::Delivered, 19),
            ("job_d", "sp4", "hr", JobState::Dead, 12),
            ("job_e", "sp5", "hr", JobState::Delivered, 40),
        ]);
        let h = s.ledger_histogram(JobState::Delivered, 0, 10, 3).unwrap();
        assert_eq!(h, [1, 2, 0], "job_e is after the last window");
        let dead = s.ledger_histogram(JobState::Dead, 0, 10, 3).unwrap();
        assert_eq!(dead, [0, 1, 0]);
    }

    #[test]
    fn counters_follow_imports_and_prunes() {
        let (_dir, s) = store_with(&[
            ("job_a", "sp1", "finance", JobState::Dead, 1),
            ("job_b", "sp2", "finance", JobState::Dead, 5),
        ]);
        let count = |s: &Store| {
            s.ledger_counts()
                .unwrap()
                .iter()
                .map(|c| c.count)
                .sum::<u64>()
        };
        assert_eq!(count(&s), 2);
        assert_eq!(s.ledger_prune(3).unwrap(), 1);
        assert_eq!(count(&s), 1);
        assert_eq!(s.ledger_prune(3).unwrap(), 0);
    }
}
