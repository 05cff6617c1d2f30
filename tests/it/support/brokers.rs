//! Test support: the brokers as a test opens them beside (or instead of) a bridge: the
//! embedded broker on a bridge's store, RabbitMQ under a unique prefix, parked messages.

use std::time::Duration;

use wecom_bridge::broker::embedded::{EmbeddedBroker, EmbeddedOptions};
use wecom_bridge::broker::rabbitmq::{RabbitBroker, RabbitDelivery, RabbitOptions};
use wecom_bridge::broker::{
    Body, Broker, Consumer, Delivery, ENVELOPE_VERSION, Envelope, ROUTE_QUEUE, WRITEBACK_QUEUE,
};
use wecom_bridge::store::Store;

use crate::support::*;

/// Writes, in `dir`, the configuration of app `app` (its path is returned) and fills its
/// embedded broker's route queue with [`envelope`]s of `ids`, of which the first `parked`
/// taken are parked with the reason `reason` gives their id. No bridge runs.
pub async fn embedded_with_dead_letters(
    dir: &std::path::Path,
    app: &str,
    ids: &[&str],
    parked: usize,
    reason: impl Fn(&str) -> &'static str,
) -> std::path::PathBuf {
    let config = config_file(dir, &config_toml(dir, &[TestApp::new(app)]));
    let b = embedded_at(dir).await;
    for id in ids {
        b.publish(ROUTE_QUEUE, &envelope(id)).await.unwrap();
    }
    let mut c = b.consume(ROUTE_QUEUE).await.unwrap();
    for _ in 0..parked {
        let d = c.next().await.unwrap().unwrap();
        let why = reason(&d.envelope().id);
        d.dead_letter(why).await.unwrap();
    }
    drop(c);
    b.close().await;
    config
}

/// The embedded broker on the store of [`config_toml`]`(dir, …)`, opened by the test while
/// no bridge runs (to lay out queues for the CLI).
pub async fn embedded_at(dir: &std::path::Path) -> EmbeddedBroker {
    let store = Store::open(&dir.join("bridge.redb"), test_sealer()).unwrap();
    let opts = EmbeddedOptions {
        prefetch: 8,
        lease: Duration::from_secs(30),
        delivery_limit: 20,
    };
    EmbeddedBroker::open(store, opts).await.unwrap()
}

/// The RabbitMQ URL tests use; RabbitMQ must be running (tests fail loudly otherwise).
pub fn amqp_url() -> String {
    std::env::var("WECOM_BRIDGE_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// `name` with a random suffix: a RabbitMQ prefix or queue name that no other test or run
/// uses.
pub fn unique(name: &str) -> String {
    format!("{name}-{:08x}", rand::random::<u32>())
}

/// An embedded broker with the tests' short retry tiers (those of [`rabbit_section`] too).
pub const SHORT_TIERS: &str = "[broker]\nretry_tiers_secs = [1, 2]\n";

/// A `[broker]` section for RabbitMQ with a unique prefix.
pub fn rabbit_section(prefix: &str) -> String {
    format!(
        "[broker]\nkind = \"rabbitmq\"\nurl = \"{}\"\nprefix = \"{prefix}\"\nretry_tiers_secs = [1, 2]\n",
        amqp_url()
    )
}

/// The test's own RabbitMQ connection to the broker of a bridge configured with
/// [`rabbit_section`]`(prefix)`, with the same retry tiers.
pub async fn own_rabbit(prefix: &str) -> RabbitBroker {
    let opts = RabbitOptions {
        prefix: prefix.into(),
        prefetch: 8,
        retry_tiers: vec![Duration::from_secs(1), Duration::from_secs(2)],
        delivery_limit: 20,
        queues: vec![],
    };
    RabbitBroker::connect(&amqp_url(), opts).await.unwrap()
}

/// Publishes [`envelope`]s with these ids to `queue` and parks each as a stage would, with
/// `reason`; returns the consumer, still open (a replayed message comes back to it).
pub async fn park(
    own: &RabbitBroker,
    queue: &str,
    ids: &[&str],
    reason: &str,
) -> Consumer<RabbitDelivery> {
    for id in ids {
        own.publish(queue, &envelope(id)).await.unwrap();
    }
    let mut c = own.consume(queue).await.unwrap();
    for _ in ids {
        let d = c.next().await.unwrap().unwrap();
        d.dead_letter(reason).await.unwrap();
    }
    c
}

/// Deletes `queues` (with their delay and dead-letter queues at the tiers of
/// [`rabbit_section`]) of the bridge configured with `rabbit_section(prefix)`.
pub async fn delete_rabbit_queues(prefix: &str, queues: &[String]) {
    let own = own_rabbit(prefix).await;
    own.delete_queues(queues).await.unwrap();
    own.close().await;
}

/// Deletes the bridge's route and writeback queues and `queue` from RabbitMQ (with their
/// delay tiers and dead letters) and closes the connection.
pub async fn remove_queues(own: RabbitBroker, queue: &str) {
    own.delete_queues(&[
        ROUTE_QUEUE.to_string(),
        WRITEBACK_QUEUE.to_string(),
        queue.to_string(),
    ])
    .await
    .unwrap();
    own.close().await;
}

/// A test message `id`: an approval event whose XML carries the id and some CDATA.
pub fn envelope(id: &str) -> Envelope {
    Envelope {
        v: ENVELOPE_VERSION,
        id: id.into(),
        kind: "approval_change".into(),
        business_key: format!("{id}:2"),
        app: "demo".into(),
        created_at_ms: 1_749_106_583_000,
        body: Body::Message(
            serde_json::json!({"type": "event", "xml": format!("<xml><Id>{id}</Id><Note><![CDATA[汉字 & <tags>]]></Note></xml>")}),
        ),
    }
}
