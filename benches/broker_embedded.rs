//! Embedded broker round trip: publish + consume + ack of ~2 KB envelopes on a store in a
//! temporary directory. Several publishers each keep a window of publishes in flight and
//! every publish waits until it is durable, as the outbox relay does (`buffer_unordered`);
//! consumers settle deliveries concurrently within their prefetch window, as stage workers
//! do. Throughput comes from group commit: one fsync covers every publish, lease and ack
//! that queued up while the previous commit was flushing.
//!
//! Run: `cargo bench --bench broker_embedded`. Prints one line per run:
//! `embedded round trip: N msgs in S s = R msg/s`, then the median.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::Notify;
use wecom_bridge::broker::embedded::{EmbeddedBroker, EmbeddedOptions};
use wecom_bridge::broker::{Broker, Delivery, ENVELOPE_VERSION, Envelope};
use wecom_bridge::store::Store;

const MESSAGES: usize = 20_000;
const PUBLISHERS: usize = 4;
/// Publishes in flight per publisher (the outbox relay keeps 128).
const IN_FLIGHT: usize = 64;
const CONSUMERS: usize = 2;
const PREFETCH: u16 = 512;
const RUNS: usize = 5;
const QUEUE: &str = "deliver.bench";

fn envelope(i: usize) -> Envelope {
    // A decrypted approval callback is about 2 KB of XML.
    let filler = "审批".repeat(300) + &"x".repeat(200);
    Envelope {
        v: ENVELOPE_VERSION,
        id: format!("evt_bench_{i:08}"),
        kind: "approval_change".into(),
        business_key: format!("2025060500{i:06}:2"),
        app: "bench".into(),
        created_at_ms: 1_749_106_583_000,
        payload: format!("<xml><SpNo>{i}</SpNo><Note><![CDATA[{filler}]]></Note></xml>"),
    }
}

async fn round_trip(messages: usize) -> Duration {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Store::open(
        &dir.path().join("broker.redb"),
        std::sync::Arc::new(wecom_bridge::store::Sealer::with_key("t1", [7; 32])),
    )
    .expect("open store");
    let broker = EmbeddedBroker::open(
        store,
        EmbeddedOptions {
            prefetch: PREFETCH,
            lease: Duration::from_secs(60),
            delivery_limit: 20,
        },
    )
    .await
    .expect("open broker");
    let envelopes: Arc<Vec<Envelope>> = Arc::new((0..messages).map(envelope).collect());

    let acked = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(Notify::new());
    let started = Instant::now();
    let mut consumers = Vec::new();
    for _ in 0..CONSUMERS {
        let mut c = broker.consume(QUEUE).await.expect("consume");
        let (acked, done) = (acked.clone(), done.clone());
        consumers.push(tokio::spawn(async move {
            while let Some(d) = c.next().await {
                let d = d.expect("delivery");
                let (acked, done) = (acked.clone(), done.clone());
                tokio::spawn(async move {
                    d.ack().await.expect("ack");
                    if acked.fetch_add(1, Ordering::Relaxed) + 1 == messages {
                        done.notify_one();
                    }
                });
            }
        }));
    }
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let (broker, envelopes) = (broker.clone(), envelopes.clone());
        publishers.push(tokio::spawn(async move {
            futures_util::stream::iter((p..envelopes.len()).step_by(PUBLISHERS))
                .map(|i| {
                    let (broker, envelopes) = (broker.clone(), envelopes.clone());
                    async move { broker.publish(QUEUE, &envelopes[i]).await }
                })
                .buffer_unordered(IN_FLIGHT)
                .for_each(|r| {
                    r.expect("publish");
                    std::future::ready(())
                })
                .await;
        }));
    }
    for p in publishers {
        p.await.expect("publisher");
    }
    tokio::time::timeout(Duration::from_secs(120), done.notified())
        .await
        .expect("every message acked within 120 s");
    let elapsed = started.elapsed();
    for c in consumers {
        c.abort();
    }
    let depth = &broker.depths(&[QUEUE.to_string()]).await.expect("depths")[0];
    assert_eq!(
        (depth.ready, depth.unacked, depth.delayed, depth.dead),
        (0, 0, 0, 0),
        "{depth:?}"
    );
    broker.close().await;
    elapsed
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument that does not name us skips the run.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"embedded round trip broker_embedded".contains(&a))
    {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        round_trip(2_000).await; // warm-up
        let mut rates = Vec::new();
        for _ in 0..RUNS {
            let elapsed = round_trip(MESSAGES).await;
            let rate = MESSAGES as f64 / elapsed.as_secs_f64();
            println!(
                "embedded round trip: {MESSAGES} msgs in {:.3} s = {rate:.0} msg/s \
                 ({PUBLISHERS} publishers x {IN_FLIGHT} in flight, {CONSUMERS} consumers, prefetch {PREFETCH})",
                elapsed.as_secs_f64()
            );
            rates.push(rate);
        }
        rates.sort_by(f64::total_cmp);
        println!(
            "embedded round trip: median {:.0} msg/s over {RUNS} runs",
            rates[RUNS / 2]
        );
    });
}
