//! RabbitMQ publish throughput, in one run against the local RabbitMQ
//! (127.0.0.1:5672, guest/guest, or `WECOM_BRIDGE_TEST_AMQP_URL`):
//!
//! (a) bare lapin: one channel, publisher confirms, persistent 2 KB messages to a quorum queue,
//!     `N` messages in flight (pipelined confirms);
//! (b) `RabbitBroker::publish` (confirmed, persistent, mandatory, 2 KB envelopes) from `N`
//!     concurrent publishers;
//!
//! then the ratio (b)/(a). `N` = `WB_BENCH_IN_FLIGHT` (default 256), each phase runs
//! `WB_BENCH_SECS` seconds (default 8) after a 1 s warm-up. The bench queues are deleted
//! afterwards. Run with `cargo bench --bench broker_rabbitmq`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};
use wecom_bridge::broker::rabbitmq::{RabbitBroker, RabbitOptions};
use wecom_bridge::broker::{Body, Broker, ENVELOPE_VERSION, Envelope};

const MESSAGE_BYTES: usize = 2048;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn amqp_url() -> String {
    std::env::var("WECOM_BRIDGE_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn unreachable_help(e: impl std::fmt::Display) -> ! {
    panic!(
        "RabbitMQ is not reachable at {} ({e}); start it with \
         `rabbitmq-server -detached && rabbitmqctl await_startup`",
        amqp_url()
    )
}

/// An envelope whose JSON encoding is exactly `MESSAGE_BYTES` long.
fn envelope_of_size(id: &str) -> Envelope {
    let mut env = Envelope {
        v: ENVELOPE_VERSION,
        id: id.into(),
        kind: "approval_change".into(),
        business_key: "202506050012:2".into(),
        app: "bench".into(),
        created_at_ms: 1_749_106_583_000,
        body: Body::Message(serde_json::json!({"type": "event", "xml": ""})),
    };
    let overhead = env.to_bytes().len();
    let xml = "x".repeat(MESSAGE_BYTES.saturating_sub(overhead));
    env.body = Body::Message(serde_json::json!({"type": "event", "xml": xml}));
    env
}

/// (a) bare lapin, `in_flight` unconfirmed messages at any time; messages/s.
async fn bare_lapin(prefix: &str, in_flight: usize, run: Duration) -> f64 {
    let conn = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| unreachable_help(e));
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    let queue = format!("{prefix}.bare");
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(queue.as_str().into(), durable, args)
        .await
        .expect("declare");
    let body = vec![b'x'; MESSAGE_BYTES];
    let props = BasicProperties::default().with_delivery_mode(2);
    let options = BasicPublishOptions {
        mandatory: true,
        immediate: false,
    };

    let measure = |window: Duration| {
        let (ch, queue, body, props) = (ch.clone(), queue.clone(), body.clone(), props.clone());
        async move {
            let mut pending = VecDeque::with_capacity(in_flight);
            let mut confirmed = 0u64;
            let started = Instant::now();
            loop {
                let publishing = started.elapsed() < window;
                while publishing && pending.len() < in_flight {
                    let confirm = ch
                        .basic_publish(
                            "".into(),
                            queue.as_str().into(),
                            options,
                            &body,
                            props.clone(),
                        )
                        .await
                        .expect("publish");
                    pending.push_back(confirm);
                }
                let Some(next) = pending.pop_front() else {
                    break;
                };
                match next.await.expect("confirm") {
                    Confirmation::Ack(None) => confirmed += 1,
                    other => panic!("unexpected confirmation {other:?}"),
                }
            }
            confirmed as f64 / started.elapsed().as_secs_f64()
        }
    };
    measure(Duration::from_secs(1)).await;
    let rate = measure(run).await;
    ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
    let _ = conn.close(200, "bench done".into()).await;
    rate
}

/// (b) `RabbitBroker::publish` from `publishers` concurrent tasks; messages/s.
async fn broker_publish(prefix: &str, publishers: usize, run: Duration) -> f64 {
    let queue = "bench".to_string();
    let opts = RabbitOptions {
        prefix: prefix.into(),
        prefetch: 16,
        retry_tiers: vec![Duration::from_secs(5)],
        delivery_limit: 20,
        queues: vec![queue.clone()],
    };
    let b = RabbitBroker::connect(&amqp_url(), opts)
        .await
        .unwrap_or_else(|e| unreachable_help(e));
    let env = Arc::new(envelope_of_size("evt_bench"));
    assert_eq!(env.to_bytes().len(), MESSAGE_BYTES);

    let measure = |window: Duration| {
        let (b, queue, env) = (b.clone(), queue.clone(), env.clone());
        async move {
            let confirmed = Arc::new(AtomicU64::new(0));
            let started = Instant::now();
            let tasks: Vec<_> = (0..publishers)
                .map(|_| {
                    let (b, queue, env, confirmed) =
                        (b.clone(), queue.clone(), env.clone(), confirmed.clone());
                    tokio::spawn(async move {
                        while started.elapsed() < window {
                            b.publish(&queue, &env).await.expect("publish");
                            confirmed.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("publisher task");
            }
            confirmed.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
        }
    };
    measure(Duration::from_secs(1)).await;
    let rate = measure(run).await;
    b.delete_queues(std::slice::from_ref(&queue))
        .await
        .expect("delete bench queues");
    b.close().await;
    rate
}

fn main() {
    let in_flight: usize = env_or("WB_BENCH_IN_FLIGHT", 256);
    let run = Duration::from_secs(env_or("WB_BENCH_SECS", 8));
    let prefix = format!("wbbench-{:08x}", rand::random::<u32>());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        println!(
            "RabbitMQ publish throughput: persistent {MESSAGE_BYTES}-byte messages to a quorum queue, \
             publisher confirms, {in_flight} in flight, {}s per phase",
            run.as_secs()
        );
        let bare = bare_lapin(&prefix, in_flight, run).await;
        println!("(a) bare lapin, one channel, {in_flight} pipelined confirms: {bare:>9.0} msg/s");
        let broker = broker_publish(&prefix, in_flight, run).await;
        println!("(b) RabbitBroker::publish, {in_flight} concurrent publishers: {broker:>9.0} msg/s");
        println!("ratio (b)/(a): {:.2}", broker / bare);
    });
}
