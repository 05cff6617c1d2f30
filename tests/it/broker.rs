//! The broker conformance suite: written once, run unchanged against both back ends.
//!
//! The RabbitMQ half needs the local RabbitMQ (127.0.0.1:5672, guest/guest, or
//! `WECOM_BRIDGE_TEST_AMQP_URL`). If it is unreachable these tests FAIL with instructions;
//! they never skip. Every test uses its own queue names (and RabbitMQ prefix) so runs and
//! parallel tests do not collide.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use wecom_bridge::broker::embedded::{EmbeddedBroker, EmbeddedOptions};
use wecom_bridge::broker::rabbitmq::{RabbitBroker, RabbitOptions};
use wecom_bridge::broker::{Broker, Delivery, RedriveFilter};
use wecom_bridge::store::Store;

use crate::support::{amqp_url, envelope, test_sealer, unique};

/// Prefetch every back end is built with in this suite.
const PREFETCH: u16 = 4;

/// How to build (and rebuild, for persistence) one back end.
pub trait Backend: Sized {
    type B: Broker;
    async fn build(&mut self) -> Self::B;
    /// Drops every connection/handle and builds again on the same durable state.
    async fn rebuild(&mut self, old: Self::B) -> Self::B;
    /// Removes what the test created (RabbitMQ queues are a server resource: each quorum
    /// queue holds file handles, so leaked test queues would exhaust the node).
    async fn cleanup(&mut self, b: Self::B, queues: &[String]);
}

pub struct Embedded {
    dir: tempfile::TempDir,
}

impl Embedded {
    pub fn new() -> Self {
        Embedded {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn opts() -> EmbeddedOptions {
        EmbeddedOptions {
            prefetch: PREFETCH,
            lease: Duration::from_secs(1),
            delivery_limit: 5,
        }
    }
}

impl Backend for Embedded {
    type B = EmbeddedBroker;
    async fn build(&mut self) -> EmbeddedBroker {
        let store = Store::open(&self.dir.path().join("broker.redb"), test_sealer()).unwrap();
        EmbeddedBroker::open(store, Self::opts()).await.unwrap()
    }
    async fn rebuild(&mut self, old: EmbeddedBroker) -> EmbeddedBroker {
        old.close().await;
        self.build().await
    }
    async fn cleanup(&mut self, b: EmbeddedBroker, _queues: &[String]) {
        b.close().await; // the temporary directory goes with the backend
    }
}

pub struct Rabbit {
    prefix: String,
}

impl Rabbit {
    pub fn new() -> Self {
        Rabbit {
            prefix: unique("wbtest"),
        }
    }
    pub fn opts(prefix: &str) -> RabbitOptions {
        RabbitOptions {
            prefix: prefix.into(),
            prefetch: PREFETCH,
            retry_tiers: vec![
                Duration::from_secs(1),
                Duration::from_secs(2),
                Duration::from_secs(5),
            ],
            delivery_limit: 5,
            queues: vec![],
        }
    }
}

impl Backend for Rabbit {
    type B = RabbitBroker;
    async fn build(&mut self) -> RabbitBroker {
        match RabbitBroker::connect(&amqp_url(), Self::opts(&self.prefix)).await {
            Ok(b) => b,
            Err(e) => panic!(
                "RabbitMQ is required for this test and is not reachable at {} ({e}).\n\
                 Start it with `rabbitmq-server -detached && rabbitmqctl await_startup` \
                 (or set WECOM_BRIDGE_TEST_AMQP_URL). This test does not skip.",
                amqp_url()
            ),
        }
    }
    async fn rebuild(&mut self, old: RabbitBroker) -> RabbitBroker {
        old.close().await;
        self.build().await
    }
    async fn cleanup(&mut self, b: RabbitBroker, queues: &[String]) {
        b.delete_queues(queues).await.expect("deleting test queues");
        b.close().await;
    }
}

async fn next_within<B: Broker>(
    c: &mut wecom_bridge::broker::Consumer<B::Delivery>,
    within: Duration,
) -> Option<B::Delivery> {
    match tokio::time::timeout(within, c.next()).await {
        Ok(Some(Ok(d))) => Some(d),
        Ok(Some(Err(e))) => panic!("consumer error: {e}"),
        Ok(None) => panic!("consumer closed"),
        Err(_) => None,
    }
}

async fn expect_next<B: Broker>(
    c: &mut wecom_bridge::broker::Consumer<B::Delivery>,
) -> B::Delivery {
    next_within::<B>(c, Duration::from_secs(15))
        .await
        .expect("a delivery within 15 s")
}

pub async fn round_trip<K: Backend>(mut k: K) {
    let b = k.build().await;
    let q = unique("rt");
    let env = envelope("evt_rt_1");
    b.publish(&q, &env).await.unwrap();
    let mut c = b.consume(&q).await.unwrap();
    let d = expect_next::<K::B>(&mut c).await;
    assert_eq!(d.envelope(), &env, "headers and payload intact");
    assert_eq!(d.attempt(), 1);
    d.ack().await.unwrap();
    assert!(
        next_within::<K::B>(&mut c, Duration::from_millis(500))
            .await
            .is_none(),
        "ack removes"
    );
    drop(c);
    let depth = &b.depths(std::slice::from_ref(&q)).await.unwrap()[0];
    assert_eq!(
        (depth.ready, depth.unacked, depth.dead),
        (0, 0, 0),
        "{depth:?}"
    );
    k.cleanup(b, std::slice::from_ref(&q)).await;
}

pub async fn retry_comes_back_with_the_next_attempt_and_defer_with_the_same<K: Backend>(mut k: K) {
    let b = k.build().await;
    let q = unique("retry");
    let env = envelope("evt_retry");
    b.publish(&q, &env).await.unwrap();
    let mut c = b.consume(&q).await.unwrap();
    let d = expect_next::<K::B>(&mut c).await;
    let asked = Instant::now();
    d.retry_after(Duration::from_secs(1)).await.unwrap();
    let d = expect_next::<K::B>(&mut c).await;
    assert!(
        asked.elapsed() >= Duration::from_secs(1),
        "came back after {:?}",
        asked.elapsed()
    );
    assert_eq!(d.attempt(), 2);
    assert_eq!(d.envelope(), &env);
    d.retry_after(Duration::from_millis(10)).await.unwrap();
    let d = expect_next::<K::B>(&mut c).await;
    assert_eq!(d.attempt(), 3);
    // a wait (the target's circuit is open) comes back later without using up an attempt
    let asked = Instant::now();
    d.defer(Duration::from_secs(1)).await.unwrap();
    let d = expect_next::<K::B>(&mut c).await;
    assert!(
        asked.elapsed() >= Duration::from_secs(1),
        "deferred {:?}",
        asked.elapsed()
    );
    assert_eq!(d.attempt(), 3, "deferring is not an attempt");
    assert_eq!(d.envelope(), &env);
    d.ack().await.unwrap();
    assert!(
        next_within::<K::B>(&mut c, Duration::from_millis(1500))
            .await
            .is_none()
    );
    k.cleanup(b, std::slice::from_ref(&q)).await;
}

pub async fn dead_letter_is_listed_and_redriven<K: Backend>(mut k: K) {
    let b = k.build().await;
    let q = unique("dead");
    b.publish(&q, &envelope("evt_dead_1")).await.unwrap();
    b.publish(&q, &envelope("evt_dead_2")).await.unwrap();
    let mut c = b.consume(&q).await.unwrap();
    for _ in 0..2 {
        let d = expect_next::<K::B>(&mut c).await;
        let reason = format!("target refused {}", d.envelope().id);
        d.dead_letter(&reason).await.unwrap();
    }
    let dead = b.dead_letters(&q, 10).await.unwrap();
    assert_eq!(dead.len(), 2, "{dead:?}");
    let first = dead.iter().find(|d| d.envelope.id == "evt_dead_1").unwrap();
    assert_eq!(first.reason, "target refused evt_dead_1");
    assert_eq!(first.attempts, 1);
    assert_eq!(first.queue, q);
    assert!(first.first_failure_ms > 0 && first.last_failure_ms >= first.first_failure_ms);
    assert_eq!(first.envelope, envelope("evt_dead_1"));
    // listing does not consume
    assert_eq!(b.dead_letters(&q, 10).await.unwrap().len(), 2);
    let depth = &b.depths(std::slice::from_ref(&q)).await.unwrap()[0];
    assert_eq!(depth.dead, 2, "{depth:?}");

    // redrive one by id, then the rest
    let n = b
        .redrive(&q, &RedriveFilter::Ids(vec!["evt_dead_2".into()]))
        .await
        .unwrap();
    assert_eq!(n, 1);
    let d = expect_next::<K::B>(&mut c).await;
    assert_eq!(d.envelope().id, "evt_dead_2");
    assert_eq!(d.attempt(), 1, "redriven messages start again at attempt 1");
    d.ack().await.unwrap();
    assert_eq!(b.redrive(&q, &RedriveFilter::All).await.unwrap(), 1);
    let d = expect_next::<K::B>(&mut c).await;
    assert_eq!(d.envelope().id, "evt_dead_1");
    d.ack().await.unwrap();
    assert!(b.dead_letters(&q, 10).await.unwrap().is_empty());
    k.cleanup(b, std::slice::from_ref(&q)).await;
}

pub async fn unsettled_delivery_comes_back_after_consumer_drops<K: Backend>(mut k: K) {
    let b = k.build().await;
    let q = unique("unsettled");
    b.publish(&q, &envelope("evt_lost_consumer")).await.unwrap();
    let mut c = b.consume(&q).await.unwrap();
    let d = expect_next::<K::B>(&mut c).await;
    assert_eq!(d.attempt(), 1);
    drop(d); // never settled: the consumer "crashed"
    drop(c);
    let mut c = b.consume(&q).await.unwrap();
    let d = expect_next::<K::B>(&mut c).await;
    assert_eq!(d.envelope().id, "evt_lost_consumer");
    assert!(
        d.attempt() >= 2,
        "a redelivery counts as an attempt, got {}",
        d.attempt()
    );
    d.ack().await.unwrap();
    k.cleanup(b, std::slice::from_ref(&q)).await;
}

pub async fn consumers_get_back_pressure<K: Backend>(mut k: K) {
    let b = k.build().await;
    let q = unique("prefetch");
    for i in 0..(PREFETCH as usize + 3) {
        b.publish(&q, &envelope(&format!("evt_bp_{i}")))
            .await
            .unwrap();
    }
    let mut c = b.consume(&q).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..PREFETCH {
        held.push(expect_next::<K::B>(&mut c).await);
    }
    assert!(
        next_within::<K::B>(&mut c, Duration::from_millis(700))
            .await
            .is_none(),
        "more than prefetch={PREFETCH} unsettled deliveries were handed out"
    );
    held.pop().unwrap().ack().await.unwrap();
    held.push(expect_next::<K::B>(&mut c).await);
    for d in held {
        d.ack().await.unwrap();
    }
    k.cleanup(b, std::slice::from_ref(&q)).await;
}

pub async fn many_producers_many_consumers_lose_nothing<K: Backend>(mut k: K) {
    let b = k.build().await;
    let q = unique("mpmc");
    let (producers, per_producer, consumers) = (4, 250, 3);
    let total = producers * per_producer;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut tasks = Vec::new();
    for _ in 0..consumers {
        let (b, q, tx) = (b.clone(), q.clone(), tx.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = b.consume(&q).await.unwrap();
            while let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_secs(5), c.next()).await
            {
                let id = d.envelope().id.clone();
                d.ack().await.unwrap();
                if tx.send(id).is_err() {
                    break;
                }
            }
        }));
    }
    let mut pubs = Vec::new();
    for p in 0..producers {
        let (b, q) = (b.clone(), q.clone());
        pubs.push(tokio::spawn(async move {
            for i in 0..per_producer {
                b.publish(&q, &envelope(&format!("evt_{p}_{i}")))
                    .await
                    .unwrap();
            }
        }));
    }
    for p in pubs {
        p.await.unwrap();
    }
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < total && Instant::now() < deadline {
        if let Ok(Some(id)) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            assert!(id.starts_with("evt_"), "unknown message {id}");
            seen.insert(id);
        }
    }
    assert_eq!(seen.len(), total, "every message delivered at least once");
    for t in tasks {
        t.abort();
    }
    k.cleanup(b, std::slice::from_ref(&q)).await;
}

pub async fn messages_survive_a_restart<K: Backend>(mut k: K) {
    let b = k.build().await;
    let q = unique("persist");
    for i in 0..10 {
        b.publish(&q, &envelope(&format!("evt_p_{i}")))
            .await
            .unwrap();
    }
    // one delivered but unsettled when the "process" goes away
    let mut c = b.consume(&q).await.unwrap();
    let _unsettled = expect_next::<K::B>(&mut c).await;
    drop(c);
    let b = k.rebuild(b).await;
    let mut c = b.consume(&q).await.unwrap();
    let mut seen = HashSet::new();
    while seen.len() < 10 {
        let d = expect_next::<K::B>(&mut c).await;
        seen.insert(d.envelope().id.clone());
        d.ack().await.unwrap();
    }
    assert_eq!(seen.len(), 10);
    k.cleanup(b, std::slice::from_ref(&q)).await;
}

macro_rules! conformance {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;
            conformance!(@tests $make;
                round_trip,
                retry_comes_back_with_the_next_attempt_and_defer_with_the_same,
                dead_letter_is_listed_and_redriven,
                unsettled_delivery_comes_back_after_consumer_drops,
                consumers_get_back_pressure,
                many_producers_many_consumers_lose_nothing,
                messages_survive_a_restart,
            );
        }
    };
    (@tests $make:expr; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                super::$test($make).await
            }
        )*
    };
}

conformance!(embedded, Embedded::new());
conformance!(rabbitmq, Rabbit::new());
