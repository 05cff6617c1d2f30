//! Broker: carries envelopes between stages. One contract ([`Broker`] and [`Delivery`]), two
//! back ends: [`embedded`] (queues on the local store; the zero-setup default) and
//! [`rabbitmq`] (AMQP 0-9-1 through lapin; what production runs and what scales out).
//!
//! Semantics (the conformance suite in `tests/it/broker.rs` holds both back ends to them):
//! - at-least-once: a delivery that is not settled (consumer dropped, process killed, lease
//!   expired, connection lost) comes back, so every consumer must be idempotent;
//! - `publish` returns only once the message is durable (embedded: committed; RabbitMQ:
//!   publisher confirm, and a `mandatory` return counts as a failure);
//! - settling: `ack` removes; `retry_after(d)` makes the message come back no earlier than
//!   `d` with `attempt + 1`, and the retry copy is durable *before* the original is acked;
//!   `dead_letter(reason)` parks it with reason, attempts and first/last failure times;
//! - parked messages can be listed and redriven (back to their queue with attempt 1);
//! - consumers get back-pressure: at most `prefetch` unsettled deliveries per consumer.
//!
//! It must not know what a message means: stages decide; the broker only carries and settles.

pub mod embedded;
pub mod rabbitmq;

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// The stage queue that the outbox relay feeds and the route stage consumes.
pub const ROUTE_QUEUE: &str = "route";

/// The stage queue of WeCom notifications (writeback jobs), fed by the deliver stage.
pub const WRITEBACK_QUEUE: &str = "writeback";

/// Current envelope version. Version 1 (a `kind` plus the content in a string `payload`)
/// is still read, so messages already in the queues survive a rolling upgrade.
pub const ENVELOPE_VERSION: u16 = 2;

/// What travels through the broker: a header the broker and operators read, and a body the
/// broker carries without reading (stages decode it, see `crate::stage::message`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "WireEnvelope")]
pub struct Envelope {
    /// Envelope format version: 1 (legacy body) or [`ENVELOPE_VERSION`].
    pub v: u16,
    /// Unique message id (an event id such as `evt_…`, or a job key).
    pub id: String,
    /// What it is, for operators: an event kind, or a job kind.
    pub kind: String,
    /// Business key (e.g. `SpNo:SpStatus`).
    pub business_key: String,
    /// The WeCom app it came from.
    pub app: String,
    /// When the bridge first accepted it (Unix ms).
    pub created_at_ms: i64,
    /// The content.
    pub body: Body,
}

/// The content of an envelope, opaque to the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Version 2: a tagged JSON object.
    Message(serde_json::Value),
    /// Version 1: a string (decrypted callback XML for events, a JSON document for jobs).
    Legacy(String),
}

/// The wire form of both versions, as read.
#[derive(Deserialize)]
struct WireEnvelope {
    v: u16,
    id: String,
    kind: String,
    business_key: String,
    app: String,
    created_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload: Option<String>,
    // `"message": null` (a body cleared for display) is present: it must not read as absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    message: Option<serde_json::Value>,
}

/// The wire form as written: the same fields in the same order as [`WireEnvelope`], borrowed
/// from the envelope. (Serialising through an owned `WireEnvelope` cloned the whole body, the
/// callback's XML included, for every message written.)
#[derive(Serialize)]
struct WireEnvelopeRef<'a> {
    v: u16,
    id: &'a str,
    kind: &'a str,
    business_key: &'a str,
    app: &'a str,
    created_at_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a serde_json::Value>,
}

impl Serialize for Envelope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (payload, message) = match &self.body {
            Body::Legacy(p) => (Some(p.as_str()), None),
            Body::Message(m) => (None, Some(m)),
        };
        WireEnvelopeRef {
            v: self.v,
            id: &self.id,
            kind: &self.kind,
            business_key: &self.business_key,
            app: &self.app,
            created_at_ms: self.created_at_ms,
            payload,
            message,
        }
        .serialize(s)
    }
}

/// Any JSON value, `null` included, as `Some`; a missing field stays `None` (`default`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    <serde_json::Value as Deserialize>::deserialize(d).map(Some)
}

impl Envelope {
    /// A current-version envelope around `message`.
    pub fn new(
        id: impl Into<String>,
        kind: impl Into<String>,
        business_key: impl Into<String>,
        app: impl Into<String>,
        created_at_ms: i64,
        message: serde_json::Value,
    ) -> Envelope {
        Envelope {
            v: ENVELOPE_VERSION,
            id: id.into(),
            kind: kind.into(),
            business_key: business_key.into(),
            app: app.into(),
            created_at_ms,
            body: Body::Message(message),
        }
    }

    /// The body as text for operators: a v1 payload as is, a v2 message as JSON.
    pub fn body_text(&self) -> String {
        match &self.body {
            Body::Legacy(p) => p.clone(),
            Body::Message(m) => m.to_string(),
        }
    }

    /// Drops the content (for listings that must not show payloads), keeping the header.
    pub fn clear_body(&mut self) {
        self.body = match self.body {
            Body::Legacy(_) => Body::Legacy(String::new()),
            Body::Message(_) => Body::Message(serde_json::Value::Null),
        };
    }

    /// Encodes as JSON bytes, in the envelope's own version (a v1 envelope that is retried
    /// stays v1).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self)
            .expect("serialising strings, integers and a JSON value cannot fail")
    }

    /// Decodes either version; refuses other versions and a body that does not fit its
    /// version.
    pub fn from_bytes(bytes: &[u8]) -> Result<Envelope, BrokerError> {
        let env: Envelope =
            serde_json::from_slice(bytes).map_err(|e| BrokerError::BadEnvelope(e.to_string()))?;
        match (env.v, &env.body) {
            (1, Body::Legacy(_)) | (ENVELOPE_VERSION, Body::Message(_)) => Ok(env),
            (1 | ENVELOPE_VERSION, _) => Err(BrokerError::BadEnvelope(format!(
                "a version {} envelope has the other version's body field",
                env.v
            ))),
            (v, _) => Err(BrokerError::BadEnvelope(format!(
                "envelope version {v} is not supported (this build reads 1 and {ENVELOPE_VERSION})"
            ))),
        }
    }
}

impl TryFrom<WireEnvelope> for Envelope {
    type Error = String;

    fn try_from(w: WireEnvelope) -> Result<Self, String> {
        let body = match (w.payload, w.message) {
            (Some(p), None) => Body::Legacy(p),
            (None, Some(m)) => Body::Message(m),
            _ => return Err("an envelope needs exactly one of `payload` (v1) or `message`".into()),
        };
        Ok(Envelope {
            v: w.v,
            id: w.id,
            kind: w.kind,
            business_key: w.business_key,
            app: w.app,
            created_at_ms: w.created_at_ms,
            body,
        })
    }
}

/// A parked (dead-lettered) message, for operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The logical queue it was taken from.
    pub queue: String,
    /// The message.
    pub envelope: Envelope,
    /// Why it was parked.
    pub reason: String,
    /// Deliveries made before it was parked.
    pub attempts: u32,
    /// First failure (Unix ms).
    pub first_failure_ms: i64,
    /// Last failure (Unix ms).
    pub last_failure_ms: i64,
}

/// Depth of one logical queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDepth {
    /// Logical queue name.
    pub queue: String,
    /// Waiting to be delivered.
    pub ready: u64,
    /// Delivered, not yet settled.
    pub unacked: u64,
    /// Waiting for a retry delay to pass.
    pub delayed: u64,
    /// Parked.
    pub dead: u64,
}

/// Which parked messages to redrive.
#[derive(Debug, Clone, Default)]
pub enum RedriveFilter {
    /// Every parked message of the queue.
    #[default]
    All,
    /// Only these message ids.
    Ids(Vec<String>),
    /// Only messages whose reason contains this text.
    ReasonContains(String),
}

impl RedriveFilter {
    /// Whether `dl` is selected.
    pub fn matches(&self, id: &str, reason: &str) -> bool {
        match self {
            RedriveFilter::All => true,
            RedriveFilter::Ids(ids) => ids.iter().any(|i| i == id),
            RedriveFilter::ReasonContains(t) => reason.contains(t.as_str()),
        }
    }
}

/// Errors of the broker.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    /// The broker cannot be reached or the connection was lost; retry later.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The broker refused a publish (nack, or returned as unroutable).
    #[error("broker refused the message: {0}")]
    Refused(String),
    /// A message body is not an envelope this build can read.
    #[error("not a readable envelope: {0}")]
    BadEnvelope(String),
    /// The local store failed (embedded back end).
    #[error("broker store error: {0}")]
    Store(String),
    /// The broker is shutting down.
    #[error("broker is closed")]
    Closed,
}

impl BrokerError {
    /// Whether trying again later can help.
    pub fn is_transient(&self) -> bool {
        matches!(self, BrokerError::Unavailable(_) | BrokerError::Store(_))
    }
}

/// A message handed to a consumer, to be settled exactly once.
pub trait Delivery: Send + 'static {
    /// The message.
    fn envelope(&self) -> &Envelope;
    /// 1 for the first delivery; +1 for every retry and every redelivery after a crash.
    fn attempt(&self) -> u32;
    /// Done: remove it.
    fn ack(self) -> impl Future<Output = Result<(), BrokerError>> + Send;
    /// Deliver again no earlier than `delay`, with `attempt + 1`. The copy is durable before
    /// the original is removed.
    fn retry_after(self, delay: Duration) -> impl Future<Output = Result<(), BrokerError>> + Send;
    /// Deliver again no earlier than `delay` with the SAME attempt number: the handler only
    /// waits (its target's circuit is open), it did not fail an attempt, so waiting out a long
    /// outage never uses up the retries. Durable before the original is removed.
    fn defer(self, delay: Duration) -> impl Future<Output = Result<(), BrokerError>> + Send;
    /// Park it with a reason an operator can act on.
    fn dead_letter(self, reason: &str) -> impl Future<Output = Result<(), BrokerError>> + Send;
}

/// A stream of deliveries from one queue. At most `prefetch` unsettled deliveries are
/// outstanding; dropping the consumer returns undelivered and unsettled messages to the queue
/// (immediately for RabbitMQ, after the lease for the embedded back end).
#[derive(Debug)]
pub struct Consumer<D> {
    rx: mpsc::Receiver<Result<D, BrokerError>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl<D> Consumer<D> {
    /// Wraps a channel that a back end's consumer task fills; the task should stop when
    /// `stop` resolves or the channel closes.
    pub fn new(
        rx: mpsc::Receiver<Result<D, BrokerError>>,
        stop: tokio::sync::oneshot::Sender<()>,
    ) -> Self {
        Consumer { rx, _stop: stop }
    }

    /// The next delivery; `None` when the broker closed the consumer.
    pub async fn next(&mut self) -> Option<Result<D, BrokerError>> {
        self.rx.recv().await
    }
}

/// The broker contract. Queue names are logical (`route`, `deliver.finance`); back ends
/// map them to their own names.
pub trait Broker: Clone + Send + Sync + 'static {
    /// The delivery handle of this back end.
    type Delivery: Delivery;

    /// Publishes a message with attempt 1; returns once it is durable.
    fn publish(
        &self,
        queue: &str,
        envelope: &Envelope,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// Starts consuming `queue`.
    fn consume(
        &self,
        queue: &str,
    ) -> impl Future<Output = Result<Consumer<Self::Delivery>, BrokerError>> + Send;

    /// Lists up to `limit` parked messages of `queue`, oldest first.
    fn dead_letters(
        &self,
        queue: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, BrokerError>> + Send;

    /// Moves the selected parked messages of `queue` back to it (attempt 1); returns how many.
    fn redrive(
        &self,
        queue: &str,
        filter: &RedriveFilter,
    ) -> impl Future<Output = Result<usize, BrokerError>> + Send;

    /// Depths of the given queues.
    fn depths(
        &self,
        queues: &[String],
    ) -> impl Future<Output = Result<Vec<QueueDepth>, BrokerError>> + Send;

    /// Whether the broker is usable now (for `/readyz`).
    fn ready(&self) -> impl Future<Output = Result<(), BrokerError>> + Send;
}

/// The retry tier for a requested delay: the smallest tier not shorter than `delay`, or the
/// longest tier. Tiers are sorted ascending and non-empty (validated in config).
pub fn retry_tier(tiers: &[Duration], delay: Duration) -> Duration {
    tiers
        .iter()
        .copied()
        .find(|t| *t >= delay)
        .or_else(|| tiers.last().copied())
        .unwrap_or(delay)
}

/// Now as Unix milliseconds.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_both_versions_and_refuses_others() {
        let env = Envelope::new(
            "evt_1",
            "approval_change",
            "1:2",
            "demo",
            5,
            serde_json::json!({"type": "event", "xml": "<xml/>"}),
        );
        // Messages already in the queues were written in exactly this field order.
        assert_eq!(
            String::from_utf8(env.to_bytes()).unwrap(),
            r#"{"v":2,"id":"evt_1","kind":"approval_change","business_key":"1:2","app":"demo","created_at_ms":5,"message":{"type":"event","xml":"<xml/>"}}"#
        );
        assert_eq!(Envelope::from_bytes(&env.to_bytes()).unwrap(), env);
        // a body cleared for display (`"message":null`, as the admin API lists dead letters
        // to a viewer) reads back as cleared, not as "no body"
        let mut cleared = env.clone();
        cleared.clear_body();
        assert!(String::from_utf8_lossy(&cleared.to_bytes()).contains(r#""message":null"#));
        assert_eq!(Envelope::from_bytes(&cleared.to_bytes()).unwrap(), cleared);
        let v1 = Envelope {
            v: 1,
            body: Body::Legacy("<xml/>".into()),
            ..env.clone()
        };
        let bytes = v1.to_bytes();
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            r#"{"v":1,"id":"evt_1","kind":"approval_change","business_key":"1:2","app":"demo","created_at_ms":5,"payload":"<xml/>"}"#
        );
        assert_eq!(Envelope::from_bytes(&bytes).unwrap(), v1);
        let mut v3 = env;
        v3.v = 3;
        let e = Envelope::from_bytes(&v3.to_bytes()).unwrap_err();
        assert!(e.to_string().contains("version 3 is not supported"), "{e}");
        let mixed = br#"{"v":2,"id":"x","kind":"k","business_key":"b","app":"a","created_at_ms":1,"payload":"p"}"#;
        assert!(Envelope::from_bytes(mixed).is_err());
        assert!(Envelope::from_bytes(b"{not json").is_err());
    }

    #[test]
    fn tiers_round_up_and_cap() {
        let tiers = [5, 30, 120].map(Duration::from_secs);
        for (wait, tier) in [(1, 5), (5, 5), (31, 120), (9999, 120)] {
            assert_eq!(
                retry_tier(&tiers, Duration::from_secs(wait)),
                Duration::from_secs(tier),
                "a wait of {wait} s"
            );
        }
    }
}

/// The configured back end. Stages are generic over [`Broker`] and are started through one
/// `match` on this enum; operator functions (list, redrive, depths) delegate here.
#[derive(Clone)]
pub enum AnyBroker {
    /// Queues on the local store.
    Embedded(embedded::EmbeddedBroker),
    /// RabbitMQ.
    Rabbitmq(rabbitmq::RabbitBroker),
}

impl std::fmt::Debug for AnyBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

/// Logical queues that exist whatever the configuration, declared at connect (the connectors'
/// deliver queues and the writeback queue are declared when first used, like any other).
pub fn stage_queues() -> Vec<String> {
    vec![ROUTE_QUEUE.to_string()]
}

/// The queues an operator sees in `queues`: the route queue, the deliver queue of every
/// connector and the writeback queue (listed also when nothing consumes them yet).
pub fn listed_queues<'a>(connectors: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut queues = vec![ROUTE_QUEUE.to_string()];
    queues.extend(connectors.into_iter().map(crate::route::deliver_queue));
    queues.push(WRITEBACK_QUEUE.to_string());
    queues
}

impl AnyBroker {
    /// Builds the configured back end. For RabbitMQ this connects and declares the topology;
    /// it fails if RabbitMQ is unreachable (the caller retries in the background).
    pub async fn from_config(
        cfg: &crate::config::BrokerConfig,
        store: &crate::store::Store,
    ) -> Result<AnyBroker, BrokerError> {
        use crate::config::BrokerKind;
        match cfg.kind {
            BrokerKind::Embedded => embedded::EmbeddedBroker::open(
                store.clone(),
                embedded::EmbeddedOptions::from_config(cfg),
            )
            .await
            .map(AnyBroker::Embedded),
            BrokerKind::Rabbitmq => {
                let url = cfg
                    .url
                    .as_ref()
                    .ok_or_else(|| BrokerError::Unavailable("broker.url is not set".into()))?
                    .resolve()
                    .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
                let mut tiers: Vec<Duration> = cfg
                    .retry_tiers_secs
                    .iter()
                    .map(|s| Duration::from_secs(*s))
                    .collect();
                tiers.sort();
                rabbitmq::RabbitBroker::connect(
                    url.expose(),
                    rabbitmq::RabbitOptions {
                        prefix: cfg.prefix.clone(),
                        prefetch: cfg.prefetch,
                        retry_tiers: tiers,
                        delivery_limit: cfg.delivery_limit,
                        queues: stage_queues(),
                    },
                )
                .await
                .map(AnyBroker::Rabbitmq)
            }
        }
    }

    /// `embedded` or `rabbitmq`.
    pub fn kind(&self) -> &'static str {
        match self {
            AnyBroker::Embedded(_) => "embedded",
            AnyBroker::Rabbitmq(_) => "rabbitmq",
        }
    }

    /// See [`Broker::dead_letters`].
    pub async fn dead_letters(
        &self,
        queue: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BrokerError> {
        match self {
            AnyBroker::Embedded(b) => b.dead_letters(queue, limit).await,
            AnyBroker::Rabbitmq(b) => b.dead_letters(queue, limit).await,
        }
    }

    /// See [`Broker::redrive`].
    pub async fn redrive(&self, queue: &str, filter: &RedriveFilter) -> Result<usize, BrokerError> {
        match self {
            AnyBroker::Embedded(b) => b.redrive(queue, filter).await,
            AnyBroker::Rabbitmq(b) => b.redrive(queue, filter).await,
        }
    }

    /// See [`Broker::depths`].
    pub async fn depths(&self, queues: &[String]) -> Result<Vec<QueueDepth>, BrokerError> {
        match self {
            AnyBroker::Embedded(b) => b.depths(queues).await,
            AnyBroker::Rabbitmq(b) => b.depths(queues).await,
        }
    }

    /// See [`Broker::ready`].
    pub async fn ready(&self) -> Result<(), BrokerError> {
        match self {
            AnyBroker::Embedded(b) => b.ready().await,
            AnyBroker::Rabbitmq(b) => b.ready().await,
        }
    }

    /// Stops background work and closes connections.
    pub async fn close(self) {
        match self {
            AnyBroker::Embedded(b) => b.close().await,
            AnyBroker::Rabbitmq(b) => b.close().await,
        }
    }
}
