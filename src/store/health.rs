//! Store health: an I/O error faults the store; a healer thread reopens it once the disk
//! accepts writes again.
//!
//! redb refuses every operation after an I/O error ("Previous I/O error … close and re-open
//! the database"), so a full disk that is freed later would otherwise need a restart. Here
//! the first I/O error closes the database (every call then fails at once with
//! [`StoreError::Unavailable`], which ingress answers with 503 and `/readyz` reports), logs
//! what to do, counts [`names::STORE_FAULTS`] and sets
//! [`names::STORE_HEALTHY`] to 0. The healer then reopens the database with back-off and
//! proves with real durable writes (a file next to the database, and a record in it) that
//! space is back before the store is used again.
//!
//! It must not decide what callers answer: it only reports health.

use crate::telemetry::names;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use redb::{Database, TableDefinition};
use serde::Serialize;

use super::{Inner, Store, StoreError, files};

/// A write the healer makes (and removes) in the database to prove it takes writes again.
const PROBE_BYTES: usize = 64 * 1024;
/// A file the healer writes (and removes) next to the database to prove the disk has room
/// again: large enough that a full disk fails it, small enough to be cheap.
const PROBE_FILE_BYTES: usize = 1024 * 1024;
const PROBE: TableDefinition<u8, &[u8]> = TableDefinition::new("store_probe");

/// Health of the store, as `/readyz` and the CLI show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreHealth {
    /// Whether the store accepts reads and writes.
    pub healthy: bool,
    /// The I/O error that faulted it, while it is faulted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Faults since start.
    pub faults: u64,
}

#[derive(Debug, Default)]
pub(super) struct HealthState {
    fault: Option<String>,
    faults: u64,
    healer_running: bool,
}

fn lock(inner: &Inner) -> MutexGuard<'_, HealthState> {
    inner.health.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn set_healthy_gauge(healthy: bool) {
    metrics::gauge!(names::STORE_HEALTHY).set(if healthy { 1.0 } else { 0.0 });
}

/// The reason the store is faulted (or a generic one if it just recovered).
pub(super) fn reason(inner: &Inner) -> String {
    lock(inner)
        .fault
        .clone()
        .unwrap_or_else(|| "reopening after an I/O error".into())
}

/// The back-off between reopen attempts: exponential with jitter, 100 ms to 5 s, forever.
/// One function, so a crate-wide back-off policy can replace it.
fn heal_backoff() -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}

/// Records an I/O error seen on `failed` (the database the failing call used). The first
/// one closes the database and starts the healer; errors from a database that was already
/// replaced change nothing.
pub(super) fn fault(inner: &Arc<Inner>, failed: &Arc<Database>, reason: &str) {
    {
        let mut slot = inner.db.write().unwrap_or_else(PoisonError::into_inner);
        match &*slot {
            Some(current) if Arc::ptr_eq(current, failed) => *slot = None,
            // Reopened since this call started: nothing to do.
            Some(_) => return,
            // Already closed: a call that raced with the first error may have reported
            // redb's "Previous I/O error"; keep the error that says what happened.
            None => {
                let mut h = lock(inner);
                if h.fault.as_deref().is_some_and(is_previous_io) && !is_previous_io(reason) {
                    h.fault = Some(reason.to_string());
                }
                return;
            }
        }
    }
    let start_healer = {
        let mut h = lock(inner);
        h.fault = Some(reason.to_string());
        h.faults += 1;
        !std::mem::replace(&mut h.healer_running, true)
    };
    metrics::counter!(names::STORE_FAULTS).increment(1);
    set_healthy_gauge(false);
    let folder = inner
        .path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    tracing::error!(
        store = %inner.path.display(),
        error = %reason,
        hint = %format_args!("free disk space on {} (or fix the disk); the store reopens by itself, callbacks get 503 until then", folder.display()),
        "store faulted by an I/O error; not accepting callbacks"
    );
    if start_healer {
        let weak = Arc::downgrade(inner);
        let spawned = std::thread::Builder::new()
            .name("store-healer".into())
            .spawn(move || heal(weak));
        if let Err(e) = spawned {
            lock(inner).healer_running = false;
            tracing::error!(error = %e, "cannot start the store healer; restart the bridge once the disk is fixed");
        }
    }
}

/// Whether `reason` is redb's "an earlier I/O error happened" rather than the error itself.
fn is_previous_io(reason: &str) -> bool {
    reason.contains("Previous I/O error")
}

/// Reopens the store with back-off until it takes writes again or every handle is gone.
fn heal(weak: Weak<Inner>) {
    let mut delays = heal_backoff();
    let mut attempts: u32 = 0;
    loop {
        std::thread::sleep(delays.next().unwrap_or(Duration::from_secs(5)));
        let Some(inner) = weak.upgrade() else {
            return;
        };
        attempts += 1;
        match reopen(&inner) {
            Ok(()) => {
                let faults = {
                    let mut h = lock(&inner);
                    h.fault = None;
                    h.healer_running = false;
                    h.faults
                };
                set_healthy_gauge(true);
                tracing::info!(
                    store = %inner.path.display(),
                    attempts,
                    faults,
                    "store recovered: writes succeed again; accepting callbacks"
                );
                return;
            }
            Err(e) => {
                lock(&inner).fault = Some(e.to_string());
                tracing::debug!(store = %inner.path.display(), error = %e, attempts, "store still failing; retrying");
            }
        }
    }
}

fn reopen(inner: &Inner) -> Result<(), StoreError> {
    probe_disk(&inner.path)?;
    let db = files::open_database(&inner.path)?;
    probe(&db)?;
    *inner.db.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(db));
    Ok(())
}

/// Proves that the file system takes a durable write of [`PROBE_FILE_BYTES`] next to the
/// database. The database may still have free pages inside its file on a full disk, so a
/// write into it alone does not prove that space is back.
fn probe_disk(path: &Path) -> Result<(), StoreError> {
    let mut probe = path.as_os_str().to_owned();
    probe.push(".probe");
    let probe = PathBuf::from(probe);
    let written = std::fs::File::create(&probe).and_then(|mut f| {
        f.write_all(&vec![0u8; PROBE_FILE_BYTES])?;
        f.sync_all()
    });
    let _ = std::fs::remove_file(&probe);
    written.map_err(|e| StoreError::Io(format!("a test write next to the store failed: {e}")))
}

/// Proves with a durable write of [`PROBE_BYTES`] (then removed) that the database takes
/// writes again.
fn probe(db: &Database) -> Result<(), StoreError> {
    let filler = vec![0u8; PROBE_BYTES];
    let tx = db.begin_write()?;
    tx.open_table(PROBE)?.insert(0, filler.as_slice())?;
    super::commit(tx, "health", true)?;
    let tx = db.begin_write()?;
    tx.open_table(PROBE)?.remove(0)?;
    super::commit(tx, "health", true)?;
    Ok(())
}

impl Store {
    /// Whether the store is healthy, and why not.
    pub fn health(&self) -> StoreHealth {
        let h = lock(&self.inner);
        StoreHealth {
            healthy: h.fault.is_none(),
            reason: h.fault.clone(),
            faults: h.faults,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::store::JournalRecord;

    fn record() -> JournalRecord {
        JournalRecord {
            business_key: "1:2".into(),
            key_id: "k".into(),
            ciphertext: vec![1],
            ..crate::store::test_record(1, 1)
        }
    }

    #[test]
    fn an_injected_io_fault_closes_the_store_until_the_healer_reopens_it() {
        let (_dir, s) = crate::store::test_store();
        s.append_journal(&[record()]).unwrap();
        assert!(s.health().healthy);

        let db = s.current().unwrap();
        fault(
            &s.inner,
            &db,
            "injected: No space left on device (os error 28)",
        );
        // a second error from the same (old) database changes nothing
        fault(&s.inner, &db, "injected again");
        drop(db);
        let h = s.health();
        assert!(!h.healthy);
        assert_eq!(h.faults, 1);
        assert!(
            h.reason.as_deref().unwrap().contains("No space left"),
            "{h:?}"
        );
        match s.journal_counts() {
            Err(StoreError::Unavailable { reason, .. }) => {
                assert!(reason.contains("No space left"), "{reason}")
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert!(s.ping().is_err(), "readiness sees the fault");

        // the disk is fine, so the healer reopens it (after its first back-off)
        let deadline = Instant::now() + Duration::from_secs(10);
        while !s.health().healthy {
            assert!(Instant::now() < deadline, "the store did not heal");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(s.journal_counts().unwrap().entries, 1, "nothing lost");
        s.append_journal(&[JournalRecord {
            content_hash: [2; 32],
            ..record()
        }])
        .unwrap();
        assert_eq!(s.health().faults, 1);
    }
}
