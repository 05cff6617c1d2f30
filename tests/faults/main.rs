//! Fault tests against the real RabbitMQ (127.0.0.1:5672, guest/guest, or
//! `WECOM_BRIDGE_TEST_AMQP_URL`), through `rabbitmqctl` (run as root), in the middle of a stream
//! of messages published like the outbox relay does (retrying until confirmed) and consumed by
//! idempotent consumers:
//! - every connection closed (`close_all_connections`): lapin recovers within a second;
//! - the application stopped for a few seconds (`stop_app`/`start_app`): publishes fail with
//!   `Unavailable` within ~5 s, `is_connected()` turns false, consumers resume by themselves;
//! - the application stopped for longer than lapin's own recovery lasts: the supervisor
//!   rebuilds the connection and the consumers move to it;
//! - the poison backstop: a message that is never settled is parked by RabbitMQ itself.
//!
//! Every confirmed message must be delivered (at least once).
//!
//! They disturb the whole RabbitMQ node, so they live in their own test binary (cargo runs test
//! binaries one after another) and run one at a time inside it (a global lock). A stopped
//! broker is always started again, even when a test fails (a guard). If RabbitMQ is not
//! reachable they FAIL with instructions; they never skip.

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use wecom_bridge::broker::rabbitmq::{RabbitBroker, RabbitOptions};
use wecom_bridge::broker::{Broker, BrokerError, Delivery, Envelope, RedriveFilter};

use support::{amqp_url, envelope, unique};

/// One fault test at a time.
static SERIAL: Mutex<()> = Mutex::const_new(());

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "wecom_bridge=info,lapin=warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Runs `rabbitmqctl` (blocking: call from `spawn_blocking` or a guard's drop).
fn rabbitmqctl(args: &[&str]) -> Result<String, String> {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run rabbitmqctl {args:?}: {e} (is RabbitMQ installed?)"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "rabbitmqctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

async fn rabbitmqctl_async(args: &'static [&'static str]) -> Result<String, String> {
    tokio::task::spawn_blocking(move || rabbitmqctl(args))
        .await
        .map_err(|e| e.to_string())?
}

/// Starts the broker application again when dropped, whatever happened: a failed test must not
/// leave RabbitMQ stopped.
struct StartAppOnDrop;

impl Drop for StartAppOnDrop {
    fn drop(&mut self) {
        if let Err(e) = rabbitmqctl(&["start_app"]) {
            eprintln!("RESTORING RABBITMQ FAILED: {e}\nrun `rabbitmqctl start_app` by hand");
        }
        let _ = rabbitmqctl(&["await_startup"]);
    }
}

/// Deletes every queue under a prefix when dropped, so that a failed test leaves nothing
/// behind either (a passing test already removed them with `delete_queues`).
struct DeleteQueuesOnDrop(String);

impl Drop for DeleteQueuesOnDrop {
    fn drop(&mut self) {
        let Ok(list) = rabbitmqctl(&["list_queues", "name", "--no-table-headers", "--quiet"])
        else {
            return;
        };
        let mine = format!("{}.", self.0);
        for name in list.lines().map(str::trim).filter(|n| n.starts_with(&mine)) {
            let _ = rabbitmqctl(&["delete_queue", name]);
        }
    }
}

async fn connect(prefix: &str, queue: &str) -> RabbitBroker {
    let opts = RabbitOptions {
        prefix: prefix.into(),
        prefetch: 16,
        retry_tiers: vec![Duration::from_secs(1), Duration::from_secs(5)],
        delivery_limit: 50,
        queues: vec![queue.to_string()],
    };
    connect_with(opts).await
}

async fn connect_with(opts: RabbitOptions) -> RabbitBroker {
    match RabbitBroker::connect(&amqp_url(), opts).await {
        Ok(b) => b,
        Err(e) => panic!(
            "RabbitMQ is required for the fault tests and is not reachable at {} ({e}).\n\
             Start it with `rabbitmq-server -detached && rabbitmqctl await_startup` \
             (or `rabbitmqctl start_app` if only the application is stopped), \
             or set WECOM_BRIDGE_TEST_AMQP_URL. These tests do not skip.",
            amqp_url()
        ),
    }
}

/// What consumers saw: delivery counts per id.
#[derive(Default)]
struct Seen {
    counts: std::sync::Mutex<HashMap<String, u32>>,
}

impl Seen {
    fn record(&self, id: String) {
        *self.counts.lock().unwrap().entry(id).or_default() += 1;
    }
    fn distinct(&self) -> usize {
        self.counts.lock().unwrap().len()
    }
    fn duplicates(&self) -> u32 {
        self.counts.lock().unwrap().values().map(|n| n - 1).sum()
    }
    fn missing(&self, ids: &[String]) -> Vec<String> {
        let counts = self.counts.lock().unwrap();
        ids.iter()
            .filter(|id| !counts.contains_key(*id))
            .cloned()
            .collect()
    }
}

/// Consumers that record every delivery and ack it (an ack that fails because the
/// connection went away is fine: the message comes back, the consumer is idempotent).
fn spawn_consumers(
    b: &RabbitBroker,
    q: &str,
    n: usize,
    seen: &Arc<Seen>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..n)
        .map(|_| {
            let (b, q, seen) = (b.clone(), q.to_string(), seen.clone());
            tokio::spawn(async move {
                let mut c = loop {
                    match b.consume(&q).await {
                        Ok(c) => break c,
                        Err(e) => {
                            eprintln!("consume failed, retrying: {e}");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                };
                while let Some(item) = c.next().await {
                    match item {
                        Ok(d) => {
                            seen.record(d.envelope().id.clone());
                            let _ = d.ack().await;
                        }
                        Err(e) => eprintln!("consumer error: {e}"),
                    }
                }
            })
        })
        .collect()
}

/// What publishers went through.
#[derive(Default)]
struct PublishStats {
    confirmed: AtomicUsize,
    failures: AtomicUsize,
    /// Failures that were not `Unavailable`.
    odd_failures: std::sync::Mutex<Vec<String>>,
    /// The longest a failing publish took to fail.
    slowest_failure: std::sync::Mutex<Duration>,
}

/// Publishes like the outbox relay: a failed publish is retried until it is confirmed.
async fn publish_until_confirmed(b: &RabbitBroker, q: &str, env: &Envelope, stats: &PublishStats) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let started = Instant::now();
        match b.publish(q, env).await {
            Ok(()) => {
                stats.confirmed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(e) => {
                let took = started.elapsed();
                stats.failures.fetch_add(1, Ordering::Relaxed);
                {
                    let mut slowest = stats.slowest_failure.lock().unwrap();
                    *slowest = (*slowest).max(took);
                }
                if !matches!(e, BrokerError::Unavailable(_)) {
                    stats.odd_failures.lock().unwrap().push(e.to_string());
                }
                assert!(
                    Instant::now() < deadline,
                    "could not publish {} for 180 s: {e}",
                    env.id
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Publishes `total` messages from `publishers` tasks, each pausing `pace` between messages
/// so that the stream spans the fault; `fault` runs once a quarter are confirmed.
async fn stream_with_fault<F, Fut>(
    b: &RabbitBroker,
    q: &str,
    total: usize,
    publishers: usize,
    pace: Duration,
    stats: &Arc<PublishStats>,
    fault: F,
) -> Vec<String>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let ids: Vec<String> = (0..total).map(|i| format!("evt_fault_{i:05}")).collect();
    let quarter = Arc::new(tokio::sync::Notify::new());
    let fault = {
        let quarter = quarter.clone();
        tokio::spawn(async move {
            quarter.notified().await;
            fault().await;
        })
    };
    let fired = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let (b, q, stats) = (b.clone(), q.to_string(), stats.clone());
        let mine: Vec<String> = ids.iter().skip(p).step_by(publishers).cloned().collect();
        let (quarter, fired) = (quarter.clone(), fired.clone());
        tasks.push(tokio::spawn(async move {
            for id in mine {
                publish_until_confirmed(&b, &q, &envelope(&id), &stats).await;
                if stats.confirmed.load(Ordering::Relaxed) >= total / 4
                    && !fired.swap(true, Ordering::SeqCst)
                {
                    quarter.notify_one();
                }
                tokio::time::sleep(pace).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    fault.await.unwrap();
    ids
}

async fn wait_all_delivered(seen: &Seen, ids: &[String], within: Duration) {
    let deadline = Instant::now() + within;
    while seen.distinct() < ids.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let missing = seen.missing(ids);
    assert!(
        missing.is_empty(),
        "{} of {} confirmed messages never delivered (first: {:?})",
        missing.len(),
        ids.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
}

async fn eventually_connected(b: &RabbitBroker, within: Duration) {
    let deadline = Instant::now() + within;
    while !b.is_connected() {
        assert!(
            Instant::now() < deadline,
            "not reconnected within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a broker said while RabbitMQ was stopped.
struct Outage {
    /// `is_connected()` was false at some check (every 100 ms).
    saw_disconnected: bool,
    /// `is_connected()` was false at the end, just before RabbitMQ was started again.
    disconnected_at_end: bool,
}

/// Stops the RabbitMQ application for `down`, watching `b`, then starts it again (also when
/// this panics).
async fn stop_rabbitmq_for(b: &RabbitBroker, down: Duration) -> Outage {
    let guard = StartAppOnDrop;
    rabbitmqctl_async(&["stop_app"])
        .await
        .expect("stopping the RabbitMQ application");
    let stopped = Instant::now();
    let mut saw_disconnected = false;
    while stopped.elapsed() < down {
        saw_disconnected |= !b.is_connected();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let disconnected_at_end = !b.is_connected();
    tokio::task::spawn_blocking(move || drop(guard))
        .await
        .unwrap();
    Outage {
        saw_disconnected: saw_disconnected || disconnected_at_end,
        disconnected_at_end,
    }
}

/// One stream-under-a-fault scenario: the serial lock, a fresh queue prefix (deleted at the
/// end), a connected broker, two consumers recording every delivery, and the publishers'
/// statistics.
struct FaultStream {
    // Dropped in this order: the queues are deleted while the serial lock is still held.
    _cleanup: DeleteQueuesOnDrop,
    _serial: tokio::sync::MutexGuard<'static, ()>,
    q: String,
    b: RabbitBroker,
    seen: Arc<Seen>,
    consumers: Vec<tokio::task::JoinHandle<()>>,
    stats: Arc<PublishStats>,
}

impl FaultStream {
    async fn start(q: &str) -> Self {
        let serial = SERIAL.lock().await;
        init_tracing();
        let prefix = unique("wbfault");
        let cleanup = DeleteQueuesOnDrop(prefix.clone());
        let b = connect(&prefix, q).await;
        let seen = Arc::new(Seen::default());
        let consumers = spawn_consumers(&b, q, 2, &seen);
        FaultStream {
            _cleanup: cleanup,
            _serial: serial,
            q: q.to_string(),
            b,
            seen,
            consumers,
            stats: Arc::new(PublishStats::default()),
        }
    }

    /// Streams `total` messages from 4 publishers, each pausing `pace` between messages;
    /// `fault` runs once a quarter are confirmed.
    async fn stream<F, Fut>(&self, total: usize, pace: Duration, fault: F) -> Vec<String>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        stream_with_fault(&self.b, &self.q, total, 4, pace, &self.stats, fault).await
    }

    /// Every id is delivered within `deliver_within` and the broker is connected again
    /// within `reconnect_within`; prints the figures under `label`; asserts that publishes
    /// failed only as `Unavailable` and none took over 7 s to fail; then cleans up.
    async fn finish(
        self,
        label: &str,
        ids: &[String],
        deliver_within: Duration,
        reconnect_within: Duration,
    ) {
        wait_all_delivered(&self.seen, ids, deliver_within).await;
        eventually_connected(&self.b, reconnect_within).await;
        let stats = &self.stats;
        let slowest = *stats.slowest_failure.lock().unwrap();
        eprintln!(
            "{label}: {} confirmed, {} failed publishes (retried), slowest failure {slowest:?}, {} duplicate deliveries",
            stats.confirmed.load(Ordering::Relaxed),
            stats.failures.load(Ordering::Relaxed),
            self.seen.duplicates()
        );
        assert!(
            stats.odd_failures.lock().unwrap().is_empty(),
            "{:?}",
            stats.odd_failures.lock().unwrap()
        );
        assert!(
            slowest <= Duration::from_secs(7),
            "a publish took {slowest:?} to fail"
        );
        for c in self.consumers {
            c.abort();
        }
        self.b
            .delete_queues(std::slice::from_ref(&self.q))
            .await
            .unwrap();
        self.b.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_survives_all_connections_being_closed() {
    let run = FaultStream::start("closeall").await;
    let ids = run
        .stream(2000, Duration::from_millis(10), || async {
            rabbitmqctl_async(&["close_all_connections", "wecom-bridge fault test"])
                .await
                .expect("closing all connections");
        })
        .await;
    run.finish(
        "close_all_connections",
        &ids,
        Duration::from_secs(60),
        Duration::from_secs(30),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_survives_the_broker_stopping_for_a_few_seconds() {
    let run = FaultStream::start("stopapp").await;
    let saw_disconnected = Arc::new(AtomicBool::new(false));
    let (b2, saw) = (run.b.clone(), saw_disconnected.clone());
    let ids = run
        .stream(2000, Duration::from_millis(20), move || async move {
            let outage = stop_rabbitmq_for(&b2, Duration::from_secs(5)).await;
            saw.store(outage.saw_disconnected, Ordering::SeqCst);
        })
        .await;
    let stats = run.stats.clone();
    run.finish(
        "stop_app",
        &ids,
        Duration::from_secs(120),
        Duration::from_secs(60),
    )
    .await;
    assert!(
        saw_disconnected.load(Ordering::SeqCst),
        "is_connected() stayed true while RabbitMQ was stopped"
    );
    assert!(
        stats.failures.load(Ordering::Relaxed) > 0,
        "no publish failed while RabbitMQ was stopped: the fault missed the stream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_survives_an_outage_longer_than_lapin_recovery() {
    // lapin gives up reconnecting after about 20 s; the supervisor then rebuilds the
    // connection and the consumers move to it by themselves
    let run = FaultStream::start("longoutage").await;
    let b2 = run.b.clone();
    let ids = run
        .stream(1000, Duration::from_millis(20), move || async move {
            let outage = stop_rabbitmq_for(&b2, Duration::from_secs(30)).await;
            assert!(
                outage.disconnected_at_end,
                "is_connected() is true while RabbitMQ is stopped"
            );
        })
        .await;
    run.finish(
        "long outage",
        &ids,
        Duration::from_secs(120),
        Duration::from_secs(60),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_keeps_crashing_its_consumer_is_parked_by_rabbitmq() {
    // the poison backstop: never settled (the consumer "crashes" each time), RabbitMQ itself
    // dead-letters it to the parking queue once x-delivery-limit is exceeded
    let _serial = SERIAL.lock().await;
    init_tracing();
    let prefix = unique("wbfault");
    let _cleanup = DeleteQueuesOnDrop(prefix.clone());
    let q = "poison".to_string();
    let opts = RabbitOptions {
        prefix: prefix.clone(),
        prefetch: 4,
        retry_tiers: vec![Duration::from_secs(1)],
        delivery_limit: 2,
        queues: vec![],
    };
    let b = connect_with(opts).await;
    b.publish(&q, &envelope("evt_poison")).await.unwrap();
    let mut c = b.consume(&q).await.unwrap();
    let mut attempts = Vec::new();
    while let Ok(Some(d)) = tokio::time::timeout(Duration::from_secs(2), c.next()).await {
        let d = d.unwrap();
        attempts.push(d.attempt());
        drop(d); // never settled
    }
    assert_eq!(
        attempts,
        [1, 2, 3],
        "delivered once, then redelivered up to the limit"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let dead = b.dead_letters(&q, 10).await.unwrap();
        if !dead.is_empty() || Instant::now() > deadline {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].envelope, envelope("evt_poison"));
    assert!(
        dead[0].reason.contains("delivery_limit"),
        "{}",
        dead[0].reason
    );
    assert_eq!(dead[0].attempts, 3);
    assert!(dead[0].first_failure_ms > 0);
    let depth = &b.depths(std::slice::from_ref(&q)).await.unwrap()[0];
    assert_eq!((depth.ready, depth.dead), (0, 1), "{depth:?}");
    // and it can be redriven like any parked message
    assert_eq!(b.redrive(&q, &RedriveFilter::All).await.unwrap(), 1);
    let d = tokio::time::timeout(Duration::from_secs(10), c.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((d.envelope().id.as_str(), d.attempt()), ("evt_poison", 1));
    d.ack().await.unwrap();
    drop(c);
    b.delete_queues(std::slice::from_ref(&q)).await.unwrap();
    b.close().await;
}

/// Expense claims through the pipeline (shared with the `it` binary).
#[path = "../it/expense.rs"]
mod expense;
/// The `it` binary's test support: configurations, `serve` processes, signed callbacks.
#[path = "../it/support/mod.rs"]
mod support;

mod bridge;
/// SIGKILL of the bridge during deliveries, on both brokers (the RabbitMQ one takes the lock).
mod kill;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_keeps_accepting_while_rabbitmq_is_down_and_drains_the_backlog() {
    let _serial = SERIAL.lock().await;
    bridge::rabbitmq_down_ingress_keeps_accepting_and_backlog_drains().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_bridge_relays_every_journaled_event_after_restart() {
    let _serial = SERIAL.lock().await;
    bridge::sigkilled_bridge_relays_every_journaled_event_after_restart().await;
}
