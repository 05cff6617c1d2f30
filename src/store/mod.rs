//! The embedded store: the only module that touches the database (redb).
//!
//! It owns table layout, transactions and encoding of stored records, the database file's
//! permissions (0600 in a 0700 folder), and its health: an I/O error (disk full, EIO) faults
//! the store, which then reopens itself with back-off once writes succeed again (`health`).
//! Payloads at rest are sealed with the [`Sealer`] given at open (`seal`): the journal seals
//! its records itself, the queue tables seal message bodies here. It knows nothing of HTTP or
//! WeCom. Every function here blocks on disk I/O; async callers run it on a blocking thread.
//!
//! Tables of the journal:
//! - `journal`: sequence number → [`JournalRecord`] (append-only).
//! - `outbox`: sequence numbers not yet confirmed by the broker. An entry is *published*
//!   exactly when it is in `journal` and not in `outbox` (state derived, never duplicated).
//! - `dedup`: content hash → sequence number, and `dedup_by_time` to expire old hashes.
//! - `journal_by_*`: the journal's indexes (time, kind, app, quarantined, business key), in
//!   the `journal_index` submodule with the listings that read them.
//!
//! The audit trail's `audit` and `audit_by_time` tables live in the `audit` submodule.
//!
//! The embedded broker's `queue_*` tables (messages, delivery state, indexes) live in the
//! `queue` submodule; the delivery ledger's `ledger_*` tables in the `ledger` submodule.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

mod audit;
mod files;
mod forms;
mod group;
mod health;
mod journal_index;
mod ledger;
mod queue;
mod seal;
pub use audit::{AuditEntry, AuditRecord};
pub use forms::{FormState, Forwarded};
pub use health::StoreHealth;
pub use journal_index::MAX_FORM_ENTRIES;
pub use ledger::MAX_PAGE as LEDGER_MAX_PAGE;
pub use queue::{
    LeasedMessage, QueueBatchOutcome, QueueCounts, QueueOp, QueueOpResult, StoredDeadLetter,
};
pub use seal::{SealError, Sealed, Sealer};

const CACHE_BYTES: usize = 32 * 1024 * 1024;

const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("journal");
const OUTBOX: TableDefinition<u64, ()> = TableDefinition::new("outbox");
type JournalTable = redb::ReadOnlyTable<u64, &'static [u8]>;
type OutboxTable = redb::ReadOnlyTable<u64, ()>;
const DEDUP: TableDefinition<&[u8; 32], u64> = TableDefinition::new("dedup");
const DEDUP_BY_TIME: TableDefinition<(i64, &[u8; 32]), ()> = TableDefinition::new("dedup_by_time");

/// Errors of the store. They mean the disk or the database file is in trouble.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file is used by another process (usually a running `serve`).
    #[error("the store {path} is in use by another process (is `wecom-bridge serve` running?)")]
    Locked {
        /// The database path.
        path: String,
    },
    /// Any database error that is not an I/O error.
    #[error("store error: {0}")]
    Db(String),
    /// The disk failed (full, EIO): the store is faulted and reopens itself once writes
    /// succeed again.
    #[error("store I/O error: {0}")]
    Io(String),
    /// The store is faulted after an I/O error and not reopened yet.
    #[error(
        "the store {path} is unavailable after an I/O error ({reason}); it reopens by itself once the disk accepts writes again"
    )]
    Unavailable {
        /// The database path.
        path: String,
        /// The I/O error that faulted it.
        reason: String,
    },
    /// A payload stored by this store does not open with the configured keys.
    #[error("stored payload {key}: {source}")]
    Seal {
        /// Which record.
        key: String,
        /// Why.
        source: SealError,
    },
    /// A stored record could not be decoded (corruption or an incompatible version).
    #[error("stored record {key} could not be decoded: {reason}")]
    Decode {
        /// Which record.
        key: String,
        /// Why.
        reason: String,
    },
}

/// Sorts a redb storage error: I/O errors fault the store, everything else does not.
fn storage_err(e: &redb::StorageError, text: String) -> StoreError {
    match e {
        redb::StorageError::Io(_)
        | redb::StorageError::PreviousIo
        | redb::StorageError::DatabaseClosed => StoreError::Io(text),
        _ => StoreError::Db(text),
    }
}

impl From<redb::StorageError> for StoreError {
    fn from(e: redb::StorageError) -> Self {
        let text = e.to_string();
        storage_err(&e, text)
    }
}

macro_rules! db_err {
    ($($t:ident),*) => {$(
        impl From<redb::$t> for StoreError {
            fn from(e: redb::$t) -> Self {
                let text = e.to_string();
                match &e {
                    redb::$t::Storage(s) => storage_err(s, text),
                    _ => StoreError::Db(text),
                }
            }
        }
    )*};
}
db_err!(TransactionError, TableError, CommitError);

/// Commits a write transaction and counts it in `wecom_bridge_store_commits_total{what,
/// durable}`: the number of commits (and of fsyncs, the durable ones) per callback or per
/// delivered approval is the figure group commit is about.
/// `durable` must say how the transaction was set up (redb's default is durable).
fn commit(tx: redb::WriteTransaction, what: &'static str, durable: bool) -> Result<(), StoreError> {
    tx.commit()?;
    metrics::counter!(
        crate::telemetry::names::STORE_COMMITS,
        "what" => what,
        "durable" => if durable { "true" } else { "false" }
    )
    .increment(1);
    Ok(())
}

/// A journal entry as stored. The payload is opaque ciphertext.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JournalRecord {
    /// Which configured app received it.
    pub app: String,
    /// Event kind (`approval_change`, `contact_change`, …, or `unparsed`).
    pub kind: String,
    /// Business key, e.g. `202506050012:2` (SpNo:SpStatus) for approvals.
    pub business_key: String,
    /// When the bridge accepted it, Unix milliseconds.
    pub received_at_ms: i64,
    /// SHA-256 over app and decrypted XML; the de-duplication key.
    pub content_hash: [u8; 32],
    /// Id of the key the payload is encrypted with.
    pub key_id: String,
    /// AEAD nonce.
    pub nonce: [u8; 12],
    /// Encrypted decrypted-XML payload.
    #[serde(with = "seal::byte_string")]
    pub ciphertext: Vec<u8>,
    /// Set when the XML was authentic but could not be understood: the reason.
    pub quarantine: Option<String>,
    /// Where the event came from: `callback` or `reconcile`.
    pub source: String,
}

/// An entry read back, with its sequence number and derived publish state.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEntry {
    /// Journal sequence number (1-based, increasing).
    pub seq: u64,
    /// The record.
    pub record: JournalRecord,
    /// Whether the broker has confirmed it.
    pub published: bool,
}

/// Result of appending one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Newly stored under this sequence number.
    Appended(u64),
    /// Its content hash was seen before; the earlier entry's sequence number.
    Duplicate(u64),
}

/// Which journal entries to list.
#[derive(Debug, Clone, Default)]
pub struct JournalFilter {
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this app.
    pub app: Option<String>,
    /// Received at or after (Unix ms).
    pub since_ms: Option<i64>,
    /// Received before (Unix ms).
    pub until_ms: Option<i64>,
    /// Only quarantined entries.
    pub quarantined_only: bool,
    /// Newest first, at most this many (0 = no limit).
    pub limit: usize,
}

/// Counts for health and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct JournalCounts {
    /// All entries.
    pub entries: u64,
    /// Entries not yet confirmed by the broker.
    pub unpublished: u64,
}

/// Handle to the open database; cheap to clone. Every clone shares one database, one
/// health state and one [`Sealer`]: after an I/O error the database is closed and reopened
/// underneath every handle (see the `health` submodule).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// `None` while the store is faulted and waiting to be reopened.
    db: RwLock<Option<Arc<Database>>>,
    sealer: Arc<Sealer>,
    health: Mutex<health::HealthState>,
    /// The group-commit writer of the stages' small writes (`group`), started on first use.
    group: std::sync::OnceLock<std::sync::mpsc::Sender<group::Job>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the database at `path`, creating its folder (0700) when missing;
    /// the file is created 0600 and tightened to 0600 when it is looser. `sealer` seals
    /// every payload the store keeps in its own tables (embedded queue messages).
    pub fn open(path: &Path, sealer: Arc<Sealer>) -> Result<Store, StoreError> {
        let db = files::open_database(path)?;
        let store = Store {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                db: RwLock::new(Some(Arc::new(db))),
                sealer,
                health: Mutex::new(health::HealthState::default()),
                group: std::sync::OnceLock::new(),
            }),
        };
        store.init_tables()?;
        health::set_healthy_gauge(true);
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The sealer payloads at rest go through (shared with the journal and the ledger).
    pub fn sealer(&self) -> &Arc<Sealer> {
        &self.inner.sealer
    }

    /// Runs `f` on the current database. An I/O error faults the store: the database is
    /// closed and reopened in the background once writes succeed again; until then every
    /// call fails at once with [`StoreError::Unavailable`].
    fn with_db<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let db = self.current()?;
        let result = f(&db);
        if let Err(StoreError::Io(reason)) = &result {
            health::fault(&self.inner, &db, reason);
        }
        result
    }

    /// Runs `f` in a read transaction of the current database, as [`Store::with_db`] runs it.
    fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with_db(|db| f(&db.begin_read()?))
    }

    fn current(&self) -> Result<Arc<Database>, StoreError> {
        let current = self
            .inner
            .db
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match current {
            Some(db) => Ok(db),
            None => Err(StoreError::Unavailable {
                path: self.inner.path.display().to_string(),
                reason: health::reason(&self.inner),
            }),
        }
    }

    fn init_tables(&self) -> Result<(), StoreError> {
        self.with_db(|db| {
            let tx = db.begin_write()?;
            tx.open_table(JOURNAL)?;
            tx.open_table(OUTBOX)?;
            tx.open_table(DEDUP)?;
            tx.open_table(DEDUP_BY_TIME)?;
            queue::init_tables(&tx, &self.inner.sealer)?;
            forms::init_tables(&tx)?;
            ledger::init_tables(&tx)?;
            audit::init_tables(&tx)?;
            journal_index::init_tables(&tx)?;
            commit(tx, "init", true)?;
            Ok(())
        })
    }

    /// Appends records in one durable transaction (group commit). A record whose content
    /// hash is already known (or repeats within the batch) is not stored again.
    /// Quarantined records are stored but never enter the outbox.
    pub fn append_journal(
        &self,
        records: &[JournalRecord],
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        self.with_db(|db| {
            let tx = db.begin_write()?;
            let outcomes = {
                let mut journal = JournalTables::open(&tx)?;
                records
                    .iter()
                    .map(|r| journal.append(r, true))
                    .collect::<Result<Vec<_>, _>>()?
            };
            commit(tx, "journal", true)?;
            Ok(outcomes)
        })
    }

    /// Forgets content hashes received before `cutoff_ms`; returns how many.
    pub fn prune_dedup(&self, cutoff_ms: i64) -> Result<usize, StoreError> {
        self.with_db(|db| {
            let tx = db.begin_write()?;
            let mut removed = 0;
            {
                let mut dedup = tx.open_table(DEDUP)?;
                let mut by_time = tx.open_table(DEDUP_BY_TIME)?;
                let old: Vec<(i64, [u8; 32])> = by_time
                    .range(..(cutoff_ms, &[0u8; 32]))?
                    .map(|r| r.map(|(k, _)| (k.value().0, *k.value().1)))
                    .collect::<Result<_, _>>()?;
                for (t, hash) in old {
                    by_time.remove((t, &hash))?;
                    dedup.remove(&hash)?;
                    removed += 1;
                }
            }
            commit(tx, "journal", true)?;
            Ok(removed)
        })
    }

    /// Runs `read` on the journal and outbox tables in one read transaction.
    fn read_journal<T>(
        &self,
        read: impl FnOnce(&JournalTable, &OutboxTable) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.read(|tx| read(&tx.open_table(JOURNAL)?, &tx.open_table(OUTBOX)?))
    }

    /// Reads one entry.
    pub fn journal_entry(&self, seq: u64) -> Result<Option<StoredEntry>, StoreError> {
        self.read_journal(|journal, outbox| {
            let Some(v) = journal.get(seq)? else {
                return Ok(None);
            };
            Ok(Some(StoredEntry {
                seq,
                record: decode_record(seq, v.value())?,
                published: outbox.get(seq)?.is_none(),
            }))
        })
    }

    /// The oldest unpublished entries, at most `limit`, oldest first.
    pub fn outbox_pending(&self, limit: usize) -> Result<Vec<StoredEntry>, StoreError> {
        self.read_journal(|journal, outbox| {
            let mut out = Vec::new();
            for item in outbox.iter()?.take(limit) {
                let seq = item?.0.value();
                let Some(v) = journal.get(seq)? else {
                    continue;
                };
                out.push(StoredEntry {
                    seq,
                    record: decode_record(seq, v.value())?,
                    published: false,
                });
            }
            Ok(out)
        })
    }

    /// Marks entries as confirmed by the broker (removes them from the outbox), without an
    /// fsync: if the process dies before the next durable commit (the journal's appends are
    /// all durable), the marks are lost, which only means those entries are published again
    /// (at-least-once already requires idempotent consumers).
    pub fn mark_published(&self, seqs: &[u64]) -> Result<(), StoreError> {
        self.with_db(|db| {
            let mut tx = db.begin_write()?;
            tx.set_durability(redb::Durability::None)
                .map_err(|e| StoreError::Db(e.to_string()))?;
            {
                let mut outbox = tx.open_table(OUTBOX)?;
                for seq in seqs {
                    outbox.remove(seq)?;
                }
            }
            commit(tx, "journal", false)?;
            Ok(())
        })
    }

    /// Entry and backlog counts.
    pub fn journal_counts(&self) -> Result<JournalCounts, StoreError> {
        self.read(|tx| {
            Ok(JournalCounts {
                entries: tx.open_table(JOURNAL)?.len()?,
                unpublished: tx.open_table(OUTBOX)?.len()?,
            })
        })
    }

    /// A cheap read that proves the database answers (for `/readyz`); fails with the
    /// reason while the store is faulted.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.read(|tx| {
            tx.open_table(OUTBOX)?.len()?;
            Ok(())
        })
    }
}

/// The journal's tables opened in one write transaction: the journal entry, its dedup and
/// time indexes and its business key go in together.
struct JournalTables<'t> {
    journal: redb::Table<'t, u64, &'static [u8]>,
    outbox: redb::Table<'t, u64, ()>,
    dedup: redb::Table<'t, &'static [u8; 32], u64>,
    by_time: redb::Table<'t, (i64, &'static [u8; 32]), ()>,
    keys: redb::Table<'t, (&'static str, &'static str), u64>,
    index: journal_index::Writer<'t>,
    next: u64,
}

impl<'t> JournalTables<'t> {
    fn open(tx: &'t redb::WriteTransaction) -> Result<Self, StoreError> {
        let journal = tx.open_table(JOURNAL)?;
        let next = journal.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
        Ok(JournalTables {
            journal,
            outbox: tx.open_table(OUTBOX)?,
            dedup: tx.open_table(DEDUP)?,
            by_time: tx.open_table(DEDUP_BY_TIME)?,
            keys: tx.open_table(forms::JOURNAL_KEYS)?,
            index: journal_index::Writer::open(tx)?,
            next,
        })
    }

    /// Appends one record unless its content hash is known. `via_outbox`: a new,
    /// unquarantined record also enters the outbox (for the relay); without it the caller
    /// hands the record to the broker in this same transaction.
    fn append(
        &mut self,
        record: &JournalRecord,
        via_outbox: bool,
    ) -> Result<AppendOutcome, StoreError> {
        if let Some(seq) = self.dedup.get(&record.content_hash)? {
            return Ok(AppendOutcome::Duplicate(seq.value()));
        }
        let seq = self.next;
        self.next += 1;
        let bytes = postcard::to_allocvec(record)
            .map_err(|e| StoreError::Db(format!("encode journal record: {e}")))?;
        self.journal.insert(seq, bytes.as_slice())?;
        if via_outbox && record.quarantine.is_none() {
            self.outbox.insert(seq, ())?;
        }
        self.dedup.insert(&record.content_hash, seq)?;
        self.index.add(seq, record)?;
        self.by_time
            .insert((record.received_at_ms, &record.content_hash), ())?;
        let key = (record.app.as_str(), record.business_key.as_str());
        if self.keys.get(key)?.is_none() {
            self.keys.insert(key, seq)?;
        }
        Ok(AppendOutcome::Appended(seq))
    }
}

/// A sealer with a fixed key, for unit tests.
#[cfg(test)]
pub(crate) fn test_sealer() -> Arc<Sealer> {
    Arc::new(Sealer::with_key("test", [7; 32]))
}

/// A store in a fresh temporary directory, for unit tests (the directory lives as long as
/// the returned guard).
#[cfg(test)]
pub(crate) fn test_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = test_store_in(dir.path());
    (dir, store)
}

/// Opens the unit-test store kept in `dir` (creating it when missing): [`test_store`]'s
/// store again after the handle was dropped, as after a restart.
#[cfg(test)]
pub(crate) fn test_store_in(dir: &Path) -> Store {
    Store::open(&dir.join("s.redb"), test_sealer()).unwrap()
}

/// A journal record for unit tests: form `sp{hash}:2` of app `demo`, received at `at`.
#[cfg(test)]
pub(crate) fn test_record(hash: u8, at: i64) -> JournalRecord {
    JournalRecord {
        app: "demo".into(),
        kind: "approval_change".into(),
        business_key: format!("sp{hash}:2"),
        received_at_ms: at,
        content_hash: [hash; 32],
        key_id: "k1".into(),
        nonce: [0; 12],
        ciphertext: vec![1, 2, 3],
        quarantine: None,
        source: "callback".into(),
    }
}

fn decode_record(seq: u64, bytes: &[u8]) -> Result<JournalRecord, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Decode {
        key: format!("journal/{seq}"),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_record as record;

    #[test]
    fn append_dedups_within_and_across_batches_and_survives_reopen() {
        let (dir, s) = test_store();
        let out = s
            .append_journal(&[record(1, 10), record(2, 11), record(1, 12)])
            .unwrap();
        assert_eq!(
            out,
            vec![
                AppendOutcome::Appended(1),
                AppendOutcome::Appended(2),
                AppendOutcome::Duplicate(1)
            ]
        );
        let out = s.append_journal(&[record(2, 20), record(3, 21)]).unwrap();
        assert_eq!(
            out,
            vec![AppendOutcome::Duplicate(2), AppendOutcome::Appended(3)]
        );
        drop(s);
        let s = test_store_in(dir.path());
        assert_eq!(
            s.journal_counts().unwrap(),
            JournalCounts {
                entries: 3,
                unpublished: 3
            }
        );
        let e = s.journal_entry(3).unwrap().unwrap();
        assert_eq!(e.record, record(3, 21));
    }

    #[test]
    fn second_open_reports_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let _s = Store::open(&path, crate::store::test_sealer()).unwrap();
        match Store::open(&path, crate::store::test_sealer()) {
            Err(StoreError::Locked { .. }) => {}
            other => panic!("expected Locked, got {other:?}"),
        }
    }

    #[test]
    fn outbox_and_publish_state() {
        let (_dir, s) = crate::store::test_store();
        let mut q = record(9, 5);
        q.quarantine = Some("bad xml".into());
        s.append_journal(&[record(1, 1), record(2, 2), q]).unwrap();
        let pending = s.outbox_pending(10).unwrap();
        assert_eq!(
            pending.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![1, 2]
        );
        s.mark_published(&[1]).unwrap();
        assert_eq!(s.outbox_pending(10).unwrap()[0].seq, 2);
        let all = s.journal_entries(&JournalFilter::default()).unwrap();
        assert_eq!(
            all.iter().map(|e| (e.seq, e.published)).collect::<Vec<_>>(),
            vec![(3, true), (2, false), (1, true)]
        );
        let q = s
            .journal_entries(&JournalFilter {
                quarantined_only: true,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].record.quarantine.as_deref(), Some("bad xml"));
    }

    #[test]
    fn prune_forgets_only_old_hashes() {
        let (_dir, s) = crate::store::test_store();
        s.append_journal(&[record(1, 100), record(2, 200)]).unwrap();
        assert_eq!(s.prune_dedup(150).unwrap(), 1);
        // hash 1 forgotten: accepted again; hash 2 still a duplicate
        let out = s.append_journal(&[record(1, 300), record(2, 300)]).unwrap();
        assert_eq!(
            out,
            vec![AppendOutcome::Appended(3), AppendOutcome::Duplicate(2)]
        );
    }

    #[test]
    fn filters_apply() {
        let (_dir, s) = crate::store::test_store();
        let mut other = record(2, 200);
        other.kind = "contact_change".into();
        other.app = "hr".into();
        s.append_journal(&[record(1, 100), other, record(3, 300)])
            .unwrap();
        let f = |f: JournalFilter| {
            s.journal_entries(&f)
                .unwrap()
                .into_iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            f(JournalFilter {
                kind: Some("contact_change".into()),
                ..Default::default()
            }),
            vec![2]
        );
        assert_eq!(
            f(JournalFilter {
                app: Some("demo".into()),
                ..Default::default()
            }),
            vec![3, 1]
        );
        assert_eq!(
            f(JournalFilter {
                since_ms: Some(150),
                until_ms: Some(300),
                ..Default::default()
            }),
            vec![2]
        );
        assert_eq!(
            f(JournalFilter {
                limit: 1,
                ..Default::default()
            }),
            vec![3]
        );
    }
}
