//! The intake journal: durable, de-duplicated, encrypted at rest; the outbox of the broker.
//!
//! Owns the group-commit writer (one thread commits whatever callbacks queued up while the
//! previous commit was being flushed, so many concurrent callbacks share one fsync),
//! content-hash de-duplication of WeCom re-deliveries, and AES-256-GCM encryption of the
//! decrypted payload with a key id so keys can rotate. It must not know HTTP: ingress calls
//! [`Journal::append`]. Where an appended event goes next depends on the broker:
//! - RabbitMQ (or no broker): the entry enters the outbox, and the relay (`relay`) publishes
//!   it with confirms and marks it published;
//! - the embedded broker ([`Journal::start_embedded`]): the broker's writer appends the entry
//!   and puts its message on the route queue in one transaction, shared with every other
//!   change it batches; nothing enters the outbox.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, mpsc, oneshot};

pub mod relay;

use crate::broker::ROUTE_QUEUE;
use crate::broker::embedded::EmbeddedBroker;
use crate::config::{JournalConfig, SecretRef};
use crate::stage::EventId;
use crate::stage::message::event_envelope;
use crate::store::{
    AppendOutcome, JournalFilter, JournalRecord, Sealed, Sealer, Store, StoreError, StoredEntry,
};
use crate::telemetry::names;

/// Errors of the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The store failed; the event was not stored.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The writer thread is gone (shutting down or crashed); the event was not stored.
    #[error("journal writer is not running")]
    WriterGone,
    /// A key is missing, malformed, or does not match the stored data.
    #[error("journal key problem: {0}")]
    Key(String),
}

/// Encrypts and decrypts journal payloads: the journal's keys, resolved from configuration,
/// around the store's [`Sealer`] (which the store uses for its own tables too). Keys are 32
/// bytes, configured hex or base64.
#[derive(Debug, Clone)]
pub struct JournalCipher {
    sealer: Arc<Sealer>,
}

impl JournalCipher {
    /// Resolves every configured key. With `create_key_if_missing`, a missing `file:` key
    /// for the active id is created (mode 0600) with fresh random bytes.
    pub fn from_config(cfg: &JournalConfig) -> Result<Self, JournalError> {
        let mut keys = Vec::new();
        for (id, reference) in &cfg.keys {
            if id == &cfg.active_key
                && cfg.create_key_if_missing
                && let SecretRef::File(path) = reference
                && !path.exists()
            {
                create_key_file(path)?;
                tracing::warn!(
                    key_id = %id,
                    path = %path.display(),
                    "created a new journal encryption key; back it up: without it the journal cannot be read"
                );
            }
            let secret = reference
                .resolve()
                .map_err(|e| JournalError::Key(format!("journal.keys.{id}: {e}")))?;
            let bytes = decode_key(secret.expose()).ok_or_else(|| {
                JournalError::Key(format!(
                    "journal.keys.{id} must be 32 bytes written as 64 hex digits or base64"
                ))
            })?;
            keys.push((id.clone(), bytes));
        }
        let sealer = Sealer::new(keys, &cfg.active_key).map_err(|_| {
            JournalError::Key(format!(
                "journal.active_key `{}` has no key",
                cfg.active_key
            ))
        })?;
        Ok(Self {
            sealer: Arc::new(sealer),
        })
    }

    /// A cipher with a single given key; for tests and benchmarks.
    pub fn with_key(id: &str, key: [u8; 32]) -> Self {
        Self {
            sealer: Arc::new(Sealer::with_key(id, key)),
        }
    }

    /// The sealer underneath, to hand to [`Store::open`] so the store seals its own tables
    /// (embedded queues, dead letters, the ledger) with the same keys.
    pub fn sealer(&self) -> Arc<Sealer> {
        self.sealer.clone()
    }

    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> (String, [u8; 12], Vec<u8>) {
        let sealed = self.sealer.seal(aad, plaintext);
        (sealed.key_id, sealed.nonce, sealed.ciphertext)
    }

    /// Decrypts a stored payload back to the decrypted callback XML.
    pub fn open(&self, record: &JournalRecord) -> Result<String, JournalError> {
        let sealed = Sealed {
            key_id: record.key_id.clone(),
            nonce: record.nonce,
            ciphertext: record.ciphertext.clone(),
        };
        let pt = self
            .sealer
            .open(&record.content_hash, &sealed)
            .map_err(|e| JournalError::Key(format!("entry {e}")))?;
        String::from_utf8(pt).map_err(|_| JournalError::Key("payload is not UTF-8".into()))
    }
}

fn decode_key(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    let bytes = if s.len() == 64 {
        hex::decode(s).ok()?
    } else {
        base64::engine::general_purpose::STANDARD.decode(s).ok()?
    };
    bytes.try_into().ok()
}

fn create_key_file(path: &Path) -> Result<(), JournalError> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| JournalError::Key(format!("cannot create {}: {e}", parent.display())))?;
    }
    let key: [u8; 32] = rand::random();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| JournalError::Key(format!("cannot create {}: {e}", path.display())))?;
    writeln!(f, "{}", hex::encode(key))
        .and_then(|_| f.sync_all())
        .map_err(|e| JournalError::Key(format!("cannot write {}: {e}", path.display())))
}

/// An event to journal, as ingress (or reconciliation) hands it over.
#[derive(Debug, Clone)]
pub struct IncomingEvent {
    /// Configured app name.
    pub app: String,
    /// Event kind, or `unparsed` for quarantined XML.
    pub kind: String,
    /// Business key.
    pub business_key: String,
    /// The decrypted XML.
    pub xml: String,
    /// Why the XML could not be understood, if it could not.
    pub quarantine: Option<String>,
    /// `callback` or `reconcile`.
    pub source: String,
}

/// The content hash that identifies a WeCom delivery: SHA-256 over app and decrypted XML.
pub fn content_hash(app: &str, xml: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(app.as_bytes());
    h.update([0u8]);
    h.update(xml.as_bytes());
    h.finalize().into()
}

type AppendRequest = (
    JournalRecord,
    oneshot::Sender<Result<AppendOutcome, String>>,
);

/// Who commits appends.
#[derive(Clone, Debug)]
enum Appender {
    /// The journal's own writer thread; entries go through the outbox.
    Writer(mpsc::Sender<AppendRequest>),
    /// The embedded broker's writer: entry and route-queue message in one commit.
    Embedded(EmbeddedBroker),
}

/// Handle to the journal; cheap to clone.
#[derive(Clone, Debug)]
pub struct Journal {
    appender: Appender,
    store: Store,
    cipher: JournalCipher,
    appended: Arc<Notify>,
}

/// The running writer thread; join it after every [`Journal`] handle is dropped.
#[derive(Debug)]
pub struct JournalWriter {
    thread: std::thread::JoinHandle<()>,
}

impl JournalWriter {
    /// Waits for the writer to commit what it has and stop (after all handles dropped).
    pub fn join(self) {
        if self.thread.join().is_err() {
            tracing::error!("journal writer thread panicked");
        }
    }
}

impl Journal {
    /// Starts the writer thread.
    pub fn start(
        store: Store,
        cipher: JournalCipher,
        max_batch: usize,
    ) -> (Journal, JournalWriter) {
        let (tx, rx) = mpsc::channel::<AppendRequest>(max_batch.max(1) * 4);
        let writer_store = store.clone();
        let thread = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer_loop(writer_store, rx, max_batch.max(1)))
            .expect("spawning a thread at start-up");
        (
            Journal {
                appender: Appender::Writer(tx),
                store,
                cipher,
                appended: Arc::new(Notify::new()),
            },
            JournalWriter { thread },
        )
    }

    /// A journal whose appends the embedded broker commits: each new entry and its message
    /// on the route queue in one transaction, so the caller hears back once the event is
    /// both journaled and enqueued. No writer thread of its own; `broker` must run on
    /// `store`.
    pub fn start_embedded(store: Store, cipher: JournalCipher, broker: EmbeddedBroker) -> Journal {
        Journal {
            appender: Appender::Embedded(broker),
            store,
            cipher,
            appended: Arc::new(Notify::new()),
        }
    }

    /// Appends an event and returns once it is durable on disk (or known as a duplicate);
    /// on the embedded broker, once it is also on the route queue (same commit).
    pub async fn append(&self, ev: IncomingEvent) -> Result<AppendOutcome, JournalError> {
        let hash = content_hash(&ev.app, &ev.xml);
        let (key_id, nonce, ciphertext) = self.cipher.seal(&hash, ev.xml.as_bytes());
        let received_at_ms = jiff::Timestamp::now().as_millisecond();
        // The route queue's message, for the embedded broker: built for every event, used
        // only if it is new (the store decides that inside the commit).
        let body = match (&self.appender, &ev.quarantine) {
            (Appender::Embedded(_), None) => event_envelope(
                &EventId::new(event_id(&hash)),
                &ev.kind,
                &ev.business_key,
                &ev.app,
                received_at_ms,
                ev.xml,
            )
            .to_bytes(),
            _ => Vec::new(),
        };
        let record = JournalRecord {
            app: ev.app,
            kind: ev.kind,
            business_key: ev.business_key,
            received_at_ms,
            content_hash: hash,
            key_id,
            nonce,
            ciphertext,
            quarantine: ev.quarantine,
            source: ev.source,
        };
        let tx = match &self.appender {
            Appender::Writer(tx) => tx,
            Appender::Embedded(broker) => {
                return broker
                    .append_journal(record, ROUTE_QUEUE, body)
                    .await
                    .map_err(|e| match e {
                        crate::broker::BrokerError::Closed => JournalError::WriterGone,
                        other => JournalError::Store(StoreError::Db(other.to_string())),
                    });
            }
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        tx.send((record, reply_tx))
            .await
            .map_err(|_| JournalError::WriterGone)?;
        let outcome = reply_rx
            .await
            .map_err(|_| JournalError::WriterGone)?
            .map_err(|e| JournalError::Store(StoreError::Db(e)))?;
        if matches!(outcome, AppendOutcome::Appended(_)) {
            self.appended.notify_one();
        }
        Ok(outcome)
    }

    /// Woken whenever a new entry is appended (for the outbox relay).
    pub fn appended(&self) -> Arc<Notify> {
        self.appended.clone()
    }

    /// The store underneath.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The cipher, to read payloads back.
    pub fn cipher(&self) -> &JournalCipher {
        &self.cipher
    }

    /// Lists entries as operator views; with `with_payload`, decrypts each payload.
    pub fn list(
        &self,
        filter: &JournalFilter,
        with_payload: bool,
    ) -> Result<Vec<EntryView>, JournalError> {
        let entries = self.store.journal_entries(filter)?;
        entries
            .into_iter()
            .map(|e| EntryView::new(&e, with_payload.then_some(&self.cipher)))
            .collect()
    }

    /// Forgets content hashes older than the retention, in the background, every 10 minutes.
    pub fn spawn_dedup_pruner(&self, retention: Duration) -> tokio::task::JoinHandle<()> {
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(600));
            loop {
                tick.tick().await;
                let cutoff = jiff::Timestamp::now().as_millisecond() - retention.as_millis() as i64;
                let s = store.clone();
                match tokio::task::spawn_blocking(move || s.prune_dedup(cutoff)).await {
                    Ok(Ok(n)) if n > 0 => {
                        tracing::debug!(removed = n, "pruned old de-duplication keys")
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "pruning de-duplication keys failed; will retry")
                    }
                    Err(e) => tracing::warn!(error = %e, "pruning task failed"),
                }
            }
        })
    }
}

fn writer_loop(store: Store, mut rx: mpsc::Receiver<AppendRequest>, max_batch: usize) {
    let mut records = Vec::with_capacity(max_batch);
    let mut replies = Vec::with_capacity(max_batch);
    while let Some((record, reply)) = rx.blocking_recv() {
        records.push(record);
        replies.push(reply);
        // Everything that queued up while the previous commit was flushing joins this one.
        while records.len() < max_batch {
            match rx.try_recv() {
                Ok((record, reply)) => {
                    records.push(record);
                    replies.push(reply);
                }
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let result = store.append_journal(&records);
        metrics::histogram!(names::JOURNAL_COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::histogram!(names::JOURNAL_BATCH_SIZE).record(records.len() as f64);
        match result {
            Ok(outcomes) => {
                for (reply, outcome) in replies.drain(..).zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, batch = records.len(), "journal commit failed; callers get 503 and WeCom will retry");
                let msg = e.to_string();
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(msg.clone()));
                }
            }
        }
        records.clear();
    }
}

/// A journal entry as shown to operators (CLI `events`, admin API).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct EntryView {
    /// Journal sequence number.
    pub seq: u64,
    /// Stable event id derived from the content hash.
    pub id: String,
    /// App name.
    pub app: String,
    /// Event kind.
    pub kind: String,
    /// Business key.
    pub business_key: String,
    /// When accepted (RFC 3339, UTC).
    pub received_at: String,
    /// `pending` (not yet in the broker), `published`, or `quarantined`.
    pub state: String,
    /// Why it is quarantined.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub quarantine_reason: Option<String>,
    /// `callback` or `reconcile`.
    pub source: String,
    /// The decrypted XML, only when asked for.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub payload: Option<String>,
}

impl EntryView {
    /// Builds the view; decrypts the payload when a cipher is given.
    pub fn new(e: &StoredEntry, cipher: Option<&JournalCipher>) -> Result<Self, JournalError> {
        let r = &e.record;
        let state = if r.quarantine.is_some() {
            "quarantined"
        } else if e.published {
            "published"
        } else {
            "pending"
        };
        Ok(EntryView {
            seq: e.seq,
            id: event_id(&r.content_hash),
            app: r.app.clone(),
            kind: r.kind.clone(),
            business_key: r.business_key.clone(),
            received_at: jiff::Timestamp::from_millisecond(r.received_at_ms)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            state: state.into(),
            quarantine_reason: r.quarantine.clone(),
            source: r.source.clone(),
            payload: cipher.map(|c| c.open(r)).transpose()?,
        })
    }
}

/// The stable public id of an event: `evt_` and the first 24 hex digits of its content hash.
pub fn event_id(hash: &[u8; 32]) -> String {
    format!("evt_{}", hex::encode(&hash[..12]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(xml: &str) -> IncomingEvent {
        IncomingEvent {
            app: "demo".into(),
            kind: "approval_change".into(),
            business_key: "1:2".into(),
            xml: xml.into(),
            quarantine: None,
            source: "callback".into(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_share_commits_and_dedup() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("j.redb"), crate::store::test_sealer()).unwrap();
        let (journal, writer) = Journal::start(store, JournalCipher::with_key("k", [7; 32]), 64);
        let mut tasks = Vec::new();
        for i in 0..200 {
            let j = journal.clone();
            // every event twice: the second must be a duplicate of the first
            tasks.push(tokio::spawn(async move {
                j.append(ev(&format!("<xml>{i}</xml>"))).await
            }));
            let j = journal.clone();
            tasks.push(tokio::spawn(async move {
                j.append(ev(&format!("<xml>{i}</xml>"))).await
            }));
        }
        let mut appended = 0;
        let mut dups = 0;
        for t in tasks {
            match t.await.unwrap().unwrap() {
                AppendOutcome::Appended(_) => appended += 1,
                AppendOutcome::Duplicate(_) => dups += 1,
            }
        }
        assert_eq!((appended, dups), (200, 200));
        let views = journal.list(&JournalFilter::default(), true).unwrap();
        assert_eq!(views.len(), 200);
        assert!(
            views
                .iter()
                .all(|v| v.payload.as_deref().unwrap().starts_with("<xml>"))
        );
        drop(journal);
        writer.join();
    }

    #[tokio::test]
    async fn payload_is_encrypted_at_rest_and_needs_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("j.redb"), crate::store::test_sealer()).unwrap();
        let (journal, writer) =
            Journal::start(store.clone(), JournalCipher::with_key("k1", [1; 32]), 8);
        journal
            .append(ev("<xml>secret-approval-content</xml>"))
            .await
            .unwrap();
        let rec = store.journal_entry(1).unwrap().unwrap().record;
        assert!(!String::from_utf8_lossy(&rec.ciphertext).contains("secret-approval"));
        assert_eq!(rec.key_id, "k1");
        assert_eq!(
            journal.cipher().open(&rec).unwrap(),
            "<xml>secret-approval-content</xml>"
        );
        let other = JournalCipher::with_key("k1", [2; 32]);
        assert!(matches!(other.open(&rec), Err(JournalError::Key(_))));
        let rotated = JournalCipher::with_key("k2", [1; 32]);
        let e = rotated.open(&rec).unwrap_err().to_string();
        assert!(e.contains("`k1`"), "{e}");
        drop(journal);
        writer.join();
    }

    #[test]
    fn key_file_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/journal.key");
        let cfg = JournalConfig {
            keys: [("local-1".to_string(), SecretRef::File(path.clone()))].into(),
            create_key_if_missing: true,
            ..Default::default()
        };
        JournalCipher::from_config(&cfg).unwrap();
        let first = std::fs::read_to_string(&path).unwrap();
        JournalCipher::from_config(&cfg).unwrap();
        assert_eq!(first, std::fs::read_to_string(&path).unwrap());
        assert_eq!(first.trim().len(), 64);
        let strict = JournalConfig {
            keys: [(
                "local-1".to_string(),
                SecretRef::File(dir.path().join("missing")),
            )]
            .into(),
            create_key_if_missing: false,
            ..Default::default()
        };
        assert!(JournalCipher::from_config(&strict).is_err());
    }
}
