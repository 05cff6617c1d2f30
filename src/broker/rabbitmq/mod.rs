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

use backon::ExponentialBuilder;
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

use crate::stage::{Backoff, Shutdown};

mod amqp;
mod consumer;
mod state;
mod supervisor;

use amqp::*;
use consumer::*;
use state::*;
use supervisor::*;

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
    crate::stage::backoff_plain(Duration::from_millis(200), Duration::from_secs(2))
        .with_max_times(12)
}

/// The supervisor's rebuild schedule: 0.5 s doubling to 30 s, with jitter, never giving up.
fn rebuild_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(500), Duration::from_secs(30))
}

/// A consumer's schedule for re-creating itself: 0.2 s doubling to 5 s, forever.
fn consumer_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(200), Duration::from_secs(5))
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
            Shutdown::from_watch(inner.shutdown.subscribe()),
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

    /// Messages waiting in each delay tier of `queue`, shortest tier first (operators and
    /// tests see which delay a retry was given).
    pub async fn delayed_by_tier(&self, queue: &str) -> Result<Vec<(Duration, u64)>, BrokerError> {
        let link = self.inner.live_link()?;
        let mut ch = op(open_channel(&link.conn)).await?;
        let mut out = Vec::with_capacity(self.inner.tiers.len());
        for t in &self.inner.tiers {
            let name = self.inner.names.delay_queue(queue, *t);
            out.push((*t, count(&link, &mut ch, &name).await?.unwrap_or(0)));
        }
        close_channel(&ch).await;
        Ok(out)
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
    /// Through the delay tier for `delay`; `counts`: a failed attempt (attempt + 1, failure
    /// times set) or only a wait (same attempt, failure times kept).
    async fn later(mut self, delay: Duration, counts: bool) -> Result<(), BrokerError> {
        let tier = retry_tier(&self.inner.tiers, delay);
        let target = self.inner.names.delay_queue(&self.queue, tier);
        let now = now_ms();
        let mut headers = FieldTable::default();
        let attempt = if counts {
            self.attempt.saturating_add(1)
        } else {
            self.attempt
        };
        put_int(&mut headers, HEADER_ATTEMPT, i64::from(attempt));
        match (counts, self.first_failure_ms) {
            (_, Some(first)) => put_int(&mut headers, HEADER_FIRST_FAILURE, first),
            (true, None) => put_int(&mut headers, HEADER_FIRST_FAILURE, now),
            (false, None) => {}
        }
        if counts {
            put_int(&mut headers, HEADER_LAST_FAILURE, now);
        }
        let props = properties(&self.envelope.id, headers);
        // on failure `self` is dropped unsettled: the original goes back to its queue
        self.inner
            .publish_to_queue(&self.queue, &target, &self.body, props)
            .await?;
        self.settle_ack().await
    }

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

    async fn retry_after(self, delay: Duration) -> Result<(), BrokerError> {
        self.later(delay, true).await
    }

    async fn defer(self, delay: Duration) -> Result<(), BrokerError> {
        self.later(delay, false).await
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
            shutdown: Shutdown::from_watch(self.inner.shutdown.subscribe()),
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
