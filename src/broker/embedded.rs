//! Embedded broker: durable queues on the local store, the zero-setup default back end.
//!
//! It owns the delivery machinery around the queue tables of [`crate::store`]: one writer
//! thread that applies every change in group-committed batches, one timer task that sleeps
//! until the earliest due time (a retry delay or a lease expiry) and then promotes what is
//! due, and one task per [`Consumer`] that leases messages within its prefetch window and
//! waits on a per-queue [`Notify`] (never a polling loop) when its queue is empty.
//!
//! Each message is *ready*, *leased* (delivered; comes back with attempt + 1 when its lease
//! expires or the process dies), *delayed* (a retry waiting for its due time) or *dead*
//! (parked with a reason). Publishes, retries, dead-letters and redrives are on disk before
//! the caller hears back; acks and leases may be committed without fsync (see
//! [`Store::queue_apply`]), because losing them in a crash only causes a redelivery.
//!
//! It must not touch the database itself (no redb types here: every table access is a
//! `Store::queue_*` function), must not block async workers on disk I/O, and must not know
//! what a message means.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};

use super::{
    Broker, BrokerError, Consumer, DeadLetter, Delivery, Envelope, QueueDepth, RedriveFilter,
    now_ms,
};
use crate::store::{
    AppendOutcome, JournalRecord, QueueCounts, QueueOp, QueueOpResult, Store, StoreError,
    StoredDeadLetter,
};

/// Most queue changes applied in one transaction.
const MAX_BATCH: usize = 4096;
/// Commands waiting for the writer (callers wait when it is full: back-pressure).
const COMMAND_QUEUE: usize = 8192;
/// A batch of only acks and leases is committed without fsync, but at least this often a
/// commit is made durable anyway, so redeliveries after a crash stay few and redb can
/// reuse the pages freed by acks.
const DURABLE_AT_LEAST_EVERY: Duration = Duration::from_secs(1);
/// Pause after a store error before a consumer or the timer tries again.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// Options of the embedded broker.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Unsettled deliveries per consumer (at least 1).
    pub prefetch: u16,
    /// Visibility timeout: a delivery not settled within it is delivered again, with
    /// attempt + 1.
    pub lease: Duration,
    /// Poison backstop: a message whose redelivery (after a lost lease or a crash) would be
    /// attempt `delivery_limit + 1` is parked as dead instead.
    pub delivery_limit: u32,
}

impl EmbeddedOptions {
    /// The options `[broker]` configures.
    pub fn from_config(cfg: &crate::config::BrokerConfig) -> Self {
        EmbeddedOptions {
            prefetch: cfg.prefetch,
            lease: Duration::from_secs(cfg.lease_secs),
            delivery_limit: cfg.delivery_limit,
        }
    }
}

/// The embedded broker; cheap to clone. Call [`EmbeddedBroker::close`] to stop it and
/// release the store.
#[derive(Clone)]
pub struct EmbeddedBroker {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("opts", &self.shared.opts)
            .finish_non_exhaustive()
    }
}

struct Shared {
    cmds: mpsc::Sender<Cmd>,
    opts: EmbeddedOptions,
    wakers: Arc<Wakers>,
    /// Set by `close`: consumer tasks end.
    shutdown: watch::Sender<bool>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    timer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

type Reply<T> = oneshot::Sender<Result<T, BrokerError>>;

/// What the writer thread is asked to do.
enum Cmd {
    /// A change, batched with others into one transaction.
    Op(QueueOp, Reply<QueueOpResult>),
    /// From the timer: promote what is due (batched too).
    Tick(Reply<QueueOpResult>),
    /// Operator work, run on its own between batches.
    Admin(Admin),
    /// Commit what is pending durably, release the store and stop.
    Shutdown,
}

enum Admin {
    DeadLetters {
        queue: String,
        limit: usize,
        reply: Reply<Vec<StoredDeadLetter>>,
    },
    Redrive {
        queue: String,
        filter: RedriveFilter,
        reply: Reply<usize>,
    },
    Counts {
        queues: Vec<String>,
        reply: Reply<Vec<QueueCounts>>,
    },
    Ping(Reply<()>),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn store_err(e: StoreError) -> BrokerError {
    BrokerError::Store(e.to_string())
}

/// Sends a command to the writer and waits for its answer.
async fn request<T>(
    cmds: &mpsc::Sender<Cmd>,
    make: impl FnOnce(Reply<T>) -> Cmd,
) -> Result<T, BrokerError> {
    let (tx, rx) = oneshot::channel();
    cmds.send(make(tx)).await.map_err(|_| BrokerError::Closed)?;
    rx.await.map_err(|_| BrokerError::Closed)?
}

/// Per-queue wake-ups: the writer notifies after committing changes that made messages
/// ready; consumer tasks wait on them when their queue is empty.
#[derive(Default)]
struct Wakers(Mutex<HashMap<String, Arc<Notify>>>);

impl Wakers {
    fn get(&self, queue: &str) -> Arc<Notify> {
        lock(&self.0).entry(queue.to_string()).or_default().clone()
    }

    fn wake(&self, queue: &str) {
        if let Some(n) = lock(&self.0).get(queue) {
            n.notify_waiters();
        }
    }
}

impl EmbeddedBroker {
    /// Opens the broker on `store`: every message that was leased when the previous process
    /// stopped becomes ready again (attempt + 1, or dead past the delivery limit), then the
    /// writer thread and the timer start. Needs a Tokio runtime.
    pub async fn open(store: Store, opts: EmbeddedOptions) -> Result<Self, BrokerError> {
        let limit = opts.delivery_limit;
        let (store, recovered) = tokio::task::spawn_blocking(move || {
            let recovered = store.queue_recover(now_ms(), limit);
            (store, recovered)
        })
        .await
        .map_err(|e| BrokerError::Store(format!("broker recovery did not finish: {e}")))?;
        let recovered = recovered.map_err(store_err)?;
        if let Some(QueueOpResult::Promoted { ready, dead }) = recovered.results.first()
            && (*ready > 0 || *dead > 0)
        {
            tracing::info!(
                requeued = ready,
                parked = dead,
                "embedded broker: messages leased by the previous run are delivered again"
            );
        }

        let (cmds, rx) = mpsc::channel(COMMAND_QUEUE);
        let wakers = Arc::new(Wakers::default());
        let (due_tx, due_rx) = watch::channel(recovered.next_due_ms);
        let writer = Writer {
            store,
            rx,
            wakers: wakers.clone(),
            due: due_tx,
            armed: recovered.next_due_ms,
            delivery_limit: limit,
            last_durable: Instant::now(),
            dirty: false,
            ops: Vec::new(),
            replies: Vec::new(),
            ticked: false,
        };
        let thread = std::thread::Builder::new()
            .name("broker-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| BrokerError::Store(format!("cannot start the broker writer: {e}")))?;
        let timer = tokio::spawn(timer_loop(cmds.downgrade(), due_rx));
        let (shutdown, _) = watch::channel(false);
        Ok(EmbeddedBroker {
            shared: Arc::new(Shared {
                cmds,
                opts,
                wakers,
                shutdown,
                writer: Mutex::new(Some(thread)),
                timer: Mutex::new(Some(timer)),
            }),
        })
    }

    /// Stops the broker (every clone): consumers end, pending changes are committed
    /// durably, and the writer thread, which alone holds the store, exits. When this
    /// returns the broker holds no handle on the store, so the database can be reopened.
    /// Unsettled deliveries come back on the next open; settling them now fails with
    /// [`BrokerError::Closed`].
    pub async fn close(self) {
        self.shared.shutdown.send_replace(true);
        let timer = lock(&self.shared.timer).take();
        if let Some(timer) = timer {
            timer.abort();
            let _ = timer.await;
        }
        let _ = self.shared.cmds.send(Cmd::Shutdown).await;
        let writer = lock(&self.shared.writer).take();
        if let Some(writer) = writer {
            match tokio::task::spawn_blocking(move || writer.join()).await {
                Ok(Ok(())) => {}
                _ => tracing::error!("embedded broker writer thread panicked"),
            }
        }
    }

    /// Appends a journal record and, when it is new (and not quarantined), publishes `body`
    /// on `queue`, in one durable commit that the writer shares with every other change
    /// queued meanwhile (other callbacks, leases, acks, jobs). Answers once that commit is on
    /// disk: the journal's path when this is the back end, so an acknowledged callback is
    /// journaled and enqueued at once.
    pub async fn append_journal(
        &self,
        record: JournalRecord,
        queue: &str,
        body: Vec<u8>,
    ) -> Result<AppendOutcome, BrokerError> {
        let op = QueueOp::AppendJournal {
            record: Box::new(record),
            queue: queue.to_string(),
            body,
        };
        match request(&self.shared.cmds, |reply| Cmd::Op(op, reply)).await? {
            QueueOpResult::Appended(outcome) => Ok(outcome),
            other => Err(BrokerError::Store(format!(
                "unexpected answer to a journal append: {other:?}"
            ))),
        }
    }

    async fn admin<T>(&self, make: impl FnOnce(Reply<T>) -> Admin) -> Result<T, BrokerError> {
        request(&self.shared.cmds, |reply| Cmd::Admin(make(reply))).await
    }
}

/// The writer thread: the only user of the store in this back end.
struct Writer {
    store: Store,
    rx: mpsc::Receiver<Cmd>,
    wakers: Arc<Wakers>,
    /// The earliest due time the timer should wake at.
    due: watch::Sender<Option<i64>>,
    /// What the timer was last told.
    armed: Option<i64>,
    delivery_limit: u32,
    last_durable: Instant,
    /// Whether the last commit was not durable.
    dirty: bool,
    ops: Vec<QueueOp>,
    replies: Vec<Reply<QueueOpResult>>,
    ticked: bool,
}

impl Writer {
    fn run(mut self) {
        while let Some(cmd) = self.rx.blocking_recv() {
            // Everything that queued up while the previous commit was flushing joins this
            // batch: many publishers, consumers and settlements share one commit.
            let mut next = Some(cmd);
            while let Some(cmd) = next.take() {
                match cmd {
                    Cmd::Op(op, reply) => {
                        self.ops.push(op);
                        self.replies.push(reply);
                    }
                    Cmd::Tick(reply) => {
                        self.ops.push(QueueOp::Promote {
                            now_ms: now_ms(),
                            delivery_limit: self.delivery_limit,
                        });
                        self.replies.push(reply);
                        self.ticked = true;
                    }
                    Cmd::Admin(admin) => {
                        self.flush();
                        self.admin(admin);
                    }
                    Cmd::Shutdown => {
                        self.flush();
                        self.sync();
                        return;
                    }
                }
                if self.ops.len() < MAX_BATCH {
                    next = self.rx.try_recv().ok();
                }
            }
            self.flush();
        }
        // Every handle is gone.
        self.sync();
    }

    fn flush(&mut self) {
        if self.ops.is_empty() {
            return;
        }
        let force = self.last_durable.elapsed() >= DURABLE_AT_LEAST_EVERY;
        let started = Instant::now();
        let result = self.store.queue_apply(&self.ops, force);
        metrics::histogram!("wecom_bridge_broker_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("wecom_bridge_broker_batch_size").record(self.ops.len() as f64);
        let batch = self.ops.len();
        self.ops.clear();
        let ticked = std::mem::take(&mut self.ticked);
        match result {
            Ok(outcome) => {
                if outcome.durable {
                    self.last_durable = Instant::now();
                }
                self.dirty = !outcome.durable;
                // Answer only now: what the batch did is committed (durably where needed).
                for (reply, result) in self.replies.drain(..).zip(outcome.results) {
                    let _ = reply.send(Ok(result));
                }
                for queue in &outcome.woken {
                    self.wakers.wake(queue);
                }
                self.arm(outcome.next_due_ms, ticked);
            }
            Err(e) => {
                tracing::error!(error = %e, batch, "embedded broker commit failed; callers get an error");
                let err = store_err(e);
                for reply in self.replies.drain(..) {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }

    /// Tells the timer about the earliest due time when it is earlier than what the timer
    /// waits for, and always after a promotion (the timer then sleeps again).
    fn arm(&mut self, next: Option<i64>, ticked: bool) {
        let earlier = match (next, self.armed) {
            (Some(n), Some(a)) => n < a,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if ticked || earlier {
            self.armed = next;
            self.due.send_replace(next);
        }
    }

    fn sync(&mut self) {
        if self.dirty {
            match self.store.queue_sync() {
                Ok(()) => self.dirty = false,
                Err(e) => {
                    tracing::warn!(error = %e, "final broker commit failed; unsettled acks mean redeliveries")
                }
            }
        }
    }

    fn admin(&mut self, admin: Admin) {
        match admin {
            Admin::DeadLetters {
                queue,
                limit,
                reply,
            } => {
                let _ = reply.send(
                    self.store
                        .queue_dead_letters(&queue, limit)
                        .map_err(store_err),
                );
            }
            Admin::Redrive {
                queue,
                filter,
                reply,
            } => {
                let mut select = |body: &[u8], reason: &str| match &filter {
                    RedriveFilter::Ids(_) => {
                        let id = Envelope::from_bytes(body).map(|e| e.id).unwrap_or_default();
                        filter.matches(&id, reason)
                    }
                    _ => filter.matches("", reason),
                };
                let result = self.store.queue_redrive(&queue, &mut select);
                if let Ok(n) = &result {
                    self.last_durable = Instant::now();
                    self.dirty = false;
                    if *n > 0 {
                        self.wakers.wake(&queue);
                    }
                }
                let _ = reply.send(result.map_err(store_err));
            }
            Admin::Counts { queues, reply } => {
                let _ = reply.send(self.store.queue_counts(&queues).map_err(store_err));
            }
            Admin::Ping(reply) => {
                let _ = reply.send(self.store.ping().map_err(store_err));
            }
        }
    }
}

/// Stands in for a parked message whose stored bytes cannot be read, so it is still listed.
fn unreadable_envelope(id: u64) -> Envelope {
    Envelope {
        v: 1,
        id: format!("embedded_msg_{id}"),
        kind: "unreadable".into(),
        business_key: String::new(),
        app: String::new(),
        created_at_ms: 0,
        body: super::Body::Legacy(String::new()),
    }
}

/// Sleeps until the earliest due time, then asks the writer to promote what is due.
/// Holds only a weak handle, so it never keeps the writer alive.
async fn timer_loop(cmds: mpsc::WeakSender<Cmd>, mut due: watch::Receiver<Option<i64>>) {
    loop {
        let next = *due.borrow_and_update();
        let Some(at) = next else {
            if due.changed().await.is_err() {
                return;
            }
            continue;
        };
        let wait = u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0);
        if wait > 0 {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(wait)) => {}
                changed = due.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    continue;
                }
            }
        }
        let Some(tx) = cmds.upgrade() else {
            return;
        };
        let result = request(&tx, Cmd::Tick).await;
        drop(tx);
        match result {
            Ok(_) => {}
            Err(BrokerError::Closed) => return,
            Err(_) => tokio::time::sleep(ERROR_BACKOFF).await,
        }
    }
}

/// One consumer: leases up to its free prefetch slots per transaction and hands the
/// deliveries over; each delivery holds a slot until it is settled or dropped.
struct ConsumerTask {
    queue: String,
    cmds: mpsc::Sender<Cmd>,
    notify: Arc<Notify>,
    slots: Arc<Semaphore>,
    lease_ms: i64,
    tx: mpsc::Sender<Result<EmbeddedDelivery, BrokerError>>,
    shutdown: watch::Receiver<bool>,
}

impl ConsumerTask {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        loop {
            let first = tokio::select! {
                biased;
                _ = &mut stop => return,
                _ = self.shutdown.wait_for(|closed| *closed) => return,
                slot = self.slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => return,
                },
            };
            let mut slots = vec![first];
            while let Ok(slot) = self.slots.clone().try_acquire_owned() {
                slots.push(slot);
            }
            // Register for wake-ups before looking, so a publish committed after our lease
            // transaction cannot be missed.
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let want = slots.len();
            let until_ms = now_ms().saturating_add(self.lease_ms);
            let op = QueueOp::Lease {
                queue: self.queue.clone(),
                max: want,
                until_ms,
            };
            match request(&self.cmds, |reply| Cmd::Op(op, reply)).await {
                Ok(QueueOpResult::Leased(messages)) => {
                    let got = messages.len();
                    let mut slots = slots.into_iter();
                    for msg in messages {
                        let Some(slot) = slots.next() else { break };
                        match Envelope::from_bytes(&msg.body) {
                            Ok(envelope) => {
                                let delivery = EmbeddedDelivery {
                                    envelope,
                                    attempt: msg.attempt,
                                    id: msg.id,
                                    lease: msg.lease,
                                    cmds: self.cmds.clone(),
                                    _slot: slot,
                                };
                                // Never waits: the channel holds `prefetch` and every
                                // delivery in it holds one of the `prefetch` slots.
                                if self.tx.send(Ok(delivery)).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => self.park_unreadable(msg.id, msg.lease, e).await,
                        }
                    }
                    drop(slots);
                    if got < want {
                        tokio::select! {
                            biased;
                            _ = &mut stop => return,
                            _ = self.shutdown.wait_for(|closed| *closed) => return,
                            () = &mut notified => {}
                        }
                    }
                }
                Ok(other) => {
                    tracing::error!(
                        ?other,
                        "embedded broker answered a lease with something else"
                    );
                    return;
                }
                Err(BrokerError::Closed) => return,
                Err(e) => {
                    let _ = self.tx.try_send(Err(e));
                    tokio::select! {
                        biased;
                        _ = &mut stop => return,
                        _ = self.shutdown.wait_for(|closed| *closed) => return,
                        () = tokio::time::sleep(ERROR_BACKOFF) => {}
                    }
                }
            }
        }
    }

    /// A body that is not an envelope this build reads would fail every consumer: park it.
    async fn park_unreadable(&self, id: u64, lease: u64, e: BrokerError) {
        tracing::warn!(queue = %self.queue, id, error = %e, "parking an unreadable message");
        let op = QueueOp::DeadLetter {
            id,
            lease,
            reason: e.to_string(),
            now_ms: now_ms(),
        };
        if let Err(e) = request(&self.cmds, |reply| Cmd::Op(op, reply)).await {
            tracing::warn!(queue = %self.queue, id, error = %e, "could not park an unreadable message; it comes back after its lease");
        }
    }
}

/// A message delivered by the embedded broker. Settle it once; dropping it unsettled frees
/// its prefetch slot at once, and the message is delivered again when its lease expires.
pub struct EmbeddedDelivery {
    envelope: Envelope,
    attempt: u32,
    id: u64,
    lease: u64,
    cmds: mpsc::Sender<Cmd>,
    _slot: OwnedSemaphorePermit,
}

impl std::fmt::Debug for EmbeddedDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedDelivery")
            .field("id", &self.envelope.id)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl EmbeddedDelivery {
    /// Due again after `delay`; `counts`: a failed attempt (attempt + 1) or only a wait.
    async fn later(self, delay: Duration, counts: bool) -> Result<(), BrokerError> {
        let now = now_ms();
        // +1 ms: due times are whole milliseconds; never come back early.
        let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        let op = QueueOp::Retry {
            id: self.id,
            lease: self.lease,
            due_ms: now.saturating_add(delay_ms).saturating_add(1),
            now_ms: now,
            counts,
        };
        self.settle(op).await
    }

    /// Applies a settlement; the prefetch slot is released (with `self`) only after it is
    /// committed. A settlement of a lease that already expired changes nothing: the message
    /// was, or will be, delivered again.
    async fn settle(self, op: QueueOp) -> Result<(), BrokerError> {
        let result = request(&self.cmds, |reply| Cmd::Op(op, reply)).await?;
        if let QueueOpResult::Settled { applied: false } = result {
            tracing::debug!(
                id = %self.envelope.id,
                attempt = self.attempt,
                "settled after the lease expired; the message is delivered again"
            );
        }
        Ok(())
    }
}

impl Delivery for EmbeddedDelivery {
    fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    fn attempt(&self) -> u32 {
        self.attempt
    }

    async fn ack(self) -> Result<(), BrokerError> {
        let op = QueueOp::Ack {
            id: self.id,
            lease: self.lease,
        };
        self.settle(op).await
    }

    async fn retry_after(self, delay: Duration) -> Result<(), BrokerError> {
        self.later(delay, true).await
    }

    async fn defer(self, delay: Duration) -> Result<(), BrokerError> {
        self.later(delay, false).await
    }

    async fn dead_letter(self, reason: &str) -> Result<(), BrokerError> {
        let op = QueueOp::DeadLetter {
            id: self.id,
            lease: self.lease,
            reason: reason.to_string(),
            now_ms: now_ms(),
        };
        self.settle(op).await
    }
}

impl Broker for EmbeddedBroker {
    type Delivery = EmbeddedDelivery;

    async fn publish(&self, queue: &str, envelope: &Envelope) -> Result<(), BrokerError> {
        let op = QueueOp::Publish {
            queue: queue.to_string(),
            body: envelope.to_bytes(),
        };
        match request(&self.shared.cmds, |reply| Cmd::Op(op, reply)).await? {
            QueueOpResult::Published { .. } => Ok(()),
            other => Err(BrokerError::Store(format!(
                "unexpected answer to a publish: {other:?}"
            ))),
        }
    }

    async fn consume(&self, queue: &str) -> Result<Consumer<EmbeddedDelivery>, BrokerError> {
        if *self.shared.shutdown.borrow() || self.shared.cmds.is_closed() {
            return Err(BrokerError::Closed);
        }
        let prefetch = usize::from(self.shared.opts.prefetch.max(1));
        let (tx, rx) = mpsc::channel(prefetch);
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = ConsumerTask {
            queue: queue.to_string(),
            cmds: self.shared.cmds.clone(),
            notify: self.shared.wakers.get(queue),
            slots: Arc::new(Semaphore::new(prefetch)),
            lease_ms: i64::try_from(self.shared.opts.lease.as_millis()).unwrap_or(i64::MAX),
            tx,
            shutdown: self.shared.shutdown.subscribe(),
        };
        tokio::spawn(task.run(stop_rx));
        Ok(Consumer::new(rx, stop_tx))
    }

    async fn dead_letters(
        &self,
        queue: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BrokerError> {
        let queue = queue.to_string();
        let stored = self
            .admin(|reply| Admin::DeadLetters {
                queue: queue.clone(),
                limit,
                reply,
            })
            .await?;
        Ok(stored
            .into_iter()
            .map(|d| {
                // A body that does not open or decode is still listed (never hidden), with
                // what is wrong in its reason.
                let opened = match &d.unreadable {
                    Some(why) => Err(why.clone()),
                    None => Envelope::from_bytes(&d.body).map_err(|e| e.to_string()),
                };
                let (envelope, reason) = match opened {
                    Ok(envelope) => (envelope, d.reason),
                    Err(why) => (
                        unreadable_envelope(d.id),
                        format!("{}; stored message unreadable: {why}", d.reason),
                    ),
                };
                DeadLetter {
                    queue: queue.clone(),
                    envelope,
                    reason,
                    attempts: d.attempts,
                    first_failure_ms: d.first_failure_ms,
                    last_failure_ms: d.last_failure_ms,
                }
            })
            .collect())
    }

    async fn redrive(&self, queue: &str, filter: &RedriveFilter) -> Result<usize, BrokerError> {
        let (queue, filter) = (queue.to_string(), filter.clone());
        self.admin(|reply| Admin::Redrive {
            queue,
            filter,
            reply,
        })
        .await
    }

    async fn depths(&self, queues: &[String]) -> Result<Vec<QueueDepth>, BrokerError> {
        let counts = self
            .admin(|reply| Admin::Counts {
                queues: queues.to_vec(),
                reply,
            })
            .await?;
        Ok(queues
            .iter()
            .zip(counts)
            .map(|(queue, c)| QueueDepth {
                queue: queue.clone(),
                ready: c.ready,
                unacked: c.leased,
                delayed: c.delayed,
                dead: c.dead,
            })
            .collect())
    }

    async fn ready(&self) -> Result<(), BrokerError> {
        self.admin(Admin::Ping).await
    }
}
