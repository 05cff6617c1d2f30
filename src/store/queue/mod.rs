//! Queue tables of the embedded broker: durable messages and their delivery state.
//!
//! Every message is in exactly one state: *ready* (waiting for a consumer), *leased*
//! (delivered, not settled, until a visibility deadline), *delayed* (a retry waiting for its
//! due time) or *dead* (parked with a reason). The envelope bytes are written once, at
//! publish, and removed at ack; state changes rewrite only a small state record and the
//! indexes. These functions know nothing of envelopes or consumers: the broker hands over
//! opaque bytes and decides what to do when.
//!
//! Tables:
//! - `queue_body`: message id → envelope bytes (written once), sealed with the store's
//!   [`Sealer`] and bound to the message id; bodies written before sealing existed are read
//!   as they are.
//! - `queue_state`: message id → [`MsgState`] (postcard): queue, attempt, state.
//! - `queue_ready`: (queue, message id) → (); FIFO by publish order per queue.
//! - `queue_due`: (due ms, message id) → (); when a delayed message becomes ready or a
//!   lease expires. One index for both, so one timer serves them.
//! - `queue_dead`: (queue, parked at ms, message id) → (); oldest parked first.
//! - `queue_counts`: queue → (ready, leased, delayed, dead), kept in step in every batch.
//! - `queue_meta`: `next_id` and `next_lease` counters.

use redb::{Durability, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{AppendOutcome, JournalRecord, JournalTables, Sealer, Store, StoreError};

mod tables;
#[cfg(test)]
mod tests;

use tables::Tables;

const BODY: TableDefinition<u64, &[u8]> = TableDefinition::new("queue_body");
const STATE: TableDefinition<u64, &[u8]> = TableDefinition::new("queue_state");
const READY: TableDefinition<(&str, u64), ()> = TableDefinition::new("queue_ready");
const DUE: TableDefinition<(i64, u64), ()> = TableDefinition::new("queue_due");
const DEAD: TableDefinition<(&str, i64, u64), ()> = TableDefinition::new("queue_dead");
const COUNTS: TableDefinition<&str, (u64, u64, u64, u64)> = TableDefinition::new("queue_counts");
const META: TableDefinition<&str, u64> = TableDefinition::new("queue_meta");

const NEXT_ID: &str = "next_id";
const NEXT_LEASE: &str = "next_lease";

/// Creates the queue tables: every table a batch opens (called from `Store::init_tables`).
pub(super) fn init_tables(tx: &WriteTransaction, sealer: &Sealer) -> Result<(), StoreError> {
    Tables::open(tx, sealer).map(drop)
}

/// The stored state of one message (small; the body lives in `queue_body`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct MsgState {
    queue: String,
    /// The attempt number of the current (or next) delivery: 1 at publish, +1 per retry and
    /// per lost lease, back to 1 on redrive.
    attempt: u32,
    /// When it first failed (retry, lost lease or dead-letter) since publish or redrive.
    first_failure_ms: Option<i64>,
    status: Status,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Status {
    Ready,
    Leased { until_ms: i64, lease: u64 },
    Delayed { due_ms: i64 },
    Dead { reason: String, at_ms: i64 },
}

/// One change to the queue tables; a batch of them is applied in one transaction by
/// [`Store::queue_apply`], in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueOp {
    /// Stores a new ready message at attempt 1.
    Publish {
        /// Logical queue.
        queue: String,
        /// Opaque message bytes.
        body: Vec<u8>,
    },
    /// Leases up to `max` ready messages of `queue`, oldest first, until `until_ms`.
    Lease {
        /// Logical queue.
        queue: String,
        /// At most this many.
        max: usize,
        /// Visibility deadline (Unix ms).
        until_ms: i64,
    },
    /// Removes a leased message (if `lease` is still its lease).
    Ack {
        /// Message id.
        id: u64,
        /// Lease token from [`LeasedMessage::lease`].
        lease: u64,
    },
    /// Turns a leased message into a delayed one, due at `due_ms`, with attempt + 1 (or the
    /// same attempt when it only waits).
    Retry {
        /// Message id.
        id: u64,
        /// Lease token.
        lease: u64,
        /// When it becomes ready again (Unix ms).
        due_ms: i64,
        /// Now (Unix ms), recorded as a failure time.
        now_ms: i64,
        /// A failed attempt (attempt + 1), or only a wait (e.g. an open circuit): same attempt.
        counts: bool,
    },
    /// Parks a leased message with a reason.
    DeadLetter {
        /// Message id.
        id: u64,
        /// Lease token.
        lease: u64,
        /// Why.
        reason: String,
        /// Now (Unix ms).
        now_ms: i64,
    },
    /// Appends a journal record (de-duplication, time index, business key) and, when it is
    /// new and not quarantined, publishes `body` on `queue` at attempt 1, in the same
    /// transaction: one commit from callback to route queue. The record never enters the
    /// outbox (nothing is left for a relay to do).
    AppendJournal {
        /// The record.
        record: Box<JournalRecord>,
        /// Where a new record's message goes.
        queue: String,
        /// The message, published only when the record is new.
        body: Vec<u8>,
    },
    /// Makes due delayed messages ready, and expired leases ready with attempt + 1 (or dead
    /// once attempt + 1 would exceed `delivery_limit`).
    Promote {
        /// Now (Unix ms).
        now_ms: i64,
        /// Poison backstop: the most deliveries a message gets through lost leases.
        delivery_limit: u32,
    },
}

impl QueueOp {
    /// Whether losing this change in a crash would lose or duplicate work that a caller was
    /// told is done: publishes, retries and dead-letters must be on disk before we answer.
    /// Acks, leases and promotions may be lost: the only effect is a redelivery.
    fn needs_durability(&self) -> bool {
        matches!(
            self,
            QueueOp::Publish { .. }
                | QueueOp::AppendJournal { .. }
                | QueueOp::Retry { .. }
                | QueueOp::DeadLetter { .. }
        )
    }
}

/// A message handed out by a [`QueueOp::Lease`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedMessage {
    /// Message id.
    pub id: u64,
    /// Token that settles this lease (and no later one).
    pub lease: u64,
    /// Attempt number of this delivery (1 = first).
    pub attempt: u32,
    /// The bytes as published.
    pub body: Vec<u8>,
}

/// Result of one [`QueueOp`], in the order of the ops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueOpResult {
    /// Stored under this id.
    Published {
        /// Message id.
        id: u64,
    },
    /// Leased messages (possibly none).
    Leased(Vec<LeasedMessage>),
    /// What an [`QueueOp::AppendJournal`] did: appended (and published) or a duplicate
    /// (nothing written).
    Appended(AppendOutcome),
    /// Ack, retry or dead-letter: `applied` is false when the lease was no longer current
    /// (it expired and the message was, or will be, delivered again), so nothing changed.
    Settled {
        /// Whether the change was made.
        applied: bool,
    },
    /// How many messages a promotion made ready and how many it parked.
    Promoted {
        /// Became ready.
        ready: usize,
        /// Parked by the delivery limit.
        dead: usize,
    },
}

/// What a batch did, besides the per-op results.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueBatchOutcome {
    /// One result per op.
    pub results: Vec<QueueOpResult>,
    /// Queues that gained ready messages (consumers to wake).
    pub woken: Vec<String>,
    /// The earliest due time left (delayed message or lease expiry), for the timer.
    pub next_due_ms: Option<i64>,
    /// Whether the batch was committed durably.
    pub durable: bool,
}

/// A parked message as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDeadLetter {
    /// Message id.
    pub id: u64,
    /// The bytes as published (empty when `unreadable`).
    pub body: Vec<u8>,
    /// Set when the stored body does not open with the configured keys: why.
    pub unreadable: Option<String>,
    /// Why it was parked.
    pub reason: String,
    /// Deliveries made before it was parked.
    pub attempts: u32,
    /// First failure (Unix ms).
    pub first_failure_ms: i64,
    /// Last failure, when it was parked (Unix ms).
    pub last_failure_ms: i64,
}

/// Message counts of one queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Ready.
    pub ready: u64,
    /// Leased (delivered, not settled).
    pub leased: u64,
    /// Waiting for a retry delay.
    pub delayed: u64,
    /// Parked.
    pub dead: u64,
}

const C_READY: usize = 0;
const C_LEASED: usize = 1;
const C_DELAYED: usize = 2;
const C_DEAD: usize = 3;

fn slot(status: &Status) -> usize {
    match status {
        Status::Ready => C_READY,
        Status::Leased { .. } => C_LEASED,
        Status::Delayed { .. } => C_DELAYED,
        Status::Dead { .. } => C_DEAD,
    }
}

/// Associated data of a message body: binds the sealed bytes to their message id.
fn body_aad(id: u64) -> Vec<u8> {
    format!("queue_body/{id}").into_bytes()
}

/// Opens a stored body. Bodies written before bodies were sealed are plain and returned
/// as they are (they leave the store when acknowledged).
fn open_body(sealer: &Sealer, id: u64, bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    if !Sealer::is_sealed(bytes) {
        return Ok(bytes.to_vec());
    }
    sealer
        .open_bytes(&body_aad(id), bytes)
        .map_err(|source| StoreError::Seal {
            key: format!("queue_body/{id}"),
            source,
        })
}

fn encode(state: &MsgState) -> Result<Vec<u8>, StoreError> {
    postcard::to_allocvec(state).map_err(|e| StoreError::Db(format!("encode queue state: {e}")))
}

fn decode(id: u64, bytes: &[u8]) -> Result<MsgState, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Decode {
        key: format!("queue_state/{id}"),
        reason: e.to_string(),
    })
}

fn durability_err(e: redb::SetDurabilityError) -> StoreError {
    StoreError::Db(e.to_string())
}

impl Store {
    /// Applies `ops` in order in one write transaction (group commit).
    ///
    /// The commit is durable (fsync) when an op needs it ([`QueueOp::Publish`],
    /// [`QueueOp::AppendJournal`], [`QueueOp::Retry`], [`QueueOp::DeadLetter`]) or when
    /// `force_durable` is set. A batch
    /// of only leases, acks and promotions is committed without fsync: if the process dies
    /// before the next durable commit, those changes are lost, which only means the
    /// messages are delivered again (at-least-once already requires idempotent consumers).
    /// Any durable commit also makes every earlier non-durable one durable.
    pub fn queue_apply(
        &self,
        ops: &[QueueOp],
        force_durable: bool,
    ) -> Result<QueueBatchOutcome, StoreError> {
        self.with_db(|db| {
            let durable = force_durable || ops.iter().any(QueueOp::needs_durability);
            let mut tx = db.begin_write()?;
            tx.set_durability(if durable {
                Durability::Immediate
            } else {
                Durability::None
            })
            .map_err(durability_err)?;
            let mut results = Vec::with_capacity(ops.len());
            let (woken, next_due_ms) = {
                let mut t = Tables::open(&tx, &self.inner.sealer)?;
                // Opened on the first append of the batch only.
                let mut journal: Option<JournalTables> = None;
                for op in ops {
                    results.push(match op {
                        QueueOp::AppendJournal {
                            record,
                            queue,
                            body,
                        } => {
                            let journal = match &mut journal {
                                Some(j) => j,
                                None => journal.insert(JournalTables::open(&tx)?),
                            };
                            let outcome = journal.append(record, false)?;
                            if matches!(outcome, AppendOutcome::Appended(_))
                                && record.quarantine.is_none()
                            {
                                t.publish(queue, body)?;
                            }
                            QueueOpResult::Appended(outcome)
                        }
                        QueueOp::Publish { queue, body } => QueueOpResult::Published {
                            id: t.publish(queue, body)?,
                        },
                        QueueOp::Lease {
                            queue,
                            max,
                            until_ms,
                        } => QueueOpResult::Leased(t.lease(queue, *max, *until_ms)?),
                        QueueOp::Ack { id, lease } => QueueOpResult::Settled {
                            applied: t.ack(*id, *lease)?,
                        },
                        QueueOp::Retry {
                            id,
                            lease,
                            due_ms,
                            now_ms,
                            counts,
                        } => QueueOpResult::Settled {
                            applied: t.retry(*id, *lease, *due_ms, *now_ms, *counts)?,
                        },
                        QueueOp::DeadLetter {
                            id,
                            lease,
                            reason,
                            now_ms,
                        } => QueueOpResult::Settled {
                            applied: t.dead_letter(*id, *lease, reason, *now_ms)?,
                        },
                        QueueOp::Promote {
                            now_ms,
                            delivery_limit,
                        } => {
                            let (ready, dead) = t.promote(*now_ms, *delivery_limit, false)?;
                            QueueOpResult::Promoted { ready, dead }
                        }
                    });
                }
                t.finish()?
            };
            super::commit(tx, "queue", durable)?;
            Ok(QueueBatchOutcome {
                results,
                woken,
                next_due_ms,
                durable,
            })
        })
    }

    /// At start-up: every lease belongs to a process that is gone, so every leased message
    /// becomes ready with attempt + 1 (or dead past `delivery_limit`), and due delayed
    /// messages become ready. Durable.
    pub fn queue_recover(
        &self,
        now_ms: i64,
        delivery_limit: u32,
    ) -> Result<QueueBatchOutcome, StoreError> {
        self.with_db(|db| {
            let tx = db.begin_write()?;
            let (result, woken, next_due_ms) = {
                let mut t = Tables::open(&tx, &self.inner.sealer)?;
                let (ready, dead) = t.promote(now_ms, delivery_limit, true)?;
                let (woken, next) = t.finish()?;
                (QueueOpResult::Promoted { ready, dead }, woken, next)
            };
            super::commit(tx, "queue", true)?;
            Ok(QueueBatchOutcome {
                results: vec![result],
                woken,
                next_due_ms,
                durable: true,
            })
        })
    }

    /// Moves the parked messages of `queue` that `select(body, reason)` chooses back to
    /// ready, at attempt 1, in one durable transaction; returns how many.
    pub fn queue_redrive(
        &self,
        queue: &str,
        select: &mut dyn FnMut(&[u8], &str) -> bool,
    ) -> Result<usize, StoreError> {
        self.with_db(|db| {
            let tx = db.begin_write()?;
            let moved = {
                let mut t = Tables::open(&tx, &self.inner.sealer)?;
                let moved = t.redrive(queue, select)?;
                t.finish()?;
                moved
            };
            super::commit(tx, "queue", true)?;
            Ok(moved)
        })
    }

    /// Commits an empty durable transaction, making earlier non-durable commits durable.
    pub fn queue_sync(&self) -> Result<(), StoreError> {
        self.with_db(|db| {
            let tx = db.begin_write()?;
            super::commit(tx, "queue", true)?;
            Ok(())
        })
    }

    /// Up to `limit` parked messages of `queue`, oldest parked first. Reads only.
    pub fn queue_dead_letters(
        &self,
        queue: &str,
        limit: usize,
    ) -> Result<Vec<StoredDeadLetter>, StoreError> {
        self.read(|tx| {
            let dead = tx.open_table(DEAD)?;
            let state = tx.open_table(STATE)?;
            let body = tx.open_table(BODY)?;
            let mut out = Vec::new();
            for item in dead
                .range((queue, i64::MIN, 0u64)..=(queue, i64::MAX, u64::MAX))?
                .take(limit)
            {
                let (_, at_ms, id) = item?.0.value();
                let Some(st) = state.get(id)? else { continue };
                let st = decode(id, st.value())?;
                let Status::Dead { reason, .. } = st.status else {
                    continue;
                };
                let Some(bytes) = body.get(id)? else { continue };
                let (body, unreadable) = match open_body(&self.inner.sealer, id, bytes.value()) {
                    Ok(body) => (body, None),
                    Err(e) => (Vec::new(), Some(e.to_string())),
                };
                out.push(StoredDeadLetter {
                    id,
                    body,
                    unreadable,
                    reason,
                    attempts: st.attempt,
                    first_failure_ms: st.first_failure_ms.unwrap_or(at_ms),
                    last_failure_ms: at_ms,
                });
            }
            Ok(out)
        })
    }

    /// Message counts of each queue (zero for unknown queues). Reads only.
    pub fn queue_counts(&self, queues: &[String]) -> Result<Vec<QueueCounts>, StoreError> {
        self.read(|tx| {
            let counts = tx.open_table(COUNTS)?;
            queues
                .iter()
                .map(|q| {
                    Ok(counts
                        .get(q.as_str())?
                        .map(|v| {
                            let (ready, leased, delayed, dead) = v.value();
                            QueueCounts {
                                ready,
                                leased,
                                delayed,
                                dead,
                            }
                        })
                        .unwrap_or_default())
                })
                .collect()
        })
    }
}
