//! The backbone end to end, on both back ends: a callback accepted by ingress is journaled,
//! relayed to the broker with a confirm (then marked published), and consumed and settled by
//! the route stage; dead letters can be listed and replayed through the admin API and CLI.

use std::time::Duration;

use wecom_bridge::broker::embedded::{EmbeddedBroker, EmbeddedOptions};
use wecom_bridge::broker::rabbitmq::{RabbitBroker, RabbitOptions};
use wecom_bridge::broker::{Broker, Delivery};
use wecom_bridge::store::Store;

use crate::broker::envelope;
use crate::support::*;

fn approval(n: usize) -> String {
    include_str!("../../samples/approval-approved.xml")
        .replace("wx5823bf96d3bd56c7", CORP_ID)
        // a leave request: no shipped mapping routes it, so the route stage records and acks
        .replace("费用报销", "请假")
        .replace("202506050012", &format!("2026{n:08}"))
}

async fn flows_through(t: &TestBridge, app: &TestApp, n: usize) {
    for i in 0..n {
        let (q, body) = signed(app, &approval(i));
        assert_eq!(post(&t.url(&app.path), &q, body).await.0, 200);
    }
    eventually(30, "every event published and consumed", || async {
        let events = t.events("").await;
        let q = t.queues().await;
        let route = &q["queues"][0];
        events.len() == n
            && events.iter().all(|e| e["state"] == "published")
            && q["outbox_backlog"] == 0
            && route["queue"] == "route"
            && route["ready"] == 0
            && route["unacked"] == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_carries_callbacks_to_the_route_stage() {
    let app = TestApp::new("pipe_embedded");
    let t = TestBridge::start(&[TestApp::new("pipe_embedded")]).await;
    flows_through(&t, &app, 25).await;
    let (_, ready) = get(&format!("http://{}/readyz", t.admin)).await;
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["broker"]["kind"], "embedded");
    assert_eq!(ready["broker"]["state"], "ok");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_carries_callbacks_to_the_route_stage() {
    let prefix = format!("wbpipe-{:08x}", rand::random::<u32>());
    let app = TestApp::new("pipe_rabbit");
    let t = TestBridge::start_with(&[TestApp::new("pipe_rabbit")], &rabbit_section(&prefix)).await;
    eventually(
        20,
        "RabbitMQ connected (is it running? `rabbitmq-server -detached`)",
        || async {
            let (_, ready) = get(&format!("http://{}/readyz", t.admin)).await;
            ready.contains("\"state\":\"ok\"")
        },
    )
    .await;
    flows_through(&t, &app, 25).await;
    // the topology is really in RabbitMQ: a passive look through our own connection
    let own = RabbitBroker::connect(&amqp_url(), rabbit_opts(&prefix))
        .await
        .unwrap();
    let d = own.depths(&["route".to_string()]).await.unwrap();
    assert_eq!((d[0].ready, d[0].dead), (0, 0));
    own.delete_queues(&["route".to_string(), "manual".to_string()])
        .await
        .unwrap();
    own.close().await;
    t.stop().await;
}

fn rabbit_opts(prefix: &str) -> RabbitOptions {
    RabbitOptions {
        prefix: prefix.into(),
        prefetch: 8,
        retry_tiers: vec![Duration::from_secs(1), Duration::from_secs(2)],
        delivery_limit: 20,
        queues: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_replayed_through_the_admin_api() {
    let prefix = format!("wbdead-{:08x}", rand::random::<u32>());
    let t = TestBridge::start_with(&[TestApp::new("dead_admin")], &rabbit_section(&prefix)).await;
    // park two messages in a queue of the same bridge through our own connection
    let own = RabbitBroker::connect(&amqp_url(), rabbit_opts(&prefix))
        .await
        .unwrap();
    let q = "manual";
    own.publish(q, &envelope("evt_a")).await.unwrap();
    own.publish(q, &envelope("evt_b")).await.unwrap();
    let mut c = own.consume(q).await.unwrap();
    for _ in 0..2 {
        let d = c.next().await.unwrap().unwrap();
        d.dead_letter("finance system said: account 6602 closed")
            .await
            .unwrap();
    }
    let text = reqwest::get(format!("http://{}/admin/dead-letters?queue={q}", t.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let listed: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 2, "{text}");
    assert_eq!(
        listed[0]["reason"],
        "finance system said: account 6602 closed"
    );
    let resp: serde_json::Value = reqwest::Client::new()
        .post(format!(
            "http://{}/admin/replay?queue={q}&ids=evt_b",
            t.admin
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["redriven"], 1);
    let d = tokio::time::timeout(Duration::from_secs(10), c.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(d.envelope().id, "evt_b");
    d.ack().await.unwrap();
    let bad = reqwest::Client::new()
        .post(format!("http://{}/admin/replay?queue={q}", t.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400, "replay needs exactly one selector");
    drop(c);
    own.delete_queues(&["route".to_string(), q.to_string()])
        .await
        .unwrap();
    own.close().await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_lists_and_replays_dead_letters_of_the_embedded_broker() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bridge.toml");
    std::fs::write(
        &config,
        config_toml(dir.path(), &[TestApp::new("cli_dead")]),
    )
    .unwrap();
    {
        let store = Store::open(&dir.path().join("bridge.redb"), test_sealer()).unwrap();
        let b = EmbeddedBroker::open(
            store,
            EmbeddedOptions {
                prefetch: 8,
                lease: Duration::from_secs(30),
                delivery_limit: 20,
            },
        )
        .await
        .unwrap();
        for i in 0..3 {
            b.publish("route", &envelope(&format!("evt_cli_{i}")))
                .await
                .unwrap();
        }
        let mut c = b.consume("route").await.unwrap();
        for _ in 0..3 {
            let d = c.next().await.unwrap().unwrap();
            let reason = if d.envelope().id == "evt_cli_1" {
                "mapping error: no cost center"
            } else {
                "target timeout"
            };
            d.dead_letter(reason).await.unwrap();
        }
        drop(c);
        b.close().await;
    }
    let cfg = config.to_str().unwrap();
    // no bridge is running: the CLI opens the store itself
    let (ok, out, err) = run_cli(&["--config", cfg, "dead-letters"], dir.path(), &[]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("evt_cli_1") && out.contains("mapping error: no cost center"),
        "{out}"
    );
    // metadata by default; the payload only with --payload
    assert!(!out.contains("<xml>"), "{out}");
    let (ok, out, err) = run_cli(
        &["--config", cfg, "dead-letters", "--json", "--payload"],
        dir.path(),
        &[],
    );
    assert!(ok, "{out}{err}");
    assert_eq!(out.matches("<xml><Id>evt_cli_").count(), 3, "{out}");
    let (_, out, _) = run_cli(
        &["--config", cfg, "dead-letters", "--json"],
        dir.path(),
        &[],
    );
    assert!(!out.contains("<xml>"), "{out}");
    let (ok, out, err) = run_cli(
        &["--config", cfg, "replay", "--reason", "timeout"],
        dir.path(),
        &[],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("replayed 2 of 2"), "{out}");
    let (ok, out, _) = run_cli(
        &["--config", cfg, "dead-letters", "--json"],
        dir.path(),
        &[],
    );
    assert!(ok);
    assert_eq!(out.lines().count(), 1, "{out}");
    let (ok, out, err) = run_cli(&["--config", cfg, "queues"], dir.path(), &[]);
    assert!(ok, "{out}{err}");
    let route = out
        .lines()
        .find(|l| l.starts_with("route"))
        .unwrap_or_else(|| panic!("{out}"));
    let cols: Vec<&str> = route.split_whitespace().collect();
    assert_eq!(
        cols[1..],
        ["2", "0", "0", "1"],
        "ready/unacked/delayed/dead: {out}"
    );
    let (ok, _, err) = run_cli(&["--config", cfg, "replay"], dir.path(), &[]);
    assert!(
        !ok && err.contains("required"),
        "replay without a selector must fail: {err}"
    );
}
