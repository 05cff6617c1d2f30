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
//! - `queue_body`: message id → envelope bytes (written once).
//! - `queue_state`: message id → [`MsgState`] (postcard): queue, attempt, state.
//! - `queue_ready`: (queue, message id) → (); FIFO by publish order per queue.
//! - `queue_due`: (due ms, message id) → (); when a delayed message becomes ready or a
//!   lease expires. One index for both, so one timer serves them.
//! - `queue_dead`: (queue, parked at ms, message id) → (); oldest parked first.
//! - `queue_counts`: queue → (ready, leased, delayed, dead), kept in step in every batch.
//! - `queue_meta`: `next_id` and `next_lease` counters.

use redb::{Durability, ReadableDatabase, ReadableTable, Table, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

const BODY: TableDefinition<u64, &[u8]> = TableDefinition::new("queue_body");
const STATE: TableDefinition<u64, &[u8]> = TableDefinition::new("queue_state");
const READY: TableDefinition<(&str, u64), ()> = TableDefinition::new("queue_ready");
const DUE: TableDefinition<(i64, u64), ()> = TableDefinition::new("queue_due");
const DEAD: TableDefinition<(&str, i64, u64), ()> = TableDefinition::new("queue_dead");
const COUNTS: TableDefinition<&str, (u64, u64, u64, u64)> = TableDefinition::new("queue_counts");
const META: TableDefinition<&str, u64> = TableDefinition::new("queue_meta");

const NEXT_ID: &str = "next_id";
const NEXT_LEASE: &str = "next_lease";

/// Creates the queue tables (called from `Store::init_tables`).
pub(super) fn init_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(BODY)?;
    tx.open_table(STATE)?;
    tx.open_table(READY)?;
    tx.open_table(DUE)?;
    tx.open_table(DEAD)?;
    tx.open_table(COUNTS)?;
    tx.open_table(META)?;
    Ok(())
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
    /// Turns a leased message into a delayed one, due at `due_ms`, with attempt + 1.
    Retry {
        /// Message id.
        id: u64,
        /// Lease token.
        lease: u64,
        /// When it becomes ready again (Unix ms).
        due_ms: i64,
        /// Now (Unix ms), recorded as a failure time.
        now_ms: i64,
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
            QueueOp::Publish { .. } | QueueOp::Retry { .. } | QueueOp::DeadLetter { .. }
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
    /// The bytes as published.
    pub body: Vec<u8>,
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

fn encode(state: &MsgState) -> Result<Vec<u8>, StoreError> {
    postcard::to_allocvec(state).map_err(|e| StoreError::Db(format!("encode queue state: {e}")))
}

fn decode(id: u64, bytes: &[u8]) -> Result<MsgState, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Decode {
        key: format!("queue_state/{id}"),
        reason: e.to_string(),
    })
}

/// The queue tables opened in one write transaction, with the counters and count changes
/// of the batch.
struct Tables<'t> {
    body: Table<'t, u64, &'static [u8]>,
    state: Table<'t, u64, &'static [u8]>,
    ready: Table<'t, (&'static str, u64), ()>,
    due: Table<'t, (i64, u64), ()>,
    dead: Table<'t, (&'static str, i64, u64), ()>,
    counts: Table<'t, &'static str, (u64, u64, u64, u64)>,
    meta: Table<'t, &'static str, u64>,
    next_id: Option<u64>,
    next_lease: Option<u64>,
    /// Per queue: changes of (ready, leased, delayed, dead), written once at the end.
    deltas: Vec<(String, [i64; 4])>,
    woken: Vec<String>,
}

impl<'t> Tables<'t> {
    fn open(tx: &'t WriteTransaction) -> Result<Self, StoreError> {
        Ok(Tables {
            body: tx.open_table(BODY)?,
            state: tx.open_table(STATE)?,
            ready: tx.open_table(READY)?,
            due: tx.open_table(DUE)?,
            dead: tx.open_table(DEAD)?,
            counts: tx.open_table(COUNTS)?,
            meta: tx.open_table(META)?,
            next_id: None,
            next_lease: None,
            deltas: Vec::new(),
            woken: Vec::new(),
        })
    }

    fn counter(&mut self, name: &str) -> Result<u64, StoreError> {
        Ok(self.meta.get(name)?.map(|v| v.value()).unwrap_or(1))
    }

    fn take_id(&mut self) -> Result<u64, StoreError> {
        let id = match self.next_id {
            Some(id) => id,
            None => self.counter(NEXT_ID)?,
        };
        self.next_id = Some(id + 1);
        Ok(id)
    }

    fn take_lease(&mut self) -> Result<u64, StoreError> {
        let lease = match self.next_lease {
            Some(l) => l,
            None => self.counter(NEXT_LEASE)?,
        };
        self.next_lease = Some(lease + 1);
        Ok(lease)
    }

    fn count(&mut self, queue: &str, slot: usize, delta: i64) {
        match self.deltas.iter_mut().find(|(q, _)| q == queue) {
            Some((_, d)) => d[slot] += delta,
            None => {
                let mut d = [0; 4];
                d[slot] = delta;
                self.deltas.push((queue.to_string(), d));
            }
        }
    }

    fn wake(&mut self, queue: &str) {
        if !self.woken.iter().any(|q| q == queue) {
            self.woken.push(queue.to_string());
        }
    }

    fn get_state(&self, id: u64) -> Result<Option<MsgState>, StoreError> {
        match self.state.get(id)? {
            Some(v) => Ok(Some(decode(id, v.value())?)),
            None => Ok(None),
        }
    }

    fn put_state(&mut self, id: u64, state: &MsgState) -> Result<(), StoreError> {
        self.state.insert(id, encode(state)?.as_slice())?;
        Ok(())
    }

    /// Moves a message from its current status to `to`, keeping indexes and counts in step.
    fn set_status(&mut self, id: u64, mut st: MsgState, to: Status) -> Result<(), StoreError> {
        self.unindex(id, &st)?;
        self.count(&st.queue, slot(&st.status), -1);
        self.count(&st.queue, slot(&to), 1);
        match &to {
            Status::Ready => {
                self.ready.insert((st.queue.as_str(), id), ())?;
                self.wake(&st.queue);
            }
            Status::Leased { until_ms, .. } => {
                self.due.insert((*until_ms, id), ())?;
            }
            Status::Delayed { due_ms } => {
                self.due.insert((*due_ms, id), ())?;
            }
            Status::Dead { at_ms, .. } => {
                self.dead.insert((st.queue.as_str(), *at_ms, id), ())?;
            }
        }
        st.status = to;
        self.put_state(id, &st)
    }

    /// Removes a message from the index of its current status.
    fn unindex(&mut self, id: u64, st: &MsgState) -> Result<(), StoreError> {
        match &st.status {
            Status::Ready => {
                self.ready.remove((st.queue.as_str(), id))?;
            }
            Status::Leased { until_ms: at, .. } | Status::Delayed { due_ms: at } => {
                self.due.remove((*at, id))?;
            }
            Status::Dead { at_ms, .. } => {
                self.dead.remove((st.queue.as_str(), *at_ms, id))?;
            }
        }
        Ok(())
    }

    fn publish(&mut self, queue: &str, body: &[u8]) -> Result<u64, StoreError> {
        let id = self.take_id()?;
        self.body.insert(id, body)?;
        let st = MsgState {
            queue: queue.to_string(),
            attempt: 1,
            first_failure_ms: None,
            status: Status::Ready,
        };
        self.put_state(id, &st)?;
        self.ready.insert((queue, id), ())?;
        self.count(queue, C_READY, 1);
        self.wake(queue);
        Ok(id)
    }

    fn lease(
        &mut self,
        queue: &str,
        max: usize,
        until_ms: i64,
    ) -> Result<Vec<LeasedMessage>, StoreError> {
        let ids: Vec<u64> = self
            .ready
            .range((queue, 0u64)..=(queue, u64::MAX))?
            .take(max)
            .map(|r| r.map(|(k, _)| k.value().1))
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(st) = self.get_state(id)? else {
                tracing::warn!(
                    id,
                    queue,
                    "ready index names a message without state; dropping the entry"
                );
                self.ready.remove((queue, id))?;
                continue;
            };
            let Some(body) = self.body.get(id)?.map(|v| v.value().to_vec()) else {
                tracing::warn!(id, queue, "message without body; dropping it");
                self.unindex(id, &st)?;
                self.count(&st.queue, slot(&st.status), -1);
                self.state.remove(id)?;
                continue;
            };
            let lease = self.take_lease()?;
            let attempt = st.attempt;
            self.set_status(id, st, Status::Leased { until_ms, lease })?;
            out.push(LeasedMessage {
                id,
                lease,
                attempt,
                body,
            });
        }
        Ok(out)
    }

    /// The state of `id` if it is leased under `lease`.
    fn leased(&self, id: u64, lease: u64) -> Result<Option<MsgState>, StoreError> {
        Ok(self
            .get_state(id)?
            .filter(|st| matches!(st.status, Status::Leased { lease: l, .. } if l == lease)))
    }

    fn ack(&mut self, id: u64, lease: u64) -> Result<bool, StoreError> {
        let Some(st) = self.leased(id, lease)? else {
            return Ok(false);
        };
        self.unindex(id, &st)?;
        self.count(&st.queue, C_LEASED, -1);
        self.state.remove(id)?;
        self.body.remove(id)?;
        Ok(true)
    }

    fn retry(&mut self, id: u64, lease: u64, due_ms: i64, now_ms: i64) -> Result<bool, StoreError> {
        let Some(mut st) = self.leased(id, lease)? else {
            return Ok(false);
        };
        st.attempt = st.attempt.saturating_add(1);
        st.first_failure_ms.get_or_insert(now_ms);
        self.set_status(id, st, Status::Delayed { due_ms })?;
        Ok(true)
    }

    fn dead_letter(
        &mut self,
        id: u64,
        lease: u64,
        reason: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let Some(mut st) = self.leased(id, lease)? else {
            return Ok(false);
        };
        st.first_failure_ms.get_or_insert(now_ms);
        let to = Status::Dead {
            reason: reason.to_string(),
            at_ms: now_ms,
        };
        self.set_status(id, st, to)?;
        Ok(true)
    }

    /// Promotes due entries; with `all_leases`, every lease counts as expired (start-up
    /// after the process that held them died).
    fn promote(
        &mut self,
        now_ms: i64,
        delivery_limit: u32,
        all_leases: bool,
    ) -> Result<(usize, usize), StoreError> {
        let entries: Vec<(i64, u64)> = if all_leases {
            self.due
                .iter()?
                .map(|r| r.map(|(k, _)| k.value()))
                .collect::<Result<_, _>>()?
        } else {
            self.due
                .range(..=(now_ms, u64::MAX))?
                .map(|r| r.map(|(k, _)| k.value()))
                .collect::<Result<_, _>>()?
        };
        let (mut ready, mut dead) = (0, 0);
        for (at, id) in entries {
            let Some(mut st) = self.get_state(id)? else {
                self.due.remove((at, id))?;
                continue;
            };
            match st.status {
                Status::Delayed { due_ms } if due_ms == at => {
                    if due_ms <= now_ms {
                        self.set_status(id, st, Status::Ready)?;
                        ready += 1;
                    }
                }
                Status::Leased { until_ms, .. } if until_ms == at => {
                    if all_leases || until_ms <= now_ms {
                        st.first_failure_ms.get_or_insert(now_ms);
                        if st.attempt.saturating_add(1) > delivery_limit {
                            let reason =
                                format!("delivery limit exceeded ({} attempts)", st.attempt);
                            self.set_status(
                                id,
                                st,
                                Status::Dead {
                                    reason,
                                    at_ms: now_ms,
                                },
                            )?;
                            dead += 1;
                        } else {
                            st.attempt += 1;
                            self.set_status(id, st, Status::Ready)?;
                            ready += 1;
                        }
                    }
                }
                // An index entry that no longer matches the state: drop it.
                _ => {
                    self.due.remove((at, id))?;
                }
            }
        }
        Ok((ready, dead))
    }

    fn redrive(
        &mut self,
        queue: &str,
        select: &mut dyn FnMut(&[u8], &str) -> bool,
    ) -> Result<usize, StoreError> {
        let keys: Vec<(i64, u64)> = self
            .dead
            .range((queue, i64::MIN, 0u64)..=(queue, i64::MAX, u64::MAX))?
            .map(|r| r.map(|(k, _)| (k.value().1, k.value().2)))
            .collect::<Result<_, _>>()?;
        let mut moved = 0;
        for (_, id) in keys {
            let Some(mut st) = self.get_state(id)? else {
                continue;
            };
            let Status::Dead { reason, .. } = &st.status else {
                continue;
            };
            let chosen = match self.body.get(id)? {
                Some(body) => select(body.value(), reason),
                None => false,
            };
            if chosen {
                st.attempt = 1;
                st.first_failure_ms = None;
                self.set_status(id, st, Status::Ready)?;
                moved += 1;
            }
        }
        Ok(moved)
    }

    /// Writes counters and count changes; returns the woken queues and the next due time.
    fn finish(mut self) -> Result<(Vec<String>, Option<i64>), StoreError> {
        if let Some(id) = self.next_id {
            self.meta.insert(NEXT_ID, id)?;
        }
        if let Some(lease) = self.next_lease {
            self.meta.insert(NEXT_LEASE, lease)?;
        }
        for (queue, d) in std::mem::take(&mut self.deltas) {
            if d == [0; 4] {
                continue;
            }
            let old = self
                .counts
                .get(queue.as_str())?
                .map(|v| v.value())
                .unwrap_or_default();
            let add = |v: u64, d: i64| v.saturating_add_signed(d);
            let new = (
                add(old.0, d[C_READY]),
                add(old.1, d[C_LEASED]),
                add(old.2, d[C_DELAYED]),
                add(old.3, d[C_DEAD]),
            );
            if new == (0, 0, 0, 0) {
                self.counts.remove(queue.as_str())?;
            } else {
                self.counts.insert(queue.as_str(), new)?;
            }
        }
        let next_due = self.due.first()?.map(|(k, _)| k.value().0);
        Ok((self.woken, next_due))
    }
}

fn durability_err(e: redb::SetDurabilityError) -> StoreError {
    StoreError::Db(e.to_string())
}

impl Store {
    /// Applies `ops` in order in one write transaction (group commit).
    ///
    /// The commit is durable (fsync) when an op needs it ([`QueueOp::Publish`],
    /// [`QueueOp::Retry`], [`QueueOp::DeadLetter`]) or when `force_durable` is set. A batch
    /// of only leases, acks and promotions is committed without fsync: if the process dies
    /// before the next durable commit, those changes are lost, which only means the
    /// messages are delivered again (at-least-once already requires idempotent consumers).
    /// Any durable commit also makes every earlier non-durable one durable.
    pub fn queue_apply(
        &self,
        ops: &[QueueOp],
        force_durable: bool,
    ) -> Result<QueueBatchOutcome, StoreError> {
        let durable = force_durable || ops.iter().any(QueueOp::needs_durability);
        let mut tx = self.db.begin_write()?;
        tx.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })
        .map_err(durability_err)?;
        let mut results = Vec::with_capacity(ops.len());
        let (woken, next_due_ms) = {
            let mut t = Tables::open(&tx)?;
            for op in ops {
                results.push(match op {
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
                    } => QueueOpResult::Settled {
                        applied: t.retry(*id, *lease, *due_ms, *now_ms)?,
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
        tx.commit()?;
        Ok(QueueBatchOutcome {
            results,
            woken,
            next_due_ms,
            durable,
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
        let tx = self.db.begin_write()?;
        let (result, woken, next_due_ms) = {
            let mut t = Tables::open(&tx)?;
            let (ready, dead) = t.promote(now_ms, delivery_limit, true)?;
            let (woken, next) = t.finish()?;
            (QueueOpResult::Promoted { ready, dead }, woken, next)
        };
        tx.commit()?;
        Ok(QueueBatchOutcome {
            results: vec![result],
            woken,
            next_due_ms,
            durable: true,
        })
    }

    /// Moves the parked messages of `queue` that `select(body, reason)` chooses back to
    /// ready, at attempt 1, in one durable transaction; returns how many.
    pub fn queue_redrive(
        &self,
        queue: &str,
        select: &mut dyn FnMut(&[u8], &str) -> bool,
    ) -> Result<usize, StoreError> {
        let tx = self.db.begin_write()?;
        let moved = {
            let mut t = Tables::open(&tx)?;
            let moved = t.redrive(queue, select)?;
            t.finish()?;
            moved
        };
        tx.commit()?;
        Ok(moved)
    }

    /// Commits an empty durable transaction, making earlier non-durable commits durable.
    pub fn queue_sync(&self) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        tx.commit()?;
        Ok(())
    }

    /// Up to `limit` parked messages of `queue`, oldest parked first. Reads only.
    pub fn queue_dead_letters(
        &self,
        queue: &str,
        limit: usize,
    ) -> Result<Vec<StoredDeadLetter>, StoreError> {
        let tx = self.db.begin_read()?;
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
            out.push(StoredDeadLetter {
                id,
                body: bytes.value().to_vec(),
                reason,
                attempts: st.attempt,
                first_failure_ms: st.first_failure_ms.unwrap_or(at_ms),
                last_failure_ms: at_ms,
            });
        }
        Ok(out)
    }

    /// Message counts of each queue (zero for unknown queues). Reads only.
    pub fn queue_counts(&self, queues: &[String]) -> Result<Vec<QueueCounts>, StoreError> {
        let tx = self.db.begin_read()?;
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("q.redb")).unwrap();
        (dir, s)
    }

    fn publish(s: &Store, q: &str, body: &str) -> u64 {
        let out = s
            .queue_apply(
                &[QueueOp::Publish {
                    queue: q.into(),
                    body: body.as_bytes().to_vec(),
                }],
                false,
            )
            .unwrap();
        assert!(out.durable, "publish must commit durably");
        assert_eq!(out.woken, vec![q.to_string()]);
        match out.results[0] {
            QueueOpResult::Published { id } => id,
            ref other => panic!("{other:?}"),
        }
    }

    fn lease(s: &Store, q: &str, max: usize, until_ms: i64) -> Vec<LeasedMessage> {
        let out = s
            .queue_apply(
                &[QueueOp::Lease {
                    queue: q.into(),
                    max,
                    until_ms,
                }],
                false,
            )
            .unwrap();
        assert!(!out.durable, "a lease alone needs no fsync");
        match &out.results[0] {
            QueueOpResult::Leased(m) => m.clone(),
            other => panic!("{other:?}"),
        }
    }

    fn apply1(s: &Store, op: QueueOp) -> QueueBatchOutcome {
        s.queue_apply(&[op], false).unwrap()
    }

    fn counts(s: &Store, q: &str) -> (u64, u64, u64, u64) {
        let c = s.queue_counts(&[q.to_string()]).unwrap()[0];
        (c.ready, c.leased, c.delayed, c.dead)
    }

    fn bodies(m: &[LeasedMessage]) -> Vec<String> {
        m.iter()
            .map(|m| String::from_utf8(m.body.clone()).unwrap())
            .collect()
    }

    #[test]
    fn fifo_per_queue_and_lease_limits() {
        let (_d, s) = store();
        for i in 0..5 {
            publish(&s, "a", &format!("a{i}"));
            publish(&s, "b", &format!("b{i}"));
        }
        assert_eq!(counts(&s, "a"), (5, 0, 0, 0));
        let first = lease(&s, "a", 3, 1_000);
        assert_eq!(bodies(&first), ["a0", "a1", "a2"]);
        assert!(first.iter().all(|m| m.attempt == 1));
        let rest = lease(&s, "a", 10, 1_000);
        assert_eq!(bodies(&rest), ["a3", "a4"]);
        assert!(lease(&s, "a", 10, 1_000).is_empty());
        assert_eq!(counts(&s, "a"), (0, 5, 0, 0));
        assert_eq!(counts(&s, "b"), (5, 0, 0, 0));
        // lease tokens are unique
        let mut tokens: Vec<u64> = first.iter().chain(&rest).map(|m| m.lease).collect();
        tokens.dedup();
        assert_eq!(tokens.len(), 5);
    }

    #[test]
    fn ack_removes_and_stale_lease_changes_nothing() {
        let (_d, s) = store();
        publish(&s, "q", "x");
        let m = lease(&s, "q", 1, 1_000).remove(0);
        let out = apply1(
            &s,
            QueueOp::Ack {
                id: m.id,
                lease: m.lease + 1,
            },
        );
        assert_eq!(out.results[0], QueueOpResult::Settled { applied: false });
        assert!(!out.durable, "an ack alone needs no fsync");
        let out = apply1(
            &s,
            QueueOp::Ack {
                id: m.id,
                lease: m.lease,
            },
        );
        assert_eq!(out.results[0], QueueOpResult::Settled { applied: true });
        assert_eq!(counts(&s, "q"), (0, 0, 0, 0));
        assert_eq!(
            out.next_due_ms, None,
            "the lease expiry is gone with the message"
        );
        // acking twice is harmless
        let out = apply1(
            &s,
            QueueOp::Ack {
                id: m.id,
                lease: m.lease,
            },
        );
        assert_eq!(out.results[0], QueueOpResult::Settled { applied: false });
    }

    #[test]
    fn expired_lease_comes_back_with_next_attempt_then_dies_at_the_limit() {
        let (_d, s) = store();
        publish(&s, "q", "x");
        let m = lease(&s, "q", 1, 100);
        assert_eq!(m[0].attempt, 1);
        let promote = |now| QueueOp::Promote {
            now_ms: now,
            delivery_limit: 2,
        };
        // not yet due
        let out = apply1(&s, promote(99));
        assert_eq!(
            out.results[0],
            QueueOpResult::Promoted { ready: 0, dead: 0 }
        );
        assert_eq!(out.next_due_ms, Some(100));
        let out = apply1(&s, promote(100));
        assert_eq!(
            out.results[0],
            QueueOpResult::Promoted { ready: 1, dead: 0 }
        );
        assert_eq!(out.woken, vec!["q".to_string()]);
        assert_eq!(out.next_due_ms, None);
        // the old lease can no longer settle
        let out = apply1(
            &s,
            QueueOp::Ack {
                id: m[0].id,
                lease: m[0].lease,
            },
        );
        assert_eq!(out.results[0], QueueOpResult::Settled { applied: false });
        let m2 = lease(&s, "q", 1, 200);
        assert_eq!(m2[0].attempt, 2);
        assert_ne!(m2[0].lease, m[0].lease);
        // a third delivery would exceed the limit of 2: parked
        let out = apply1(&s, promote(300));
        assert_eq!(
            out.results[0],
            QueueOpResult::Promoted { ready: 0, dead: 1 }
        );
        assert_eq!(counts(&s, "q"), (0, 0, 0, 1));
        let dead = s.queue_dead_letters("q", 10).unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].reason, "delivery limit exceeded (2 attempts)");
        assert_eq!(dead[0].attempts, 2);
        assert_eq!(
            (dead[0].first_failure_ms, dead[0].last_failure_ms),
            (100, 300)
        );
        assert_eq!(dead[0].body, b"x");
    }

    #[test]
    fn retry_is_delayed_then_ready_with_next_attempt_and_is_durable() {
        let (_d, s) = store();
        publish(&s, "q", "x");
        let m = lease(&s, "q", 1, 10_000).remove(0);
        let out = apply1(
            &s,
            QueueOp::Retry {
                id: m.id,
                lease: m.lease,
                due_ms: 500,
                now_ms: 400,
            },
        );
        assert_eq!(out.results[0], QueueOpResult::Settled { applied: true });
        assert!(
            out.durable,
            "a retry must be durable before the lease is released"
        );
        assert_eq!(
            out.next_due_ms,
            Some(500),
            "the lease deadline was replaced by the due time"
        );
        assert_eq!(counts(&s, "q"), (0, 0, 1, 0));
        assert!(lease(&s, "q", 1, 10_000).is_empty(), "delayed is not ready");
        let out = apply1(
            &s,
            QueueOp::Promote {
                now_ms: 500,
                delivery_limit: 5,
            },
        );
        assert_eq!(
            out.results[0],
            QueueOpResult::Promoted { ready: 1, dead: 0 }
        );
        let m = lease(&s, "q", 1, 10_000).remove(0);
        assert_eq!(m.attempt, 2);
        assert_eq!(m.body, b"x");
        // dead-letter after a retry keeps the first failure
        let out = apply1(
            &s,
            QueueOp::DeadLetter {
                id: m.id,
                lease: m.lease,
                reason: "refused".into(),
                now_ms: 900,
            },
        );
        assert!(out.durable);
        let dead = s.queue_dead_letters("q", 10).unwrap();
        assert_eq!(
            (
                dead[0].attempts,
                dead[0].first_failure_ms,
                dead[0].last_failure_ms
            ),
            (2, 400, 900)
        );
        assert_eq!(counts(&s, "q"), (0, 0, 0, 1));
    }

    #[test]
    fn dead_letters_list_oldest_first_and_redrive_selects() {
        let (_d, s) = store();
        for b in ["one", "two", "three"] {
            publish(&s, "q", b);
        }
        let ms = lease(&s, "q", 3, 10_000);
        // park in reverse order: "three" is parked first
        for (i, m) in ms.iter().rev().enumerate() {
            apply1(
                &s,
                QueueOp::DeadLetter {
                    id: m.id,
                    lease: m.lease,
                    reason: format!("reason {i}"),
                    now_ms: 1_000 + i as i64,
                },
            );
        }
        let dead = s.queue_dead_letters("q", 10).unwrap();
        let names: Vec<_> = dead.iter().map(|d| d.body.clone()).collect();
        assert_eq!(names, [b"three".to_vec(), b"two".to_vec(), b"one".to_vec()]);
        assert_eq!(s.queue_dead_letters("q", 1).unwrap().len(), 1);
        assert!(s.queue_dead_letters("other", 10).unwrap().is_empty());
        // listing does not consume
        assert_eq!(counts(&s, "q"), (0, 0, 0, 3));

        let n = s.queue_redrive("q", &mut |body, _| body == b"two").unwrap();
        assert_eq!(n, 1);
        assert_eq!(counts(&s, "q"), (1, 0, 0, 2));
        let n = s
            .queue_redrive("q", &mut |_, reason| reason.contains("reason 2"))
            .unwrap();
        assert_eq!(n, 1);
        // redriven messages start at attempt 1, FIFO by publish order
        let ms = lease(&s, "q", 10, 10_000);
        assert_eq!(bodies(&ms), ["one", "two"]);
        assert!(ms.iter().all(|m| m.attempt == 1));
        assert_eq!(s.queue_redrive("q", &mut |_, _| true).unwrap(), 1);
        assert_eq!(counts(&s, "q"), (1, 2, 0, 0));
    }

    #[test]
    fn recovery_expires_every_lease_and_keeps_delays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        {
            let s = Store::open(&path).unwrap();
            for b in ["a", "b", "c"] {
                publish(&s, "q", b);
            }
            let ms = lease(&s, "q", 3, i64::MAX - 1);
            apply1(
                &s,
                QueueOp::Retry {
                    id: ms[2].id,
                    lease: ms[2].lease,
                    due_ms: 1_000_000,
                    now_ms: 1,
                },
            );
        }
        let s = Store::open(&path).unwrap();
        // the leases were committed without fsync, then made durable by the retry's commit
        assert_eq!(counts(&s, "q"), (0, 2, 1, 0));
        let out = s.queue_recover(10, 5).unwrap();
        assert_eq!(
            out.results[0],
            QueueOpResult::Promoted { ready: 2, dead: 0 }
        );
        assert_eq!(out.next_due_ms, Some(1_000_000));
        assert_eq!(counts(&s, "q"), (2, 0, 1, 0));
        let ms = lease(&s, "q", 10, 100);
        assert_eq!(bodies(&ms), ["a", "b"]);
        assert!(ms.iter().all(|m| m.attempt == 2));
        // ids keep increasing across reopen
        let id = publish(&s, "q", "d");
        assert_eq!(id, 4);
    }

    #[test]
    fn batch_applies_in_order_in_one_transaction() {
        let (_d, s) = store();
        let out = s
            .queue_apply(
                &[
                    QueueOp::Publish {
                        queue: "q".into(),
                        body: b"1".to_vec(),
                    },
                    QueueOp::Lease {
                        queue: "q".into(),
                        max: 5,
                        until_ms: 50,
                    },
                    QueueOp::Publish {
                        queue: "q".into(),
                        body: b"2".to_vec(),
                    },
                ],
                false,
            )
            .unwrap();
        assert!(out.durable);
        assert_eq!(out.results.len(), 3);
        let QueueOpResult::Leased(ms) = &out.results[1] else {
            panic!("{:?}", out.results[1]);
        };
        assert_eq!(bodies(ms), ["1"]);
        assert_eq!(out.next_due_ms, Some(50));
        assert_eq!(counts(&s, "q"), (1, 1, 0, 0));
    }
}
