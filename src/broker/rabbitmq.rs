//! RabbitMQ back end of the broker contract, through lapin (AMQP 0-9-1).
//!
//! What it owns:
//! - the topology under one name prefix `p`, declared idempotently (at connect for the
//!   configured queues, on first use for any other queue, again after every reconnection):
//!   a durable direct work exchange `{p}.work` and dead exchange `{p}.dead`; per logical queue
//!   `q` a quorum work queue `{p}.{q}` (bound with key `q`, `x-delivery-limit` as the poison
//!   backstop, dead-lettering at-least-once to `{p}.dead` with key `q`), a quorum parking queue
//!   `{p}.{q}.dead` (bound to `{p}.dead` with key `q`, no TTL) and, per retry tier `t`, a quorum
//!   delay queue `{p}.{q}.delay.{t}s` whose queue TTL dead-letters (at-least-once) back to
//!   `{p}.work` with key `q`;
//! - the connection: lapin auto-recovery, plus a supervisor task that rebuilds the connection
//!   (with exponential back-off, forever) when lapin's recovery gives up or stays stuck, and
//!   re-declares the topology after every reconnection;
//! - settling: a retry or a parked copy is published and *confirmed* before the original is
//!   acked; the attempt count travels in the `wb-attempt` header (never an `x-` header), plus
//!   the redeliveries RabbitMQ reports (`x-delivery-count`, or the `redelivered` flag).
//!
//! What it must not do: interpret messages (stages decide; it only carries and settles); use
//! per-message expiry (a long delay at the head of one queue would block shorter ones behind
//! it: every delay tier has its own queue); need the management API; block a caller forever
//! when RabbitMQ is gone (every network operation is bounded and fails with
//! [`BrokerError::Unavailable`]); ack anything before its replacement is durable.
//!
//! Depths: `ready` (work queue), `delayed` (sum of the delay queues) and `dead` (parking
//! queue) come from passive declares, i.e. RabbitMQ's count of *ready* messages. `unacked` is
//! not visible over AMQP without the management API: it reports the deliveries handed out by
//! *this process* and not yet settled (other processes' unacked messages are not counted).
//!
//! Known limits: a parked message that is listed or skipped by a redrive is requeued, which
//! raises its `x-delivery-count`; the parking queue has no delivery limit on RabbitMQ 3.x (on
//! 4.x, whose quorum queues default to a limit of 20, set a policy on `*.dead` queues).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt;
use lapin::message::Delivery as LapinDelivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{
    Acker, BasicProperties, Channel, Confirmation, Connection, ConnectionProperties,
    ConnectionState, ErrorKind, ExchangeKind,
};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use super::{
    Broker, BrokerError, Consumer, DeadLetter, Delivery, Envelope, QueueDepth, RedriveFilter,
    now_ms, retry_tier,
};

/// Header: the attempt number the message had when it was published (1 for a new message).
pub const HEADER_ATTEMPT: &str = "wb-attempt";
/// Header on parked messages: why it was parked.
pub const HEADER_REASON: &str = "wb-reason";
/// Header on retried and parked messages: first failure (Unix ms).
pub const HEADER_FIRST_FAILURE: &str = "wb-first-failure-ms";
/// Header on retried and parked messages: last failure (Unix ms).
pub const HEADER_LAST_FAILURE: &str = "wb-last-failure-ms";
/// Header on parked messages: the logical queue it was parked from.
pub const HEADER_QUEUE: &str = "wb-queue";

/// How long a publish may wait for its confirm before it reports `Unavailable`.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an ack may take to be handed to the connection.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on one administrative operation (declare, get, delete, ...).
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on the first connection in [`RabbitBroker::connect`].
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on one rebuild attempt of the supervisor.
const REBUILD_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the supervisor looks at the connection.
const SUPERVISE_TICK: Duration = Duration::from_millis(250);
/// After this long without a connection, lapin's own recovery is considered given up and the
/// supervisor rebuilds. lapin's reconnect budget ([`lapin_backoff`]) is about 20 s, after
/// which its IO thread ends while the connection still reads "connecting".
const STUCK_AFTER: Duration = Duration::from_secs(25);
/// How long an abandoned connection is watched in case its recovery comes back after all.
const GRAVEYARD_WATCH: Duration = Duration::from_secs(300);
/// Publishing channels per connection (publishes are spread over them round-robin; each
/// pipelines any number of unconfirmed messages).
const PUBLISH_CHANNELS: usize = 4;

/// lapin's own reconnection schedule: 0.2 s doubling to 2 s, 12 tries (about 19 s of TCP
/// attempts); after that the supervisor takes over with its own schedule, forever.
fn lapin_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(12)
}

/// The supervisor's rebuild schedule: 0.5 s doubling to 30 s, with jitter, never giving up.
fn rebuild_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(30))
        .with_jitter()
        .without_max_times()
}

/// A consumer's schedule for re-creating itself: 0.2 s doubling to 5 s, forever.
fn consumer_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .without_max_times()
}

/// Options of the RabbitMQ broker.
#[derive(Debug, Clone)]
pub struct RabbitOptions {
    /// Prefix of every exchange and queue name (e.g. `wecom-bridge`).
    pub prefix: String,
    /// Unsettled deliveries per consumer (`basic.qos`).
    pub prefetch: u16,
    /// Retry delay tiers (one delay queue each); sorted and deduplicated on connect.
    pub retry_tiers: Vec<Duration>,
    /// Deliveries after which RabbitMQ parks a message by itself (`x-delivery-limit`): the
    /// backstop for messages that crash their consumer.
    pub delivery_limit: u32,
    /// Logical queues whose topology is declared at connect (others: on first use).
    pub queues: Vec<String>,
}

/// The RabbitMQ broker. Cheap to clone: clones share the connection, the supervisor and the
/// cache of declared queues.
#[derive(Clone)]
pub struct RabbitBroker {
    inner: Arc<Inner>,
}

impl fmt::Debug for RabbitBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitBroker")
            .field("prefix", &self.inner.names.prefix)
            .field("connected", &self.inner.is_connected())
            .finish()
    }
}

impl RabbitBroker {
    /// Connects (with lapin auto-recovery), declares the exchanges and the topology of
    /// `opts.queues`, and starts the connection supervisor. Fails with
    /// [`BrokerError::Unavailable`] if RabbitMQ cannot be reached within 10 s, or
    /// [`BrokerError::Refused`] if it refuses the topology or the credentials.
    pub async fn connect(url: &str, opts: RabbitOptions) -> Result<Self, BrokerError> {
        let mut tiers = opts.retry_tiers.clone();
        tiers.sort();
        tiers.dedup();
        if tiers.is_empty() {
            warn!("no retry tiers configured for RabbitMQ; using a single 5 s tier");
            tiers.push(Duration::from_secs(5));
        }
        let link = match tokio::time::timeout(CONNECT_TIMEOUT, Link::open(url, &opts.prefix)).await
        {
            Ok(Ok(link)) => Arc::new(link),
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(BrokerError::Unavailable(format!(
                    "no connection to RabbitMQ within {CONNECT_TIMEOUT:?}"
                )));
            }
        };
        let inner = Arc::new(Inner {
            url: url.to_string(),
            names: Names {
                prefix: opts.prefix.clone(),
            },
            prefetch: opts.prefetch.max(1),
            tiers,
            delivery_limit: opts.delivery_limit,
            link: watch::Sender::new(Some(link.clone())),
            shutdown: watch::Sender::new(false),
            declared: RwLock::new(HashSet::new()),
            declare_lock: tokio::sync::Mutex::new(()),
            held: Mutex::new(HashMap::new()),
            graveyard: Mutex::new(Vec::new()),
            consumer_seq: AtomicU64::new(0),
        });
        let mut queues = opts.queues.clone();
        queues.sort();
        queues.dedup();
        if let Err(e) = op(inner.declare_on(&link, &queues)).await {
            close_connection(&link.conn).await;
            return Err(e);
        }
        write(&inner.declared).extend(queues);
        tokio::spawn(supervise(
            Arc::downgrade(&inner),
            inner.shutdown.subscribe(),
        ));
        info!(prefix = %inner.names.prefix, "connected to RabbitMQ");
        Ok(RabbitBroker { inner })
    }

    /// Stops the supervisor and the consumers (their unsettled deliveries go back to their
    /// queues) and closes the connection. Other clones stop working too
    /// ([`BrokerError::Closed`]).
    pub async fn close(self) {
        self.inner.shutdown.send_replace(true);
        if let Some(link) = self.inner.link.send_replace(None) {
            close_connection(&link.conn).await;
        }
        let zombies: Vec<(Instant, Arc<Link>)> = lock(&self.inner.graveyard).drain(..).collect();
        for (_, link) in zombies {
            close_connection(&link.conn).await;
        }
        info!(prefix = %self.inner.names.prefix, "RabbitMQ broker closed");
    }

    /// Whether the connection is up now (false while lapin recovers or the supervisor
    /// rebuilds, and after [`close`](Self::close)).
    pub fn is_connected(&self) -> bool {
        self.inner.is_connected()
    }

    /// Deletes the work, delay and parking queues of these logical queues, whatever they hold
    /// (test and operator cleanup). The exchanges stay.
    pub async fn delete_queues(&self, queues: &[String]) -> Result<(), BrokerError> {
        let link = self.inner.live_link()?;
        let mut ch = op(open_channel(&link.conn)).await?;
        let mut first_error = None;
        for q in queues {
            write(&self.inner.declared).remove(q);
            for name in self.inner.names.all_queues(q, &self.inner.tiers) {
                let res = op(async {
                    ch.queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                        .await
                        .map_err(|e| lapin_error(&format!("deleting queue {name}"), &e))
                })
                .await;
                if let Err(e) = res {
                    debug!(queue = %name, error = %e, "queue delete failed");
                    first_error.get_or_insert(e);
                    ch = op(open_channel(&link.conn)).await?;
                }
            }
        }
        close_channel(&ch).await;
        first_error.map_or(Ok(()), Err)
    }
}

/// A message delivered by RabbitMQ, to be settled once. Dropping it unsettled returns it to
/// its queue at once (a `nack` with requeue), which counts as a redelivery.
pub struct RabbitDelivery {
    inner: Arc<Inner>,
    queue: String,
    envelope: Envelope,
    body: Vec<u8>,
    attempt: u32,
    first_failure_ms: Option<i64>,
    acker: Option<Acker>,
    held: Arc<AtomicU64>,
}

impl fmt::Debug for RabbitDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitDelivery")
            .field("queue", &self.queue)
            .field("id", &self.envelope.id)
            .field("attempt", &self.attempt)
            .finish()
    }
}

impl Drop for RabbitDelivery {
    fn drop(&mut self) {
        self.held.fetch_sub(1, Ordering::Relaxed);
        if let Some(acker) = self.acker.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                let requeue = BasicNackOptions {
                    multiple: false,
                    requeue: true,
                };
                let _ = tokio::time::timeout(SETTLE_TIMEOUT, acker.nack(requeue)).await;
            });
        }
    }
}

impl RabbitDelivery {
    async fn settle_ack(&mut self) -> Result<(), BrokerError> {
        let Some(acker) = self.acker.take() else {
            return Err(BrokerError::Closed);
        };
        match tokio::time::timeout(SETTLE_TIMEOUT, acker.ack(BasicAckOptions::default())).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(BrokerError::Unavailable(
                "the channel of this delivery was lost before the ack; RabbitMQ will deliver it again"
                    .into(),
            )),
            Ok(Err(e)) => Err(lapin_error("acking a delivery", &e)),
            Err(_) => Err(BrokerError::Unavailable(format!(
                "the ack could not be sent within {SETTLE_TIMEOUT:?}"
            ))),
        }
    }
}

impl Delivery for RabbitDelivery {
    fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    fn attempt(&self) -> u32 {
        self.attempt
    }

    async fn ack(mut self) -> Result<(), BrokerError> {
        self.settle_ack().await
    }

    async fn retry_after(mut self, delay: Duration) -> Result<(), BrokerError> {
        let tier = retry_tier(&self.inner.tiers, delay);
        let target = self.inner.names.delay_queue(&self.queue, tier);
        let now = now_ms();
        let mut headers = FieldTable::default();
        put_int(
            &mut headers,
            HEADER_ATTEMPT,
            i64::from(self.attempt.saturating_add(1)),
        );
        put_int(
            &mut headers,
            HEADER_FIRST_FAILURE,
            self.first_failure_ms.unwrap_or(now),
        );
        put_int(&mut headers, HEADER_LAST_FAILURE, now);
        let props = properties(&self.envelope.id, headers);
        // on failure `self` is dropped unsettled: the original goes back to its queue
        self.inner
            .publish_to_queue(&self.queue, &target, &self.body, props)
            .await?;
        self.settle_ack().await
    }

    async fn dead_letter(mut self, reason: &str) -> Result<(), BrokerError> {
        let target = self.inner.names.dead_queue(&self.queue);
        let now = now_ms();
        let mut headers = FieldTable::default();
        put_int(&mut headers, HEADER_ATTEMPT, i64::from(self.attempt));
        put_str(&mut headers, HEADER_REASON, reason);
        put_int(
            &mut headers,
            HEADER_FIRST_FAILURE,
            self.first_failure_ms.unwrap_or(now),
        );
        put_int(&mut headers, HEADER_LAST_FAILURE, now);
        put_str(&mut headers, HEADER_QUEUE, &self.queue);
        let props = properties(&self.envelope.id, headers);
        self.inner
            .publish_to_queue(&self.queue, &target, &self.body, props)
            .await?;
        self.settle_ack().await
    }
}

impl Broker for RabbitBroker {
    type Delivery = RabbitDelivery;

    async fn publish(&self, queue: &str, envelope: &Envelope) -> Result<(), BrokerError> {
        let mut headers = FieldTable::default();
        put_int(&mut headers, HEADER_ATTEMPT, 1);
        let props = properties(&envelope.id, headers);
        self.inner
            .publish_to_work(queue, &envelope.to_bytes(), props)
            .await
    }

    async fn consume(&self, queue: &str) -> Result<Consumer<RabbitDelivery>, BrokerError> {
        self.inner.ensure_declared(queue).await?;
        let link = self.inner.live_link()?;
        let tag = self.inner.consumer_tag(queue);
        let (channel, stream) = op(open_consumer(
            &link,
            &self.inner.names.work_queue(queue),
            &tag,
            self.inner.prefetch,
        ))
        .await?;
        let (tx, rx) = mpsc::channel(usize::from(self.inner.prefetch));
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = ConsumerTask {
            inner: self.inner.clone(),
            queue: queue.to_string(),
            tag,
            held: self.inner.held(queue),
            tx,
            stop: stop_rx,
            links: self.inner.link.subscribe(),
            shutdown: self.inner.shutdown.subscribe(),
        };
        tokio::spawn(task.run(link, channel, stream));
        Ok(Consumer::new(rx, stop_tx))
    }

    async fn dead_letters(
        &self,
        queue: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BrokerError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let link = self.inner.live_link()?;
        let name = self.inner.names.dead_queue(queue);
        let ch = op(open_channel(&link.conn)).await?;
        let parked = match op(passive_count(&ch, &name)).await {
            Ok(Some(n)) => n,
            Ok(None) => return Ok(Vec::new()),
            Err(e) => {
                close_channel(&ch).await;
                return Err(e);
            }
        };
        let mut out = Vec::new();
        let mut taken = Vec::new();
        let mut result = Ok(());
        while out.len() < limit {
            let got = op(async {
                ch.basic_get(name.as_str().into(), BasicGetOptions { no_ack: false })
                    .await
                    .map_err(|e| lapin_error("reading the parking queue", &e))
            })
            .await;
            match got {
                Ok(Some(msg)) => {
                    taken.push(msg.delivery.delivery_tag);
                    out.push(self.inner.parse_dead(queue, &msg.delivery));
                }
                Ok(None) => break,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        give_back(&link, ch, &name, &taken, parked).await;
        // queue order is parking order, except that messages given back by a listing or a
        // partial redrive can come back in another order: sort by parking time
        out.sort_by_key(|d| d.last_failure_ms);
        result.map(|()| out)
    }

    async fn redrive(&self, queue: &str, filter: &RedriveFilter) -> Result<usize, BrokerError> {
        let link = self.inner.live_link()?;
        let name = self.inner.names.dead_queue(queue);
        let ch = op(open_channel(&link.conn)).await?;
        // only what is parked now: messages parked while we work wait for the next redrive
        let parked = match op(passive_count(&ch, &name)).await {
            Ok(Some(n)) => n,
            Ok(None) => return Ok(0),
            Err(e) => {
                close_channel(&ch).await;
                return Err(e);
            }
        };
        let mut moved = 0;
        let mut skipped = Vec::new();
        let mut result = Ok(());
        for _ in 0..parked {
            let got = op(async {
                ch.basic_get(name.as_str().into(), BasicGetOptions { no_ack: false })
                    .await
                    .map_err(|e| lapin_error("reading the parking queue", &e))
            })
            .await;
            let msg = match got {
                Ok(Some(msg)) => msg,
                Ok(None) => break,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            let tag = msg.delivery.delivery_tag;
            let dl = self.inner.parse_dead(queue, &msg.delivery);
            if !filter.matches(&dl.envelope.id, &dl.reason) {
                skipped.push(tag);
                continue;
            }
            let mut headers = FieldTable::default();
            put_int(&mut headers, HEADER_ATTEMPT, 1);
            let props = properties(&dl.envelope.id, headers);
            if let Err(e) = self
                .inner
                .publish_to_work(queue, &msg.delivery.data, props)
                .await
            {
                result = Err(e);
                break;
            }
            let acked = op(async {
                ch.basic_ack(tag, BasicAckOptions::default())
                    .await
                    .map_err(|e| lapin_error("acking a redriven message", &e))
            })
            .await;
            if let Err(e) = acked {
                // it was republished: the parked copy comes back as a duplicate, which
                // at-least-once allows
                result = Err(e);
                break;
            }
            moved += 1;
        }
        give_back(
            &link,
            ch,
            &name,
            &skipped,
            parked.saturating_sub(moved as u64),
        )
        .await;
        if moved > 0 {
            info!(queue, moved, "redrove parked messages");
        }
        match result {
            Ok(()) => Ok(moved),
            Err(e) if moved == 0 => Err(e),
            Err(e) => {
                warn!(queue, moved, error = %e, "redrive stopped early");
                Ok(moved)
            }
        }
    }

    async fn depths(&self, queues: &[String]) -> Result<Vec<QueueDepth>, BrokerError> {
        let link = self.inner.live_link()?;
        let mut ch = op(open_channel(&link.conn)).await?;
        let mut out = Vec::with_capacity(queues.len());
        for q in queues {
            let names = &self.inner.names;
            let (mut ready, mut delayed, mut dead) = (0, 0, 0);
            // the topology of a queue is declared as a whole: no work queue, nothing to count
            // (and no more passive looks at missing queues, each of which costs a channel)
            if let Some(n) = count(&link, &mut ch, &names.work_queue(q)).await? {
                ready = n;
                for t in &self.inner.tiers {
                    delayed += count(&link, &mut ch, &names.delay_queue(q, *t))
                        .await?
                        .unwrap_or(0);
                }
                dead = count(&link, &mut ch, &names.dead_queue(q))
                    .await?
                    .unwrap_or(0);
            }
            let unacked = self.inner.held(q).load(Ordering::Relaxed);
            out.push(QueueDepth {
                queue: q.clone(),
                ready,
                unacked,
                delayed,
                dead,
            });
        }
        close_channel(&ch).await;
        Ok(out)
    }

    async fn ready(&self) -> Result<(), BrokerError> {
        if self.inner.is_connected() {
            return Ok(());
        }
        self.inner.live_link().map(|_| ())
    }
}

// ---------------------------------------------------------------------------------------
// shared state

/// Exchange and queue names under the prefix.
struct Names {
    prefix: String,
}

impl Names {
    fn work_exchange(&self) -> String {
        format!("{}.work", self.prefix)
    }
    fn dead_exchange(&self) -> String {
        format!("{}.dead", self.prefix)
    }
    fn work_queue(&self, q: &str) -> String {
        format!("{}.{q}", self.prefix)
    }
    fn dead_queue(&self, q: &str) -> String {
        format!("{}.{q}.dead", self.prefix)
    }
    fn delay_queue(&self, q: &str, tier: Duration) -> String {
        let label = if tier.as_millis().is_multiple_of(1000) {
            format!("{}s", tier.as_secs())
        } else {
            format!("{}ms", tier.as_millis())
        };
        format!("{}.{q}.delay.{label}", self.prefix)
    }
    fn all_queues(&self, q: &str, tiers: &[Duration]) -> Vec<String> {
        let mut v = vec![self.work_queue(q), self.dead_queue(q)];
        v.extend(tiers.iter().map(|t| self.delay_queue(q, *t)));
        v
    }
}

struct Inner {
    url: String,
    names: Names,
    prefetch: u16,
    tiers: Vec<Duration>,
    delivery_limit: u32,
    /// The current connection; `None` while the supervisor rebuilds it (or after close).
    link: watch::Sender<Option<Arc<Link>>>,
    shutdown: watch::Sender<bool>,
    /// Logical queues whose topology is declared on the current broker.
    declared: RwLock<HashSet<String>>,
    declare_lock: tokio::sync::Mutex<()>,
    /// Deliveries handed out by this process and not settled, per logical queue.
    held: Mutex<HashMap<String, Arc<AtomicU64>>>,
    /// Abandoned connections whose lapin recovery might still come back: closed if it does.
    graveyard: Mutex<Vec<(Instant, Arc<Link>)>>,
    consumer_seq: AtomicU64,
}

impl Inner {
    fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    fn is_connected(&self) -> bool {
        !self.is_shut_down() && self.link.borrow().as_ref().is_some_and(|l| l.connected())
    }

    /// The current connection if it is up; `Unavailable` at once otherwise.
    fn live_link(&self) -> Result<Arc<Link>, BrokerError> {
        if self.is_shut_down() {
            return Err(BrokerError::Closed);
        }
        match &*self.link.borrow() {
            Some(l) if l.connected() => Ok(l.clone()),
            Some(_) => Err(BrokerError::Unavailable(
                "the connection to RabbitMQ was lost and is being recovered".into(),
            )),
            None => Err(BrokerError::Unavailable(
                "not connected to RabbitMQ; reconnecting".into(),
            )),
        }
    }

    fn held(&self, queue: &str) -> Arc<AtomicU64> {
        lock(&self.held)
            .entry(queue.to_string())
            .or_default()
            .clone()
    }

    fn consumer_tag(&self, queue: &str) -> String {
        let n = self.consumer_seq.fetch_add(1, Ordering::Relaxed);
        format!("wb.{queue}.{}.{n}", std::process::id())
    }

    /// Declares the topology of `q` unless this connection already did.
    async fn ensure_declared(&self, q: &str) -> Result<(), BrokerError> {
        if q.is_empty() {
            return Err(BrokerError::Refused("a queue name cannot be empty".into()));
        }
        if read(&self.declared).contains(q) {
            return Ok(());
        }
        let _guard = self.declare_lock.lock().await;
        if read(&self.declared).contains(q) {
            return Ok(());
        }
        let link = self.live_link()?;
        op(self.declare_on(&link, &[q.to_string()])).await?;
        write(&self.declared).insert(q.to_string());
        Ok(())
    }

    /// Declares the exchanges and the topology of `queues` on `link` (idempotent).
    async fn declare_on(&self, link: &Link, queues: &[String]) -> Result<(), BrokerError> {
        let mut ch = open_channel(&link.conn).await?;
        let res = self.declare_with(link, &mut ch, queues).await;
        close_channel(&ch).await;
        res
    }

    async fn declare_with(
        &self,
        link: &Link,
        ch: &mut Channel,
        queues: &[String],
    ) -> Result<(), BrokerError> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        for ex in [self.names.work_exchange(), self.names.dead_exchange()] {
            ch.exchange_declare(
                ex.as_str().into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(|e| lapin_error(&format!("declaring exchange {ex}"), &e))?;
        }
        for q in queues {
            let work = self.names.work_queue(q);
            let mut args = quorum_args();
            args.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongLongInt(i64::from(self.delivery_limit)),
            );
            args.insert(
                "x-dead-letter-exchange".into(),
                long_str(&self.names.dead_exchange()),
            );
            args.insert("x-dead-letter-routing-key".into(), long_str(q));
            args.insert("x-dead-letter-strategy".into(), long_str("at-least-once"));
            args.insert("x-overflow".into(), long_str("reject-publish"));
            declare_queue(link, ch, &work, args).await?;
            bind(ch, &work, &self.names.work_exchange(), q).await?;

            let dead = self.names.dead_queue(q);
            declare_queue(link, ch, &dead, quorum_args()).await?;
            bind(ch, &dead, &self.names.dead_exchange(), q).await?;

            for tier in &self.tiers {
                let delay = self.names.delay_queue(q, *tier);
                let ttl = i64::try_from(tier.as_millis()).unwrap_or(i64::MAX);
                let mut args = quorum_args();
                args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
                args.insert(
                    "x-dead-letter-exchange".into(),
                    long_str(&self.names.work_exchange()),
                );
                args.insert("x-dead-letter-routing-key".into(), long_str(q));
                args.insert("x-dead-letter-strategy".into(), long_str("at-least-once"));
                args.insert("x-overflow".into(), long_str("reject-publish"));
                declare_queue(link, ch, &delay, args).await?;
            }
        }
        Ok(())
    }

    /// Publishes to the work queue of `q` (through the work exchange).
    async fn publish_to_work(
        &self,
        q: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<(), BrokerError> {
        let exchange = self.names.work_exchange();
        self.publish_declared(q, &exchange, q, body, props).await
    }

    /// Publishes straight to one of the queues of `q` (delay or parking queue).
    async fn publish_to_queue(
        &self,
        q: &str,
        target: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<(), BrokerError> {
        self.publish_declared(q, "", target, body, props).await
    }

    /// Publishes after making sure the topology of `q` exists; if RabbitMQ returns the message
    /// as unroutable (someone deleted a queue behind our back), declares again and retries once.
    async fn publish_declared(
        &self,
        q: &str,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<(), BrokerError> {
        self.ensure_declared(q).await?;
        match self
            .publish_raw(exchange, routing_key, body, props.clone())
            .await
        {
            Err(PublishError::Unroutable(why)) => {
                warn!(queue = q, %why, "message returned as unroutable; declaring the topology again");
                write(&self.declared).remove(q);
                self.ensure_declared(q).await?;
                self.publish_raw(exchange, routing_key, body, props)
                    .await
                    .map_err(Into::into)
            }
            Err(PublishError::Broker(e)) => {
                if matches!(&e, BrokerError::Unavailable(m) if m.contains("NOT_FOUND")) {
                    write(&self.declared).remove(q);
                }
                Err(e)
            }
            Ok(()) => Ok(()),
        }
    }

    /// One confirmed, persistent, mandatory publish, bounded by [`PUBLISH_TIMEOUT`].
    async fn publish_raw(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<(), PublishError> {
        let link = self.live_link()?;
        let attempt = async {
            let ch = link.publisher().await?;
            let options = BasicPublishOptions {
                mandatory: true,
                immediate: false,
            };
            let confirm = ch
                .basic_publish(exchange.into(), routing_key.into(), options, body, props)
                .await
                .map_err(|e| lapin_error("publishing", &e))?;
            confirm
                .await
                .map_err(|e| lapin_error("waiting for the publisher confirm", &e))
        };
        match tokio::time::timeout(PUBLISH_TIMEOUT, attempt).await {
            Err(_) => Err(BrokerError::Unavailable(format!(
                "RabbitMQ did not confirm the message within {PUBLISH_TIMEOUT:?}"
            ))
            .into()),
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok(Confirmation::Ack(None))) => Ok(()),
            Ok(Ok(Confirmation::Ack(Some(ret)) | Confirmation::Nack(Some(ret)))) => {
                Err(PublishError::Unroutable(format!(
                    "returned by RabbitMQ ({} {}): exchange {exchange:?}, routing key {routing_key:?}",
                    ret.reply_code, ret.reply_text
                )))
            }
            Ok(Ok(Confirmation::Nack(None))) => {
                Err(BrokerError::Refused("RabbitMQ nacked the message".into()).into())
            }
            Ok(Ok(Confirmation::NotRequested)) => Err(BrokerError::Unavailable(
                "publisher confirms are not enabled on the channel".into(),
            )
            .into()),
        }
    }

    /// Turns a delivery into a [`RabbitDelivery`]; an unreadable body is handed back.
    fn delivery(
        self: &Arc<Self>,
        queue: &str,
        held: &Arc<AtomicU64>,
        d: LapinDelivery,
    ) -> Result<RabbitDelivery, Box<(LapinDelivery, BrokerError)>> {
        let envelope = match Envelope::from_bytes(&d.data) {
            Ok(env) => env,
            Err(e) => return Err(Box::new((d, e))),
        };
        let headers = d.properties.headers().as_ref();
        let attempt = attempt_of(headers, d.redelivered);
        let first_failure_ms = header_int(headers, HEADER_FIRST_FAILURE);
        held.fetch_add(1, Ordering::Relaxed);
        Ok(RabbitDelivery {
            inner: self.clone(),
            queue: queue.to_string(),
            envelope,
            body: d.data,
            attempt,
            first_failure_ms,
            acker: Some(d.acker),
            held: held.clone(),
        })
    }

    /// Parks a delivery whose body is not a readable envelope, then acks it; if parking
    /// fails, returns it to the queue (the delivery limit parks it in the end).
    async fn park_unreadable(&self, queue: &str, d: LapinDelivery, why: BrokerError) {
        warn!(queue, error = %why, "parking an unreadable message");
        let now = now_ms();
        let headers = d.properties.headers().as_ref();
        let mut out = FieldTable::default();
        put_int(
            &mut out,
            HEADER_ATTEMPT,
            i64::from(attempt_of(headers, d.redelivered)),
        );
        put_str(
            &mut out,
            HEADER_REASON,
            &format!("unreadable message: {why}"),
        );
        put_int(&mut out, HEADER_FIRST_FAILURE, now);
        put_int(&mut out, HEADER_LAST_FAILURE, now);
        put_str(&mut out, HEADER_QUEUE, queue);
        let id = d
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default();
        let target = self.names.dead_queue(queue);
        let parked = self
            .publish_to_queue(queue, &target, &d.data, properties(&id, out))
            .await;
        let settle = async {
            match parked {
                Ok(()) => d.acker.ack(BasicAckOptions::default()).await,
                Err(e) => {
                    warn!(queue, error = %e, "could not park an unreadable message; it goes back to its queue");
                    d.acker
                        .nack(BasicNackOptions {
                            multiple: false,
                            requeue: true,
                        })
                        .await
                }
            }
        };
        let _ = tokio::time::timeout(SETTLE_TIMEOUT, settle).await;
    }

    /// Reads a parked message.
    fn parse_dead(&self, queue: &str, d: &LapinDelivery) -> DeadLetter {
        let headers = d.properties.headers().as_ref();
        let envelope = Envelope::from_bytes(&d.data).unwrap_or_else(|e| Envelope {
            v: 0,
            id: d
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default(),
            kind: "unreadable".into(),
            business_key: String::new(),
            app: String::new(),
            created_at_ms: 0,
            payload: format!("{e}: {}", String::from_utf8_lossy(&d.data)),
        });
        let death = x_death(headers);
        let attempt = header_int(headers, HEADER_ATTEMPT)
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or(1);
        let (reason, attempts) = match header_str(headers, HEADER_REASON) {
            Some(reason) => (reason, attempt),
            None => {
                let why = death
                    .as_ref()
                    .map_or("unknown", |d| d.reason.as_str())
                    .to_string();
                // parked by RabbitMQ itself: past the delivery limit
                let attempts = attempt.saturating_add(self.delivery_limit);
                (
                    format!(
                        "parked by RabbitMQ ({why}): returned unsettled more than {} times \
                         (x-delivery-limit)",
                        self.delivery_limit
                    ),
                    attempts,
                )
            }
        };
        let death_ms = death.as_ref().and_then(|d| d.time_ms);
        let first_failure_ms = header_int(headers, HEADER_FIRST_FAILURE)
            .or(death_ms)
            .unwrap_or(0);
        let last_failure_ms = header_int(headers, HEADER_LAST_FAILURE)
            .or(death_ms)
            .unwrap_or(first_failure_ms);
        DeadLetter {
            queue: header_str(headers, HEADER_QUEUE).unwrap_or_else(|| queue.to_string()),
            envelope,
            reason,
            attempts,
            first_failure_ms,
            last_failure_ms,
        }
    }

    /// Closes abandoned connections that came back, forgets those that are gone for good.
    async fn reap_graveyard(&self) {
        let revived: Vec<(Instant, Arc<Link>)> = {
            let mut graves = lock(&self.graveyard);
            let (revived, rest): (Vec<_>, Vec<_>) =
                graves.drain(..).partition(|(_, l)| l.connected());
            graves.extend(rest.into_iter().filter(|(since, l)| {
                since.elapsed() < GRAVEYARD_WATCH
                    && !matches!(
                        conn_state(&l.conn),
                        ConnectionState::Error | ConnectionState::Closed
                    )
            }));
            revived
        };
        for (_, link) in revived {
            warn!("an abandoned RabbitMQ connection recovered by itself; closing it");
            close_connection(&link.conn).await;
        }
    }

    /// Opens a new connection and declares every known queue on it.
    async fn open_and_declare(&self) -> Result<Arc<Link>, BrokerError> {
        let link = Link::open(&self.url, &self.names.prefix).await?;
        let queues: Vec<String> = read(&self.declared).iter().cloned().collect();
        if let Err(e) = self.declare_on(&link, &queues).await {
            close_connection(&link.conn).await;
            return Err(e);
        }
        Ok(Arc::new(link))
    }
}

/// A failed publish: unroutable (returned) or anything else.
enum PublishError {
    Unroutable(String),
    Broker(BrokerError),
}

impl From<BrokerError> for PublishError {
    fn from(e: BrokerError) -> Self {
        PublishError::Broker(e)
    }
}

impl From<PublishError> for BrokerError {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::Unroutable(m) => BrokerError::Refused(m),
            PublishError::Broker(e) => e,
        }
    }
}

/// One connection and its publishing channels.
struct Link {
    conn: Connection,
    publishers: Vec<Mutex<Option<Channel>>>,
    next: AtomicUsize,
}

impl Link {
    async fn open(url: &str, prefix: &str) -> Result<Link, BrokerError> {
        let props = ConnectionProperties::default()
            .with_connection_name(format!("wecom-bridge {prefix}").into())
            .with_backoff(lapin_backoff())
            .enable_auto_recover();
        let conn = Connection::connect(url, props)
            .await
            .map_err(|e| lapin_error("connecting to RabbitMQ", &e))?;
        let mut publishers = Vec::with_capacity(PUBLISH_CHANNELS);
        for _ in 0..PUBLISH_CHANNELS {
            match open_publisher(&conn).await {
                Ok(ch) => publishers.push(Mutex::new(Some(ch))),
                Err(e) => {
                    close_connection(&conn).await;
                    return Err(e);
                }
            }
        }
        Ok(Link {
            conn,
            publishers,
            next: AtomicUsize::new(0),
        })
    }

    fn connected(&self) -> bool {
        self.conn.status().connected()
    }

    /// A publishing channel, round-robin; a channel that RabbitMQ closed is replaced.
    async fn publisher(&self) -> Result<Channel, BrokerError> {
        let slot =
            &self.publishers[self.next.fetch_add(1, Ordering::Relaxed) % self.publishers.len()];
        if let Some(ch) = lock(slot).as_ref() {
            let status = ch.status();
            // a recovering channel fails the publish at once, which is what we want
            if status.connected() || status.reconnecting() {
                return Ok(ch.clone());
            }
        }
        let ch = open_publisher(&self.conn).await?;
        *lock(slot) = Some(ch.clone());
        Ok(ch)
    }
}

async fn open_publisher(conn: &Connection) -> Result<Channel, BrokerError> {
    let ch = open_channel(conn).await?;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| lapin_error("enabling publisher confirms", &e))?;
    Ok(ch)
}

// ---------------------------------------------------------------------------------------
// supervisor

/// Watches the connection: logs losses and recoveries, re-declares the topology after lapin
/// recovered, and rebuilds the connection when lapin gave up (or has been stuck for
/// [`STUCK_AFTER`]).
async fn supervise(weak: Weak<Inner>, mut shutdown: watch::Receiver<bool>) {
    let mut was_up = true;
    let mut down_since: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(SUPERVISE_TICK) => {}
        }
        let Some(inner) = weak.upgrade() else { return };
        if inner.is_shut_down() {
            return;
        }
        inner.reap_graveyard().await;
        let current = inner.link.borrow().clone();
        let state = current.as_ref().map(|l| conn_state(&l.conn));
        match state {
            Some(ConnectionState::Connected) => {
                if !was_up {
                    let after = down_since.map(|t| t.elapsed()).unwrap_or_default();
                    info!(prefix = %inner.names.prefix, down_ms = after.as_millis() as u64, "RabbitMQ connection recovered");
                    was_up = true;
                    down_since = None;
                    let inner = inner.clone();
                    tokio::spawn(async move {
                        let link = inner.link.borrow().clone();
                        if let Some(link) = link {
                            let queues: Vec<String> =
                                read(&inner.declared).iter().cloned().collect();
                            if let Err(e) = op(inner.declare_on(&link, &queues)).await {
                                warn!(error = %e, "re-declaring the topology after recovery failed");
                            }
                        }
                    });
                }
            }
            Some(ConnectionState::Error | ConnectionState::Closed) | None => {
                warn!(prefix = %inner.names.prefix, ?state, "RabbitMQ connection recovery gave up; rebuilding the connection");
                was_up = false;
                down_since.get_or_insert_with(Instant::now);
                inner.link.send_replace(None);
                drop(inner);
                if !rebuild(&weak, &mut shutdown).await {
                    return;
                }
            }
            Some(state) => {
                let since = *down_since.get_or_insert_with(Instant::now);
                if was_up {
                    warn!(prefix = %inner.names.prefix, ?state, "RabbitMQ connection lost; recovering");
                    was_up = false;
                }
                if since.elapsed() >= STUCK_AFTER {
                    warn!(prefix = %inner.names.prefix, ?state, down_s = since.elapsed().as_secs(), "RabbitMQ connection recovery is stuck; rebuilding the connection");
                    if let Some(old) = inner.link.send_replace(None) {
                        lock(&inner.graveyard).push((Instant::now(), old));
                    }
                    drop(inner);
                    if !rebuild(&weak, &mut shutdown).await {
                        return;
                    }
                }
            }
        }
    }
}

/// Builds a new connection, forever with back-off, and installs it. Returns false if the
/// broker shut down (or was dropped) meanwhile.
async fn rebuild(weak: &Weak<Inner>, shutdown: &mut watch::Receiver<bool>) -> bool {
    let mut backoff = rebuild_backoff().build();
    loop {
        let Some(inner) = weak.upgrade() else {
            return false;
        };
        if inner.is_shut_down() {
            return false;
        }
        match tokio::time::timeout(REBUILD_ATTEMPT_TIMEOUT, inner.open_and_declare()).await {
            Ok(Ok(link)) => {
                inner.link.send_replace(Some(link));
                if inner.is_shut_down() {
                    if let Some(link) = inner.link.send_replace(None) {
                        close_connection(&link.conn).await;
                    }
                    return false;
                }
                info!(prefix = %inner.names.prefix, "RabbitMQ connection rebuilt");
                return true;
            }
            Ok(Err(e)) => warn!(error = %e, "rebuilding the RabbitMQ connection failed"),
            Err(_) => warn!("rebuilding the RabbitMQ connection timed out"),
        }
        drop(inner);
        let wait = backoff.next().unwrap_or(Duration::from_secs(30));
        tokio::select! {
            _ = shutdown.changed() => return false,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// consumers

/// The task behind one [`Consumer`]: pushes deliveries into the bounded channel and keeps the
/// AMQP consumer alive across connection losses.
struct ConsumerTask {
    inner: Arc<Inner>,
    queue: String,
    tag: String,
    held: Arc<AtomicU64>,
    tx: mpsc::Sender<Result<RabbitDelivery, BrokerError>>,
    stop: oneshot::Receiver<()>,
    links: watch::Receiver<Option<Arc<Link>>>,
    shutdown: watch::Receiver<bool>,
}

/// Why a consuming session ended.
enum End {
    /// The consumer was dropped or the broker closed.
    Stop,
    /// The AMQP consumer is gone: open a new one.
    Reopen,
}

impl ConsumerTask {
    async fn run(mut self, mut link: Arc<Link>, mut channel: Channel, mut stream: lapin::Consumer) {
        let mut backoff = consumer_backoff().build();
        self.links.mark_unchanged();
        loop {
            let end = self.pump(&link, &channel, &mut stream).await;
            close_channel(&channel).await;
            if let End::Stop = end {
                return;
            }
            // open a new AMQP consumer, on whatever connection is current
            loop {
                let Some(next) = self.wait_for_link().await else {
                    return;
                };
                let work = self.inner.names.work_queue(&self.queue);
                match op(open_consumer(&next, &work, &self.tag, self.inner.prefetch)).await {
                    Ok((ch, st)) => {
                        info!(queue = %self.queue, "consumer resumed");
                        backoff = consumer_backoff().build();
                        link = next;
                        channel = ch;
                        stream = st;
                        break;
                    }
                    Err(e) => {
                        let wait = backoff.next().unwrap_or(Duration::from_secs(5));
                        warn!(queue = %self.queue, error = %e, retry_in_ms = wait.as_millis() as u64, "could not resume consumer");
                        if self.sleep_or_stop(wait).await {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Forwards deliveries until the consumer stops or the AMQP consumer is gone.
    async fn pump(
        &mut self,
        link: &Arc<Link>,
        channel: &Channel,
        stream: &mut lapin::Consumer,
    ) -> End {
        loop {
            let item = tokio::select! {
                biased;
                _ = &mut self.stop => return End::Stop,
                _ = self.shutdown.changed() => return End::Stop,
                _ = self.tx.closed() => return End::Stop,
                changed = self.links.changed() => {
                    if changed.is_err() {
                        return End::Stop;
                    }
                    if !same_link(&self.links.borrow(), link) {
                        debug!(queue = %self.queue, "connection replaced; re-creating the consumer");
                        return End::Reopen;
                    }
                    continue;
                }
                item = stream.next() => item,
            };
            match item {
                Some(Ok(d)) => match self.inner.delivery(&self.queue, &self.held, d) {
                    Ok(delivery) => {
                        tokio::select! {
                            biased;
                            _ = &mut self.stop => return End::Stop,
                            sent = self.tx.send(Ok(delivery)) => if sent.is_err() { return End::Stop },
                        }
                    }
                    Err(unreadable) => {
                        let (d, why) = *unreadable;
                        self.inner.park_unreadable(&self.queue, d, why).await
                    }
                },
                Some(Err(e)) => {
                    if channel.status().reconnecting() {
                        debug!(queue = %self.queue, error = %e, "consumer channel recovering");
                        match self.wait_for_channel(link, channel).await {
                            Some(true) => continue,
                            Some(false) => return End::Reopen,
                            None => return End::Stop,
                        }
                    }
                    warn!(queue = %self.queue, error = %e, "consumer failed; re-creating it");
                    return End::Reopen;
                }
                None => {
                    warn!(queue = %self.queue, "consumer cancelled by RabbitMQ; re-creating it");
                    return End::Reopen;
                }
            }
        }
    }

    /// Waits for a recovering channel: `Some(true)` back, `Some(false)` gone, `None` stop.
    async fn wait_for_channel(&mut self, link: &Arc<Link>, channel: &Channel) -> Option<bool> {
        loop {
            if channel.status().connected() {
                return Some(true);
            }
            if !channel.status().reconnecting() || !same_link(&self.links.borrow(), link) {
                return Some(false);
            }
            if self.sleep_or_stop(Duration::from_millis(200)).await {
                return None;
            }
        }
    }

    /// Waits until there is a connected link; `None` if the consumer must stop.
    async fn wait_for_link(&mut self) -> Option<Arc<Link>> {
        loop {
            if let Some(l) = self.links.borrow_and_update().clone()
                && l.connected()
            {
                return Some(l);
            }
            if self.sleep_or_stop(Duration::from_millis(200)).await {
                return None;
            }
        }
    }

    /// Sleeps; true if the consumer must stop.
    async fn sleep_or_stop(&mut self, wait: Duration) -> bool {
        if *self.shutdown.borrow() {
            return true;
        }
        tokio::select! {
            biased;
            _ = &mut self.stop => true,
            _ = self.shutdown.changed() => true,
            _ = self.tx.closed() => true,
            _ = tokio::time::sleep(wait) => false,
        }
    }
}

fn same_link(current: &Option<Arc<Link>>, link: &Arc<Link>) -> bool {
    current.as_ref().is_some_and(|c| Arc::ptr_eq(c, link))
}

/// A channel with `basic.qos(prefetch)` and a manual-ack consumer on `queue`.
async fn open_consumer(
    link: &Link,
    queue: &str,
    tag: &str,
    prefetch: u16,
) -> Result<(Channel, lapin::Consumer), BrokerError> {
    let ch = open_channel(&link.conn).await?;
    let setup = async {
        ch.basic_qos(prefetch, BasicQosOptions { global: false })
            .await
            .map_err(|e| lapin_error("setting the prefetch", &e))?;
        ch.basic_consume(
            queue.into(),
            tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| lapin_error(&format!("consuming {queue}"), &e))
    };
    match setup.await {
        Ok(stream) => Ok((ch, stream)),
        Err(e) => {
            close_channel(&ch).await;
            Err(e)
        }
    }
}

// ---------------------------------------------------------------------------------------
// helpers

async fn open_channel(conn: &Connection) -> Result<Channel, BrokerError> {
    conn.create_channel()
        .await
        .map_err(|e| lapin_error("opening a channel", &e))
}

/// Returns the messages taken from a parking queue (the unsettled `tags` of `ch`), closes
/// the channel, then waits (bounded) until the queue shows `expect_ready` messages again: a
/// quorum queue applies returns asynchronously, and a listing followed at once by a count or a
/// redrive must see them. One nack per message, in order: a single multiple-nack does not keep
/// their order in a quorum queue.
async fn give_back(link: &Link, ch: Channel, name: &str, tags: &[u64], expect_ready: u64) {
    if tags.is_empty() {
        close_channel(&ch).await;
        return;
    }
    let requeue = BasicNackOptions {
        multiple: false,
        requeue: true,
    };
    for tag in tags {
        if tokio::time::timeout(OP_TIMEOUT, ch.basic_nack(*tag, requeue))
            .await
            .map_or(true, |r| r.is_err())
        {
            break;
        }
    }
    close_channel(&ch).await;
    let Ok(ch) = open_channel(&link.conn).await else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        match op(passive_count(&ch, name)).await {
            Ok(Some(n)) if n < expect_ready => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(Some(_)) => break,
            Ok(None) | Err(_) => return,
        }
    }
    close_channel(&ch).await;
}

/// Closes a channel if it is open (best effort, bounded).
async fn close_channel(ch: &Channel) {
    if ch.status().connected() {
        let _ = tokio::time::timeout(Duration::from_secs(2), ch.close(200, "OK".into())).await;
    }
}

/// Closes a connection if it is open (best effort, bounded).
async fn close_connection(conn: &Connection) {
    if conn.status().connected() {
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            conn.close(200, "wecom-bridge closing".into()),
        )
        .await;
    }
}

/// Declares a durable queue; if it exists with other arguments (a changed setting), keeps
/// the existing queue and says so: RabbitMQ cannot change queue arguments, policies can.
async fn declare_queue(
    link: &Link,
    ch: &mut Channel,
    name: &str,
    args: FieldTable,
) -> Result<(), BrokerError> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    match ch.queue_declare(name.into(), durable, args).await {
        Ok(_) => Ok(()),
        Err(e) if is_precondition_failed(&e) => {
            *ch = open_channel(&link.conn).await?;
            match passive_count(ch, name).await? {
                Some(_) => {
                    warn!(queue = name, error = %e, "queue exists with other arguments; keeping them (change them with a RabbitMQ policy)");
                    Ok(())
                }
                None => Err(lapin_error(&format!("declaring queue {name}"), &e)),
            }
        }
        Err(e) => Err(lapin_error(&format!("declaring queue {name}"), &e)),
    }
}

async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str) -> Result<(), BrokerError> {
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(|e| lapin_error(&format!("binding {queue} to {exchange}"), &e))
}

/// Ready messages of a queue (passive declare); `None` if the queue does not exist (the
/// channel is then closed by RabbitMQ).
async fn passive_count(ch: &Channel, name: &str) -> Result<Option<u64>, BrokerError> {
    let passive = QueueDeclareOptions {
        passive: true,
        durable: true,
        ..Default::default()
    };
    match ch
        .queue_declare(name.into(), passive, FieldTable::default())
        .await
    {
        Ok(q) => Ok(Some(u64::from(q.message_count()))),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(lapin_error(&format!("looking at queue {name}"), &e)),
    }
}

/// Ready messages of a queue, `None` if it does not exist (reopening the channel RabbitMQ
/// closed then).
async fn count(link: &Link, ch: &mut Channel, name: &str) -> Result<Option<u64>, BrokerError> {
    let n = op(passive_count(ch, name)).await?;
    if n.is_none() {
        *ch = op(open_channel(&link.conn)).await?;
    }
    Ok(n)
}

/// Bounds an operation by [`OP_TIMEOUT`].
async fn op<T>(fut: impl Future<Output = Result<T, BrokerError>>) -> Result<T, BrokerError> {
    match tokio::time::timeout(OP_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(BrokerError::Unavailable(format!(
            "RabbitMQ did not answer within {OP_TIMEOUT:?}"
        ))),
    }
}

fn amqp_soft_error(e: &lapin::Error) -> Option<&AMQPSoftError> {
    match e.kind() {
        ErrorKind::ProtocolError(amqp) => match amqp.kind() {
            AMQPErrorKind::Soft(soft) => Some(soft),
            AMQPErrorKind::Hard(_) => None,
        },
        _ => None,
    }
}

fn is_not_found(e: &lapin::Error) -> bool {
    matches!(amqp_soft_error(e), Some(AMQPSoftError::NOTFOUND))
}

fn is_precondition_failed(e: &lapin::Error) -> bool {
    matches!(amqp_soft_error(e), Some(AMQPSoftError::PRECONDITIONFAILED))
}

/// Maps a lapin error: refusals that trying again cannot fix are `Refused`, the rest is
/// `Unavailable`.
fn lapin_error(context: &str, e: &lapin::Error) -> BrokerError {
    match amqp_soft_error(e) {
        Some(AMQPSoftError::PRECONDITIONFAILED | AMQPSoftError::ACCESSREFUSED) => {
            BrokerError::Refused(format!("{context}: {e}"))
        }
        _ => BrokerError::Unavailable(format!("{context}: {e}")),
    }
}

fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), long_str("quorum"));
    args
}

fn long_str(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

fn put_int(headers: &mut FieldTable, key: &str, v: i64) {
    headers.insert(key.into(), AMQPValue::LongLongInt(v));
}

fn put_str(headers: &mut FieldTable, key: &str, v: &str) {
    headers.insert(key.into(), long_str(v));
}

/// Persistent message properties with our headers.
fn properties(id: &str, headers: FieldTable) -> BasicProperties {
    let mut props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_headers(headers);
    if let Ok(id) = ShortString::try_new(id) {
        props = props.with_message_id(id);
    }
    props
}

fn header_int(headers: Option<&FieldTable>, key: &str) -> Option<i64> {
    as_int(headers?.inner().get(key)?)
}

fn as_int(v: &AMQPValue) -> Option<i64> {
    Some(match v {
        AMQPValue::ShortShortInt(n) => i64::from(*n),
        AMQPValue::ShortShortUInt(n) => i64::from(*n),
        AMQPValue::ShortInt(n) => i64::from(*n),
        AMQPValue::ShortUInt(n) => i64::from(*n),
        AMQPValue::LongInt(n) => i64::from(*n),
        AMQPValue::LongUInt(n) => i64::from(*n),
        AMQPValue::LongLongInt(n) => *n,
        AMQPValue::Timestamp(n) => i64::try_from(*n).ok()?,
        _ => return None,
    })
}

fn header_str(headers: Option<&FieldTable>, key: &str) -> Option<String> {
    as_str(headers?.inner().get(key)?)
}

fn as_str(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

/// Attempt of a delivery: `wb-attempt` plus the redeliveries RabbitMQ reports.
fn attempt_of(headers: Option<&FieldTable>, redelivered: bool) -> u32 {
    let base = header_int(headers, HEADER_ATTEMPT)
        .and_then(|a| u32::try_from(a).ok())
        .filter(|a| *a >= 1)
        .unwrap_or(1);
    let redeliveries = match header_int(headers, "x-delivery-count") {
        Some(n) if n > 0 => u32::try_from(n).unwrap_or(u32::MAX),
        _ => u32::from(redelivered),
    };
    base.saturating_add(redeliveries)
}

/// The most recent `x-death` entry of a message RabbitMQ dead-lettered.
struct Death {
    reason: String,
    time_ms: Option<i64>,
}

fn x_death(headers: Option<&FieldTable>) -> Option<Death> {
    let AMQPValue::FieldArray(deaths) = headers?.inner().get("x-death")? else {
        return None;
    };
    let AMQPValue::FieldTable(first) = deaths.as_slice().first()? else {
        return None;
    };
    Some(Death {
        reason: header_str(Some(first), "reason").unwrap_or_else(|| "unknown".into()),
        time_ms: header_int(Some(first), "time").map(|s| s.saturating_mul(1000)),
    })
}

/// The state of a connection, from lapin's public predicates.
fn conn_state(conn: &Connection) -> ConnectionState {
    let s = conn.status();
    if s.connected() {
        ConnectionState::Connected
    } else if s.reconnecting() {
        ConnectionState::Reconnecting
    } else if s.connecting() {
        ConnectionState::Connecting
    } else if s.closing() {
        ConnectionState::Closing
    } else if s.closed() {
        ConnectionState::Closed
    } else if s.errored() {
        ConnectionState::Error
    } else {
        ConnectionState::Initial
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_adds_redeliveries() {
        let mut h = FieldTable::default();
        put_int(&mut h, HEADER_ATTEMPT, 3);
        assert_eq!(attempt_of(Some(&h), false), 3);
        assert_eq!(attempt_of(Some(&h), true), 4);
        h.insert("x-delivery-count".into(), AMQPValue::LongInt(2));
        assert_eq!(attempt_of(Some(&h), true), 5);
        assert_eq!(attempt_of(None, false), 1);
        assert_eq!(attempt_of(None, true), 2);
    }

    #[test]
    fn names_follow_the_prefix() {
        let n = Names {
            prefix: "wb".into(),
        };
        assert_eq!(n.work_queue("route"), "wb.route");
        assert_eq!(n.dead_queue("route"), "wb.route.dead");
        assert_eq!(
            n.delay_queue("route", Duration::from_secs(30)),
            "wb.route.delay.30s"
        );
        assert_eq!(
            n.delay_queue("route", Duration::from_millis(1500)),
            "wb.route.delay.1500ms"
        );
        assert_eq!(n.work_exchange(), "wb.work");
        assert_eq!(n.dead_exchange(), "wb.dead");
    }

    #[test]
    fn headers_read_back_any_integer_width() {
        let mut h = FieldTable::default();
        h.insert("a".into(), AMQPValue::ShortShortUInt(7));
        h.insert("b".into(), AMQPValue::LongUInt(9));
        put_str(&mut h, "c", "汉字");
        assert_eq!(header_int(Some(&h), "a"), Some(7));
        assert_eq!(header_int(Some(&h), "b"), Some(9));
        assert_eq!(header_str(Some(&h), "c").as_deref(), Some("汉字"));
        assert_eq!(header_int(Some(&h), "c"), None);
    }
}
