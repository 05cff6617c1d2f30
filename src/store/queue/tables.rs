//! One write transaction over the queue tables: the state machine of a message (ready,
//! leased, delayed, dead), kept in step with the indexes and the per-queue counts.

use redb::{ReadableTable, Table, WriteTransaction};

use super::{
    BODY, C_DEAD, C_DELAYED, C_LEASED, C_READY, COUNTS, DEAD, DUE, LeasedMessage, META, MsgState,
    NEXT_ID, NEXT_LEASE, READY, STATE, Status, body_aad, decode, encode, open_body, slot,
};
use crate::store::{Sealer, StoreError};
use crate::telemetry::names;

/// The queue tables opened in one write transaction, with the counters and count changes
/// of the batch.
pub(super) struct Tables<'t> {
    sealer: &'t Sealer,
    body: Table<'t, u64, &'static [u8]>,
    state: Table<'t, u64, &'static [u8]>,
    ready: Table<'t, (&'static str, u64), ()>,
    due: Table<'t, (i64, u64), ()>,
    dead: Table<'t, (&'static str, i64, u64), ()>,
    counts: Table<'t, &'static str, (u64, u64, u64, u64)>,
    meta: Table<'t, &'static str, u64>,
    /// The counters taken in this batch (`NEXT_ID`, `NEXT_LEASE`) with their next values,
    /// written back once at the end.
    next: Vec<(&'static str, u64)>,
    /// Per queue: changes of (ready, leased, delayed, dead), written once at the end.
    deltas: Vec<(String, [i64; 4])>,
    woken: Vec<String>,
}

impl<'t> Tables<'t> {
    pub(super) fn open(tx: &'t WriteTransaction, sealer: &'t Sealer) -> Result<Self, StoreError> {
        Ok(Tables {
            sealer,
            body: tx.open_table(BODY)?,
            state: tx.open_table(STATE)?,
            ready: tx.open_table(READY)?,
            due: tx.open_table(DUE)?,
            dead: tx.open_table(DEAD)?,
            counts: tx.open_table(COUNTS)?,
            meta: tx.open_table(META)?,
            next: Vec::new(),
            deltas: Vec::new(),
            woken: Vec::new(),
        })
    }

    pub(super) fn counter(&mut self, name: &str) -> Result<u64, StoreError> {
        Ok(self.meta.get(name)?.map(|v| v.value()).unwrap_or(1))
    }

    /// The next message id.
    pub(super) fn take_id(&mut self) -> Result<u64, StoreError> {
        self.take(NEXT_ID)
    }

    /// The next lease number.
    pub(super) fn take_lease(&mut self) -> Result<u64, StoreError> {
        self.take(NEXT_LEASE)
    }

    /// Takes the value of counter `name`: read from the store on first use in the batch.
    fn take(&mut self, name: &'static str) -> Result<u64, StoreError> {
        let value = match self.next.iter().find(|(n, _)| *n == name) {
            Some(&(_, v)) => v,
            None => self.counter(name)?,
        };
        match self.next.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v = value + 1,
            None => self.next.push((name, value + 1)),
        }
        Ok(value)
    }

    pub(super) fn count(&mut self, queue: &str, slot: usize, delta: i64) {
        match self.deltas.iter_mut().find(|(q, _)| q == queue) {
            Some((_, d)) => d[slot] += delta,
            None => {
                let mut d = [0; 4];
                d[slot] = delta;
                self.deltas.push((queue.to_string(), d));
            }
        }
    }

    pub(super) fn wake(&mut self, queue: &str) {
        if !self.woken.iter().any(|q| q == queue) {
            self.woken.push(queue.to_string());
        }
    }

    pub(super) fn get_state(&self, id: u64) -> Result<Option<MsgState>, StoreError> {
        match self.state.get(id)? {
            Some(v) => Ok(Some(decode(id, v.value())?)),
            None => Ok(None),
        }
    }

    pub(super) fn put_state(&mut self, id: u64, state: &MsgState) -> Result<(), StoreError> {
        self.state.insert(id, encode(state)?.as_slice())?;
        Ok(())
    }

    /// Moves a message from its current status to `to`, keeping indexes and counts in step.
    pub(super) fn set_status(
        &mut self,
        id: u64,
        mut st: MsgState,
        to: Status,
    ) -> Result<(), StoreError> {
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
    pub(super) fn unindex(&mut self, id: u64, st: &MsgState) -> Result<(), StoreError> {
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

    pub(super) fn publish(&mut self, queue: &str, body: &[u8]) -> Result<u64, StoreError> {
        let id = self.take_id()?;
        let sealed = self.sealer.seal_bytes(&body_aad(id), body);
        self.body.insert(id, sealed.as_slice())?;
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

    pub(super) fn lease(
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
            let body = self
                .body
                .get(id)?
                .map(|v| open_body(self.sealer, id, v.value()));
            let body = match body {
                Some(Ok(body)) => body,
                Some(Err(e)) => {
                    // Nothing a consumer can do with it: park it where the operator sees it.
                    tracing::error!(id, queue, error = %e, "a queued message does not open with the configured keys; parking it: configure the key it was sealed with, then redrive");
                    metrics::counter!(names::STORE_UNOPENABLE).increment(1);
                    let to = Status::Dead {
                        reason: format!("does not open: {e}"),
                        at_ms: jiff::Timestamp::now().as_millisecond(),
                    };
                    self.set_status(id, st, to)?;
                    continue;
                }
                None => {
                    tracing::warn!(id, queue, "message without body; dropping it");
                    self.unindex(id, &st)?;
                    self.count(&st.queue, slot(&st.status), -1);
                    self.state.remove(id)?;
                    continue;
                }
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
    pub(super) fn leased(&self, id: u64, lease: u64) -> Result<Option<MsgState>, StoreError> {
        Ok(self
            .get_state(id)?
            .filter(|st| matches!(st.status, Status::Leased { lease: l, .. } if l == lease)))
    }

    pub(super) fn ack(&mut self, id: u64, lease: u64) -> Result<bool, StoreError> {
        let Some(st) = self.leased(id, lease)? else {
            return Ok(false);
        };
        self.unindex(id, &st)?;
        self.count(&st.queue, C_LEASED, -1);
        self.state.remove(id)?;
        self.body.remove(id)?;
        Ok(true)
    }

    pub(super) fn retry(
        &mut self,
        id: u64,
        lease: u64,
        due_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let Some(mut st) = self.leased(id, lease)? else {
            return Ok(false);
        };
        st.attempt = st.attempt.saturating_add(1);
        st.first_failure_ms.get_or_insert(now_ms);
        self.set_status(id, st, Status::Delayed { due_ms })?;
        Ok(true)
    }

    pub(super) fn dead_letter(
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
    pub(super) fn promote(
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

    pub(super) fn redrive(
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
                Some(body) => match open_body(self.sealer, id, body.value()) {
                    Ok(body) => select(&body, reason),
                    // Unopenable bodies stay parked, where the operator sees them.
                    Err(_) => false,
                },
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
    pub(super) fn finish(mut self) -> Result<(Vec<String>, Option<i64>), StoreError> {
        for (name, next) in std::mem::take(&mut self.next) {
            self.meta.insert(name, next)?;
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
