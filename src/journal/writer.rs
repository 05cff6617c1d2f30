//! The journal's writer thread: group commits, then hands each new entry to the outbox relay.
//!
//! The hand-off is an optimisation, never the record: every new entry is in the store's
//! outbox before it is handed over, and stays there until the relay marks it published. What
//! the relay is not handed (its channel was full, it was not running, the process crashed) it
//! finds by reading the outbox (see `relay`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{mpsc, oneshot};

use crate::broker::Envelope;
use crate::store::{AppendOutcome, JournalRecord, Store};
use crate::telemetry::names;

/// Entries the writer may hand to the relay ahead of it; beyond that it drops hand-offs (and
/// says so), and the relay reads them from the outbox instead.
pub(super) const HANDOFF_CAPACITY: usize = 4096;

/// A new, committed journal entry and the envelope to publish for it.
#[derive(Debug)]
pub struct Handoff {
    /// The entry's journal sequence number.
    pub seq: u64,
    /// Its route-queue envelope, built from the plaintext while ingress still had it.
    pub envelope: Envelope,
}

/// One append waiting for the writer.
pub(super) struct AppendRequest {
    pub(super) record: JournalRecord,
    /// The envelope to hand to the relay if the record is new (`None`: quarantined).
    pub(super) envelope: Option<Envelope>,
    pub(super) reply: oneshot::Sender<Result<AppendOutcome, String>>,
}

/// The writer's end of the hand-off.
struct HandoffTx {
    tx: mpsc::Sender<Handoff>,
    missed: Arc<AtomicBool>,
}

impl HandoffTx {
    fn send(&self, handoff: Handoff) {
        match self.tx.try_send(handoff) {
            Ok(()) => {}
            // the entry is in the outbox: the relay reads it there once it sees `missed`
            Err(mpsc::error::TrySendError::Full(_)) => self.missed.store(true, Ordering::SeqCst),
            // no relay (CLI commands): the outbox keeps the entry for the next `serve`
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// The relay's end of the hand-off.
#[derive(Debug)]
pub struct HandoffRx {
    rx: mpsc::Receiver<Handoff>,
    missed: Arc<AtomicBool>,
}

impl HandoffRx {
    /// Waits for at least one entry, then takes up to `limit` into `buf`; 0 once the writer
    /// has stopped.
    pub async fn recv_many(&mut self, buf: &mut Vec<Handoff>, limit: usize) -> usize {
        self.rx.recv_many(buf, limit).await
    }

    /// Whether the writer dropped a hand-off since the last [`discard_all`](Self::discard_all):
    /// the outbox then holds entries the relay was not given.
    pub fn missed(&self) -> bool {
        self.missed.load(Ordering::SeqCst)
    }

    /// Drops every entry handed over so far and clears [`missed`](Self::missed); for a caller
    /// about to read the outbox, which holds all of them (each was committed before it was
    /// handed over). Cleared first: a hand-off dropped from now on is seen by the next look.
    pub fn discard_all(&mut self) {
        self.missed.store(false, Ordering::SeqCst);
        while self.rx.try_recv().is_ok() {}
    }
}

/// The running writer thread; join it after every [`Journal`](super::Journal) handle is
/// dropped.
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

/// Starts the writer thread; returns where to send appends and the relay's end of the
/// hand-off, which holds up to `handoff_capacity` entries.
pub(super) fn start(
    store: Store,
    max_batch: usize,
    handoff_capacity: usize,
) -> (mpsc::Sender<AppendRequest>, HandoffRx, JournalWriter) {
    let max_batch = max_batch.max(1);
    let (tx, rx) = mpsc::channel::<AppendRequest>(max_batch * 4);
    let (handoff_tx, handoff_rx) = mpsc::channel(handoff_capacity.max(1));
    let missed = Arc::new(AtomicBool::new(false));
    let handoff = HandoffTx {
        tx: handoff_tx,
        missed: missed.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("journal-writer".into())
        .spawn(move || writer_loop(store, rx, handoff, max_batch))
        .expect("spawning a thread at start-up");
    let handoff_rx = HandoffRx {
        rx: handoff_rx,
        missed,
    };
    (tx, handoff_rx, JournalWriter { thread })
}

fn writer_loop(
    store: Store,
    mut rx: mpsc::Receiver<AppendRequest>,
    handoff: HandoffTx,
    max_batch: usize,
) {
    let mut records = Vec::with_capacity(max_batch);
    let mut pending = Vec::with_capacity(max_batch);
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        // Everything that queued up while the previous commit was flushing joins this one.
        while let Some(req) = next {
            records.push(req.record);
            pending.push((req.envelope, req.reply));
            next = if records.len() < max_batch {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        let started = std::time::Instant::now();
        let result = store.append_journal(&records);
        metrics::histogram!(names::JOURNAL_COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::histogram!(names::JOURNAL_BATCH_SIZE).record(records.len() as f64);
        match result {
            Ok(outcomes) => {
                for ((envelope, reply), outcome) in pending.drain(..).zip(outcomes) {
                    if let (AppendOutcome::Appended(seq), Some(envelope)) = (outcome, envelope) {
                        handoff.send(Handoff { seq, envelope });
                    }
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, batch = records.len(), "journal commit failed; callers get 503 and WeCom will retry");
                let msg = e.to_string();
                for (_, reply) in pending.drain(..) {
                    let _ = reply.send(Err(msg.clone()));
                }
            }
        }
        records.clear();
    }
}
