//! Group commit for the small single-record writes of the stages (the ledger's job updates,
//! the route stage's form states): one writer thread runs every write that queued up while
//! the previous commit was flushing in ONE write transaction, with one fsync, and answers
//! each caller only after that commit.
//!
//! Each write is a closure over the open transaction that reads, decides and writes its own
//! records, so the decision and its effect stay atomic, as in a transaction of its own: the
//! writes of one batch run one after another, each seeing the effects of the earlier ones.
//! A write that fails must fail before it changes anything (reads, decoding and the caller's
//! decision come first, then the inserts): a [`StoreError::Decode`] or [`StoreError::Seal`]
//! fails that write alone and the batch goes on; any other error (I/O, the database, an
//! encoding failure) may have left half a write behind, so the whole batch is abandoned and
//! every caller in it gets the error (they retry, as after any store error).
//!
//! A caller waits for its answer either on a blocking thread ([`Store::write_grouped`]) or as
//! an async task ([`Store::write_grouped_async`]): the latter costs no blocking-pool thread
//! and no hand-off to one, which matters on the delivery path (several ledger writes per
//! approval).
//!
//! The thread holds only a weak handle on the store: when the last [`Store`] handle is
//! dropped, the channel closes and the thread ends, so the database can be reopened.

use std::any::Any;
use std::sync::mpsc;
use std::sync::{Arc, Weak};

use redb::WriteTransaction;

use super::{Inner, Store, StoreError};

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 512;

type Answer = Result<Box<dyn Any + Send>, StoreError>;
/// A queued write: its value and whether it changed anything.
type Write =
    Box<dyn FnOnce(&WriteTransaction) -> Result<(Box<dyn Any + Send>, bool), StoreError> + Send>;

/// Where the answer of a queued write goes: a caller blocked on a thread, or an async task.
enum Reply {
    Blocking(mpsc::SyncSender<Answer>),
    Async(tokio::sync::oneshot::Sender<Answer>),
}

impl Reply {
    /// Hands `answer` over; a caller that went away meanwhile does not care.
    fn send(self, answer: Answer) {
        match self {
            Reply::Blocking(tx) => {
                let _ = tx.send(answer);
            }
            Reply::Async(tx) => {
                let _ = tx.send(answer);
            }
        }
    }
}

/// One queued write and where its answer goes. `write` answers its value and whether it
/// changed anything (a batch that changed nothing is not committed).
pub(super) struct Job {
    what: &'static str,
    write: Write,
    reply: Reply,
}

/// Whether an error of one write leaves the batch's other writes usable.
fn fails_alone(e: &StoreError) -> bool {
    matches!(e, StoreError::Decode { .. } | StoreError::Seal { .. })
}

/// A copy of a batch's error for each of its callers (I/O stays I/O: callers sort on it).
fn copy(e: &StoreError) -> StoreError {
    match e {
        StoreError::Io(m) => StoreError::Io(m.clone()),
        other => StoreError::Db(other.to_string()),
    }
}

impl Store {
    /// Runs `write` inside a write transaction shared with the other grouped writes queued
    /// meanwhile, and returns its result once that transaction is durably committed. `write`
    /// returns its result and whether it changed anything. Blocks: call it from a blocking
    /// thread. `what` names the writer in `wecom_bridge_store_commits_total` (a batch is
    /// counted under its first write).
    pub(super) fn write_grouped<R: Send + 'static>(
        &self,
        what: &'static str,
        write: impl FnOnce(&WriteTransaction) -> Result<(R, bool), StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.queue(what, write, Reply::Blocking(reply))?;
        unbox(answer.recv().map_err(|_| writer_gone())?)
    }

    /// [`Store::write_grouped`] for async callers: the task waits for the commit without
    /// holding a thread (the work runs on the writer thread either way).
    pub(super) async fn write_grouped_async<R: Send + 'static>(
        &self,
        what: &'static str,
        write: impl FnOnce(&WriteTransaction) -> Result<(R, bool), StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.queue(what, write, Reply::Async(reply))?;
        unbox(answer.await.map_err(|_| writer_gone())?)
    }

    /// Queues `write` for the writer thread.
    fn queue<R: Send + 'static>(
        &self,
        what: &'static str,
        write: impl FnOnce(&WriteTransaction) -> Result<(R, bool), StoreError> + Send + 'static,
        reply: Reply,
    ) -> Result<(), StoreError> {
        let job = Job {
            what,
            write: Box::new(move |tx| {
                write(tx).map(|(r, changed)| (Box::new(r) as Box<dyn Any + Send>, changed))
            }),
            reply,
        };
        self.group_writer().send(job).map_err(|_| writer_gone())
    }

    /// The sender of the writer thread, started on first use.
    fn group_writer(&self) -> &mpsc::Sender<Job> {
        self.inner.group.get_or_init(|| {
            let (tx, rx) = mpsc::channel();
            let weak = Arc::downgrade(&self.inner);
            std::thread::Builder::new()
                .name("store-group-commit".into())
                .spawn(move || run(weak, rx))
                .expect("spawning a thread (the store's group-commit writer)");
            tx
        })
    }
}

fn writer_gone() -> StoreError {
    StoreError::Db("the store's group-commit writer stopped".into())
}

/// The caller's value out of the writer's answer.
fn unbox<R: 'static>(answer: Answer) -> Result<R, StoreError> {
    answer?
        .downcast::<R>()
        .map(|r| *r)
        .map_err(|_| StoreError::Db("group commit answered with the wrong type".into()))
}

fn run(inner: Weak<Inner>, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let store = Store { inner };
        let answers = commit_batch(&store, batch);
        // Let go of the store before answering: a caller that drops its last handle on
        // hearing back must be able to open the file again at once.
        drop(store);
        for (reply, answer) in answers {
            reply.send(answer);
        }
    }
}

/// Runs the writes of `batch` in one transaction; returns each caller's answer, to be sent
/// after the commit.
fn commit_batch(store: &Store, batch: Vec<Job>) -> Vec<(Reply, Answer)> {
    let what = batch[0].what;
    let mut answers = Vec::with_capacity(batch.len());
    let mut done: Vec<(Reply, Box<dyn Any + Send>)> = Vec::with_capacity(batch.len());
    let mut pending = batch.into_iter();
    let result = store.with_db(|db| {
        let tx = db.begin_write()?;
        let mut changed = false;
        for job in pending.by_ref() {
            match (job.write)(&tx) {
                Ok((value, wrote)) => {
                    changed |= wrote;
                    done.push((job.reply, value));
                }
                Err(e) if fails_alone(&e) => answers.push((job.reply, Err(e))),
                Err(e) => {
                    answers.push((job.reply, Err(copy(&e))));
                    return Err(e);
                }
            }
        }
        metrics::histogram!("wecom_bridge_store_group_batch_size").record(done.len() as f64);
        if changed {
            super::commit(tx, what, true)
        } else {
            tx.abort()?;
            Ok(())
        }
    });
    match result {
        Ok(()) => answers.extend(done.into_iter().map(|(reply, value)| (reply, Ok(value)))),
        Err(e) => {
            tracing::warn!(error = %e, writes = done.len() + pending.len(), "a grouped store commit failed; its writers retry");
            answers.extend(done.into_iter().map(|(reply, _)| (reply, Err(copy(&e)))));
            answers.extend(pending.map(|job| (job.reply, Err(copy(&e)))));
        }
    }
    answers
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many threads writing at once: every read-modify-write sees the earlier ones (none is
    /// lost in a shared batch), and a write whose record does not decode fails alone.
    #[test]
    fn concurrent_writes_are_each_atomic_and_a_bad_record_fails_alone() {
        let (dir, s) = crate::store::test_store();
        s.with_db(|db| {
            let tx = db.begin_write()?;
            tx.open_table(super::super::forms::FORMS)?
                .insert(("a", "broken"), [0xffu8; 2].as_slice())?;
            tx.commit()?;
            Ok(())
        })
        .unwrap();
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        s.form_observe("a", "shared", 2).unwrap();
                        s.form_observe("a", &format!("own-{t}"), i).unwrap();
                        let bad = s.form_observe("a", "broken", 2);
                        assert!(matches!(bad, Err(StoreError::Decode { .. })), "{bad:?}");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(
            s.form_state("a", "shared").unwrap().unwrap().events_seen,
            400
        );
        for t in 0..16 {
            let own = s.form_state("a", &format!("own-{t}")).unwrap().unwrap();
            assert_eq!((own.events_seen, own.last_status), (25, 24));
        }
        // the writer ends with the last handle: the file can be opened again
        drop(s);
        Store::open(&dir.path().join("s.redb"), crate::store::test_sealer()).unwrap();
    }
}
